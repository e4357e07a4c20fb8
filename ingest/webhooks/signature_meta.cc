// Meta (WhatsApp Cloud API) webhooks: X-Hub-Signature-256 over the raw body, and the GET
// hub.challenge subscription handshake.
#include "ingest/webhooks/signatures.h"

#include <algorithm>
#include <array>
#include <utility>

namespace crm::ingest::webhooks {

meta_verifier::meta_verifier(const secret_list& app_secrets) : keys_(detail::mac_digest::sha256, app_secrets) {}

verify_result meta_verifier::verify(std::string_view body, const header_map& headers) const noexcept {
  const auto header = headers.find(signature_header);
  if (!header) return {verify_error::missing_input, "missing header X-Hub-Signature-256"};
  // Meta signs the body bytes exactly as sent (non-ASCII arrives \u-escaped); never re-serialise.
  constexpr std::string_view prefix = "sha256=";
  const std::string_view value = detail::trim_ows(*header);
  if (!value.starts_with(prefix)) return {verify_error::malformed_input, "malformed header X-Hub-Signature-256"};
  std::array<unsigned char, detail::max_mac_size> given;
  const auto n = detail::hex_decode(value.substr(prefix.size()), given);
  if (!n || *n == 0) return {verify_error::malformed_input, "malformed header X-Hub-Signature-256"};
  return detail::match_mac(keys_, {body}, std::span(given.data(), *n));
}

namespace {

bool challenge_char(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
         c == '-';
}

}  // namespace

meta_subscription verify_meta_subscription(std::string_view raw_query, std::string_view verify_token) noexcept {
  meta_subscription out;
  try {
    std::optional<std::string> mode, token, challenge;
    std::string name, value;
    while (!raw_query.empty()) {
      const std::size_t amp = raw_query.find('&');
      const std::string_view pair = raw_query.substr(0, amp);
      raw_query = amp == std::string_view::npos ? std::string_view{} : raw_query.substr(amp + 1);
      if (pair.empty()) continue;
      const std::size_t eq = pair.find('=');
      if (!detail::form_decode(pair.substr(0, eq), name) ||
          !detail::form_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), value)) {
        out.result = {verify_error::malformed_input, "malformed query string"};
        return out;
      }
      std::optional<std::string>* slot = name == "hub.mode"           ? &mode
                                         : name == "hub.verify_token" ? &token
                                         : name == "hub.challenge"    ? &challenge
                                                                      : nullptr;
      if (slot == nullptr) continue;
      if (*slot) {  // two different answers to one question: refuse rather than pick one
        out.result = {verify_error::malformed_input, "repeated hub.* query parameter"};
        return out;
      }
      *slot = value;
    }
    if (!mode) {
      out.result = {verify_error::missing_input, "missing query parameter hub.mode"};
    } else if (!token) {
      out.result = {verify_error::missing_input, "missing query parameter hub.verify_token"};
    } else if (!challenge) {
      out.result = {verify_error::missing_input, "missing query parameter hub.challenge"};
    } else if (*mode != "subscribe") {
      out.result = {verify_error::malformed_input, "hub.mode is not subscribe"};
    } else if (challenge->empty() || challenge->size() > 128 ||
               !std::all_of(challenge->begin(), challenge->end(), challenge_char)) {
      out.result = {verify_error::malformed_input, "malformed hub.challenge"};
    } else {
      // Digests of both sides: equal length, so the comparison time says nothing about the token.
      detail::sha256_digest want, got;
      if (verify_token.empty()) {  // an empty token would let anyone subscribe the endpoint
        out.result = {verify_error::internal_error, "verify token not configured"};
      } else if (!detail::sha256(verify_token, want) || !detail::sha256(*token, got)) {
        out.result = {verify_error::internal_error, "internal error"};
      } else if (!detail::ct_equal(want, got)) {
        out.result = {verify_error::verify_token_mismatch, "verify token mismatch"};
      } else {
        out.challenge = std::move(*challenge);
        out.result = {};
      }
    }
  } catch (...) {  // std::bad_alloc
    out.challenge.clear();
    out.result = {verify_error::internal_error, "internal error"};
  }
  return out;
}

}  // namespace crm::ingest::webhooks
