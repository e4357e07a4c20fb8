// Name-based UUIDs (version 5, SHA-1; RFC 9562 section 5.5) for deterministic event ids: the same input
// always yields the same id, so a replayed event is a no-op downstream.
// Thread ownership: one generator per normalizer (it reuses one EVP_MD_CTX).
#pragma once

#include <string_view>

#include "transform/canonical/canonical_event.h"

struct evp_md_st;
struct evp_md_ctx_st;

namespace crm::transform::detail {

// Namespace of the ids this pipeline derives (communication event_id, touchpoint_id).
inline constexpr uuid event_id_namespace = {0xc2, 0xc3, 0x09, 0x48, 0x21, 0x83, 0x4a, 0x11,
                                            0xa9, 0x81, 0xf8, 0x63, 0x08, 0xf8, 0x85, 0xc3};
// RFC 9562 appendix A / RFC 4122 appendix C: the DNS namespace (used by the known-answer test).
inline constexpr uuid dns_namespace = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                       0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};

class uuid_v5_generator {
 public:
  // Throws std::runtime_error when OpenSSL has no SHA-1 (a broken environment, found at start-up).
  uuid_v5_generator();
  ~uuid_v5_generator();
  uuid_v5_generator(const uuid_v5_generator&) = delete;
  uuid_v5_generator& operator=(const uuid_v5_generator&) = delete;

  uuid generate(const uuid& name_space, std::string_view name) noexcept;

 private:
  evp_md_st* sha1_;
  evp_md_ctx_st* ctx_;
};

}  // namespace crm::transform::detail
