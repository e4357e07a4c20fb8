// Postmark: no signature scheme; the webhook URL carries HTTP Basic credentials we chose.
#include "ingest/webhooks/signatures.h"

#include <array>
#include <stdexcept>

#include <openssl/crypto.h>

#include "transform/text/ascii.h"

namespace crm::ingest::webhooks {

namespace {

// Longest Authorization value we bother decoding: credentials are tens of bytes.
constexpr std::size_t max_credentials = 768;

}  // namespace

postmark_verifier::postmark_verifier(std::string_view username, std::string_view password) {
  if (username.empty() || password.empty()) {
    throw std::invalid_argument("Postmark webhook basic-auth user and password must both be set");
  }
  if (username.find(':') != std::string_view::npos) {
    throw std::invalid_argument("Postmark webhook basic-auth user must not contain ':' (RFC 7617)");
  }
  if (!detail::sha256(username, user_digest_) || !detail::sha256(password, password_digest_)) {
    throw std::runtime_error("OpenSSL cannot compute SHA-256");
  }
}

verify_result postmark_verifier::verify(const header_map& headers) const noexcept {
  const auto header = headers.find("Authorization");
  if (!header) return {verify_error::missing_input, "missing header Authorization"};
  // RFC 7617: "Basic" (any case), one or more spaces, token68.
  std::string_view value = detail::trim_ows(*header);
  const std::size_t sp = value.find(' ');
  if (sp == std::string_view::npos || !transform::detail::ascii_iequals(value.substr(0, sp), "basic")) {
    return {verify_error::malformed_input, "malformed header Authorization"};
  }
  value = detail::trim_ows(value.substr(sp));
  std::array<unsigned char, max_credentials> decoded;
  const auto n = detail::base64_decode(value, decoded);
  if (!n) return {verify_error::malformed_input, "malformed header Authorization"};
  const std::string_view credentials(reinterpret_cast<const char*>(decoded.data()), *n);
  const std::size_t colon = credentials.find(':');
  if (colon == std::string_view::npos) return {verify_error::malformed_input, "malformed header Authorization"};

  detail::sha256_digest user, password;
  if (!detail::sha256(credentials.substr(0, colon), user) || !detail::sha256(credentials.substr(colon + 1), password)) {
    OPENSSL_cleanse(decoded.data(), decoded.size());
    return {verify_error::internal_error, "internal error"};
  }
  OPENSSL_cleanse(decoded.data(), decoded.size());
  // Both comparisons always run: which half was wrong is not observable.
  const bool user_ok = detail::ct_equal(user, user_digest_);
  const bool password_ok = detail::ct_equal(password, password_digest_);
  if (!(user_ok & password_ok)) return {verify_error::credentials_mismatch, "credentials mismatch"};
  return {};
}

}  // namespace crm::ingest::webhooks
