// recent_keys (sinks/postgres/direct_copy.h): the writer's hint of the keys it sent lately, which decides which
// rows are probed before a direct COPY. A key it forgets costs a COPY that meets a stored row (rolled back, the
// part probed whole, then every part probed first for a while), so it must keep what it was given for long.
#include "sinks/postgres/direct_copy.h"

#include <cstdint>
#include <cstring>
#include <random>

#include <gtest/gtest.h>

namespace pg = crm::sinks::postgres;

namespace {

pg::row_key key(std::mt19937_64& rng) {
  pg::row_key k;
  const std::uint64_t a = rng(), b = rng();
  std::memcpy(k.id.data(), &a, 8);
  std::memcpy(k.id.data() + 8, &b, 8);
  k.at = static_cast<std::int64_t>(rng() % (400LL * 86400 * 1000000));
  return k;
}

// Keys sent 300,000 keys ago are still known: a table of one slot per fingerprint (as before) forgot each of
// them with the odds that a later key fell into its slot (about half of them here).
TEST(RecentKeys, RemembersKeysSentHundredsOfThousandsOfKeysAgo) {
  std::mt19937_64 rng(7);
  pg::recent_keys recent;
  std::vector<pg::row_key> early;
  for (int i = 0; i < 2000; ++i) {
    early.push_back(key(rng));
    recent.add(early.back());
  }
  for (int i = 0; i < 300000; ++i) recent.add(key(rng));
  int forgotten = 0;
  for (const auto& k : early) forgotten += recent.seen(k) ? 0 : 1;
  EXPECT_EQ(forgotten, 0) << "of 2,000 keys";
}

// It is a hint of recent keys, not a set that grows: after many more keys than it holds, the oldest are gone,
// the newest are known, and keys never sent are not.
TEST(RecentKeys, ForgetsTheOldestAndNamesNoKeyNeverSent) {
  std::mt19937_64 rng(11);
  pg::recent_keys recent;
  std::vector<pg::row_key> first, last;
  for (int i = 0; i < 1000; ++i) {
    first.push_back(key(rng));
    recent.add(first.back());
  }
  for (int i = 0; i < 3000000; ++i) recent.add(key(rng));
  for (int i = 0; i < 1000; ++i) {
    last.push_back(key(rng));
    recent.add(last.back());
  }
  int first_known = 0, last_known = 0, never_known = 0;
  for (const auto& k : first) first_known += recent.seen(k) ? 1 : 0;
  for (const auto& k : last) last_known += recent.seen(k) ? 1 : 0;
  for (int i = 0; i < 100000; ++i) never_known += recent.seen(key(rng)) ? 1 : 0;
  EXPECT_EQ(first_known, 0);
  EXPECT_EQ(last_known, 1000);
  EXPECT_EQ(never_known, 0);
}

}  // namespace
