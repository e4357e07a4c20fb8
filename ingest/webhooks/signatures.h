// Webhook signature verification for the channel providers (SendGrid, Twilio, Meta/WhatsApp, Mailgun,
// Svix/Resend, Standard Webhooks, Segment, Postmark). Pure code: the caller hands over the raw body bytes, a header lookup,
// the public URL where a scheme signs it, and the clock; nothing here touches a socket.
//
// Verifiers are built once from configuration (throwing std::invalid_argument on bad config, so a
// wrong key stops start-up with a message a person can act on) and are immutable afterwards: one
// instance is shared by every request thread. verify() never throws on untrusted input; it returns a
// verify_result whose reason is a static string fit for a 401 body and a counter label. The only
// mutable state is mailgun_verifier's replay cache, which has its own mutex.
//
// All secret-dependent comparisons are constant-time (CRYPTO_memcmp over equal-length digests).
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

struct evp_mac_ctx_st;  // OpenSSL's EVP_MAC_CTX
struct evp_pkey_st;     // OpenSSL's EVP_PKEY

namespace crm::ingest::webhooks {

// ---------------------------------------------------------------------------------------------------
// Results

enum class verify_error : int {
  ok = 0,
  missing_input,                // a header, field or query parameter the scheme needs is absent
  malformed_input,              // present but not parseable (bad base64/hex, prefix, timestamp, URL, form)
  signature_mismatch,           // well-formed, but no configured secret produces it
  timestamp_outside_tolerance,  // signed timestamp too old or too far in the future
  replayed_token,               // Mailgun: this token was already accepted
  replay_cache_full,            // Mailgun: cannot remember another token; refuse rather than forget (retryable)
  body_hash_mismatch,           // Twilio JSON: bodySHA256 in the signed URL does not match the body
  credentials_mismatch,         // Postmark: basic-auth user or password wrong
  verify_token_mismatch,        // Meta GET handshake: hub.verify_token wrong
  internal_error,               // OpenSSL or allocation failure: not the sender's fault, retryable
};

const std::error_category& verify_category() noexcept;
std::error_code make_error_code(verify_error e) noexcept;

struct [[nodiscard]] verify_result {
  verify_error error = verify_error::ok;
  std::string_view reason;  // static text, e.g. "missing header svix-id"; empty when ok

  bool ok() const noexcept { return error == verify_error::ok; }
  explicit operator bool() const noexcept { return ok(); }
  std::error_code code() const noexcept { return make_error_code(error); }
};

// ---------------------------------------------------------------------------------------------------
// Inputs

using unix_seconds = std::chrono::sys_seconds;

// Header access for one request. Implementations match names case-insensitively (HTTP field names are)
// and return the value with surrounding whitespace already trimmed or not: verifiers trim SP/HTAB.
class header_map {
 public:
  virtual ~header_map() = default;
  virtual std::optional<std::string_view> find(std::string_view name) const noexcept = 0;
};

// A header_map over (name, value) views the caller keeps alive; the first match wins. For tests, the
// fuzzer and small adapters; the HTTP server adapts its own request type instead.
class header_list final : public header_map {
 public:
  using entry = std::pair<std::string_view, std::string_view>;
  header_list() = default;
  header_list(std::initializer_list<entry> entries) : entries_(entries) {}
  void add(std::string_view name, std::string_view value) { entries_.emplace_back(name, value); }
  std::optional<std::string_view> find(std::string_view name) const noexcept override;

 private:
  std::vector<entry> entries_;
};

// One or more shared secrets (raw bytes). More than one only while rotating: a request passes if any
// of them produced its signature.
using secret_list = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------------
// Building blocks, public so that tests and the fuzzer can reach them.

namespace detail {

enum class mac_digest { sha1, sha256 };
inline constexpr std::size_t max_mac_size = 32;
inline constexpr std::size_t max_secrets = 4;  // rotation needs two; more is a configuration mistake

// Keyed HMAC contexts, initialised once per secret; every computation duplicates the prototype
// (cheaper than re-keying: the key schedule is done once). Immutable after construction.
class hmac_keyring {
 public:
  // Throws std::invalid_argument for no secret, more than max_secrets or an empty one; std::runtime_error if OpenSSL
  // cannot set up HMAC.
  hmac_keyring(mac_digest digest, const secret_list& secrets);
  ~hmac_keyring();
  hmac_keyring(hmac_keyring&&) noexcept;
  hmac_keyring& operator=(hmac_keyring&&) noexcept;
  hmac_keyring(const hmac_keyring&) = delete;
  hmac_keyring& operator=(const hmac_keyring&) = delete;

  std::size_t size() const noexcept { return keys_.size(); }
  std::size_t mac_size() const noexcept { return mac_size_; }
  const evp_mac_ctx_st* prototype(std::size_t i) const noexcept { return keys_[i]; }

 private:
  std::vector<evp_mac_ctx_st*> keys_;
  std::size_t mac_size_ = 0;
};

// One MAC computation under key `i` of a keyring: update() the signed parts in order, then finish().
class mac_stream {
 public:
  mac_stream(const hmac_keyring& ring, std::size_t i) noexcept;
  ~mac_stream();
  mac_stream(const mac_stream&) = delete;
  mac_stream& operator=(const mac_stream&) = delete;

  void update(std::string_view part) noexcept;
  // Writes mac_size() bytes to `out`; false on any OpenSSL failure along the way.
  bool finish(std::span<unsigned char, max_mac_size> out) noexcept;

 private:
  evp_mac_ctx_st* ctx_;
  std::size_t mac_size_;
  bool failed_;
};

// ok when `candidate` equals the MAC of the concatenated `parts` under any key of `ring`;
// signature_mismatch otherwise; internal_error if OpenSSL fails.
verify_result match_mac(const hmac_keyring& ring, std::initializer_list<std::string_view> parts,
                        std::span<const unsigned char> candidate) noexcept;

// Strict RFC 4648 base64 (standard alphabet, padding required, no whitespace). Returns the decoded
// length, or nullopt when malformed or when the result would not fit `out`.
std::optional<std::size_t> base64_decode(std::string_view in, std::span<unsigned char> out) noexcept;
std::string base64_encode(std::span<const unsigned char> in);

// Even number of [0-9a-fA-F]. Returns the decoded length, or nullopt when malformed or too long.
std::optional<std::size_t> hex_decode(std::string_view in, std::span<unsigned char> out) noexcept;
std::string hex_encode(std::span<const unsigned char> in);

// Unix seconds as 1-18 ASCII digits, nothing else (no sign, no spaces, no fraction).
std::optional<std::int64_t> parse_unix_seconds(std::string_view text) noexcept;

// |signed - now| <= tolerance, without overflow.
bool within_tolerance(std::int64_t signed_at, unix_seconds now, std::chrono::seconds tolerance) noexcept;

// Constant-time for equal lengths; different lengths are unequal (lengths are public here).
bool ct_equal(std::span<const unsigned char> a, std::span<const unsigned char> b) noexcept;

// application/x-www-form-urlencoded component: '+' is a space, %XX a byte. A lone '%' or a bad hex
// digit makes the component malformed.
bool form_component_valid(std::string_view encoded) noexcept;
bool form_decode(std::string_view encoded, std::string& out);  // false when malformed

// SHA-256 of `data` (for length-hiding equality tests of configured strings).
using sha256_digest = std::array<unsigned char, 32>;
bool sha256(std::string_view data, sha256_digest& out) noexcept;

std::string_view trim_ows(std::string_view s) noexcept;

// Svix / Standard Webhooks signature headers: at most this many bytes, of which at most this many
// space-separated entries are examined (one per active key and version is the norm), so that the work
// an attacker can cause per request is bounded.
inline constexpr std::size_t max_signature_header = 4096;
inline constexpr std::size_t max_signature_entries = 16;

// Ed25519 public keys (raw 32 bytes each, RFC 8032), imported into OpenSSL once; immutable afterwards.
class ed25519_keyring {
 public:
  static constexpr std::size_t public_key_size = 32;
  static constexpr std::size_t signature_size = 64;

  ed25519_keyring() = default;
  ~ed25519_keyring();
  ed25519_keyring(ed25519_keyring&&) noexcept;
  ed25519_keyring& operator=(ed25519_keyring&&) noexcept;
  ed25519_keyring(const ed25519_keyring&) = delete;
  ed25519_keyring& operator=(const ed25519_keyring&) = delete;

  // Throws std::invalid_argument when OpenSSL refuses the key, std::bad_alloc.
  void add(std::span<const unsigned char, public_key_size> raw_public_key);
  std::size_t size() const noexcept { return keys_.size(); }

  // ok when `signature` is a valid Ed25519 signature of `message` under any key (a fresh EVP_MD_CTX per
  // check); signature_mismatch otherwise (also for a signature that is not 64 bytes); internal_error if
  // OpenSSL cannot set up a verification.
  verify_result match(std::string_view message, std::span<const unsigned char> signature) const noexcept;

 private:
  std::vector<evp_pkey_st*> keys_;
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------------
// SendGrid Event Webhook: ECDSA P-256 / SHA-256 over (X-Twilio-Email-Event-Webhook-Timestamp + body).
// The signature header is base64 DER. The verification key is the base64 DER SubjectPublicKeyInfo shown
// in SendGrid's "Signed Event Webhook" settings.
class sendgrid_verifier {
 public:
  static constexpr std::string_view signature_header = "X-Twilio-Email-Event-Webhook-Signature";
  static constexpr std::string_view timestamp_header = "X-Twilio-Email-Event-Webhook-Timestamp";

  // `tolerance`: when set, the signed timestamp must be within it of `now` (both ways). SendGrid does
  // not document one and retries for up to 24 h, so it is off by default (events are deduplicated by
  // sg_event_id downstream). Throws std::invalid_argument if the key is not base64 DER of a P-256 key.
  explicit sendgrid_verifier(std::string_view public_key_base64,
                             std::optional<std::chrono::seconds> tolerance = std::nullopt);
  ~sendgrid_verifier();
  sendgrid_verifier(sendgrid_verifier&&) noexcept;
  sendgrid_verifier& operator=(sendgrid_verifier&&) noexcept;

  verify_result verify(std::string_view body, const header_map& headers, unix_seconds now) const noexcept;

 private:
  evp_pkey_st* key_ = nullptr;
  std::optional<std::chrono::seconds> tolerance_;
};

// Twilio: X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + sorted form params as name+value)).
// `public_url` is the URL exactly as Twilio called it: the configured public base (we sit behind a
// proxy, so the Host we see is not it) plus the request target, query string included. When that URL
// carries bodySHA256 the body is JSON: the signature covers the URL alone and hex SHA-256 of the body
// must equal bodySHA256. Otherwise the body is parsed as application/x-www-form-urlencoded.
// Like Twilio's SDKs, the URL is tried with and without its port (default port added when absent).
class twilio_verifier {
 public:
  static constexpr std::string_view signature_header = "X-Twilio-Signature";
  static constexpr std::size_t max_form_params = 1024;

  explicit twilio_verifier(const secret_list& auth_tokens);

  verify_result verify(std::string_view public_url, std::string_view body,
                       const header_map& headers) const noexcept;

 private:
  detail::hmac_keyring keys_;
};

// An HMAC of the raw body, hex-encoded in one header after an optional prefix: Meta's X-Hub-Signature-256
// and Segment's X-Signature below.
class body_hmac_verifier {
 public:
  struct format {
    std::string_view header;
    std::string_view prefix;  // before the hex digits ("sha256="), or empty
    detail::mac_digest digest;
    std::string_view missing;    // the results' reasons (static text)
    std::string_view malformed;
  };

  body_hmac_verifier(const format& f, const secret_list& secrets);
  verify_result verify(std::string_view body, const header_map& headers) const noexcept;

 private:
  format format_;
  detail::hmac_keyring keys_;
};

// Meta (WhatsApp Cloud API): X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>. Meta signs
// the body bytes exactly as sent (non-ASCII arrives \u-escaped); never re-serialise.
class meta_verifier : public body_hmac_verifier {
 public:
  static constexpr std::string_view signature_header = "X-Hub-Signature-256";

  explicit meta_verifier(const secret_list& app_secrets)
      : body_hmac_verifier({signature_header, "sha256=", detail::mac_digest::sha256,
                            "missing header X-Hub-Signature-256", "malformed header X-Hub-Signature-256"},
                           app_secrets) {}
};

// Meta's GET subscription handshake: hub.mode=subscribe and hub.verify_token equal to the configured
// token → answer 200 with hub.challenge as the body; anything else → 403. `raw_query` is the query
// string without '?'. The challenge is only echoed if it is 1-128 of [A-Za-z0-9._-] (Meta sends an
// integer), so the echo cannot carry markup.
struct meta_subscription {
  verify_result result;
  std::string challenge;  // set when result.ok()
};
meta_subscription verify_meta_subscription(std::string_view raw_query, std::string_view verify_token) noexcept;

// Mailgun: the body's "signature" object {timestamp, token, signature[, parent-signature]};
// signature = hex HMAC-SHA256(webhook signing key, timestamp + token). The caller extracts the fields
// with the JSON parser it already runs over the body (legacy form posts carry the same names).
// The signature does NOT cover event-data; only the replay cache makes each signature usable once.
struct mailgun_signature {
  std::string_view timestamp;
  std::string_view token;
  std::string_view signature;
  std::string_view parent_signature;  // subaccount events: same scheme under the parent account's key
};

struct mailgun_options {
  // Accepted |now - timestamp|. Five minutes: Mailgun posts within seconds of the event, NTP-synced
  // clocks differ by far less, and it is the window Svix uses. Mailgun does not document whether a retry
  // is re-signed; if it is not, retries later than this are refused, so raise it if that shows up in the
  // counters. Tokens are remembered this long after their timestamp: memory <= rate x 2 x window.
  std::chrono::seconds tolerance{300};
  // Tokens remembered at once. Size for peak events/s x 2 x tolerance; when full, verify() refuses
  // with replay_cache_full (Mailgun retries) instead of forgetting a live token.
  std::size_t replay_capacity = 250'000;
};

// Thread-safe set of accepted tokens, each kept until its signed timestamp + tolerance.
// Shared by all request threads; one mutex (webhook rates are far below contention levels).
class replay_cache {
 public:
  explicit replay_cache(std::size_t capacity) : capacity_(capacity ? capacity : 1) {}

  enum class outcome { inserted, replayed, full };
  // Forgets tokens expired at `now`, then records `token` until `expires_at` unless already present.
  // Throws std::bad_alloc only.
  outcome insert(std::string_view token, std::int64_t expires_at, std::int64_t now);
  void erase(std::string_view token) noexcept;
  std::size_t size() const;

 private:
  struct token_hash {
    using is_transparent = void;  // look up by string_view without building a std::string
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  mutable std::mutex mu_;
  std::size_t capacity_;
  std::unordered_map<std::string, std::int64_t, token_hash, std::equal_to<>> expiry_by_token_;
  std::multimap<std::int64_t, const std::string*> tokens_by_expiry_;  // points at map keys (stable)
};

class mailgun_verifier {
 public:
  explicit mailgun_verifier(const secret_list& signing_keys, mailgun_options options = {});

  // Accepts each authentic token once; only authentic tokens enter the cache, so a forger cannot fill it.
  verify_result verify(const mailgun_signature& sig, unix_seconds now) const noexcept;

  // Call when an accepted event could not be handed on and the response will ask Mailgun to retry:
  // the retry may carry the same signature and must not be refused as a replay.
  void forget(std::string_view token) const noexcept { seen_.erase(token); }

 private:
  detail::hmac_keyring keys_;
  mailgun_options options_;
  mutable replay_cache seen_;
};

// Svix (Resend): headers svix-id, svix-timestamp, svix-signature ("v1,<base64>" entries separated by
// spaces; one per active secret). Signed content = id "." timestamp "." body, HMAC-SHA256 keyed with
// the base64-decoded part of "whsec_<base64>". The unbranded webhook-id/-timestamp/-signature headers
// (Standard Webhooks) are read when svix-id is absent, as Svix's own libraries do.
class svix_verifier {
 public:
  // Throws std::invalid_argument if a secret is not "whsec_<base64>" or bare base64.
  explicit svix_verifier(const std::vector<std::string>& endpoint_secrets,
                         std::chrono::seconds tolerance = std::chrono::minutes(5));

  verify_result verify(std::string_view body, const header_map& headers, unix_seconds now) const noexcept;

  static secret_list decode_secrets(const std::vector<std::string>& endpoint_secrets);

 private:
  detail::hmac_keyring keys_;
  std::chrono::seconds tolerance_;
};

// Standard Webhooks v1.0.0 (standardwebhooks.com): headers webhook-id, webhook-timestamp, webhook-signature
// (svix-id/-timestamp/-signature accepted as aliases); signed content "{id}.{timestamp}.{body}" over the raw bytes;
// space-separated "<version>,<base64>" entries, any matching one passes. Keys: "whsec_<base64>" (v1,
// HMAC-SHA256) and "whpk_<base64 of the 32-byte Ed25519 public key>" (v1a, Ed25519); 1-4 keys (rotation).
// A bare base64 key is taken as a v1 secret, as the specification's reference libraries do. Entries of
// other versions are skipped. webhook-id is the message's idempotency key (the same on every retry).
class standard_webhooks_verifier {
 public:
  // Throws std::invalid_argument with advice on an unusable key, no key, more than 4, or tolerance <= 0.
  explicit standard_webhooks_verifier(const std::vector<std::string>& keys,
                                      std::chrono::seconds tolerance = std::chrono::minutes(5));
  verify_result verify(std::string_view body, const header_map& headers, unix_seconds now) const noexcept;
  // The request's webhook-id (else svix-id) header value; empty when absent.
  static std::string_view message_id(const header_map& headers) noexcept;

 private:
  std::optional<detail::hmac_keyring> hmac_;  // the whsec_ keys, if any
  detail::ed25519_keyring ed25519_;           // the whpk_ keys, possibly none
  std::chrono::seconds tolerance_;
};

// Segment (Webhooks destinations): X-Signature = hex HMAC-SHA1(shared secret, raw body).
// With batching enabled Segment signs only the first event of the batch, so batching must be off.
class segment_verifier : public body_hmac_verifier {
 public:
  static constexpr std::string_view signature_header = "X-Signature";

  explicit segment_verifier(const secret_list& shared_secrets)
      : body_hmac_verifier({signature_header, "", detail::mac_digest::sha1, "missing header X-Signature",
                            "malformed header X-Signature"},
                           shared_secrets) {}
};

// Postmark has no signature: the webhook URL carries HTTP Basic credentials that we configure in
// Postmark. Both parts are compared as SHA-256 digests with CRYPTO_memcmp, so neither their contents
// nor their lengths leak through timing.
class postmark_verifier {
 public:
  // Throws std::invalid_argument on an empty user or password, or a user containing ':'.
  postmark_verifier(std::string_view username, std::string_view password);
  verify_result verify(const header_map& headers) const noexcept;

 private:
  detail::sha256_digest user_digest_{};
  detail::sha256_digest password_digest_{};
};

}  // namespace crm::ingest::webhooks

template <>
struct std::is_error_code_enum<crm::ingest::webhooks::verify_error> : std::true_type {};
