#include "transform/normalize/uuid_v5.h"

#include <gtest/gtest.h>

namespace crm::transform::detail {
namespace {

// RFC 4122 / RFC 9562's published example: UUIDv5 of "www.example.com" in the DNS namespace.
TEST(UuidV5, KnownAnswer) {
  uuid_v5_generator gen;
  EXPECT_EQ(to_string(gen.generate(dns_namespace, "www.example.com")), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

TEST(UuidV5, NamespaceConstantIsTheDocumentedOne) {
  EXPECT_EQ(to_string(event_id_namespace), "c2c30948-2183-4a11-a981-f86308f885c3");
  EXPECT_EQ(to_string(dns_namespace), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
}

TEST(UuidV5, DeterministicAndVersioned) {
  uuid_v5_generator gen;
  const uuid a = gen.generate(event_id_namespace, "communication\x1fsendgrid\x1f" "abc");
  const uuid b = gen.generate(event_id_namespace, "communication\x1fsendgrid\x1f" "abc");
  const uuid c = gen.generate(event_id_namespace, "communication\x1fsendgrid\x1f" "abd");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a[6] >> 4, 5);          // version 5
  EXPECT_EQ(a[8] & 0xc0, 0x80);     // RFC variant
  uuid_v5_generator other;          // a second context gives the same answer
  EXPECT_EQ(other.generate(event_id_namespace, "communication\x1fsendgrid\x1f" "abc"), a);
}

}  // namespace
}  // namespace crm::transform::detail
