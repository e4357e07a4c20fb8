// Segment Webhooks destinations: X-Signature = hex HMAC-SHA1(shared secret, raw body).
#include "ingest/webhooks/signatures.h"

#include <array>

namespace crm::ingest::webhooks {

segment_verifier::segment_verifier(const secret_list& shared_secrets)
    : keys_(detail::mac_digest::sha1, shared_secrets) {}

verify_result segment_verifier::verify(std::string_view body, const header_map& headers) const noexcept {
  const auto header = headers.find(signature_header);
  if (!header) return {verify_error::missing_input, "missing header X-Signature"};
  std::array<unsigned char, detail::max_mac_size> given;
  const auto n = detail::hex_decode(detail::trim_ows(*header), given);
  if (!n || *n == 0) return {verify_error::malformed_input, "malformed header X-Signature"};
  return detail::match_mac(keys_, {body}, std::span(given.data(), *n));
}

}  // namespace crm::ingest::webhooks
