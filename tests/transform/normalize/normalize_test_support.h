// What the normalizer tests share: one record through a fresh normalizer, canonical records with a few
// extra fields, UUIDv5 names, glob matching of reasons.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "transform/normalize/normalize.h"
#include "transform/normalize/uuid_v5.h"

namespace crm::transform::test_support {

using namespace std::string_literals;

inline constexpr timestamp_us received = 1717200000LL * 1000000;      // 2024-06-01T00:00:00Z
inline constexpr timestamp_us may_first_10h = 1714557600LL * 1000000;  // 2024-05-01T10:00:00Z

struct result {
  normalize_outcome outcome = normalize_outcome::rejected;
  event_batch batch;

  std::string reason() const { return batch.rejections.empty() ? "(accepted)" : std::string(batch.rejections[0].reason); }
  const communication& comm() const { return batch.communications.at(0); }
  const touchpoint& touch() const { return batch.touchpoints.at(0); }
};

inline result run(std::string_view json, const normalize_options& options = {}) {
  normalizer n(options);
  result r;
  r.outcome = n.normalize(json, {"test.ndjson", 7}, received, r.batch);
  EXPECT_EQ(r.batch.record_count(), 1u) << "exactly one record per call";
  return r;
}

// One provider-style field set through a fresh normalizer (normalizer::append), as an adapter hands it over.
template <typename Fields>
result append(const Fields& f, const normalize_options& options = {}) {
  normalizer n(options);
  result r;
  r.outcome = n.append(f, "raw", {"provider", 0}, received, r.batch);
  EXPECT_EQ(r.batch.record_count(), 1u) << "exactly one record per call";
  return r;
}

// A page view of an anonymous visitor at may_first_10h: the smallest valid touchpoint field set.
inline touchpoint_fields page_view() {
  touchpoint_fields f;
  f.occurred_at = may_first_10h;
  f.type = touch_type::page_view;
  f.anonymous_id = "a1";
  return f;
}

inline std::string comm(std::string_view extra) {
  return R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","channel":"email","status":"delivered")"s +
         std::string(extra) + "}";
}

inline std::string touch(std::string_view extra) {
  return R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"page_view","anonymous_id":"a1")"s +
         std::string(extra) + "}";
}

inline uuid v5(std::string_view name) {
  detail::uuid_v5_generator gen;
  return gen.generate(detail::event_id_namespace, name);
}

// Glob match with '*' as the only wildcard.
inline bool glob_match(std::string_view pattern, std::string_view text) {
  const std::size_t star = pattern.find('*');
  if (star == std::string_view::npos) return pattern == text;
  if (text.substr(0, star) != pattern.substr(0, star)) return false;
  const std::string_view rest = pattern.substr(star + 1);
  for (std::size_t i = star; i <= text.size(); ++i) {
    if (glob_match(rest, text.substr(i))) return true;
  }
  return false;
}

}  // namespace crm::transform::test_support
