// Provider webhook normalizers, table-driven over every payload in tests/fixtures/webhooks/: each
// fixture's expected canonical records were written from reading the fixture (and the provider's
// documented status mapping), field by field. Then: ids are stable across runs, malformed bodies are
// refused with the byte offset, a bad event among good ones is a rejection with its index, and the hot
// path allocates nothing per event once warm (a replaced operator new: this binary only).
#include "transform/providers/providers.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "transform/text/timestamp.h"
#include "transform/normalize/uuid_v5.h"

#include "tests/transform/providers/providers_test_support.h"
#include "tests/transform/test_names.h"
#include "tests/transform/allocation_counter.h"

using crm_test::allocations;
using crm_test::counting;

namespace crm::transform::providers {
namespace {

using namespace test_support;
namespace fs = std::filesystem;
using namespace std::string_literals;

class Fixtures : public ::testing::TestWithParam<fixture_case> {};

TEST_P(Fixtures, MapToTheExpectedCanonicalRecords) {
  const fixture_case& c = GetParam();
  const std::string body = fixture(c.file);
  const run_result r = run(c.fn, body, c.content_type, c.query);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.batch.communications.size(), c.comms.size());
  ASSERT_EQ(r.batch.touchpoints.size(), c.touches.size());
  ASSERT_EQ(r.batch.rejections.size(), c.rejects.size());
  for (std::size_t i = 0; i < c.comms.size(); ++i) {
    SCOPED_TRACE("communication " + std::to_string(i));
    check(c.comms[i], r.batch.communications[i], c.provider);
  }
  for (std::size_t i = 0; i < c.touches.size(); ++i) {
    SCOPED_TRACE("touchpoint " + std::to_string(i));
    check(c.touches[i], r.batch.touchpoints[i]);
  }
  for (std::size_t i = 0; i < c.rejects.size(); ++i) {
    const rejection& rej = r.batch.rejections[i];
    EXPECT_EQ(rej.source, c.rejects[i].source);
    EXPECT_EQ(rej.reason, c.rejects[i].reason);
    EXPECT_EQ(rej.received_at, received);
    EXPECT_EQ(rej.raw.substr(0, c.rejects[i].raw_starts.size()), c.rejects[i].raw_starts);
  }
}

TEST_P(Fixtures, GiveTheSameIdsWhenRunAgain) {
  const fixture_case& c = GetParam();
  const std::string body = fixture(c.file);
  normalizer other;
  const run_result a = run(c.fn, body, c.content_type, c.query);
  const run_result b = run(c.fn, body, c.content_type, c.query, &other);  // a fresh normalizer, too
  const run_result again = run(c.fn, body, c.content_type, c.query);
  ASSERT_EQ(a.batch.communications.size(), b.batch.communications.size());
  ASSERT_EQ(a.batch.touchpoints.size(), b.batch.touchpoints.size());
  for (std::size_t i = 0; i < a.batch.communications.size(); ++i) {
    EXPECT_EQ(a.batch.communications[i].event_id, b.batch.communications[i].event_id);
    EXPECT_EQ(a.batch.communications[i].event_id, again.batch.communications[i].event_id);
    EXPECT_EQ(a.batch.communications[i].occurred_at, b.batch.communications[i].occurred_at);
  }
  for (std::size_t i = 0; i < a.batch.touchpoints.size(); ++i) {
    EXPECT_EQ(a.batch.touchpoints[i].touchpoint_id, b.batch.touchpoints[i].touchpoint_id);
    EXPECT_EQ(a.batch.touchpoints[i].touchpoint_id, again.batch.touchpoints[i].touchpoint_id);
  }
}

INSTANTIATE_TEST_SUITE_P(Webhooks, Fixtures, ::testing::ValuesIn(fixture_cases()),
                         [](const ::testing::TestParamInfo<fixture_case>& info) {
                           return transform::test_support::test_name(info.param.file +
                                                                     (info.param.query.empty() ? "" : "_query"));
                         });

TEST(Fixtures, EveryFixtureFileHasACase) {
  std::set<std::string> covered;
  for (const fixture_case& c : fixture_cases()) covered.insert(c.file);
  const fs::path root = fs::path(CRM_FIXTURES_DIR) / "webhooks";
  std::size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file() || entry.path().filename() == "README.md") continue;
    ++files;
    EXPECT_TRUE(covered.count(fs::relative(entry.path(), root).generic_string())) << entry.path();
  }
  EXPECT_EQ(files, covered.size());
}

// The derived fixtures carry "L-1001"/"C-42", which are not integer ids: with integer ids the same payloads
// map completely.
// The fixture with its lead "L-1001" and campaign "C-42" (written between `quote`s) made 1001 and 42.
std::string with_integer_crm_ids(const std::string& file, const std::string& quote) {
  return replace_all(replace_all(fixture(file), quote + "L-1001" + quote, quote + "1001" + quote),
                     quote + "C-42" + quote, quote + "42" + quote);
}

void expect_one_with_integer_crm_ids(const run_result& r) {
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.batch.communications.size(), 1u) << (r.batch.rejections.empty() ? "" : r.batch.rejections[0].reason);
  const communication& c = r.batch.communications[0];
  EXPECT_EQ(c.lead_id, 1001);
  EXPECT_EQ(c.campaign_id, 42);
  EXPECT_EQ(c.variant, "B");
}

TEST(Fixtures, DerivedFixturesWithIntegerCrmIdsCarryThemThrough) {
  {
    // user-variables is a JSON object: the ids are JSON strings.
    const run_result r =
        run(normalize_mailgun, with_integer_crm_ids("mailgun/delivered-with-user-variables.derived.json", "\""));
    ASSERT_NO_FATAL_FAILURE(expect_one_with_integer_crm_ids(r));
    const communication& c = r.batch.communications[0];
    EXPECT_EQ(to_string(c.status), "delivered");
    EXPECT_NE(c.metadata.find(R"("tags":["campaign-C-42","variant-B"])"), std::string_view::npos) << c.metadata;
    EXPECT_NE(c.metadata.find(R"("user-variables":{"lead_id":"1001","campaign_id":"42","variant":"B"})"),
              std::string_view::npos)
        << c.metadata;
    EXPECT_EQ(c.metadata.find("signature"), std::string_view::npos) << "the signature is not event data";
  }
  {
    // biz_opaque_callback_data is a string holding lead_id=L-1001&...: the ids are bare.
    const run_result r =
        run(normalize_whatsapp, with_integer_crm_ids("whatsapp/status-sent-with-biz-opaque-callback-data.derived.json", ""));
    ASSERT_NO_FATAL_FAILURE(expect_one_with_integer_crm_ids(r));
    const communication& c = r.batch.communications[0];
    EXPECT_EQ(to_string(c.status), "sent");
    EXPECT_EQ(c.provider_event_id, wamid_sent + ":sent");
  }
  {
    const std::string body =
        replace_all(fixture("segment/track-utm-fbclid-form-submitted.derived.json"), "\"L-1001\"", "\"1001\"");
    const run_result r = run(normalize_segment, body);
    ASSERT_TRUE(r.ok) << r.error;
    ASSERT_EQ(r.batch.touchpoints.size(), 1u) << (r.batch.rejections.empty() ? "" : r.batch.rejections[0].reason);
    touch_expect t;
    t.type = "form_submit";  // "Form Submitted", form_id
    t.group = "Paid Social";  // facebook / paid_social
    t.occurred = "2024-05-01T10:05:01.050000Z";
    t.anonymous_id = "507f191e810c19729de860ea";
    t.message_id = "ajs-next-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d";
    t.lead_id = 1001;
    t.utm_source = "facebook";
    t.utm_medium = "paid_social";
    t.utm_campaign = "retargeting_q2";
    t.utm_content = "ad_set_7";
    t.fbclid = "IwAR2F4-example_fbclid";  // from context.page.url
    t.landing_url =
        "https://www.example.com/demo?utm_source=facebook&utm_medium=paid_social&utm_campaign=retargeting_q2&"
        "utm_content=ad_set_7&fbclid=IwAR2F4-example_fbclid";
    t.metadata_has = {R"("form_id":"demo-request")"};
    check(t, r.batch.touchpoints[0]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Malformed bodies and bodies of the wrong shape: false, nothing appended, the error says where.

struct refusal_case {
  refusal_case(const char* name_, provider_fn fn_, std::string body_, std::string error_,
               std::string content_type_ = json_ct)
      : name(name_), fn(fn_), body(std::move(body_)), error(std::move(error_)), content_type(std::move(content_type_)) {}

  const char* name;
  provider_fn fn;
  std::string body;
  std::string error;  // exact
  std::string content_type;
};

void PrintTo(const refusal_case& c, std::ostream* os) { *os << c.name; }

class Refusals : public ::testing::TestWithParam<refusal_case> {};

TEST_P(Refusals, ReturnFalseWithTheReasonAndAppendNothing) {
  const refusal_case& c = GetParam();
  normalizer norm;
  event_batch batch;
  std::string error;
  // A record already in the batch stays; nothing of the refused body is added.
  batch.rejections.push_back({});
  const bool ok = c.fn(norm, {c.body, c.content_type, "", src, received, {}}, batch, error);
  EXPECT_FALSE(ok);
  EXPECT_EQ(error, c.error);
  EXPECT_EQ(batch.communications.size() + batch.touchpoints.size(), 0u);
  EXPECT_EQ(batch.rejections.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, Refusals,
    ::testing::Values(
        refusal_case{"sendgrid object", normalize_sendgrid, R"({"event":"open"})",
                     "not a SendGrid event array: expected a JSON array, got object"},
        refusal_case{"sendgrid bad literal after good events", normalize_sendgrid,
                     R"([{"event":"open","timestamp":1513299569,"email":"a@b.co"},{"event":"open","x":tru}])",
                     "malformed JSON at byte 78: Problem while parsing an atom starting with the letter 't'"},
        refusal_case{"sendgrid truncated", normalize_sendgrid, R"([{"event":"open","timestamp":1513299569})",
                     "malformed JSON at byte 40: an object or array is not closed (truncated body?)"},
        refusal_case{"sendgrid trailing content", normalize_sendgrid, "[] []",
                     "malformed JSON at byte 3: unexpected content after the JSON value"},
        refusal_case{"sendgrid unclosed string", normalize_sendgrid, "[{\"event\":\"open}]",
                     "malformed JSON at byte 10: a string is opened but never closed"},
        refusal_case{"sendgrid invalid utf-8", normalize_sendgrid, "[{\"email\":\"\xff\"}]", "invalid UTF-8 at byte 11"},
        refusal_case{"sendgrid empty", normalize_sendgrid, "", "malformed JSON: empty body"},
        refusal_case{"twilio json body", normalize_twilio, R"({"MessageSid":"SM1"})",
                     "not a Twilio messaging webhook: the body must be application/x-www-form-urlencoded, got "
                     "\"application/json\""},
        refusal_case{"twilio without MessageSid", normalize_twilio, "MessageStatus=sent&To=%2B14155552671",
                     "not a Twilio messaging webhook: no MessageSid (or SmsSid) parameter", form_ct},
        refusal_case{"whatsapp not whatsapp", normalize_whatsapp, R"({"object":"page","entry":[]})",
                     "not a WhatsApp Business webhook: \"object\" is \"page\", not \"whatsapp_business_account\""},
        refusal_case{"whatsapp no entry", normalize_whatsapp, R"({"object":"whatsapp_business_account"})",
                     "not a WhatsApp Business webhook: no \"entry\" array"},
        refusal_case{"whatsapp statuses not an array", normalize_whatsapp,
                     R"({"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":{}}}]}]})",
                     "not a WhatsApp Business webhook: statuses: expected an array, got object"},
        refusal_case{"whatsapp malformed inside a status", normalize_whatsapp,
                     R"({"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"w","status":"sent","timestamp":"1750030073","x":[1,2,}]}}]}]})",
                     "malformed JSON at byte 141: The JSON document has an improper structure: missing or superfluous commas, braces, missing keys, etc."},
        refusal_case{"mailgun array", normalize_mailgun, "[]", "not a Mailgun webhook: expected a JSON object, got array"},
        refusal_case{"mailgun no event-data", normalize_mailgun, R"({"signature":{}})",
                     "not a Mailgun webhook: no \"event-data\" object"},
        refusal_case{"mailgun form body", normalize_mailgun, "event=delivered&recipient=a%40b.co",
                     "malformed JSON at byte 0: The JSON document has an improper structure: missing or superfluous "
                     "commas, braces, missing keys, etc."},
        refusal_case{"postmark no RecordType", normalize_postmark, R"({"MessageID":"m"})",
                     "not a Postmark webhook: no \"RecordType\""},
        refusal_case{"resend no type", normalize_resend, R"({"data":{}})", "not a Resend webhook: no \"type\""},
        refusal_case{"resend data not an object", normalize_resend, R"({"type":"email.sent","data":[]})",
                     "not a Resend webhook: \"data\" is array, not an object"},
        refusal_case{"segment no type", normalize_segment, R"({"event":"Signed Up"})",
                     "not a Segment event: no \"type\""},
        refusal_case{"segment bad number", normalize_segment, R"({"type":"track","properties":{"revenue":1.}})",
                     "malformed JSON at byte 40: Problem while parsing a number"}),
    [](const ::testing::TestParamInfo<refusal_case>& info) { return transform::test_support::test_name(info.param.name); });

// ---------------------------------------------------------------------------------------------------------
// Bad events among good ones: each becomes a rejection naming its index, with its own raw text.

TEST(BadEvents, SendGridBatchKeepsTheGoodEventsAndRejectsEachBadOneWithItsIndex) {
  const std::string good0 = R"({"email":"A@Example.com","timestamp":1513299569,"event":"delivered","sg_event_id":"e0","sg_message_id":"m"})";
  const std::string bad1 = R"({"email":"a@example.com","timestamp":1513299569,"event":"deliverd","sg_event_id":"e1"})";
  const std::string good2 = R"({"email":"a@example.com","timestamp":1513299569,"event":"open","sg_event_id":"e2","lead_id":"42","campaign_id":7,"ab_test_id":"t1","variant":"B"})";
  const std::string bad3 = R"({"email":"a@example.com","timestamp":1513299569,"event":"open","sg_event_id":"e3","lead_id":"-42"})";
  const std::string bad4 = "5";
  const std::string bad5 = R"({"email":"a@example.com","event":"open","sg_event_id":"e5"})";
  const std::string bad6 = R"({"email":"not-an-address","timestamp":1513299569,"event":"open","sg_event_id":"e6"})";
  const std::string bad7 = R"({"email":"a@example.com","timestamp":1513299569,"event":"open","campaign_id":"0"})";
  const std::string bad8 = R"({"email":"a@example.com","timestamp":1513299569,"event":"open","lead_id":9223372036854775808})";
  const std::string bad9 = R"({"email":"a@example.com","timestamp":1513299569,"event":"open","k\u0000":1})";
  const std::string bad10 = R"({"email":"a@example.com","timestamp":32503680000,"event":"open"})";
  const std::string body = "[\n  " + good0 + ",\n  " + bad1 + ",\n  " + good2 + ",  " + bad3 + ",\n  " + bad4 + ", " +
                           bad5 + "," + bad6 + "," + bad7 + "," + bad8 + "," + bad9 + "," + bad10 + "\n]";
  const run_result r = run(normalize_sendgrid, body);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.batch.communications.size(), 2u);
  EXPECT_EQ(r.batch.communications[0].provider_event_id, "e0");
  EXPECT_EQ(r.batch.communications[0].email, "a@example.com");
  const communication& c = r.batch.communications[1];
  EXPECT_EQ(c.provider_event_id, "e2");
  EXPECT_EQ(c.lead_id, 42);  // a numeric string is accepted
  EXPECT_EQ(c.campaign_id, 7);
  EXPECT_EQ(c.ab_test_id, "t1");
  EXPECT_EQ(c.variant, "B");
  EXPECT_TRUE(c.metadata.empty()) << c.metadata;  // custom args that became columns are not repeated

  const std::vector<std::tuple<std::string, std::string, std::string>> want = {
      {"POST /v1/webhooks/test:1",
       R"(event: "deliverd" is not one of processed|deferred|delivered|open|click|bounce|dropped|spamreport|unsubscribe|group_unsubscribe|group_resubscribe)",
       bad1},
      {"POST /v1/webhooks/test:3", R"(lead_id: "-42" is not an integer >= 1)", bad3},
      {"POST /v1/webhooks/test:4", "event: expected an object, got number", bad4},
      {"POST /v1/webhooks/test:5", "timestamp: missing (required)", bad5},
      {"POST /v1/webhooks/test:6", R"(email: "not-an-address" must contain exactly one '@')", bad6},
      {"POST /v1/webhooks/test:7", R"(campaign_id: "0" is not an integer >= 1)", bad7},
      {"POST /v1/webhooks/test:8", "lead_id: 9223372036854775808 (custom_args) is not an integer >= 1", bad8},
      {"POST /v1/webhooks/test:9", "field name: contains \\u0000, which PostgreSQL does not accept", bad9},
      {"POST /v1/webhooks/test:10",
       "occurred_at: 3000-01-01T00:00:00Z is outside the accepted range [2000-01-01T00:00:00Z, "
       "2027-11-19T11:06:40Z] (min_occurred_at, received_at + max_future)",
       bad10},
  };
  ASSERT_EQ(r.batch.rejections.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(r.batch.rejections[i].source, std::get<0>(want[i]));
    EXPECT_EQ(r.batch.rejections[i].reason, std::get<1>(want[i]));
    EXPECT_EQ(r.batch.rejections[i].raw, std::get<2>(want[i]));  // the element exactly, not the body
  }
}

TEST(BadEvents, ABrokenRuleDeepInsideAValueRejectsOnlyItsEvent) {
  // The walk abandons the offending value half-way and goes on with the next member and the next event.
  const std::string deep = R"({"email":"a@b.co","timestamp":1513299569,"event":"open","sg_event_id":"d1","deep":)" +
                           std::string(40, '[') + std::string(40, ']') + R"(,"after":1})";
  const std::string nul = R"({"email":"a@b.co","timestamp":1513299569,"event":"open","nested":{"a":["x\u0000y"],"b":2}})";
  const std::string big = R"({"email":"a@b.co","timestamp":1513299569,"event":"open","big":1e2000,"c":{"d":1}})";
  const std::string good = R"({"email":"c@d.co","timestamp":1513299569,"event":"click","url":"https://x.example","m":{"k":[1,{"z":null}]}})";
  const run_result r = run(normalize_sendgrid, "[" + deep + "," + nul + "," + big + "," + good + "]");
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.batch.rejections.size(), 3u);
  EXPECT_EQ(r.batch.rejections[0].reason, "deep: nested deeper than 32 levels");
  EXPECT_EQ(r.batch.rejections[0].raw, deep);
  EXPECT_EQ(r.batch.rejections[1].reason, "nested: contains \\u0000, which PostgreSQL does not accept");
  EXPECT_EQ(r.batch.rejections[1].raw, nul);
  EXPECT_EQ(r.batch.rejections[2].reason, "big: contains a number out of PostgreSQL's numeric range");
  EXPECT_EQ(r.batch.rejections[2].raw, big);
  EXPECT_EQ(r.batch.rejections[2].source, "POST /v1/webhooks/test:2");
  ASSERT_EQ(r.batch.communications.size(), 1u);
  EXPECT_EQ(r.batch.communications[0].metadata, R"({"m":{"k":[1,{"z":null}]}})");
}

TEST(BadEvents, WhatsAppIndexesEventsAcrossEntriesAndChanges) {
  const std::string body = R"({"object":"whatsapp_business_account","entry":[
    {"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P1"},"statuses":[
      {"id":"w1","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234","biz_opaque_callback_data":"lead_id=7&campaign_id=3&variant=A"},
      {"id":"w2","status":"deleted","timestamp":"1750263773","recipient_id":"16505551234"}]}}]},
    {"id":"2","changes":[{"value":{"statuses":[
      {"id":"w3","status":"read","timestamp":"1750263901","recipient_id":"16505551234","biz_opaque_callback_data":"{\"lead_id\":8,\"ab_test_id\":\"t\"}"},
      {"id":"w4","status":"sent","timestamp":"1750263901","recipient_id":"16505551234","biz_opaque_callback_data":"{\"lead_id\":8,"}],
      "metadata":{"phone_number_id":"P2"}}}]}]})";
  const run_result r = run(normalize_whatsapp, body);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.batch.communications.size(), 2u);
  EXPECT_EQ(r.batch.communications[0].provider_event_id, "w1:delivered");
  EXPECT_EQ(r.batch.communications[0].lead_id, 7);
  EXPECT_EQ(r.batch.communications[0].campaign_id, 3);
  EXPECT_EQ(r.batch.communications[0].variant, "A");
  EXPECT_NE(r.batch.communications[0].metadata.find(R"("phone_number_id":"P1")"), std::string_view::npos);
  EXPECT_EQ(r.batch.communications[1].provider_event_id, "w3:read");
  EXPECT_EQ(r.batch.communications[1].lead_id, 8);
  EXPECT_EQ(r.batch.communications[1].ab_test_id, "t");
  // The value's metadata came after its statuses: it applies all the same.
  EXPECT_NE(r.batch.communications[1].metadata.find(R"("phone_number_id":"P2")"), std::string_view::npos);
  ASSERT_EQ(r.batch.rejections.size(), 2u);
  EXPECT_EQ(r.batch.rejections[0].source, "POST /v1/webhooks/test:1");
  EXPECT_EQ(r.batch.rejections[0].reason, R"(status: "deleted" is not one of sent|delivered|read|played|failed)");
  EXPECT_EQ(r.batch.rejections[0].raw,
            R"({"id":"w2","status":"deleted","timestamp":"1750263773","recipient_id":"16505551234"})");
  EXPECT_EQ(r.batch.rejections[1].source, "POST /v1/webhooks/test:3");
  EXPECT_EQ(r.batch.rejections[1].reason,
            R"(biz_opaque_callback_data: "{\"lead_id\":8," starts like a JSON object but is not one (expected {"lead_id":...} or lead_id=...&...))");
}

// ---------------------------------------------------------------------------------------------------------
// Mapping rules beyond the fixtures.

TEST(Mapping, PostmarkSoftBounceIsAFailedAttemptAndResubscribeIsResubscribed) {
  const run_result soft = run(normalize_postmark, R"({"RecordType":"Bounce","Type":"SoftBounce","TypeCode":4096,
      "MessageID":"m1","Email":"a@b.co","BouncedAt":"2024-05-01T10:00:00Z","Inactive":false,"Description":"Mailbox full",
      "Metadata":{"lead_id":"12","campaign_id":"5"},"Tag":"variant:B"})");
  ASSERT_EQ(soft.batch.communications.size(), 1u) << soft.error;
  EXPECT_EQ(to_string(soft.batch.communications[0].status), "failed");
  EXPECT_EQ(soft.batch.communications[0].error_code, "SoftBounce");
  EXPECT_EQ(soft.batch.communications[0].error_reason, "Mailbox full");
  EXPECT_EQ(soft.batch.communications[0].lead_id, 12);
  EXPECT_EQ(soft.batch.communications[0].campaign_id, 5);
  EXPECT_EQ(soft.batch.communications[0].variant, "B");
  const run_result back = run(normalize_postmark, R"({"RecordType":"SubscriptionChange","MessageID":"m1",
      "Recipient":"a@b.co","ChangedAt":"2024-05-01T10:00:00Z","SuppressSending":false})");
  ASSERT_EQ(back.batch.communications.size(), 1u);
  EXPECT_EQ(to_string(back.batch.communications[0].status), "resubscribed");
  const run_result unknown = run(normalize_postmark, R"({"RecordType":"Inbound","MessageID":"m1"})");
  ASSERT_EQ(unknown.batch.rejections.size(), 1u);
  EXPECT_EQ(unknown.batch.rejections[0].reason,
            R"(RecordType: "Inbound" is not one of Delivery|Bounce|SpamComplaint|Open|Click|SubscriptionChange)");
}

TEST(Mapping, ResendTagsInBothFormsTransientBouncesAndNonEmailEvents) {
  const run_result array_tags = run(normalize_resend, R"({"type":"email.bounced","created_at":"2024-05-01T10:00:00Z",
      "data":{"email_id":"e1","to":["X@Y.co","z@y.co"],"bounce":{"type":"Transient","subType":"MailboxFull","message":"full"},
      "tags":[{"name":"lead_id","value":"77"},{"name":"variant","value":"C"},{"name":"other","value":1}]}})");
  ASSERT_EQ(array_tags.batch.communications.size(), 1u) << array_tags.error;
  const communication& c = array_tags.batch.communications[0];
  EXPECT_EQ(to_string(c.status), "failed");
  EXPECT_EQ(c.error_code, "MailboxFull");
  EXPECT_EQ(c.email, "x@y.co");
  EXPECT_EQ(c.lead_id, 77);
  EXPECT_EQ(c.variant, "C");
  EXPECT_NE(c.metadata.find(R"("tags":{"lead_id":"77","variant":"C","other":1})"), std::string_view::npos) << c.metadata;
  const run_result contact = run(normalize_resend, R"({"type":"contact.created","created_at":"2024-05-01T10:00:00Z","data":{"id":"c"}})");
  EXPECT_TRUE(contact.ok);
  EXPECT_EQ(contact.batch.record_count(), 0u);
}

TEST(Mapping, SegmentConversionIdentifyAndUnknownType) {
  const run_result order = run(normalize_segment, R"({"type":"track","event":"Order Completed","userId":"u1",
      "messageId":"m-1","timestamp":"2024-05-01T10:00:00Z","properties":{"revenue":"19.90","currency":"eur","lead_id":5},
      "context":{"page":{"url":"https://shop.example.com/thanks","search":""},"campaign":{"source":"newsletter","medium":"email"}}})");
  ASSERT_EQ(order.batch.touchpoints.size(), 1u) << order.error << (order.batch.rejections.empty() ? "" : order.batch.rejections[0].reason);
  const touchpoint& t = order.batch.touchpoints[0];
  EXPECT_EQ(to_string(t.type), "conversion");
  EXPECT_TRUE(t.is_conversion);
  EXPECT_TRUE(t.has_conversion_value);
  EXPECT_DOUBLE_EQ(t.conversion_value, 19.9);
  EXPECT_EQ(t.currency, "EUR");
  EXPECT_EQ(t.conversion_type, "Order Completed");
  EXPECT_EQ(t.lead_id, 5);
  EXPECT_EQ(t.anonymous_id, "u1");  // no anonymousId: the userId
  EXPECT_EQ(to_string(t.group), "Email");
  const run_result search = run(normalize_segment, R"({"type":"page","anonymousId":"a","timestamp":"2024-05-01T10:00:00Z",
      "context":{"page":{"url":"https://x.example.com/p","search":"?utm_source=bing&utm_medium=cpc&msclkid=M%201"}}})");
  ASSERT_EQ(search.batch.touchpoints.size(), 1u);
  EXPECT_EQ(search.batch.touchpoints[0].msclkid, "M 1");  // from context.page.search when the URL has no query
  EXPECT_EQ(search.batch.touchpoints[0].utm_source, "bing");
  EXPECT_EQ(to_string(search.batch.touchpoints[0].group), "Paid Search");
  const run_result identify = run(normalize_segment, R"({"type":"identify","userId":"u1","traits":{"email":"a@b.co"},
      "timestamp":"2024-05-01T10:00:00Z"})");
  EXPECT_TRUE(identify.ok);
  // userId alone: claimed for the lead it names (its track/page calls use it as the visitor key).
  ASSERT_EQ(identify.batch.touchpoints.size(), 1u);
  EXPECT_EQ(identify.batch.touchpoints[0].anonymous_id, "u1");
  EXPECT_EQ(identify.batch.touchpoints[0].lead_ref, "u1");
  const run_result nothing = run(normalize_segment, R"({"type":"identify","anonymousId":"a1","traits":{"email":"a@b.co"}})");
  EXPECT_TRUE(nothing.ok);
  EXPECT_EQ(nothing.batch.record_count(), 0u);  // no lead: nothing to link
  // A touchpoint with no time at all would be stamped with the receive time, its id with it: each retry of the call
  // was stored again (a conversion counted twice). Dead-lettered; an e-mail event keeps its receipt-time rule.
  for (const char* timeless : {R"({"type":"identify","userId":"u1","messageId":"m-2"})",
                               R"({"type":"track","event":"Order Completed","messageId":"m-3","userId":"501",
                                   "properties":{"revenue":42,"lead_id":501}})"}) {
    const run_result r = run(normalize_segment, timeless);
    EXPECT_EQ(r.batch.touchpoints.size(), 0u) << timeless;
    ASSERT_EQ(r.batch.rejections.size(), 1u) << timeless;
    EXPECT_EQ(r.batch.rejections[0].reason, "timestamp: a touchpoint needs its time: none of timestamp, "
                                            "originalTimestamp, receivedAt, sentAt is set");
  }
  const run_result alien = run(normalize_segment, R"({"type":"teleport","anonymousId":"a"})");
  ASSERT_EQ(alien.batch.rejections.size(), 1u);
  EXPECT_EQ(alien.batch.rejections[0].reason, R"(type: "teleport" is not one of track|page|screen|identify|group|alias)");
  EXPECT_EQ(alien.batch.rejections[0].source, "POST /v1/webhooks/test:0");
}

TEST(Mapping, TwilioWhatsAppSendersAndNonNumbers) {
  const run_result wa = run(normalize_twilio,
                            "MessageSid=SMa&MessageStatus=read&From=whatsapp%3A%2B14155238886&To=whatsapp%3A%2B14155552671",
                            form_ct);
  ASSERT_EQ(wa.batch.communications.size(), 1u) << wa.error;
  EXPECT_EQ(to_string(wa.batch.communications[0].channel_), "whatsapp");
  EXPECT_EQ(to_string(wa.batch.communications[0].status), "opened");
  EXPECT_EQ(wa.batch.communications[0].phone, "+14155552671");
  const run_result bad = run(normalize_twilio, "MessageSid=SMb&MessageStatus=delivered&To=12", form_ct);
  ASSERT_EQ(bad.batch.rejections.size(), 1u);
  EXPECT_EQ(bad.batch.rejections[0].reason, R"(phone: "12" is not a valid phone number (default region US))");
  const run_result status = run(normalize_twilio, "MessageSid=SMc&MessageStatus=teleported", form_ct);
  ASSERT_EQ(status.batch.rejections.size(), 1u);
  EXPECT_EQ(status.batch.rejections[0].reason, R"(MessageStatus: "teleported" is not a Twilio message status)");
  // Bytes that are not UTF-8 never reach a column or the metadata undecoded.
  const run_result odd = run(normalize_twilio, "MessageSid=SMd&MessageStatus=sent&Body=%FF%00x&Raw=\xff", form_ct);
  ASSERT_EQ(odd.batch.communications.size(), 1u);
  EXPECT_NE(odd.batch.communications[0].metadata.find(R"("Body":"%FF%00x")"), std::string_view::npos)
      << odd.batch.communications[0].metadata;
  expect_json_object(odd.batch.communications[0].metadata);
}

TEST(Mapping, MailgunTagsCarryIdsWhenUserVariablesDoNot) {
  const run_result r = run(normalize_mailgun, R"({"event-data":{"event":"opened","id":"i1","timestamp":1700000000.5,
      "recipient":"a@b.co","tags":["lead_id:31","variant=C"],"user-variables":{"campaign_id":9,"variant":"D"}}})");
  ASSERT_EQ(r.batch.communications.size(), 1u) << r.error;
  EXPECT_EQ(r.batch.communications[0].lead_id, 31);
  EXPECT_EQ(r.batch.communications[0].campaign_id, 9);
  EXPECT_EQ(r.batch.communications[0].variant, "D");  // user-variables win over tags
  EXPECT_EQ(rfc3339(r.batch.communications[0].occurred_at), "2023-11-14T22:13:20.500000Z");
}

TEST(MailgunSignature, IsExtractedFromTheBody) {
  mailgun_signature_fields f;
  ASSERT_TRUE(extract_mailgun_signature(fixture("mailgun/delivered.json"), f));
  EXPECT_EQ(f.timestamp, "1403645220");
  EXPECT_EQ(f.token, "5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6");
  EXPECT_EQ(f.signature, "9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33");
  ASSERT_TRUE(extract_mailgun_signature(R"({"event-data":{}})", f));
  EXPECT_TRUE(f.timestamp.empty() && f.token.empty() && f.signature.empty());
  EXPECT_FALSE(extract_mailgun_signature("[1]", f));
  EXPECT_FALSE(extract_mailgun_signature(R"({"signature":{"token":"t")", f));
  EXPECT_TRUE(f.token.empty());
}

// ---------------------------------------------------------------------------------------------------------

TEST(HotPath, NoAllocationPerEventOnceWarm) {
  struct input {
    provider_fn fn;
    std::string body;
    std::string content_type;
  };
  std::vector<input> inputs = {
      {normalize_sendgrid, fixture("sendgrid/docs-all-event-types.json"), json_ct},
      {normalize_twilio, fixture("twilio/status-callback-undelivered-30003.derived.form"), form_ct},
      {normalize_whatsapp, fixture("whatsapp/inbound-text-ctwa-referral.derived.json"), json_ct},
      {normalize_mailgun, fixture("mailgun/failed-temporary.json"), json_ct},
      {normalize_postmark, fixture("postmark/docs-click.json"), json_ct},
      {normalize_resend, fixture("resend-svix/docs-resend-email-bounced.json"), json_ct},
      {normalize_segment, fixture("segment/page-utm-gclid.derived.json"), json_ct},
      {normalize_segment, fixture("segment/track-utm-fbclid-form-submitted.derived.json"), json_ct},  // a rejection
  };
  normalizer norm;
  event_batch batch;
  batch.communications.reserve(4096);
  batch.touchpoints.reserve(4096);
  batch.rejections.reserve(4096);
  std::string error;
  error.reserve(256);
  std::size_t records = 0;
  auto pass = [&] {
    for (const input& i : inputs) {
      const bool ok = i.fn(norm, {i.body, i.content_type, "lead_id=1", src, received, {}}, batch, error);
      ASSERT_TRUE(ok) << error;
    }
  };
  for (int i = 0; i < 50; ++i) pass();  // warm up: buffers, caches and the batch's arena grow
  batch.clear();
  counting = true;
  for (int i = 0; i < 50; ++i) pass();
  counting = false;
  records = batch.record_count();
  EXPECT_EQ(allocations.load(), 0);
  EXPECT_EQ(records, 50u * 18u);
}

}  // namespace
}  // namespace crm::transform::providers
