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

}  // namespace crm_test
