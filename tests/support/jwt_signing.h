// Tokens as a caller's identity provider signs them (libjwt), and fresh key pairs, for the auth tests and
// bench/auth_bench.
#pragma once

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace crm_test {

// A fresh key pair as PEM (private, public): "RSA" (2048 bits), or "EC" on `curve` ("P-256").
inline std::pair<std::string, std::string> key_pair(const char* type = "RSA", const char* curve = "P-256") {
  EVP_PKEY* key = std::string(type) == "RSA" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                                             : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve);
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

// The claims of a token: string and numeric grants, and optionally more grants as a JSON object.
struct jwt_claims {
  std::map<std::string, std::string> strings;
  std::map<std::string, long> numbers;
  const char* json = nullptr;
};

// The compact JWS of `claims` signed with `alg` under `key` (a secret for HS*, a private PEM otherwise).
// Throws when libjwt refuses, so that a test never goes on with an empty token.
inline std::string sign_jwt(jwt_alg_t alg, const std::string& key, const jwt_claims& claims) {
  jwt_t* j = nullptr;
  jwt_new(&j);
  for (const auto& [k, v] : claims.strings) jwt_add_grant(j, k.c_str(), v.c_str());
  for (const auto& [k, v] : claims.numbers) jwt_add_grant_int(j, k.c_str(), v);
  if (claims.json) jwt_add_grants_json(j, claims.json);
  jwt_set_alg(j, alg, reinterpret_cast<const unsigned char*>(key.data()), static_cast<int>(key.size()));
  char* token = jwt_encode_str(j);
  jwt_free(j);
  if (!token) throw std::runtime_error("libjwt refused to sign a token");
  std::string t(token);
  std::free(token);
  return t;
}

}  // namespace crm_test
