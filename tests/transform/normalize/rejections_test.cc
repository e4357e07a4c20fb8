// Every rule of the canonical format, with the reason it must give (exact; '*' matches any run).
#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>

#include "tests/transform/normalize/normalize_test_support.h"
#include "tests/transform/test_names.h"

namespace crm::transform {
namespace {

using namespace test_support;

// ----------------------------------------------------------------------------------------------------------
// Rejections: every rule, with the reason it must give.

struct rejection_case {
  const char* name;
  std::string json;
  std::string reason;  // exact, '*' matches any run of characters
};

void PrintTo(const rejection_case& c, std::ostream* os) { *os << c.name; }

class Rejections : public ::testing::TestWithParam<rejection_case> {};

TEST_P(Rejections, GiveTheReason) {
  const rejection_case& c = GetParam();
  const result r = run(c.json);
  ASSERT_EQ(r.outcome, normalize_outcome::rejected) << c.name << ": " << c.json;
  EXPECT_PRED2(glob_match, c.reason, r.reason()) << c.json;
  const rejection& rej = r.batch.rejections.at(0);
  EXPECT_EQ(rej.raw, c.json);
  EXPECT_EQ(rej.source, "test.ndjson:7");
  EXPECT_EQ(rej.received_at, received);
  EXPECT_TRUE(simdjson::validate_utf8(rej.reason.data(), rej.reason.size())) << "reasons are valid UTF-8";
}

const char* const status_choices = "queued|sent|delivered|opened|clicked|bounced|failed|replied|unsubscribed|resubscribed|spam";

INSTANTIATE_TEST_SUITE_P(
    Normalize, Rejections,
    ::testing::Values(
        // JSON syntax
        rejection_case{"empty", "", "malformed JSON: empty record"},
        rejection_case{"comma", R"({"kind":"communication",})", "malformed JSON at byte 24: *"},
        rejection_case{"missing colon", R"({"kind" "communication"})", "malformed JSON at byte *"},
        rejection_case{"truncated string", R"({"kind":"communication","occurred_at":"2024)",
                       "malformed JSON at byte 38: a string is opened but never closed"},
        rejection_case{"truncated object", R"({"kind":"communication")",
                       "malformed JSON at byte 23: the object is not closed (truncated record?)"},
        rejection_case{"trailing garbage", "{} x", "malformed JSON at byte 3: unexpected content after the JSON object"},
        // type() judges by the first byte: a bare word starting with 'n' must not pass for null.
        rejection_case{"bad literal for kind", R"({"kind": nope})", "malformed JSON at byte *"},
        rejection_case{"bad literal for a field", R"({"kind":"communication","status": nul})", "malformed JSON at byte *"},
        rejection_case{"trailing brace", comm("") + "}", "malformed JSON at byte *"},
        rejection_case{"two objects", comm("") + comm(""), "malformed JSON at byte *"},
        rejection_case{"empty object then fields", R"({}"kind":"communication"})",
                       "malformed JSON at byte 2: unexpected content after the JSON object"},
        rejection_case{"array root", "[1]", "expected a JSON object, got array"},
        rejection_case{"string root", R"("kind")", "expected a JSON object, got string"},
        rejection_case{"number root", "42", "expected a JSON object, got number"},
        rejection_case{"bad literal", comm(R"(,"x":tru)"), "malformed JSON at byte *invalid literal*"},
        rejection_case{"bad number in metadata", comm(R"(,"metadata":{"n":01})"), "malformed JSON at byte *"},
        rejection_case{"bad number in unknown", comm(R"(,"n":1.)"), "malformed JSON at byte *"},
        rejection_case{"raw tab in string", comm(",\"x\":\"a\tb\""), "malformed JSON at byte 106: control character inside a string (must be escaped)"},
        rejection_case{"lone surrogate", comm(R"(,"x":"\ud800")"), "malformed JSON at byte *"},
        rejection_case{"bad escape", comm(R"(,"x":"\q")"), "malformed JSON at byte *"},
        rejection_case{"invalid utf-8", "{\"kind\":\"communication\",\"x\":\"\xff\"}", "invalid UTF-8 at byte 29"},
        rejection_case{"overlong utf-8", "{\"kind\":\"\xc0\xaf\"}", "invalid UTF-8 at byte 9"},
        rejection_case{"utf-8 surrogate", "{\"kind\":\"communication\",\"x\":\"\xed\xa0\x80\"}", "invalid UTF-8 at byte 29"},
        // NUL
        rejection_case{"nul in known field", comm(R"(,"provider":"a\u0000b")"),
                       "provider: contains \\u0000, which PostgreSQL does not accept"},
        rejection_case{"nul in unknown field", comm(R"(,"foo":["x\u0000"])"),
                       "foo: contains \\u0000, which PostgreSQL does not accept"},
        rejection_case{"nul in metadata key", comm(R"(,"metadata":{"a\u0000":1})"),
                       "metadata: contains \\u0000, which PostgreSQL does not accept"},
        rejection_case{"nul in field name", comm(R"(,"a\u0000":1)"),
                       "field name: \"a\\x00\" contains \\u0000, which PostgreSQL does not accept"},
        // kind
        rejection_case{"kind missing", R"({"occurred_at":"2024-05-01T10:00:00Z"})", "kind: missing (required)"},
        rejection_case{"kind empty", R"({"kind":""})", "kind: missing (required)"},
        rejection_case{"kind null", R"({"kind":null})", "kind: missing (required)"},
        rejection_case{"kind unknown", R"({"kind":"visit"})", "kind: \"visit\" is not one of communication|touchpoint"},
        rejection_case{"kind wrong type", R"({"kind":1})", "kind: expected a string, got number"},
        rejection_case{"kind duplicated", comm(R"(,"kind":"touchpoint")"), "kind: duplicated field"},
        // occurred_at
        rejection_case{"occurred_at missing", R"({"kind":"communication","channel":"email","status":"sent"})",
                       "occurred_at: missing (required)"},
        rejection_case{"occurred_at empty", R"({"kind":"communication","occurred_at":"","channel":"email","status":"sent"})",
                       "occurred_at: missing (required)"},
        rejection_case{"feb 30", R"({"kind":"communication","occurred_at":"2024-02-30T00:00:00Z","channel":"email","status":"sent"})",
                       "occurred_at: \"2024-02-30T00:00:00Z\" is not an RFC 3339 timestamp (day out of range for the month)"},
        rejection_case{"2023-02-29", R"({"kind":"communication","occurred_at":"2023-02-29T00:00:00Z","channel":"email","status":"sent"})",
                       "occurred_at: \"2023-02-29T00:00:00Z\" is not an RFC 3339 timestamp (day out of range for the month)"},
        rejection_case{"no offset", R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00","channel":"email","status":"sent"})",
                       "occurred_at: \"2024-05-01T10:00:00\" is not an RFC 3339 timestamp (missing time zone offset (Z or +hh:mm))"},
        rejection_case{"before min", R"({"kind":"communication","occurred_at":"1999-12-31T23:59:59Z","channel":"email","status":"sent"})",
                       "occurred_at: 1999-12-31T23:59:59Z is outside the accepted range [2000-01-01T00:00:00Z, "
                       "2025-06-02T00:00:00Z] (min_occurred_at, received_at + max_future)"},
        rejection_case{"too far ahead", R"({"kind":"communication","occurred_at":"2030-01-01T00:00:00Z","channel":"email","status":"sent"})",
                       "occurred_at: 2030-01-01T00:00:00Z is outside the accepted range*"},
        rejection_case{"epoch zero", R"({"kind":"communication","occurred_at":0,"channel":"email","status":"sent"})",
                       "occurred_at: 1970-01-01T00:00:00Z is outside the accepted range*"},
        rejection_case{"epoch 1e400", R"({"kind":"communication","occurred_at":1e400,"channel":"email","status":"sent"})",
                       "occurred_at: 1e400 is not a usable epoch time (out of range)"},
        rejection_case{"occurred_at bool", R"({"kind":"communication","occurred_at":true,"channel":"email","status":"sent"})",
                       "occurred_at: expected an RFC 3339 string or a number of epoch seconds/milliseconds, got boolean"},
        // lead_id / campaign_id
        rejection_case{"lead_id empty string", comm(R"(,"lead_id":"")"),
                       "lead_id: \"\" is empty (give the id, or leave the field out)"},
        rejection_case{"lead_id blank string", comm(R"(,"lead_id":"  ")"),
                       "lead_id: \"  \" is empty (give the id, or leave the field out)"},
        rejection_case{"lead_id string zero", comm(R"(,"lead_id":"0")"), "lead_id: \"0\" is not an integer >= 1"},
        rejection_case{"lead_id string negative", comm(R"(,"lead_id":"-12")"), "lead_id: \"-12\" is not an integer >= 1"},
        rejection_case{"lead_id string decimal", comm(R"(,"lead_id":"1.5e3")"), "lead_id: \"1.5e3\" is not an integer >= 1"},
        rejection_case{"lead_id string too long", comm(R"(,"lead_id":")" + std::string(129, 'L') + "\""),
                       "lead_id: \"" + std::string(64, 'L') + "...\" is longer than 128 bytes (not a CRM id)"},
        rejection_case{"lead_id string control", comm(R"(,"lead_id":"L\u0007")"),
                       "lead_id: \"L\\x07\" contains a control character"},
        rejection_case{"campaign_id string beyond int64", comm(R"(,"campaign_id":"9223372036854775808")"),
                       "campaign_id: \"9223372036854775808\" is not an integer >= 1 (beyond the 64-bit integer range)"},
        rejection_case{"lead_id float", comm(R"(,"lead_id":1.5)"), "lead_id: expected an integer >= 1, got 1.5"},
        rejection_case{"lead_id 1.0", comm(R"(,"lead_id":1.0)"), "lead_id: expected an integer >= 1, got 1.0"},
        rejection_case{"lead_id zero", comm(R"(,"lead_id":0)"), "lead_id: expected an integer >= 1, got 0"},
        rejection_case{"lead_id negative", comm(R"(,"lead_id":-3)"), "lead_id: expected an integer >= 1, got -3"},
        rejection_case{"lead_id huge", comm(R"(,"lead_id":99999999999999999999)"),
                       "lead_id: expected an integer >= 1, got 99999999999999999999 (beyond the 64-bit integer range)"},
        rejection_case{"lead_id above int64", comm(R"(,"lead_id":9223372036854775808)"),
                       "lead_id: expected an integer >= 1, got 9223372036854775808 (beyond the 64-bit integer range)"},
        rejection_case{"lead_id 1e400", comm(R"(,"lead_id":1e400)"), "lead_id: expected an integer >= 1, got 1e400"},
        rejection_case{"lead_id bool", comm(R"(,"lead_id":true)"), "lead_id: expected an integer >= 1 or a CRM reference (a string), got boolean"},
        rejection_case{"lead_id object", comm(R"(,"lead_id":{"id":1})"), "lead_id: expected an integer >= 1 or a CRM reference (a string), got object"},
        rejection_case{"campaign_id zero", comm(R"(,"campaign_id":0)"), "campaign_id: expected an integer >= 1, got 0"},
        // communication fields
        rejection_case{"status misspelt", R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","channel":"email","status":"deliverd"})",
                       "status: \"deliverd\" is not one of "s + status_choices},
        rejection_case{"status missing", R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","channel":"email"})",
                       "status: missing (required)"},
        rejection_case{"channel missing", R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","status":"sent"})",
                       "channel: missing (required)"},
        rejection_case{"channel unknown", R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","channel":"fax","status":"sent"})",
                       "channel: \"fax\" is not one of email|sms|whatsapp|voice|chat|push"},
        rejection_case{"channel wrong type", R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","channel":5,"status":"sent"})",
                       "channel: expected a string, got number 5"},
        rejection_case{"direction unknown", comm(R"(,"direction":"sideways")"),
                       "direction: \"sideways\" is not one of outbound|inbound"},
        rejection_case{"duplicated status", comm(R"(,"status":"sent")"), "status: duplicated field"},
        rejection_case{"event_id not a uuid", comm(R"(,"event_id":"not-a-uuid")"),
                       "event_id: \"not-a-uuid\" is not a UUID (8-4-4-4-12 hex digits)"},
        rejection_case{"email without at", comm(R"(,"email":"foo.example.com")"),
                       "email: \"foo.example.com\" must contain exactly one '@'"},
        rejection_case{"email two ats", comm(R"(,"email":"a@b@c")"), "email: \"a@b@c\" must contain exactly one '@'"},
        rejection_case{"email space", comm(R"(,"email":"a b@c.com")"),
                       "email: \"a b@c.com\" contains whitespace or a control character"},
        rejection_case{"email blank", comm(R"(,"email":"   ")"), "email: \"   \" is empty after trimming"},
        rejection_case{"phone invalid", comm(R"(,"phone":"12345")"),
                       "phone: \"12345\" is not a valid phone number (default region US)"},
        rejection_case{"phone not a number", comm(R"(,"phone":"call me")"),
                       "phone: \"call me\" is not a phone number (default region US)"},
        rejection_case{"phone wrong type", comm(R"(,"phone":4155552671)"),
                       "phone: expected a string, got number 4155552671"},
        rejection_case{"error_code float", comm(R"(,"error_code":5.5)"),
                       "error_code: expected a string or an integer, got number 5.5"},
        rejection_case{"metadata not object", comm(R"(,"metadata":"x")"), "metadata: expected an object, got string \"x\""},
        rejection_case{"metadata too deep",
                       comm(R"(,"metadata":{"a":)" + std::string(40, '[') + std::string(40, ']') + "}"),
                       "metadata: nested deeper than 32 levels"},
        rejection_case{"metadata number beyond numeric", comm(R"(,"metadata":{"a":1e999999})"),
                       "metadata: contains a number out of PostgreSQL's numeric range"},
        rejection_case{"duplicated channel", comm(R"(,"channel":")" + std::string(100, 'x') + "\""),
                       "channel: duplicated field"},
        rejection_case{"quoted value made printable",
                       R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","channel":"e\nmail\"","status":"sent"})",
                       "channel: \"e\\x0amail\\\"\" is not one of email|sms|whatsapp|voice|chat|push"},
        rejection_case{"quoted value cut at 64 bytes",
                       R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","channel":")" + std::string(100, 'x') +
                           R"(","status":"sent"})",
                       "channel: \"" + std::string(64, 'x') + "...\" is not one of email|sms|whatsapp|voice|chat|push"},
        // touchpoint fields
        rejection_case{"touch_type missing", R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","anonymous_id":"a"})",
                       "touch_type: missing (required)"},
        rejection_case{"touch_type unknown", R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"visit","anonymous_id":"a"})",
                       "touch_type: \"visit\" is not one of page_view|ad_click|email_click|form_submit|call|chat|"
                       "conversion|experiment_exposure|other|identify"},
        rejection_case{"no lead nor anonymous id", R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"page_view"})",
                       "lead_id/anonymous_id: at least one is required"},
        rejection_case{"empty anonymous id", R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"page_view","anonymous_id":""})",
                       "lead_id/anonymous_id: at least one is required"},
        rejection_case{"exposure without variant", R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"experiment_exposure","lead_id":3,"ab_test_id":"t1"})",
                       "variant: missing (required for touch_type experiment_exposure)"},
        rejection_case{"exposure without test", R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"experiment_exposure","lead_id":3,"variant":"B"})",
                       "ab_test_id: missing (required for touch_type experiment_exposure)"},
        rejection_case{"negative conversion value", touch(R"(,"conversion_value":-5)"),
                       "conversion_value: expected a number >= 0, got -5"},
        rejection_case{"string conversion value", touch(R"(,"conversion_value":"19.99")"),
                       "conversion_value: expected a number >= 0, got string \"19.99\""},
        rejection_case{"huge conversion value", touch(R"(,"conversion_value":1e400)"),
                       "conversion_value: expected a number >= 0, got 1e400 (out of range)"},
        rejection_case{"currency two letters", touch(R"(,"currency":"US")"), "currency: \"US\" is not an ISO 4217 code"},
        rejection_case{"currency symbol", touch(R"(,"currency":"U$D")"), "currency: \"U$D\" is not an ISO 4217 code"},
        rejection_case{"currency not iso", touch(R"(,"currency":"XYZ")"), "currency: \"XYZ\" is not an ISO 4217 code"},
        rejection_case{"currency lower not iso", touch(R"(,"currency":"abc")"), "currency: \"abc\" is not an ISO 4217 code"},
        rejection_case{"currency cldr only", touch(R"(,"currency":"CNH")"), "currency: \"CNH\" is not an ISO 4217 code"},
        rejection_case{"touchpoint_id not a uuid", touch(R"(,"touchpoint_id":"123")"),
                       "touchpoint_id: \"123\" is not a UUID (8-4-4-4-12 hex digits)"},
        rejection_case{"utm wrong type", touch(R"(,"utm_source":["google"])"), "utm_source: expected a string, got array"}),
    [](const ::testing::TestParamInfo<rejection_case>& info) { return test_support::test_name(info.param.name); });

TEST(Rejections, OversizedRecordKeepsOnlyTheLimit) {
  normalize_options options;
  options.max_record_bytes = 64;
  const std::string json = comm(R"(,"error_reason":")" + std::string(200, 'x') + "\"");
  const result r = run(json, options);
  ASSERT_EQ(r.outcome, normalize_outcome::rejected);
  EXPECT_EQ(r.reason(), "record exceeds 64 bytes");
  EXPECT_EQ(r.batch.rejections[0].raw, json.substr(0, 64));
}

TEST(Rejections, SourceWithoutLine) {
  normalizer n;
  event_batch batch;
  n.normalize("{", {"POST /v1/events", 0}, received, batch);
  ASSERT_EQ(batch.rejections.size(), 1u);
  EXPECT_EQ(batch.rejections[0].source, "POST /v1/events");
}

TEST(Rejections, RejectRecordsAFramingError) {
  normalizer n;
  event_batch batch;
  n.reject("[1", {"file.json", 3}, received, "array element is not a JSON object", batch);
  ASSERT_EQ(batch.rejections.size(), 1u);
  EXPECT_EQ(batch.rejections[0].raw, "[1");
  EXPECT_EQ(batch.rejections[0].source, "file.json:3");
  EXPECT_EQ(batch.rejections[0].reason, "array element is not a JSON object");
  EXPECT_EQ(batch.rejections[0].received_at, received);
}

TEST(Rejections, OneBadRecordDoesNotAffectTheNext) {
  normalizer n;
  event_batch batch;
  EXPECT_EQ(n.normalize(R"({"kind":"communication","x":[1,2)", {"f", 1}, received, batch), normalize_outcome::rejected);
  EXPECT_EQ(n.normalize("{\"kind\":\"\xff\"}", {"f", 2}, received, batch), normalize_outcome::rejected);
  EXPECT_EQ(n.normalize(comm(""), {"f", 3}, received, batch), normalize_outcome::communication);
  EXPECT_EQ(batch.communications.size(), 1u);
  EXPECT_EQ(batch.rejections.size(), 2u);
}

}  // namespace
}  // namespace crm::transform
