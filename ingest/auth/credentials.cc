#include "ingest/auth/credentials.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <simdjson.h>

namespace crm::ingest::auth {

namespace {

constexpr std::size_t max_token_bytes = 16 * 1024;

// Base64url without padding (RFC 7515 section 2) -> bytes; false on any other character.
bool base64url_decode(std::string_view in, std::string& out) {
  static const auto table = [] {
    std::array<signed char, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
    return t;
  }();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out.clear();
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = table[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

struct pkey_free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) throw config_error("out of memory");
  std::string out;
  if (PEM_write_bio_PUBKEY(bio, key) == 1) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    out.assign(data, static_cast<std::size_t>(n));
  }
  BIO_free(bio);
  if (out.empty()) throw config_error("cannot encode a public key as PEM");
  return out;
}

pkey_ptr key_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* key = nullptr;
  bool ok = params && ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (!ok) {
    EVP_PKEY_free(key);
    return nullptr;
  }
  return pkey_ptr(key);
}

pkey_ptr rsa_key(const std::string& n, const std::string& e) {
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  pkey_ptr key;
  if (bn_n && bn_e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1) {
    key = key_from_params("RSA", bld);
  }
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  return key;
}

pkey_ptr p256_key(const std::string& x, const std::string& y) {
  if (x.size() != 32 || y.size() != 32) return nullptr;
  std::string point = "\x04";
  point.append(x);
  point.append(y);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  pkey_ptr key;
  if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1) {
    key = key_from_params("EC", bld);
  }
  OSSL_PARAM_BLD_free(bld);
  return key;
}

bool constant_time_equal(const unsigned char* a, const unsigned char* b, std::size_t n) {
  return CRYPTO_memcmp(a, b, n) == 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

result refuse(outcome o, std::string reason) {
  result r;
  r.status = o;
  r.reason = std::move(reason);
  return r;
}

struct jwt_free_fn {
  void operator()(jwt_t* j) const { jwt_free(j); }
};

// A string claim, or "" when absent or not a string.
std::string string_claim(jwt_t* jwt, const std::string& name) {
  const char* v = jwt_get_grant(jwt, name.c_str());
  return v ? std::string(v) : std::string();
}

enum class int_claim_state { absent, integer, invalid };

// A NumericDate claim (RFC 7519 section 2: seconds since the epoch, fractions allowed) from the token's
// claims as JSON. libjwt 1.10 reads a JSON number with a fraction or an exponent as 0, which left such an
// nbf unenforced and made such an exp "expired", so the claims are read here. `round_up`: nbf rounds up
// and exp down, which compared with whole seconds gives exactly the answer of the fractional value.
int_claim_state numeric_date(simdjson::dom::object claims, const char* name, bool round_up, std::int64_t& out) {
  simdjson::dom::element el;
  if (claims[name].get(el) != simdjson::SUCCESS) return int_claim_state::absent;
  std::int64_t i = 0;
  if (el.is_int64() && el.get_int64().get(i) == simdjson::SUCCESS) {
    if (i > 1000000000000000 || i < -1000000000000000) return int_claim_state::invalid;
    out = i;
    return int_claim_state::integer;
  }
  double d = 0;
  if (!el.is_number() || el.get_double().get(d) != simdjson::SUCCESS || !std::isfinite(d) || std::fabs(d) > 1e15) {
    return int_claim_state::invalid;
  }
  out = static_cast<std::int64_t>(round_up ? std::ceil(d) : std::floor(d));
  return int_claim_state::integer;
}

// The tenant claim: a string as is, an integer as its decimal text; anything else cannot name a tenant and
// is refused rather than dropped (a row without a tenant is visible to every tenant-less reader).
enum class tenant_state { absent, ok, invalid, unusable };
constexpr std::size_t max_tenant_bytes = 256;

tenant_state tenant_claim(simdjson::dom::object claims, const std::string& name, std::string& out) {
  simdjson::dom::element el;
  if (claims[name].get(el) != simdjson::SUCCESS) return tenant_state::absent;
  std::string_view s;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  if (el.get_string().get(s) == simdjson::SUCCESS) {
    out.assign(s);
  } else if (el.is_int64() && el.get_int64().get(i) == simdjson::SUCCESS) {
    out = std::to_string(i);
  } else if (el.is_uint64() && el.get_uint64().get(u) == simdjson::SUCCESS) {
    out = std::to_string(u);
  } else {
    return tenant_state::invalid;
  }
  if (out.empty()) return tenant_state::invalid;
  // Stamped into every row and dead letter of the request: bounded, and no byte PostgreSQL's text refuses.
  const bool control = std::any_of(out.begin(), out.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  if (out.size() > max_tenant_bytes || control) {
    out.clear();
    return tenant_state::unusable;
  }
  return tenant_state::ok;
}

bool audience_matches(jwt_t* jwt, const std::vector<std::string>& wanted) {
  auto wanted_has = [&](std::string_view a) { return std::find(wanted.begin(), wanted.end(), a) != wanted.end(); };
  if (const char* single = jwt_get_grant(jwt, "aud")) return wanted_has(single);
  char* json = jwt_get_grants_json(jwt, "aud");
  if (!json) return false;
  std::string text(json);
  free(json);
  simdjson::dom::parser parser;
  simdjson::dom::array arr;
  if (parser.parse(text).get_array().get(arr) != simdjson::SUCCESS) return false;
  for (auto el : arr) {
    std::string_view s;
    if (el.get_string().get(s) == simdjson::SUCCESS && wanted_has(s)) return true;
  }
  return false;
}

// A string member, or "" when absent or not a string.
std::string_view string_field(simdjson::dom::element el, const char* key) {
  std::string_view v;
  if (el[key].get_string().get(v) != simdjson::SUCCESS) return {};
  return v;
}

// The PEM of a JWK's public key, made by `make` from the key's two base64url parameters `p` and `q` (RSA: n
// and e; EC: x and y). Throws, naming the key (`what`), when one is missing or invalid or `make` refuses them.
std::string jwk_pem(simdjson::dom::element k, const std::string& what, const char* p, const char* q,
                    pkey_ptr (*make)(const std::string&, const std::string&), const char* unusable) {
  std::string_view pv, qv;
  std::string a, b;
  if (k[p].get_string().get(pv) != simdjson::SUCCESS || k[q].get_string().get(qv) != simdjson::SUCCESS ||
      !base64url_decode(pv, a) || !base64url_decode(qv, b)) {
    throw config_error(what + " lacks a valid " + p + " or " + q);
  }
  auto key = make(a, b);
  if (!key) throw config_error(what + " " + unusable);
  return pem_of(key.get());
}

}  // namespace

std::vector<public_key> parse_jwks(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS) throw config_error("the JWKS is not valid JSON");
  simdjson::dom::array keys;
  if (doc["keys"].get_array().get(keys) != simdjson::SUCCESS) throw config_error("the JWKS has no \"keys\" array");
  std::vector<public_key> out;
  for (auto k : keys) {
    std::string_view kty, use, alg, crv;
    if (k["kty"].get_string().get(kty) != simdjson::SUCCESS) continue;
    if (k["use"].get_string().get(use) == simdjson::SUCCESS && use != "sig") continue;
    alg = string_field(k, "alg");
    public_key pk;
    pk.kid = std::string(string_field(k, "kid"));
    if (kty == "RSA") {
      if (!alg.empty() && alg != "RS256") continue;
      pk.alg = jwt_algorithm::rs256;
      pk.pem = jwk_pem(k, "JWKS RSA key " + pk.kid, "n", "e", rsa_key, "is not a usable RSA public key");
    } else if (kty == "EC") {
      if ((!alg.empty() && alg != "ES256") || (k["crv"].get_string().get(crv) == simdjson::SUCCESS && crv != "P-256")) {
        continue;
      }
      pk.alg = jwt_algorithm::es256;
      pk.pem = jwk_pem(k, "JWKS EC key " + pk.kid, "x", "y", p256_key, "is not a point on P-256");
    } else {
      continue;  // "oct" and others: symmetric keys are configured as jwt_secret, not published
    }
    out.push_back(std::move(pk));
  }
  if (out.empty()) throw config_error("the JWKS holds no RS256 or ES256 signing key");
  return out;
}

public_key parse_public_key_pem(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) throw config_error("out of memory");
  pkey_ptr key(PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  if (!key) throw config_error("not a PEM public key (-----BEGIN PUBLIC KEY-----)");
  public_key pk;
  switch (EVP_PKEY_get_base_id(key.get())) {
    case EVP_PKEY_RSA:
      pk.alg = jwt_algorithm::rs256;
      break;
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1 ||
          std::string_view(group) != "prime256v1") {
        throw config_error("an EC public key must be on P-256 (ES256)");
      }
      pk.alg = jwt_algorithm::es256;
      break;
    }
    default:
      throw config_error("the public key must be RSA (RS256) or EC P-256 (ES256)");
  }
  pk.pem = pem_of(key.get());
  return pk;
}

std::string sha256_hex(std::string_view key) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

std::vector<api_key> parse_api_keys(std::string_view list) {
  std::vector<api_key> out;
  while (!list.empty()) {
    auto comma = list.find(',');
    auto entry = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (entry.empty()) continue;
    auto eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) throw config_error("an API key entry must be name=sha256:<hex>");
    api_key k;
    k.name = std::string(trim(entry.substr(0, eq)));
    auto digest = trim(entry.substr(eq + 1));
    if (digest.rfind("sha256:", 0) != 0 || digest.size() != 7 + 64) {
      throw config_error("API key " + k.name + ": the value must be sha256: and 64 hex digits (the key's hash, "
                         "never the key)");
    }
    digest.remove_prefix(7);
    for (std::size_t i = 0; i < 32; ++i) {
      auto nib = [&](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      int hi = nib(digest[2 * i]), lo = nib(digest[2 * i + 1]);
      if (hi < 0 || lo < 0) throw config_error("API key " + k.name + ": the hash is not hexadecimal");
      k.sha256[i] = static_cast<unsigned char>(hi * 16 + lo);
    }
    for (const auto& other : out) {
      if (other.name == k.name) throw config_error("API key name " + k.name + " appears twice");
    }
    out.push_back(std::move(k));
  }
  return out;
}

authenticator::authenticator(options o) : opt_(std::move(o)) {}

bool authenticator::enabled() const noexcept {
  return opt_.required || !opt_.hs256_secret.empty() || !opt_.keys.empty() || !opt_.api_keys.empty();
}

result authenticator::check(const webhooks::header_map& headers, std::int64_t now_s) const {
  if (auto v = headers.find("X-API-Key")) return verify_api_key(trim(*v));
  if (auto v = headers.find("apikey")) return verify_api_key(trim(*v));
  auto authz = headers.find("Authorization");
  if (!authz) return refuse(outcome::unauthenticated, "no credential (Authorization: Bearer, or X-API-Key)");
  auto value = trim(*authz);
  auto space = value.find(' ');
  if (space == std::string_view::npos || !iequals(value.substr(0, space), "Bearer")) {
    return refuse(outcome::unauthenticated, "the Authorization scheme must be Bearer");
  }
  auto token = trim(value.substr(space + 1));
  // Three dot-separated parts: a JWS compact serialization; anything else is an API key.
  if (std::count(token.begin(), token.end(), '.') == 2) return verify_jwt(token, now_s);
  return verify_api_key(token);
}

result authenticator::verify_api_key(std::string_view key) const {
  if (opt_.api_keys.empty()) return refuse(outcome::unauthenticated, "API keys are not accepted here");
  if (key.empty() || key.size() > 4096) return refuse(outcome::unauthenticated, "invalid API key");
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), md, &len, EVP_sha256(), nullptr);
  const api_key* match = nullptr;
  for (const auto& k : opt_.api_keys) {  // every entry compared, in constant time each
    if (constant_time_equal(md, k.sha256.data(), 32)) match = &k;
  }
  if (!match) return refuse(outcome::unauthenticated, "invalid API key");
  result r;
  r.status = outcome::ok;
  r.credential = "key:" + match->name;
  return r;
}

result authenticator::verify_jwt(std::string_view token, std::int64_t now_s) const {
  if (token.size() > max_token_bytes) return refuse(outcome::unauthenticated, "the token is too long");
  auto time_check = [&](std::int64_t exp, std::int64_t nbf) -> const char* {
    if (now_s > exp + opt_.leeway_s) return "the token has expired";
    if (nbf != std::numeric_limits<std::int64_t>::min() && now_s + opt_.leeway_s < nbf) return "the token is not valid yet";
    return nullptr;
  };
  if (opt_.verified_cache_entries > 0) {
    std::lock_guard lock(cache_mu_);
    if (auto it = cache_.find(std::string(token)); it != cache_.end()) {
      if (const char* why = time_check(it->second.exp, it->second.nbf)) return refuse(outcome::unauthenticated, why);
      return it->second.r;
    }
  }
  std::int64_t exp = 0, nbf = std::numeric_limits<std::int64_t>::min();
  result r = verify_jwt_uncached(token, now_s, exp, nbf);
  if (r.status != outcome::unauthenticated && opt_.verified_cache_entries > 0) {
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= opt_.verified_cache_entries) cache_.clear();  // bounded; refilled by the next requests
    cache_.emplace(std::string(token), verified{r, exp, nbf});
  }
  return r;
}

result authenticator::verify_jwt_uncached(std::string_view token, std::int64_t now_s, std::int64_t& exp,
                                          std::int64_t& nbf) const {
  auto dot = token.find('.');
  if (dot == std::string_view::npos) return refuse(outcome::unauthenticated, "malformed token");
  // The protected header is read here only to choose the key; libjwt verifies and decodes everything.
  std::string header_json;
  if (!base64url_decode(token.substr(0, dot), header_json)) {
    return refuse(outcome::unauthenticated, "malformed token header");
  }
  simdjson::dom::parser parser;
  simdjson::padded_string padded(header_json);
  simdjson::dom::element header;
  std::string_view alg, kid;
  if (parser.parse(padded).get(header) != simdjson::SUCCESS || header["alg"].get_string().get(alg) != simdjson::SUCCESS) {
    return refuse(outcome::unauthenticated, "malformed token header");
  }
  kid = string_field(header, "kid");
  const std::string* key = nullptr;
  jwt_alg_t expected = JWT_ALG_INVAL;
  if (alg == "HS256") {
    if (opt_.hs256_secret.empty()) return refuse(outcome::unauthenticated, "HS256 tokens are not accepted");
    key = &opt_.hs256_secret;
    expected = JWT_ALG_HS256;
  } else if (alg == "RS256" || alg == "ES256") {
    const auto want = alg == "RS256" ? jwt_algorithm::rs256 : jwt_algorithm::es256;
    for (const auto& k : opt_.keys) {
      if (k.alg == want && (kid.empty() || k.kid.empty() || k.kid == kid)) {
        key = &k.pem;
        break;
      }
    }
    if (!key) return refuse(outcome::unauthenticated, "no configured key for the token's alg/kid");
    expected = alg == "RS256" ? JWT_ALG_RS256 : JWT_ALG_ES256;
  } else {
    // "none" among them: an unsigned token is never a credential.
    return refuse(outcome::unauthenticated, "unsupported token alg");
  }

  std::string text(token);
  jwt_t* raw = nullptr;
  int rc = jwt_decode(&raw, text.c_str(), reinterpret_cast<const unsigned char*>(key->data()),
                      static_cast<int>(key->size()));
  std::unique_ptr<jwt_t, jwt_free_fn> jwt(raw);
  if (rc != 0 || !jwt) return refuse(outcome::unauthenticated, "invalid token signature or encoding");
  if (jwt_get_alg(jwt.get()) != expected) return refuse(outcome::unauthenticated, "token alg mismatch");

  // The claims as libjwt decoded them (one JSON object, duplicate names already resolved by it).
  std::string claims_json;
  if (char* json = jwt_get_grants_json(jwt.get(), nullptr)) {
    claims_json = json;
    free(json);
  }
  simdjson::dom::parser claims_parser;
  simdjson::padded_string padded_claims(claims_json);
  simdjson::dom::object claims;
  if (claims_parser.parse(padded_claims).get_object().get(claims) != simdjson::SUCCESS) {
    return refuse(outcome::unauthenticated, "the token's claims are not a JSON object");
  }
  switch (numeric_date(claims, "exp", false, exp)) {
    case int_claim_state::absent:
      return refuse(outcome::unauthenticated, "the token has no exp");
    case int_claim_state::invalid:
      return refuse(outcome::unauthenticated, "the token's exp is not a NumericDate");
    case int_claim_state::integer:
      if (now_s > exp + opt_.leeway_s) return refuse(outcome::unauthenticated, "the token has expired");
  }
  switch (numeric_date(claims, "nbf", true, nbf)) {
    case int_claim_state::absent:
      nbf = std::numeric_limits<std::int64_t>::min();
      break;
    case int_claim_state::invalid:
      return refuse(outcome::unauthenticated, "the token's nbf is not a NumericDate");
    case int_claim_state::integer:
      if (now_s + opt_.leeway_s < nbf) return refuse(outcome::unauthenticated, "the token is not valid yet");
  }
  std::string iss = string_claim(jwt.get(), "iss");
  if (!opt_.issuer.empty() && iss != opt_.issuer) return refuse(outcome::unauthenticated, "wrong token issuer");
  if (!opt_.audiences.empty() && !audience_matches(jwt.get(), opt_.audiences)) {
    return refuse(outcome::unauthenticated, "wrong token audience");
  }

  result r;
  r.role = string_claim(jwt.get(), opt_.role_claim);
  const auto tenant = tenant_claim(claims, opt_.tenant_claim, r.tenant);
  std::string sub = string_claim(jwt.get(), "sub");
  r.credential = "jwt:" + iss + "/" + (sub.empty() ? "role:" + r.role : sub);
  const bool any_role = std::find(opt_.roles.begin(), opt_.roles.end(), "*") != opt_.roles.end();
  if (tenant == tenant_state::invalid || tenant == tenant_state::unusable) {
    r.status = outcome::forbidden;
    r.tenant.clear();
    r.reason = "the token's " + opt_.tenant_claim +
               (tenant == tenant_state::invalid ? " claim must be a non-empty string or an integer"
                                                : " claim is longer than 256 bytes or holds control characters");
  } else if (r.role.empty()) {
    r.status = outcome::forbidden;
    r.reason = "the token has no " + opt_.role_claim + " claim";
  } else if (!any_role && std::find(opt_.roles.begin(), opt_.roles.end(), r.role) == opt_.roles.end()) {
    r.status = outcome::forbidden;
    r.reason = "role " + r.role + " may not ingest";
  } else {
    r.status = outcome::ok;
  }
  return r;
}

rate_limiter::rate_limiter(double per_second, double burst)
    : rate_(per_second), burst_(burst > 0 ? burst : per_second) {}

bool rate_limiter::allow(std::string_view key, std::chrono::steady_clock::time_point now, int& retry_after_s) {
  std::lock_guard lock(mu_);
  if (buckets_.size() > 100000) {
    // Forget keys whose bucket has refilled: they are indistinguishable from new ones.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      double t = it->second.tokens + std::chrono::duration<double>(now - it->second.updated).count() * rate_;
      it = t >= burst_ ? buckets_.erase(it) : std::next(it);
    }
  }
  auto [it, inserted] = buckets_.try_emplace(std::string(key), bucket{burst_, now});
  auto& b = it->second;
  if (!inserted) {
    b.tokens = std::min(burst_, b.tokens + std::chrono::duration<double>(now - b.updated).count() * rate_);
    b.updated = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  retry_after_s = std::max(1, static_cast<int>(std::ceil((1.0 - b.tokens) / rate_)));
  return false;
}

std::size_t rate_limiter::tracked() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

}  // namespace crm::ingest::auth
