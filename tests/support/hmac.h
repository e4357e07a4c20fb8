// HMAC signatures as a provider computes them, for the tests that post signed webhooks.
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdio>
#include <string>
#include <string_view>

namespace crm_test {

// Lower-case hex HMAC of `data` under `key` (`md`: EVP_sha1(), EVP_sha256(), ...).
inline std::string hmac_hex(const EVP_MD* md, std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       mac, &len);
  std::string out(2 * len, '\0');
  for (unsigned i = 0; i < len; ++i) std::snprintf(&out[2 * i], 3, "%02x", mac[i]);
  return out;
}

// Standard base64 (padded) of `data`.
inline std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// Base64 of the raw HMAC of `data` under `key` (Svix / Standard Webhooks v1 signatures).
inline std::string hmac_base64(const EVP_MD* md, std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       mac, &len);
  return base64(std::string_view(reinterpret_cast<const char*>(mac), len));
}

}  // namespace crm_test
