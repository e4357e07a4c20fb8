// Mailgun webhooks: hex HMAC-SHA256(signing key, timestamp + token), a freshness window, and a cache of
// accepted tokens so that each signature is accepted once.
#include "ingest/webhooks/signatures.h"

#include <array>
#include <stdexcept>

namespace crm::ingest::webhooks {

replay_cache::outcome replay_cache::insert(std::string_view token, std::int64_t expires_at, std::int64_t now) {
  std::lock_guard lock(mu_);
  // Forget what can no longer pass the timestamp check anyway.
  while (!tokens_by_expiry_.empty() && tokens_by_expiry_.begin()->first < now) {
    const std::string* key = tokens_by_expiry_.begin()->second;
    tokens_by_expiry_.erase(tokens_by_expiry_.begin());
    expiry_by_token_.erase(*key);
  }
  if (expiry_by_token_.contains(token)) return outcome::replayed;
  if (expiry_by_token_.size() >= capacity_) return outcome::full;
  const auto [it, inserted] = expiry_by_token_.emplace(std::string(token), expires_at);
  try {
    tokens_by_expiry_.emplace(expires_at, &it->first);  // node-based map: the key's address is stable
  } catch (...) {
    expiry_by_token_.erase(it);
    throw;
  }
  return outcome::inserted;
}

void replay_cache::erase(std::string_view token) noexcept {
  std::lock_guard lock(mu_);
  const auto it = expiry_by_token_.find(token);
  if (it == expiry_by_token_.end()) return;
  auto [b, e] = tokens_by_expiry_.equal_range(it->second);
  for (; b != e; ++b) {
    if (b->second == &it->first) {
      tokens_by_expiry_.erase(b);
      break;
    }
  }
  expiry_by_token_.erase(it);
}

std::size_t replay_cache::size() const {
  std::lock_guard lock(mu_);
  return expiry_by_token_.size();
}

namespace {

mailgun_options checked(mailgun_options o) {
  if (o.tolerance <= std::chrono::seconds::zero() || o.tolerance > std::chrono::hours(24)) {
    throw std::invalid_argument("Mailgun webhook tolerance must be between 1 s and 24 h");
  }
  if (o.replay_capacity == 0) throw std::invalid_argument("Mailgun replay cache capacity must be positive");
  return o;
}

}  // namespace

mailgun_verifier::mailgun_verifier(const secret_list& signing_keys, mailgun_options options)
    : keys_(detail::mac_digest::sha256, signing_keys),
      options_(checked(options)),
      seen_(options_.replay_capacity) {}

verify_result mailgun_verifier::verify(const mailgun_signature& sig, unix_seconds now) const noexcept {
  if (sig.timestamp.empty()) return {verify_error::missing_input, "missing signature.timestamp"};
  if (sig.token.empty()) return {verify_error::missing_input, "missing signature.token"};
  if (sig.signature.empty()) return {verify_error::missing_input, "missing signature.signature"};
  const auto signed_at = detail::parse_unix_seconds(sig.timestamp);
  if (!signed_at) return {verify_error::malformed_input, "malformed signature.timestamp"};

  std::array<unsigned char, detail::max_mac_size> given;
  const auto n = detail::hex_decode(sig.signature, given);
  if (!n) return {verify_error::malformed_input, "malformed signature.signature"};
  if (!detail::within_tolerance(*signed_at, now, options_.tolerance)) {
    return {verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"};
  }

  verify_result r = detail::match_mac(keys_, {sig.timestamp, sig.token}, std::span(given.data(), *n));
  if (r.error == verify_error::signature_mismatch && !sig.parent_signature.empty()) {
    // Subaccount events also carry the parent account's signature; the primary key verifies that one.
    std::array<unsigned char, detail::max_mac_size> parent;
    const auto pn = detail::hex_decode(sig.parent_signature, parent);
    if (!pn) return {verify_error::malformed_input, "malformed signature.parent-signature"};
    r = detail::match_mac(keys_, {sig.timestamp, sig.token}, std::span(parent.data(), *pn));
  }
  if (!r) return r;

  // Only authentic tokens get here, so a forger cannot evict or fill the cache.
  try {
    const std::int64_t now_s = now.time_since_epoch().count();
    switch (seen_.insert(sig.token, *signed_at + options_.tolerance.count(), now_s)) {
      case replay_cache::outcome::inserted: return {};
      case replay_cache::outcome::replayed: return {verify_error::replayed_token, "replayed token"};
      case replay_cache::outcome::full: return {verify_error::replay_cache_full, "replay cache full"};
    }
  } catch (...) {  // std::bad_alloc
  }
  return {verify_error::internal_error, "internal error"};
}

}  // namespace crm::ingest::webhooks
