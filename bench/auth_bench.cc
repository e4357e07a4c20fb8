// What caller authentication adds to one POST /v1/events: the credential check (ingest/auth/) for each kind of
// credential, and one rate-limiter step. Run: build/bench/auth_bench --benchmark_min_time=0.2
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>
#include <strings.h>

#include <benchmark/benchmark.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ingest/auth/credentials.h"

namespace {

using namespace crm::ingest::auth;

class one_header final : public crm::ingest::webhooks::header_map {
 public:
  std::string name, value;
  std::optional<std::string_view> find(std::string_view n) const noexcept override {
    if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) return std::string_view(value);
    return std::nullopt;
  }
};

std::pair<std::string, std::string> key_pair(const char* type, const char* param) {
  EVP_PKEY* key = std::string(type) == "RSA" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                                             : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", param);
  auto pem = [&](bool priv) {
    BIO* b = BIO_new(BIO_s_mem());
    if (priv) PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
    else PEM_write_bio_PUBKEY(b, key);
    char* d = nullptr;
    long n = BIO_get_mem_data(b, &d);
    std::string s(d, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
  };
  auto out = std::make_pair(pem(true), pem(false));
  EVP_PKEY_free(key);
  return out;
}

std::string sign(jwt_alg_t alg, const std::string& key) {
  jwt_t* j = nullptr;
  jwt_new(&j);
  jwt_add_grant(j, "iss", "https://project.supabase.co/auth/v1");
  jwt_add_grant(j, "aud", "authenticated");
  jwt_add_grant(j, "role", "service_role");
  jwt_add_grant(j, "sub", "5b7e0c1d-9a2f-4e6b-8c0d-1e2f3a4b5c6d");
  jwt_add_grant(j, "tenant_id", "acme");
  jwt_add_grant_int(j, "exp", std::time(nullptr) + 3600);
  jwt_set_alg(j, alg, reinterpret_cast<const unsigned char*>(key.data()), static_cast<int>(key.size()));
  char* t = jwt_encode_str(j);
  std::string out(t);
  free(t);
  jwt_free(j);
  return out;
}

struct fixture {
  std::string hs_secret = "super-secret-jwt-token-with-at-least-32-characters-long";
  std::pair<std::string, std::string> rsa = key_pair("RSA", nullptr);
  std::pair<std::string, std::string> ec = key_pair("EC", "P-256");
  std::unique_ptr<authenticator> auth;
  std::unique_ptr<authenticator> uncached;
  fixture() {
    options o;
    o.hs256_secret = hs_secret;
    o.keys = {parse_public_key_pem(rsa.second), parse_public_key_pem(ec.second)};
    o.audiences = {"authenticated"};
    o.issuer = "https://project.supabase.co/auth/v1";
    o.api_keys = parse_api_keys("loader=sha256:" + sha256_hex("ck_live_5b7e0c1d9a2f4e6b8c0d1e2f3a4b5c6d"));
    auth = std::make_unique<authenticator>(o);
    o.verified_cache_entries = 0;
    uncached = std::make_unique<authenticator>(o);
  }
};

fixture& fx() {
  static fixture f;
  return f;
}

void run(benchmark::State& state, const std::string& header_value, bool cached = true) {
  one_header h;
  h.name = "Authorization";
  h.value = header_value;
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  for (auto _ : state) {
    auto r = (cached ? fx().auth : fx().uncached)->check(h, now);
    if (!r.ok()) state.SkipWithError(r.reason.c_str());
    benchmark::DoNotOptimize(r);
  }
}

void BM_Hs256(benchmark::State& s) { run(s, "Bearer " + sign(JWT_ALG_HS256, fx().hs_secret)); }
void BM_Rs256(benchmark::State& s) { run(s, "Bearer " + sign(JWT_ALG_RS256, fx().rsa.first)); }
void BM_Es256(benchmark::State& s) { run(s, "Bearer " + sign(JWT_ALG_ES256, fx().ec.first)); }
void BM_Hs256Uncached(benchmark::State& s) { run(s, "Bearer " + sign(JWT_ALG_HS256, fx().hs_secret), false); }
void BM_Rs256Uncached(benchmark::State& s) { run(s, "Bearer " + sign(JWT_ALG_RS256, fx().rsa.first), false); }
void BM_Es256Uncached(benchmark::State& s) { run(s, "Bearer " + sign(JWT_ALG_ES256, fx().ec.first), false); }
void BM_ApiKey(benchmark::State& s) { run(s, "Bearer ck_live_5b7e0c1d9a2f4e6b8c0d1e2f3a4b5c6d"); }

void BM_RateLimiter(benchmark::State& state) {
  rate_limiter l(1e9, 1e9);
  int retry = 0;
  auto now = std::chrono::steady_clock::now();
  for (auto _ : state) benchmark::DoNotOptimize(l.allow("jwt:https://project.supabase.co/auth/v1/svc", now, retry));
}

BENCHMARK(BM_Hs256);
BENCHMARK(BM_Rs256);
BENCHMARK(BM_Es256);
BENCHMARK(BM_Hs256Uncached);
BENCHMARK(BM_Rs256Uncached);
BENCHMARK(BM_Es256Uncached);
BENCHMARK(BM_ApiKey);
BENCHMARK(BM_RateLimiter);

}  // namespace

BENCHMARK_MAIN();
