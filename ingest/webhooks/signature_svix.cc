// Svix (used by Resend) and Standard Webhooks v1.0.0, which is Svix's scheme without the brand:
// id "." timestamp "." body, signed as "v1,<base64 HMAC-SHA256>" (key: the decoded "whsec_" secret) and,
// Standard Webhooks only, "v1a,<base64 Ed25519>" (key: the sender's "whpk_" public key); entries are
// space-separated; 5-minute tolerance both ways by default. Both verifiers run the same request
// reading and entry matching below; they differ in which header family they read first and in keys.
#include "ingest/webhooks/signatures.h"

#include <array>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include <openssl/err.h>
#include <openssl/evp.h>

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

constexpr std::string_view hmac_secret_prefix = "whsec_";
constexpr std::string_view ed25519_public_prefix = "whpk_";
constexpr std::string_view ed25519_secret_prefix = "whsk_";

// The three headers of one request, trimmed, from whichever family carries the id.
struct signed_request {
  const header_names* names;
  std::string_view id, timestamp, signatures;
};

// Reads `first`'s headers, or `alias`'s when `first`'s id header is absent (a missing id is reported under
// `first`'s name), and checks the timestamp: decimal seconds within `tolerance` of `now`.
verify_result read_request(const header_map& headers, const header_names& first, const header_names& alias,
                           unix_seconds now, std::chrono::seconds tolerance, signed_request& out) noexcept {
  const header_names* names = &first;
  auto id = headers.find(names->id);
  if (!id) {
    names = &alias;
    id = headers.find(names->id);
    if (!id) return {verify_error::missing_input, first.missing_id};
  }
  const auto timestamp = headers.find(names->timestamp);
  if (!timestamp) return {verify_error::missing_input, names->missing_timestamp};
  const auto signatures = headers.find(names->signature);
  if (!signatures) return {verify_error::missing_input, names->missing_signature};

  out = {names, detail::trim_ows(*id), detail::trim_ows(*timestamp), detail::trim_ows(*signatures)};
  if (out.signatures.size() > detail::max_signature_header) {
    return {verify_error::malformed_input, names->malformed_signature};
  }
  const auto signed_at = detail::parse_unix_seconds(out.timestamp);
  if (!signed_at) return {verify_error::malformed_input, names->malformed_timestamp};
  if (!detail::within_tolerance(*signed_at, now, tolerance)) {
    return {verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"};
  }
  return {};
}

// Matches the entries of the signature header against the keys: "v1," entries against the HMAC keys,
// "v1a," entries against the Ed25519 keys (either may be absent). An entry of a version without keys,
// or of an unknown version, is skipped; one whose base64 is bad or of the wrong length cannot match.
// No judgeable entry at all is malformed_input.
verify_result match_entries(const signed_request& req, std::string_view body, const detail::hmac_keyring* hmac,
                            const detail::ed25519_keyring* ed25519) noexcept {
  // One MAC per configured secret, computed once; each "v1," entry is compared against all of them.
  std::array<std::array<unsigned char, detail::max_mac_size>, detail::max_secrets> expected;
  const std::size_t hmac_keys = hmac ? hmac->size() : 0;
  for (std::size_t k = 0; k < hmac_keys; ++k) {
    detail::mac_stream mac(*hmac, k);
    for (std::string_view part : {req.id, std::string_view("."), req.timestamp, std::string_view("."), body}) {
      mac.update(part);
    }
    if (!mac.finish(expected[k])) return {verify_error::internal_error, "internal error"};
  }
  // Ed25519 signs the content in one piece: assembled at the first decodable "v1a," entry.
  std::string content;
  bool content_ready = false;

  bool matched = false;
  bool judged = false;
  std::size_t examined = 0;
  // Each "v1a," entry costs one Ed25519 check per key, each a pass over the whole body: an unsigned request
  // must not buy more than max_secrets entries of them (a sender signs once per key it holds, at most 4).
  std::size_t asymmetric_entries = 0;
  std::string_view rest = req.signatures;
  while (!rest.empty() && examined < detail::max_signature_entries) {
    const std::size_t sp = rest.find(' ');
    const std::string_view entry = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
    if (entry.empty()) continue;
    ++examined;
    std::array<unsigned char, detail::ed25519_keyring::signature_size> given;
    if (hmac_keys > 0 && entry.starts_with("v1,")) {
      const auto n = detail::base64_decode(entry.substr(3), given);
      if (!n || *n != hmac->mac_size()) continue;
      judged = true;
      for (std::size_t k = 0; k < hmac_keys; ++k) {
        matched |= detail::ct_equal(std::span(expected[k]).first(hmac->mac_size()), std::span(given).first(*n));
      }
    } else if (ed25519 && ed25519->size() > 0 && entry.starts_with("v1a,")) {
      const auto n = detail::base64_decode(entry.substr(4), given);
      if (!n || *n != given.size()) continue;
      judged = true;
      if (matched) continue;  // public-key checks need no constant time; skip the work
      if (asymmetric_entries == detail::max_secrets) continue;
      ++asymmetric_entries;
      if (!content_ready) {
        try {
          content.reserve(req.id.size() + req.timestamp.size() + body.size() + 2);
          content.append(req.id).append(".").append(req.timestamp).append(".").append(body);
        } catch (const std::bad_alloc&) {
          return {verify_error::internal_error, "internal error"};
        }
        content_ready = true;
      }
      const verify_result r = ed25519->match(content, given);
      if (r.error == verify_error::internal_error) return r;
      matched |= r.ok();
    }
    // Anything else: another version, or one we hold no key for; not ours to judge.
  }
  if (matched) return {};
  if (!judged) return {verify_error::malformed_input, req.names->malformed_signature};
  return {verify_error::signature_mismatch, "signature mismatch"};
}

// "whsec_<base64>" or bare base64 → the HMAC key bytes; nullopt when not base64 or empty.
std::optional<std::string> decode_hmac_secret(std::string_view s) {
  if (s.starts_with(hmac_secret_prefix)) s.remove_prefix(hmac_secret_prefix.size());
  std::string key(s.size(), '\0');
  const auto n = detail::base64_decode(s, std::span(reinterpret_cast<unsigned char*>(key.data()), key.size()));
  if (!n || *n == 0) return std::nullopt;
  key.resize(*n);
  return key;
}

struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};

}  // namespace

// --- Ed25519 ----------------------------------------------------------------------------------------

namespace detail {

ed25519_keyring::~ed25519_keyring() {
  for (auto* k : keys_) EVP_PKEY_free(k);
}

ed25519_keyring::ed25519_keyring(ed25519_keyring&& other) noexcept : keys_(std::exchange(other.keys_, {})) {}

ed25519_keyring& ed25519_keyring::operator=(ed25519_keyring&& other) noexcept {
  if (this != &other) {
    for (auto* k : keys_) EVP_PKEY_free(k);
    keys_ = std::exchange(other.keys_, {});
  }
  return *this;
}

void ed25519_keyring::add(std::span<const unsigned char, public_key_size> raw_public_key) {
  keys_.reserve(keys_.size() + 1);  // so that push_back cannot throw once the key is owned
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw_public_key.data(), raw_public_key.size());
  if (key == nullptr) {
    ERR_clear_error();
    throw std::invalid_argument("webhook verifier: OpenSSL does not accept the Ed25519 public key");
  }
  keys_.push_back(key);
}

verify_result ed25519_keyring::match(std::string_view message, std::span<const unsigned char> signature) const noexcept {
  if (signature.size() != signature_size) return {verify_error::signature_mismatch, "signature mismatch"};
  for (auto* key : keys_) {
    std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key) != 1) {
      ERR_clear_error();
      return {verify_error::internal_error, "internal error"};
    }
    // 1 = valid; anything else is a signature that does not verify (OpenSSL refuses, e.g., a
    // non-canonical S with an error code rather than 0).
    const int rc = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                                    reinterpret_cast<const unsigned char*>(message.data()), message.size());
    if (rc == 1) return {};
    ERR_clear_error();
  }
  return {verify_error::signature_mismatch, "signature mismatch"};
}

}  // namespace detail

// --- Svix -------------------------------------------------------------------------------------------

secret_list svix_verifier::decode_secrets(const std::vector<std::string>& endpoint_secrets) {
  secret_list keys;
  for (std::string_view s : endpoint_secrets) {
    auto key = decode_hmac_secret(s);  // Svix's libraries accept the bare form too
    if (!key) {
      throw std::invalid_argument("Svix/Resend signing secret must be \"whsec_\" followed by base64 (copy it from the endpoint's page)");
    }
    keys.push_back(std::move(*key));
  }
  return keys;
}

svix_verifier::svix_verifier(const std::vector<std::string>& endpoint_secrets, std::chrono::seconds tolerance)
    : keys_(detail::mac_digest::sha256, decode_secrets(endpoint_secrets)), tolerance_(tolerance) {
  if (tolerance <= std::chrono::seconds::zero()) throw std::invalid_argument("Svix tolerance must be positive");
}

verify_result svix_verifier::verify(std::string_view body, const header_map& headers, unix_seconds now) const noexcept {
  signed_request req{};
  if (auto r = read_request(headers, svix_headers, standard_headers, now, tolerance_, req); !r) return r;
  return match_entries(req, body, &keys_, nullptr);
}

// --- Standard Webhooks -------------------------------------------------------------------------------

standard_webhooks_verifier::standard_webhooks_verifier(const std::vector<std::string>& keys,
                                                       std::chrono::seconds tolerance)
    : tolerance_(tolerance) {
  if (keys.empty()) {
    throw std::invalid_argument(
        "Standard Webhooks verifier: configure the sender's key (\"whsec_...\" signing secret or \"whpk_...\" public key)");
  }
  if (keys.size() > detail::max_secrets) {
    throw std::invalid_argument(
        "Standard Webhooks verifier: at most 4 keys (current and previous, while rotating); remove retired ones");
  }
  if (tolerance <= std::chrono::seconds::zero()) {
    throw std::invalid_argument("Standard Webhooks verifier: tolerance must be positive (the default is 5 minutes)");
  }
  secret_list secrets;
  for (std::string_view k : keys) {
    if (k.starts_with(ed25519_secret_prefix)) {
      throw std::invalid_argument(
          "Standard Webhooks verifier: a \"whsk_\" key is the sender's private signing key; configure its public key "
          "(\"whpk_...\") instead, and have the sender replace the exposed private key");
    }
    if (k.starts_with(ed25519_public_prefix)) {
      k.remove_prefix(ed25519_public_prefix.size());
      std::array<unsigned char, detail::ed25519_keyring::public_key_size> raw;
      const auto n = detail::base64_decode(k, raw);
      if (!n || *n != raw.size()) {
        throw std::invalid_argument(
            "Standard Webhooks verifier: a \"whpk_\" key must be followed by the base64 of a 32-byte Ed25519 public "
            "key; copy it again from the sender");
      }
      ed25519_.add(raw);
      continue;
    }
    auto secret = decode_hmac_secret(k);
    if (!secret) {
      throw std::invalid_argument(
          "Standard Webhooks verifier: a key must be \"whsec_<base64>\" (signing secret, v1) or \"whpk_<base64>\" "
          "(Ed25519 public key, v1a); copy it again from the sender");
    }
    secrets.push_back(std::move(*secret));
  }
  if (!secrets.empty()) hmac_.emplace(detail::mac_digest::sha256, secrets);
}

verify_result standard_webhooks_verifier::verify(std::string_view body, const header_map& headers,
                                                 unix_seconds now) const noexcept {
  signed_request req{};
  if (auto r = read_request(headers, standard_headers, svix_headers, now, tolerance_, req); !r) return r;
  return match_entries(req, body, hmac_ ? &*hmac_ : nullptr, &ed25519_);
}

std::string_view standard_webhooks_verifier::message_id(const header_map& headers) noexcept {
  auto id = headers.find(standard_headers.id);
  if (!id) id = headers.find(svix_headers.id);
  return id ? detail::trim_ows(*id) : std::string_view{};
}

}  // namespace crm::ingest::webhooks
