// Svix (used by Resend): HMAC-SHA256 over id "." timestamp "." body, keyed with the decoded
// "whsec_" secret; "v1,<base64>" entries, space-separated; 5-minute tolerance both ways.
#include "ingest/webhooks/signatures.h"

#include <array>
#include <stdexcept>

namespace crm::ingest::webhooks {

namespace {

struct header_names {
  std::string_view id, timestamp, signature;
  std::string_view missing_id, missing_timestamp, missing_signature;
  std::string_view malformed_timestamp, malformed_signature;
};

constexpr header_names svix_headers{
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "missing header svix-id",
    "missing header svix-timestamp",
    "missing header svix-signature",
    "malformed header svix-timestamp",
    "malformed header svix-signature",
};

constexpr header_names standard_headers{
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "missing header webhook-id",
    "missing header webhook-timestamp",
    "missing header webhook-signature",
    "malformed header webhook-timestamp",
    "malformed header webhook-signature",
};

}  // namespace

secret_list svix_verifier::decode_secrets(const std::vector<std::string>& endpoint_secrets) {
  secret_list keys;
  for (std::string_view s : endpoint_secrets) {
    if (s.starts_with("whsec_")) s.remove_prefix(6);  // Svix's libraries accept the bare form too
    std::string key(s.size(), '\0');
    const auto n = detail::base64_decode(s, std::span(reinterpret_cast<unsigned char*>(key.data()), key.size()));
    if (!n || *n == 0) {
      throw std::invalid_argument("Svix/Resend signing secret must be \"whsec_\" followed by base64 (copy it from the endpoint's page)");
    }
    key.resize(*n);
    keys.push_back(std::move(key));
  }
  return keys;
}

svix_verifier::svix_verifier(const std::vector<std::string>& endpoint_secrets, std::chrono::seconds tolerance)
    : keys_(detail::mac_digest::sha256, decode_secrets(endpoint_secrets)), tolerance_(tolerance) {
  if (tolerance <= std::chrono::seconds::zero()) throw std::invalid_argument("Svix tolerance must be positive");
}

verify_result svix_verifier::verify(std::string_view body, const header_map& headers, unix_seconds now) const noexcept {
  const header_names* names = &svix_headers;
  auto id = headers.find(names->id);
  if (!id) {
    names = &standard_headers;
    id = headers.find(names->id);
    if (!id) return {verify_error::missing_input, svix_headers.missing_id};
  }
  const auto timestamp = headers.find(names->timestamp);
  if (!timestamp) return {verify_error::missing_input, names->missing_timestamp};
  const auto signatures = headers.find(names->signature);
  if (!signatures) return {verify_error::missing_input, names->missing_signature};

  const std::string_view msg_id = detail::trim_ows(*id);
  const std::string_view ts = detail::trim_ows(*timestamp);
  const auto signed_at = detail::parse_unix_seconds(ts);
  if (!signed_at) return {verify_error::malformed_input, names->malformed_timestamp};
  if (!detail::within_tolerance(*signed_at, now, tolerance_)) {
    return {verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"};
  }

  // One MAC per configured secret; each "v1," entry of the header is compared against all of them.
  std::array<std::array<unsigned char, detail::max_mac_size>, detail::max_secrets> expected;
  for (std::size_t k = 0; k < keys_.size(); ++k) {
    detail::mac_stream mac(keys_, k);
    mac.update(msg_id);
    mac.update(".");
    mac.update(ts);
    mac.update(".");
    mac.update(body);
    if (!mac.finish(expected[k])) return {verify_error::internal_error, "internal error"};
  }

  bool matched = false;
  bool any_v1 = false;
  std::string_view rest = *signatures;
  while (!rest.empty()) {
    const std::size_t sp = rest.find(' ');
    const std::string_view entry = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
    if (!entry.starts_with("v1,")) continue;  // other versions are not ours to judge
    std::array<unsigned char, detail::max_mac_size> given;
    const auto n = detail::base64_decode(entry.substr(3), given);
    if (!n) continue;
    any_v1 = true;
    for (std::size_t k = 0; k < keys_.size(); ++k) {
      matched |= detail::ct_equal(std::span(expected[k]).first(keys_.mac_size()), std::span(given.data(), *n));
    }
  }
  if (matched) return {};
  if (!any_v1) return {verify_error::malformed_input, names->malformed_signature};
  return {verify_error::signature_mismatch, "signature mismatch"};
}

}  // namespace crm::ingest::webhooks
