// The standard provider (canonical events under Standard Webhooks) and a source's declared idempotency key
// (webhook_input::idempotency_key) in the provider adapters.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "transform/providers/providers.h"

namespace tp = crm::transform::providers;
using crm::transform::event_batch;
using crm::transform::normalizer;

namespace {

constexpr crm::transform::timestamp_us received = 1'795'000'000'000'000;

struct result {
  bool ok = false;
  std::string error;
  event_batch batch;
};

result run(tp::provider_fn fn, std::string_view body, std::string_view key) {
  static normalizer norm;
  result r;
  const tp::webhook_input in{body, "application/json", "", "POST /v1/webhooks/standard", received, key};
  r.ok = fn(norm, in, r.batch, r.error);
  return r;
}

using keys = std::vector<std::string>;

// The provider_event_id of each communication, in order.
keys event_keys(const result& r) {
  keys out;
  for (const auto& c : r.batch.communications) out.emplace_back(c.provider_event_id);
  return out;
}

std::string comm(const std::string& extra) {
  return R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent",)"
         R"("email":"a@b.co")" + extra + "}";
}

TEST(Standard, ASingleObjectTakesTheWebhookIdAsItsKey) {
  auto r = run(tp::normalize_standard, comm(R"(,"provider_message_id":"m-1")"), "msg_1");
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(event_keys(r), keys{"msg_1"});
  EXPECT_EQ(r.batch.communications[0].provider_message_id, "m-1");
}

TEST(Standard, AnArraysElementsAreIndexedAndOwnIdsWin) {
  const std::string body = "[" + comm("") + "," + comm(R"(,"provider_event_id":"own")") + "," +
                           R"({"kind":"touchpoint","occurred_at":"2026-11-02T09:00:00Z","touch_type":"page_view","anonymous_id":"a1"},)" +
                           R"({"kind":"communication","status":"nope"}])";
  auto r = run(tp::normalize_standard, body, "msg_2");
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(event_keys(r), (keys{"msg_2:0", "own"}));
  ASSERT_EQ(r.batch.touchpoints.size(), 1u) << (r.batch.rejections.empty() ? "" : std::string(r.batch.rejections[0].reason));
  EXPECT_EQ(r.batch.touchpoints[0].message_id, "msg_2:2");
  ASSERT_EQ(r.batch.rejections.size(), 1u);
  EXPECT_EQ(r.batch.rejections[0].source, "POST /v1/webhooks/standard:3");
  // The same body and key again derive the same ids; another key other ids.
  auto again = run(tp::normalize_standard, body, "msg_2");
  EXPECT_EQ(again.batch.communications[0].event_id, r.batch.communications[0].event_id);
  auto other = run(tp::normalize_standard, body, "msg_3");
  EXPECT_NE(other.batch.communications[0].event_id, r.batch.communications[0].event_id);
  EXPECT_EQ(other.batch.communications[1].event_id, r.batch.communications[1].event_id);  // its own id
}

TEST(Standard, WithoutAKeyRecordsKeepTheCanonicalDerivation) {
  auto keyed = run(tp::normalize_standard, comm(""), "k");
  auto plain = run(tp::normalize_standard, comm(""), "");
  ASSERT_TRUE(plain.ok);
  EXPECT_EQ(plain.batch.communications[0].provider_event_id, "");
  EXPECT_NE(plain.batch.communications[0].event_id, keyed.batch.communications[0].event_id);
  auto empty = run(tp::normalize_standard, "  ", "k");
  EXPECT_FALSE(empty.ok);
  EXPECT_NE(empty.error.find("not a canonical event body"), std::string::npos) << empty.error;
}

TEST(DeclaredKey, ReplacesTheProvidersEventIdIndexedInArrays) {
  const std::string segment = R"({"type":"track","event":"Email Delivered","messageId":"seg-1",)"
                              R"("context":{"traits":{"email":"a@b.co"}},"properties":{"email_id":"e1"}})";
  auto r = run(tp::normalize_segment, segment, "evt-9");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(event_keys(r), keys{"evt-9"});
  const std::string sendgrid = R"([{"email":"a@b.co","timestamp":1513299569,"event":"delivered","sg_event_id":"s1",)"
                               R"("sg_message_id":"m1"},{"email":"a@b.co","timestamp":1513299569,"event":"open",)"
                               R"("sg_event_id":"s2","sg_message_id":"m1"}])";
  auto s = run(tp::normalize_sendgrid, sendgrid, "batch-7");
  ASSERT_TRUE(s.ok) << s.error;
  EXPECT_EQ(event_keys(s), (keys{"batch-7:0", "batch-7:1"}));
  EXPECT_EQ(event_keys(run(tp::normalize_sendgrid, sendgrid, "")), (keys{"s1", "s2"}));
}

}  // namespace
