// Caller authentication for first-party endpoints (POST /v1/events): a JWT signed like Supabase's
// (HS256 with the project's JWT secret; RS256 or ES256 with a PEM public key or a JWKS file) or a static
// API key kept as its SHA-256. Signature checking and claim decoding are libjwt's; this module only
// picks the key (by the header's alg and kid), then checks exp/nbf with a leeway, aud, iss and the role
// claim. A credential that does not verify is "unauthenticated" (401); one that verifies but whose role
// may not ingest is "forbidden" (403).
//
// Threads: an authenticator is immutable after construction; check() is safe from any thread. A SIGHUP
// reload builds a new one and swaps the shared_ptr.
//
// Nothing here logs or returns a presented token or key: reasons name what was wrong, never the value.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ingest/webhooks/signatures.h"

namespace crm::ingest::auth {

enum class jwt_algorithm { hs256, rs256, es256 };

// One verification key of a JWKS file (or the configured PEM file), as PEM for libjwt.
struct public_key {
  std::string kid;  // empty = matches any kid
  jwt_algorithm alg = jwt_algorithm::rs256;
  std::string pem;
};

struct api_key {
  std::string name;                      // shown in metrics and used as the rate-limit key
  std::array<unsigned char, 32> sha256;  // of the key's bytes
};

struct options {
  bool required = false;            // 401 for everything when nothing is configured
  std::string hs256_secret;         // empty = HS256 not accepted
  std::vector<public_key> keys;     // RS256 / ES256 keys
  std::vector<std::string> audiences;  // any one must appear in aud; empty = not checked
  std::string issuer;                  // empty = not checked
  std::int64_t leeway_s = 30;
  std::vector<std::string> roles{"service_role"};  // "*" = any role (the claim must still be present)
  std::string role_claim = "role";
  std::string tenant_claim = "tenant_id";
  std::vector<api_key> api_keys;
  // Tokens whose signature verified, kept with their claims so that a caller reusing its token (the usual
  // case) costs a hash lookup instead of a signature check (RS256/ES256: ~0.3 ms of CPU in libjwt 1.10,
  // which re-reads the PEM key per token). exp/nbf are still checked on every request. 0 = no cache.
  std::size_t verified_cache_entries = 4096;
};

class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A JWKS document (RFC 7517) -> its RSA and P-256 signing keys as PEM. Keys of other types, or with
// "use" other than "sig", are skipped. Throws config_error when the document is not a JWKS.
std::vector<public_key> parse_jwks(std::string_view json);
// A PEM public key -> RS256 (RSA) or ES256 (P-256). Throws config_error.
public_key parse_public_key_pem(std::string_view pem);
// "name=sha256:<64 hex>[,...]" -> entries. Throws config_error.
std::vector<api_key> parse_api_keys(std::string_view list);
// Hex SHA-256 of a key, for writing the config.
std::string sha256_hex(std::string_view key);

enum class outcome { ok, unauthenticated, forbidden };

struct result {
  outcome status = outcome::unauthenticated;
  std::string reason;      // why not ok (no secret values)
  std::string credential;  // "jwt:<iss>/<sub>" or "key:<name>": the per-credential rate-limit key
  std::string role;
  std::string tenant;      // from tenant_claim; empty when absent
  bool ok() const noexcept { return status == outcome::ok; }
};

class authenticator {
 public:
  explicit authenticator(options o);
  // Authentication applies: some credential configured, or required.
  bool enabled() const noexcept;
  // Authorization: Bearer <jwt | api key>, or X-API-Key / apikey: <api key>.
  result check(const webhooks::header_map& headers, std::int64_t now_s) const;
  result verify_jwt(std::string_view token, std::int64_t now_s) const;
  result verify_api_key(std::string_view key) const;
  const options& settings() const noexcept { return opt_; }

 private:
  result verify_jwt_uncached(std::string_view token, std::int64_t now_s, std::int64_t& exp, std::int64_t& nbf) const;

  struct verified {
    result r;  // ok or forbidden: the signature and the time-independent claims passed
    std::int64_t exp;
    std::int64_t nbf;  // INT64_MIN when absent
  };
  options opt_;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, verified> cache_;
};

// Token buckets keyed by a string (client address, credential). allow() is thread-safe.
class rate_limiter {
 public:
  rate_limiter(double per_second, double burst);
  // True when the key may proceed; otherwise retry_after_s is the whole seconds until one token is back.
  bool allow(std::string_view key, std::chrono::steady_clock::time_point now, int& retry_after_s);
  std::size_t tracked() const;

 private:
  struct bucket {
    double tokens;
    std::chrono::steady_clock::time_point updated;
  };
  double rate_;
  double burst_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, bucket> buckets_;
};

}  // namespace crm::ingest::auth
