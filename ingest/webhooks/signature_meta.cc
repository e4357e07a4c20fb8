// Meta (WhatsApp Cloud API) webhooks: the GET hub.challenge subscription handshake (the body's
// X-Hub-Signature-256 is a body_hmac_verifier, signatures.cc).
#include "ingest/webhooks/signatures.h"

#include <array>
#include <string_view>
#include <utility>

#include "transform/text/url_params.h"

namespace crm::ingest::webhooks {

// What hub.challenge may hold (it is echoed back as the response body).
constexpr std::string_view challenge_chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-";

meta_subscription verify_meta_subscription(std::string_view raw_query, std::string_view verify_token) noexcept {
  meta_subscription out;
  try {
    std::optional<std::string> mode, token, challenge;
    std::string name, value;
    const bool read = transform::detail::for_each_pair(raw_query, [&](std::string_view raw_name, std::string_view raw_value) {
      if (!detail::form_decode(raw_name, name) || !detail::form_decode(raw_value, value)) {
        out.result = {verify_error::malformed_input, "malformed query string"};
        return false;
      }
      std::optional<std::string>* slot = name == "hub.mode"           ? &mode
                                         : name == "hub.verify_token" ? &token
                                         : name == "hub.challenge"    ? &challenge
                                                                      : nullptr;
      if (slot == nullptr) return true;
      if (*slot) {  // two different answers to one question: refuse rather than pick one
        out.result = {verify_error::malformed_input, "repeated hub.* query parameter"};
        return false;
      }
      *slot = value;
      return true;
    });
    if (!read) return out;
    if (!mode) {
      out.result = {verify_error::missing_input, "missing query parameter hub.mode"};
    } else if (!token) {
      out.result = {verify_error::missing_input, "missing query parameter hub.verify_token"};
    } else if (!challenge) {
      out.result = {verify_error::missing_input, "missing query parameter hub.challenge"};
    } else if (*mode != "subscribe") {
      out.result = {verify_error::malformed_input, "hub.mode is not subscribe"};
    } else if (challenge->empty() || challenge->size() > 128 ||
               challenge->find_first_not_of(challenge_chars) != std::string::npos) {
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
