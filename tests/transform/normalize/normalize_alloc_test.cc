// The hot path allocates nothing per event once warm: strings go into the batch arena, scratch buffers and
// the simdjson parser are reused. Counted with a replaced global operator new (this binary only; every non-aligned
// form is replaced: tests/transform/allocation_counter.h).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "transform/normalize/normalize.h"
#include "transform/normalize/record_splitter.h"
#include "tests/transform/allocation_counter.h"

using crm_test::allocations;
using crm_test::counting;

namespace crm::transform {
namespace {

TEST(HotPath, NoAllocationPerEventOnceWarm) {
  const std::string records =
      R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00.123Z","channel":"email","status":"delivered","provider":"sendgrid","provider_message_id":"m-1","email":" User@Example.com ","lead_id":42,"campaign_id":7,"metadata":{"ip":"203.0.113.7","categories":["a","b"],"n":1.5},"extra":{"x":[true,null]}})"
      "\n"
      R"({"kind":"communication","occurred_at":1714557600,"channel":"sms","status":"sent","phone":"(415) 555-2671","error_code":30003})"
      "\n"
      R"({"kind":"touchpoint","occurred_at":1714557600123,"touch_type":"conversion","anonymous_id":"anon-1","landing_url":"https://shop.example.com/p?utm_source=google&utm_medium=cpc&utm_campaign=spring+sale&gclid=abc%20d","referrer":"https://www.google.com/","conversion_value":19.99,"metadata":{"page":"p"}})"
      "\n";
  normalizer n;
  event_batch batch;
  batch.communications.reserve(512);
  batch.touchpoints.reserve(512);
  record_splitter splitter;
  const timestamp_us received = 1717200000LL * 1000000;
  auto on_record = [&](const split_record& r) {
    ASSERT_EQ(n.normalize(r.text, {"alloc", r.line}, received, batch) == normalize_outcome::rejected, false);
  };
  // Warm up with the same volume: buffers, caches and the batch's arena grow to what the run needs.
  for (int i = 0; i < 100; ++i) splitter.feed(records, on_record);
  batch.clear();

  counting = true;
  for (int i = 0; i < 100; ++i) splitter.feed(records, on_record);
  counting = false;
  EXPECT_EQ(allocations.load(), 0);
  EXPECT_EQ(batch.record_count(), 300u);
}

}  // namespace
}  // namespace crm::transform
