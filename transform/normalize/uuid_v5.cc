#include "transform/normalize/uuid_v5.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace crm::transform::detail {

uuid_v5_generator::uuid_v5_generator()
    // An explicitly fetched digest skips OpenSSL 3's per-call implicit fetch.
    : sha1_(EVP_MD_fetch(nullptr, "SHA1", nullptr)), ctx_(EVP_MD_CTX_new()) {
  if (sha1_ == nullptr || ctx_ == nullptr) {
    EVP_MD_free(sha1_);
    EVP_MD_CTX_free(ctx_);
    throw std::runtime_error("OpenSSL provides no SHA-1 digest: UUIDv5 event ids cannot be derived");
  }
}

uuid_v5_generator::~uuid_v5_generator() {
  EVP_MD_CTX_free(ctx_);
  EVP_MD_free(sha1_);
}

uuid uuid_v5_generator::generate(const uuid& name_space, std::string_view name) noexcept {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  // With a fetched SHA-1 and an allocated context these calls cannot fail short of memory corruption.
  EVP_DigestInit_ex(ctx_, sha1_, nullptr);
  EVP_DigestUpdate(ctx_, name_space.data(), name_space.size());
  EVP_DigestUpdate(ctx_, name.data(), name.size());
  EVP_DigestFinal_ex(ctx_, digest, &digest_len);
  uuid id;
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = digest[i];
  id[6] = static_cast<std::uint8_t>((id[6] & 0x0f) | 0x50);  // version 5
  id[8] = static_cast<std::uint8_t>((id[8] & 0x3f) | 0x80);  // RFC 4122/9562 variant
  return id;
}

}  // namespace crm::transform::detail
