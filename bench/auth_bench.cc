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
#include "support/jwt_signing.h"

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

// A token as the identity provider issues them, valid for an hour.
std::string sign(jwt_alg_t alg, const std::string& key) {
  return crm_test::sign_jwt(alg, key,
                            {{{"iss", "https://project.supabase.co/auth/v1"}, {"aud", "authenticated"},
                              {"role", "service_role"}, {"sub", "5b7e0c1d-9a2f-4e6b-8c0d-1e2f3a4b5c6d"},
                              {"tenant_id", "acme"}},
                             {{"exp", static_cast<long>(std::time(nullptr)) + 3600}}});
}

struct fixture {
  std::string hs_secret = "super-secret-jwt-token-with-at-least-32-characters-long";
  std::pair<std::string, std::string> rsa = crm_test::key_pair("RSA");
  std::pair<std::string, std::string> ec = crm_test::key_pair("EC", "P-256");
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
