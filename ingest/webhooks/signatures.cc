// Shared pieces of the webhook verifiers: the error category, header lookup, strict decoders,
// constant-time comparison and the keyed HMAC contexts.
#include "ingest/webhooks/signatures.h"

#include <array>
#include <limits>
#include <stdexcept>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "transform/text/ascii.h"

namespace crm::ingest::webhooks {

namespace {

using transform::detail::ascii_iequals;
using transform::detail::hex_value;

class verify_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "crm.ingest.webhooks.verify"; }
  std::string message(int ev) const override {
    switch (static_cast<verify_error>(ev)) {
      case verify_error::ok: return "verified";
      case verify_error::missing_input: return "missing signature input";
      case verify_error::malformed_input: return "malformed signature input";
      case verify_error::signature_mismatch: return "signature mismatch";
      case verify_error::timestamp_outside_tolerance: return "timestamp outside tolerance";
      case verify_error::replayed_token: return "replayed token";
      case verify_error::replay_cache_full: return "replay cache full";
      case verify_error::body_hash_mismatch: return "body hash mismatch";
      case verify_error::credentials_mismatch: return "credentials mismatch";
      case verify_error::verify_token_mismatch: return "verify token mismatch";
      case verify_error::internal_error: return "internal error while verifying";
    }
    return "unknown webhook verification error";
  }
};

int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Inputs here are headers and config values; anything longer is not a signature.
constexpr std::size_t max_base64_input = 1 << 16;

}  // namespace

const std::error_category& verify_category() noexcept {
  static const verify_category_impl instance;
  return instance;
}

std::error_code make_error_code(verify_error e) noexcept { return {static_cast<int>(e), verify_category()}; }

std::optional<std::string_view> header_list::find(std::string_view name) const noexcept {
  for (const auto& [n, v] : entries_) {
    if (ascii_iequals(n, name)) return v;
  }
  return std::nullopt;
}

namespace detail {

std::optional<std::size_t> base64_decode(std::string_view in, std::span<unsigned char> out) noexcept {
  const std::size_t n = in.size();
  if (n == 0) return std::size_t{0};
  if (n % 4 != 0 || n > max_base64_input) return std::nullopt;
  std::size_t pad = 0;
  if (in[n - 1] == '=') pad = (in[n - 2] == '=') ? 2 : 1;
  for (std::size_t i = 0; i < n - pad; ++i) {
    if (base64_value(in[i]) < 0) return std::nullopt;  // also rejects '=' before the end
  }
  // Canonical form only: the bits that padding leaves unused must be zero.
  const int last = base64_value(in[n - pad - 1]);
  if ((pad == 2 && (last & 0x0f) != 0) || (pad == 1 && (last & 0x03) != 0)) return std::nullopt;

  const std::size_t decoded = 3 * (n / 4) - pad;
  if (decoded > out.size()) return std::nullopt;
  // EVP_DecodeBlock writes 3 bytes per quad, padding included: decode the last quad separately so
  // that `out` only needs room for the real bytes.
  if (n > 4) {
    const int head = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()),
                                     static_cast<int>(n - 4));
    if (head != static_cast<int>(3 * ((n - 4) / 4))) return std::nullopt;
  }
  unsigned char tail[3];
  if (EVP_DecodeBlock(tail, reinterpret_cast<const unsigned char*>(in.data() + n - 4), 4) != 3) {
    return std::nullopt;
  }
  for (std::size_t i = 0; i < 3 - pad; ++i) out[3 * ((n - 4) / 4) + i] = tail[i];
  return decoded;
}

std::string base64_encode(std::span<const unsigned char> in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(),
                                  static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(len < 0 ? 0 : len));
  return out;
}

std::optional<std::size_t> hex_decode(std::string_view in, std::span<unsigned char> out) noexcept {
  if (in.size() % 2 != 0 || in.size() / 2 > out.size()) return std::nullopt;
  for (std::size_t i = 0; i < in.size(); i += 2) {
    const int hi = hex_value(in[i]);
    const int lo = hex_value(in[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i / 2] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return in.size() / 2;
}

std::string hex_encode(std::span<const unsigned char> in) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(in.size() * 2);
  for (unsigned char b : in) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0x0f]);
  }
  return out;
}

std::optional<std::int64_t> parse_unix_seconds(std::string_view text) noexcept {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

bool within_tolerance(std::int64_t signed_at, unix_seconds now, std::chrono::seconds tolerance) noexcept {
  constexpr auto lo_limit = std::numeric_limits<std::int64_t>::min();
  constexpr auto hi_limit = std::numeric_limits<std::int64_t>::max();
  const std::int64_t n = now.time_since_epoch().count();
  const std::int64_t t = tolerance.count();
  if (t < 0) return false;
  const std::int64_t lo = n < lo_limit + t ? lo_limit : n - t;
  const std::int64_t hi = n > hi_limit - t ? hi_limit : n + t;
  return signed_at >= lo && signed_at <= hi;
}

bool ct_equal(std::span<const unsigned char> a, std::span<const unsigned char> b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool form_component_valid(std::string_view encoded) noexcept {
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] != '%') continue;
    if (encoded.size() - i < 3) return false;
    if (hex_value(encoded[i + 1]) < 0 || hex_value(encoded[i + 2]) < 0) return false;
    i += 2;
  }
  return true;
}

bool form_decode(std::string_view encoded, std::string& out) {
  if (!form_component_valid(encoded)) return false;
  out.clear();
  out.reserve(encoded.size());
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      out.push_back(static_cast<char>(hex_value(encoded[i + 1]) << 4 | hex_value(encoded[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return true;
}

bool sha256(std::string_view data, sha256_digest& out) noexcept {
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size()) {
    ERR_clear_error();
    return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// --- HMAC -------------------------------------------------------------------------------------------

hmac_keyring::hmac_keyring(mac_digest digest, const secret_list& secrets) {
  if (secrets.empty()) throw std::invalid_argument("webhook verifier: at least one secret must be configured");
  if (secrets.size() > max_secrets) {
    throw std::invalid_argument("webhook verifier: at most 4 secrets (current and previous, while rotating)");
  }
  for (const auto& s : secrets) {
    if (s.empty()) throw std::invalid_argument("webhook verifier: a configured secret is empty");
  }
  mac_size_ = digest == mac_digest::sha1 ? 20 : 32;
  // OSSL_PARAM wants a mutable char*; OpenSSL only reads it.
  std::string digest_name = digest == mac_digest::sha1 ? "SHA1" : "SHA256";

  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) {
    ERR_clear_error();
    throw std::runtime_error("webhook verifier: OpenSSL has no HMAC implementation");
  }
  keys_.reserve(secrets.size());
  for (const auto& s : secrets) {
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);  // holds its own reference to `mac`
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name.data(), 0),
                           OSSL_PARAM_construct_end()};
    if (ctx == nullptr ||
        EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(s.data()), s.size(), params) != 1) {
      EVP_MAC_CTX_free(ctx);
      for (auto* k : keys_) EVP_MAC_CTX_free(k);
      keys_.clear();
      EVP_MAC_free(mac);
      ERR_clear_error();
      throw std::runtime_error("webhook verifier: OpenSSL could not key an HMAC context");
    }
    keys_.push_back(ctx);
  }
  EVP_MAC_free(mac);
}

hmac_keyring::~hmac_keyring() {
  for (auto* k : keys_) EVP_MAC_CTX_free(k);
}

hmac_keyring::hmac_keyring(hmac_keyring&& other) noexcept
    : keys_(std::move(other.keys_)), mac_size_(other.mac_size_) {
  other.keys_.clear();
}

hmac_keyring& hmac_keyring::operator=(hmac_keyring&& other) noexcept {
  if (this != &other) {
    for (auto* k : keys_) EVP_MAC_CTX_free(k);
    keys_ = std::move(other.keys_);
    other.keys_.clear();
    mac_size_ = other.mac_size_;
  }
  return *this;
}

mac_stream::mac_stream(const hmac_keyring& ring, std::size_t i) noexcept
    : ctx_(EVP_MAC_CTX_dup(ring.prototype(i))), mac_size_(ring.mac_size()), failed_(ctx_ == nullptr) {}

mac_stream::~mac_stream() {
  EVP_MAC_CTX_free(ctx_);
  if (failed_) ERR_clear_error();
}

void mac_stream::update(std::string_view part) noexcept {
  if (failed_ || part.empty()) return;
  if (EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(part.data()), part.size()) != 1) failed_ = true;
}

bool mac_stream::finish(std::span<unsigned char, max_mac_size> out) noexcept {
  if (failed_) return false;
  std::size_t len = 0;
  if (EVP_MAC_final(ctx_, out.data(), &len, out.size()) != 1 || len != mac_size_) failed_ = true;
  return !failed_;
}

verify_result match_mac(const hmac_keyring& ring, std::initializer_list<std::string_view> parts,
                        std::span<const unsigned char> candidate) noexcept {
  if (candidate.size() != ring.mac_size()) return {verify_error::signature_mismatch, "signature mismatch"};
  bool matched = false;
  for (std::size_t i = 0; i < ring.size(); ++i) {
    mac_stream mac(ring, i);
    for (std::string_view p : parts) mac.update(p);
    std::array<unsigned char, max_mac_size> expected;
    if (!mac.finish(expected)) return {verify_error::internal_error, "internal error"};
    matched |= ct_equal(std::span(expected).first(ring.mac_size()), candidate);
  }
  if (!matched) return {verify_error::signature_mismatch, "signature mismatch"};
  return {};
}

}  // namespace detail

body_hmac_verifier::body_hmac_verifier(const format& f, const secret_list& secrets)
    : format_(f), keys_(f.digest, secrets) {}

verify_result body_hmac_verifier::verify(std::string_view body, const header_map& headers) const noexcept {
  const auto header = headers.find(format_.header);
  if (!header) return {verify_error::missing_input, format_.missing};
  const std::string_view value = detail::trim_ows(*header);
  if (!value.starts_with(format_.prefix)) return {verify_error::malformed_input, format_.malformed};
  std::array<unsigned char, detail::max_mac_size> given;
  const auto n = detail::hex_decode(value.substr(format_.prefix.size()), given);
  if (!n || *n == 0) return {verify_error::malformed_input, format_.malformed};
  return detail::match_mac(keys_, {body}, std::span(given.data(), *n));
}

}  // namespace crm::ingest::webhooks
