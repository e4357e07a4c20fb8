// Caller credentials: the RFC 7515 appendix A examples (HS256, RS256, ES256) and the RFC 7519 unsecured
// JWT, plus tokens signed here with libjwt for the claim checks, API keys and the rate limiter.
#include <chrono>
#include <cstdlib>
#include <strings.h>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ingest/auth/credentials.h"
#include "support/jwt_signing.h"

namespace {

using namespace crm::ingest::auth;

class headers final : public crm::ingest::webhooks::header_map {
 public:
  std::map<std::string, std::string> h;
  std::optional<std::string_view> find(std::string_view name) const noexcept override {
    for (const auto& [k, v] : h) {
      if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return std::string_view(v);
    }
    return std::nullopt;
  }
};

// RFC 7515 A.1 (also RFC 7519 section 3.1): HS256, payload {"iss":"joe","exp":1300819380,"http://example.com/is_root":true}.
const std::string rfc_payload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const std::string rfc_a1 = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." + rfc_payload +
                           ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const std::string rfc_a1_key_b64 = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
// RFC 7515 A.2: RS256 with the appendix's RSA key.
const std::string rfc_a2 =
    "eyJhbGciOiJSUzI1NiJ9." + rfc_payload +
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1"
    "dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jz"
    "DwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
const std::string rfc_a2_jwks =
    R"({"keys":[{"kty":"RSA","kid":"a2","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4)"
    R"(qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5)"
    R"(rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9)"
    R"(_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}]})";
// RFC 7515 A.3: ES256 (P-256) with the appendix's EC key.
const std::string rfc_a3 = "eyJhbGciOiJFUzI1NiJ9." + rfc_payload +
                           ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const std::string rfc_a3_jwks =
    R"({"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
    R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})";
const std::string rfc_a3_pem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEf83OJ3D2xF1Bg8vub9tLe1gHMzV7\n"
    "6e8Tus9uPHvRVEXH8UTNG72bfocs3+257rn0s2ldbqkLJK2KRiMohYjlrQ==\n"
    "-----END PUBLIC KEY-----\n";
// RFC 7519 section 6.1: an unsecured JWT (alg none) with the same claims.
const std::string rfc_unsecured = "eyJhbGciOiJub25lIn0." + rfc_payload + ".";

constexpr std::int64_t rfc_exp = 1300819380;

std::string b64url_decode(const std::string& s) {
  std::string t = s;
  for (auto& c : t) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (t.size() % 4) t.push_back('=');
  std::string out(t.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(t.data()),
                          static_cast<int>(t.size()));
  out.resize(static_cast<std::size_t>(n) - (s.size() % 4 == 2 ? 2 : s.size() % 4 == 3 ? 1 : 0));
  return out;
}

options any_role(options o) {
  o.roles = {"*"};
  o.role_claim = "iss";  // the RFC examples carry no role; "joe" stands in for one
  return o;
}

TEST(Rfc7515, A1Hs256Verifies) {
  options o;
  o.hs256_secret = b64url_decode(rfc_a1_key_b64);
  authenticator a(any_role(o));
  auto r = a.verify_jwt(rfc_a1, rfc_exp - 10);
  EXPECT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.role, "joe");
  // One byte of the signature changed.
  std::string bad = rfc_a1;
  bad[bad.size() - 2] = bad[bad.size() - 2] == 'X' ? 'Y' : 'X';
  EXPECT_EQ(a.verify_jwt(bad, rfc_exp - 10).status, outcome::unauthenticated);
  // A different secret.
  options wrong;
  wrong.hs256_secret = "not the key";
  EXPECT_EQ(authenticator(any_role(wrong)).verify_jwt(rfc_a1, rfc_exp - 10).status, outcome::unauthenticated);
}

TEST(Rfc7515, A1ExpiryWithLeeway) {
  options o;
  o.hs256_secret = b64url_decode(rfc_a1_key_b64);
  o.leeway_s = 30;
  authenticator a(any_role(o));
  EXPECT_TRUE(a.verify_jwt(rfc_a1, rfc_exp + 30).ok());
  auto r = a.verify_jwt(rfc_a1, rfc_exp + 31);
  EXPECT_EQ(r.status, outcome::unauthenticated);
  EXPECT_EQ(r.reason, "the token has expired");
}

TEST(Rfc7515, A2Rs256FromJwks) {
  options o;
  o.keys = parse_jwks(rfc_a2_jwks);
  ASSERT_EQ(o.keys.size(), 1u);
  EXPECT_EQ(o.keys[0].alg, jwt_algorithm::rs256);
  authenticator a(any_role(o));
  auto r = a.verify_jwt(rfc_a2, rfc_exp);
  EXPECT_TRUE(r.ok()) << r.reason;
  std::string bad = rfc_a2;
  bad[bad.find('.') + 5] ^= 1;  // the payload changed, the signature not
  EXPECT_EQ(a.verify_jwt(bad, rfc_exp).status, outcome::unauthenticated);
}

TEST(Rfc7515, A3Es256FromJwksAndPem) {
  for (const auto& keys : {parse_jwks(rfc_a3_jwks), std::vector<public_key>{parse_public_key_pem(rfc_a3_pem)}}) {
    options o;
    o.keys = keys;
    ASSERT_EQ(o.keys.size(), 1u);
    EXPECT_EQ(o.keys[0].alg, jwt_algorithm::es256);
    authenticator a(any_role(o));
    auto r = a.verify_jwt(rfc_a3, rfc_exp);
    EXPECT_TRUE(r.ok()) << r.reason;
    // An RS256 header over the same key: no RSA key configured.
    EXPECT_EQ(a.verify_jwt(rfc_a2, rfc_exp).status, outcome::unauthenticated);
  }
}

TEST(Rfc7519, UnsecuredJwtIsRefused) {
  options o;
  o.hs256_secret = b64url_decode(rfc_a1_key_b64);
  o.keys = parse_jwks(rfc_a3_jwks);
  authenticator a(any_role(o));
  auto r = a.verify_jwt(rfc_unsecured, rfc_exp - 10);
  EXPECT_EQ(r.status, outcome::unauthenticated);
  EXPECT_EQ(r.reason, "unsupported token alg");
  // Also with a signature part glued on.
  EXPECT_FALSE(a.verify_jwt(rfc_unsecured + "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", rfc_exp - 10).ok());
}

TEST(Jwt, Hs256TokenWithAPublicKeyAsSecretIsRefused) {
  // Algorithm confusion: the attacker signs HS256 with the (public) PEM as the HMAC key.
  options o;
  o.keys = {parse_public_key_pem(rfc_a3_pem)};
  authenticator a(any_role(o));
  const auto t = crm_test::sign_jwt(JWT_ALG_HS256, o.keys[0].pem, {{{"iss", "joe"}}, {{"exp", rfc_exp}}});
  EXPECT_EQ(a.verify_jwt(t, rfc_exp).status, outcome::unauthenticated);
}

class Claims : public ::testing::Test {
 protected:
  static constexpr std::int64_t now = 1800000000;
  options base() {
    options o;
    o.hs256_secret = "super-secret-jwt-token-with-at-least-32-characters-long";
    o.audiences = {"authenticated"};
    o.issuer = "https://project.supabase.co/auth/v1";
    o.leeway_s = 10;
    o.roles = {"service_role", "ingest"};
    return o;
  }
  std::string token(std::map<std::string, std::string> s, std::map<std::string, long> i, const char* json = nullptr) {
    return crm_test::sign_jwt(JWT_ALG_HS256, base().hs256_secret, {s, i, json});
  }
  std::map<std::string, std::string> good_strings() {
    return {{"iss", "https://project.supabase.co/auth/v1"}, {"aud", "authenticated"}, {"role", "service_role"},
            {"sub", "u1"}, {"tenant_id", "acme"}};
  }
};

TEST_F(Claims, ValidTokenCarriesRoleTenantAndCredential) {
  authenticator a(base());
  auto r = a.verify_jwt(token(good_strings(), {{"exp", now + 60}}), now);
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.role, "service_role");
  EXPECT_EQ(r.tenant, "acme");
  EXPECT_EQ(r.credential, "jwt:https://project.supabase.co/auth/v1/u1");
}

TEST_F(Claims, ExpiredNotYetValidAndMissingExp) {
  authenticator a(base());
  EXPECT_EQ(a.verify_jwt(token(good_strings(), {{"exp", now - 11}}), now).reason, "the token has expired");
  EXPECT_TRUE(a.verify_jwt(token(good_strings(), {{"exp", now - 9}}), now).ok());  // within the leeway
  EXPECT_EQ(a.verify_jwt(token(good_strings(), {{"exp", now + 60}, {"nbf", now + 11}}), now).reason,
            "the token is not valid yet");
  EXPECT_TRUE(a.verify_jwt(token(good_strings(), {{"exp", now + 60}, {"nbf", now + 9}}), now).ok());
  EXPECT_EQ(a.verify_jwt(token(good_strings(), {}), now).reason, "the token has no exp");
  auto s = good_strings();
  s["exp"] = "tomorrow";
  EXPECT_EQ(a.verify_jwt(token(s, {}), now).status, outcome::unauthenticated);
}

// RFC 7519 section 2: a NumericDate may have a fraction (or be written with an exponent). libjwt 1.10 read
// such values as 0, so a future nbf was not enforced and a fractional exp counted as expired.
TEST_F(Claims, FractionalNumericDatesAreHonoured) {
  authenticator a(base());  // leeway 10 s
  const auto s = good_strings();
  auto nbf = [&](const char* v) { return token(s, {{"exp", now + 600}}, (std::string(R"({"nbf":)") + v + "}").c_str()); };
  auto exp = [&](const char* v) { return token(s, {}, (std::string(R"({"exp":)") + v + "}").c_str()); };
  EXPECT_EQ(a.verify_jwt(nbf("1800000100.5"), now).reason, "the token is not valid yet");
  EXPECT_EQ(a.verify_jwt(nbf("1.8000001e9"), now).reason, "the token is not valid yet");
  EXPECT_EQ(a.verify_jwt(nbf("1800000010.5"), now).reason, "the token is not valid yet");  // 10.5 s > leeway
  EXPECT_TRUE(a.verify_jwt(nbf("1800000009.5"), now).ok());
  EXPECT_TRUE(a.verify_jwt(nbf("1.7e9"), now).ok());
  EXPECT_TRUE(a.verify_jwt(exp("1800003600.5"), now).ok());
  EXPECT_TRUE(a.verify_jwt(exp("1.8000036e9"), now).ok());
  EXPECT_TRUE(a.verify_jwt(exp("1799999990.5"), now).ok());  // 9.5 s ago: within the leeway
  EXPECT_EQ(a.verify_jwt(exp("1799999989.5"), now).reason, "the token has expired");
  for (const char* bad : {R"("1800003600")", "true", "null", "1e300", "[1800003600]"}) {
    EXPECT_EQ(a.verify_jwt(exp(bad), now).reason, "the token's exp is not a NumericDate") << bad;
  }
  EXPECT_EQ(a.verify_jwt(nbf(R"("soon")"), now).reason, "the token's nbf is not a NumericDate");
}

// A tenant claim that is not a string: an integer is used as its decimal text; anything else is refused
// with the reason (it was silently dropped, and the rows stored without a tenant).
TEST_F(Claims, NumericTenantIsItsDecimalTextOtherTypesAreRefused) {
  authenticator a(base());
  auto s = good_strings();
  s.erase("tenant_id");
  auto r = a.verify_jwt(token(s, {{"exp", now + 60}, {"tenant_id", 42}}), now);
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.tenant, "42");
  // Beyond 2^53: read as an integer, not through a double.
  r = a.verify_jwt(token(s, {{"exp", now + 60}}, R"({"tenant_id":9007199254740993})"), now);
  ASSERT_TRUE(r.ok()) << r.reason;
  EXPECT_EQ(r.tenant, "9007199254740993");
  r = a.verify_jwt(token(s, {{"exp", now + 60}}, R"({"tenant_id":-7})"), now);
  EXPECT_EQ(r.tenant, "-7");
  for (const char* bad : {"4.5", "true", "null", R"({"id":"acme"})", R"(["acme"])", R"("")"}) {
    r = a.verify_jwt(token(s, {{"exp", now + 60}}, (std::string(R"({"tenant_id":)") + bad + "}").c_str()), now);
    EXPECT_EQ(r.status, outcome::forbidden) << bad;
    EXPECT_EQ(r.reason, "the token's tenant_id claim must be a non-empty string or an integer") << bad;
    EXPECT_TRUE(r.tenant.empty());
  }
  for (const std::string& bad : {std::string(R"("tab\there")"), std::string(R"("bell\u0007")"),
                                "\"" + std::string(257, 't') + "\""}) {
    r = a.verify_jwt(token(s, {{"exp", now + 60}}, (R"({"tenant_id":)" + bad + "}").c_str()), now);
    EXPECT_EQ(r.status, outcome::forbidden) << bad;
    EXPECT_EQ(r.reason, "the token's tenant_id claim is longer than 256 bytes or holds control characters");
  }
  // Absent: no tenant, and fine.
  r = a.verify_jwt(token(s, {{"exp", now + 60}}), now);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.tenant.empty());
}

TEST_F(Claims, AudienceAndIssuer) {
  authenticator a(base());
  auto s = good_strings();
  s["aud"] = "anon";
  EXPECT_EQ(a.verify_jwt(token(s, {{"exp", now + 60}}), now).reason, "wrong token audience");
  s.erase("aud");
  EXPECT_EQ(a.verify_jwt(token(s, {{"exp", now + 60}}), now).reason, "wrong token audience");
  EXPECT_TRUE(a.verify_jwt(token(s, {{"exp", now + 60}}, R"({"aud":["other","authenticated"]})"), now).ok());
  EXPECT_FALSE(a.verify_jwt(token(s, {{"exp", now + 60}}, R"({"aud":["other"]})"), now).ok());
  s = good_strings();
  s["iss"] = "https://evil.example";
  EXPECT_EQ(a.verify_jwt(token(s, {{"exp", now + 60}}), now).reason, "wrong token issuer");
}

TEST_F(Claims, RoleNotAllowedIsForbiddenNotUnauthenticated) {
  authenticator a(base());
  auto s = good_strings();
  s["role"] = "authenticated";
  auto r = a.verify_jwt(token(s, {{"exp", now + 60}}), now);
  EXPECT_EQ(r.status, outcome::forbidden);
  EXPECT_EQ(r.reason, "role authenticated may not ingest");
  s.erase("role");
  EXPECT_EQ(a.verify_jwt(token(s, {{"exp", now + 60}}), now).status, outcome::forbidden);
  s["role"] = "ingest";
  EXPECT_TRUE(a.verify_jwt(token(s, {{"exp", now + 60}}), now).ok());
}

TEST_F(Claims, VerifiedTokenCacheStillChecksTime) {
  authenticator a(base());  // cache on by default
  auto c = good_strings();
  auto t = token(c, {{"exp", now + 60}, {"nbf", now - 5}});
  EXPECT_TRUE(a.verify_jwt(t, now).ok());
  EXPECT_TRUE(a.verify_jwt(t, now + 1).ok());                                       // from the cache
  EXPECT_EQ(a.verify_jwt(t, now + 71).reason, "the token has expired");             // the cache keeps exp
  EXPECT_EQ(a.verify_jwt(t, now - 16).reason, "the token is not valid yet");        // and nbf
  c["role"] = "anon";
  auto anon = token(c, {{"exp", now + 60}});
  EXPECT_EQ(a.verify_jwt(anon, now).status, outcome::forbidden);
  EXPECT_EQ(a.verify_jwt(anon, now).status, outcome::forbidden);  // cached as forbidden, not as ok
  // A token one byte off is not a cache hit.
  std::string forged = t;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(a.verify_jwt(forged, now).status, outcome::unauthenticated);
}

TEST_F(Claims, HeadersPickJwtOrApiKey) {
  auto o = base();
  o.api_keys = parse_api_keys("loader=sha256:" + sha256_hex("k-123"));
  authenticator a(o);
  headers h;
  EXPECT_EQ(a.check(h, now).status, outcome::unauthenticated);
  h.h["Authorization"] = "Bearer " + token(good_strings(), {{"exp", now + 60}});
  EXPECT_TRUE(a.check(h, now).ok());
  h.h["Authorization"] = "bearer k-123";
  auto r = a.check(h, now);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.credential, "key:loader");
  h.h["Authorization"] = "Basic azEyMw==";
  EXPECT_FALSE(a.check(h, now).ok());
  h.h.clear();
  h.h["x-api-key"] = "k-123";
  EXPECT_TRUE(a.check(h, now).ok());
  h.h["x-api-key"] = "k-124";
  EXPECT_EQ(a.check(h, now).reason, "invalid API key");
}

TEST(ApiKeys, ConfigIsHashedAndValidated) {
  auto keys = parse_api_keys(" a=sha256:" + sha256_hex("one") + " , b=sha256:" + sha256_hex("two"));
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[1].name, "b");
  EXPECT_THROW(parse_api_keys("a=one"), config_error);  // a plain key is refused: only hashes are stored
  EXPECT_THROW(parse_api_keys("a=sha256:xyz"), config_error);
  EXPECT_THROW(parse_api_keys("a=sha256:" + sha256_hex("1") + ",a=sha256:" + sha256_hex("2")), config_error);
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");  // FIPS 180-2
}

TEST(Jwks, BadDocumentsAreConfigErrors) {
  EXPECT_THROW(parse_jwks("not json"), config_error);
  EXPECT_THROW(parse_jwks(R"({"keys":[]})"), config_error);
  EXPECT_THROW(parse_jwks(R"({"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]})"), config_error);
  EXPECT_THROW(parse_public_key_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), config_error);
  // An encryption key or an oct key is not a signing key.
  EXPECT_THROW(parse_jwks(R"({"keys":[{"kty":"oct","k":"AAAA"}]})"), config_error);
}

TEST(Jwks, KidSelectsTheKey) {
  // Two ES256 keys; the token names the RFC key by kid.
  std::string jwks = R"({"keys":[{"kty":"EC","kid":"other","crv":"P-256",)"
                     R"("x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},)"
                     R"({"kty":"EC","kid":"rfc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
                     R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})";
  options o;
  o.keys = parse_jwks(jwks);
  ASSERT_EQ(o.keys.size(), 2u);
  authenticator a(any_role(o));
  // The RFC token has no kid: the first ES256 key is tried, which is the wrong one.
  EXPECT_FALSE(a.verify_jwt(rfc_a3, rfc_exp).ok());
  // {"alg":"ES256","kid":"rfc"} does not match the RFC signature (the header is signed), but it must reach
  // the right key and fail on the signature rather than on the key lookup.
  std::string with_kid = "eyJhbGciOiJFUzI1NiIsImtpZCI6InJmYyJ9." + rfc_a3.substr(rfc_a3.find('.') + 1);
  EXPECT_EQ(a.verify_jwt(with_kid, rfc_exp).reason, "invalid token signature or encoding");
  std::string unknown_kid = "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vbmUifQ." + rfc_a3.substr(rfc_a3.find('.') + 1);
  EXPECT_EQ(a.verify_jwt(unknown_kid, rfc_exp).reason, "no configured key for the token's alg/kid");
}

TEST(RateLimiter, BucketPerKeyWithRetryAfter) {
  rate_limiter l(2, 3);
  auto t = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  int retry = 0;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(l.allow("a", t, retry));
  EXPECT_FALSE(l.allow("a", t, retry));
  EXPECT_EQ(retry, 1);
  EXPECT_TRUE(l.allow("b", t, retry));  // another key is unaffected
  EXPECT_TRUE(l.allow("a", t + std::chrono::milliseconds(500), retry));
  EXPECT_FALSE(l.allow("a", t + std::chrono::milliseconds(500), retry));
  rate_limiter slow(0.1, 1);
  EXPECT_TRUE(slow.allow("x", t, retry));
  EXPECT_FALSE(slow.allow("x", t, retry));
  EXPECT_EQ(retry, 10);
}

}  // namespace
