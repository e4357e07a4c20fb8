// Issue 16, item 3: every value a record carries fits its database column, or the record is rejected at the
// edge with the field named (schemas/0001_events.sql, 0002_attribution.sql; transform/normalize/column_domains.h).
// Each bound is tested on both inputs (canonical JSON, a provider's field set) and at its edge: the last
// value PostgreSQL stores passes, the first it refuses is rejected.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "tests/transform/normalize/normalize_test_support.h"
#include "transform/normalize/column_domains.h"

namespace crm::transform {
namespace {

using namespace test_support;

communication_fields delivered() {
  communication_fields f;
  f.occurred_at = may_first_10h;
  f.channel_ = channel::email;
  f.status = comm_status::delivered;
  f.email = "a@example.com";
  return f;
}

std::string conversion(std::string_view value) { return touch(R"(,"conversion_value":)" + std::string(value)); }

// numeric(20,6) through the writer's float8 -> numeric cast (15 significant digits): 10^14 itself and
// 99999999999999.95 overflow it ("numeric field overflow"); 99999999999999.9 is stored.
TEST(ColumnDomains, ConversionValueAtTheNumericBound) {
  for (const char* ok : {"99999999999999", "99999999999999.9", "99999999999999.94", "0", "0.000001", "1e-300"}) {
    EXPECT_EQ(run(conversion(ok)).outcome, normalize_outcome::touchpoint) << ok;
  }
  for (const char* bad : {"1e14", "100000000000000", "99999999999999.95", "99999999999999.99", "1e15", "2e14"}) {
    const result r = run(conversion(bad));
    EXPECT_EQ(r.outcome, normalize_outcome::rejected) << bad;
    EXPECT_EQ(r.reason(), "conversion_value: expected a number >= 0 within numeric(20,6), got " + std::string(bad));
  }
  EXPECT_TRUE(conversion_value_storable(99999999999999.9));
  EXPECT_FALSE(conversion_value_storable(99999999999999.95));
  EXPECT_FALSE(conversion_value_storable(1e14));
}

TEST(ColumnDomains, NonFiniteAndHugeConversionValuesFromAProvider) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity(), 1e300, 1e14}) {
    touchpoint_fields f = page_view();
    f.has_conversion_value = true;
    f.conversion_value = bad;
    const result r = append(f);
    EXPECT_EQ(r.outcome, normalize_outcome::rejected) << bad;
    EXPECT_EQ(r.reason().rfind("conversion_value: expected a number >= 0", 0), 0u) << r.reason();
  }
  // Canonical JSON: a huge exponent is out of range before it is a double.
  EXPECT_EQ(run(conversion("1e400")).reason(), "conversion_value: expected a number >= 0, got 1e400 (out of range)");
  // A tiny one is 0 at numeric(20,6)'s scale anyway.
  const result tiny = run(conversion("1e-400"));
  ASSERT_EQ(tiny.outcome, normalize_outcome::touchpoint) << tiny.reason();
  EXPECT_EQ(tiny.touch().conversion_value, 0.0);
}

// jsonb's numbers are numeric: at most 131072 digits before the point and 16383 after it once the exponent
// is applied, exponent within +-1000. Each side of each bound.
TEST(ColumnDomains, MetadataNumbersJsonbStores) {
  auto with_number = [](const std::string& n) { return run(comm(R"(,"metadata":{"n":)" + n + "}")); };
  const std::string integer_max = "1" + std::string(131071, '0');  // 131072 digits
  EXPECT_EQ(with_number(integer_max).outcome, normalize_outcome::communication);
  EXPECT_EQ(with_number(integer_max + "0").outcome, normalize_outcome::rejected);
  EXPECT_EQ(with_number("1" + std::string(131000, '0') + "e71").outcome, normalize_outcome::communication);
  EXPECT_EQ(with_number("1" + std::string(131000, '0') + "e72").outcome, normalize_outcome::rejected);
  const std::string fraction_max = "0." + std::string(16382, '0') + "1";  // 16383 digits after the point
  EXPECT_EQ(with_number(fraction_max).outcome, normalize_outcome::communication);
  EXPECT_EQ(with_number("0." + std::string(16383, '0') + "1").outcome, normalize_outcome::rejected);
  EXPECT_EQ(with_number("0." + std::string(16000, '0') + "1e-382").outcome, normalize_outcome::communication);
  EXPECT_EQ(with_number("0." + std::string(16000, '0') + "1e-383").outcome, normalize_outcome::rejected);
  EXPECT_EQ(with_number("1e1000").outcome, normalize_outcome::communication);
  EXPECT_EQ(with_number("1e1001").outcome, normalize_outcome::rejected);
  EXPECT_EQ(with_number("-1e-1000").outcome, normalize_outcome::communication);
  const result r = with_number(integer_max + "0");
  EXPECT_NE(r.reason().find("metadata"), std::string::npos) << r.reason();
  // An unknown field goes to metadata too, under the same rule.
  EXPECT_EQ(run(comm(R"(,"extra":)" + integer_max + "0")).outcome, normalize_outcome::rejected);
}

// Texts that become btree keys of the analytics tables: PostgreSQL refuses an index row over 2704 bytes.
TEST(ColumnDomains, KeyTextsAreBounded) {
  touchpoint_fields f = page_view();
  const std::string anon_max(max_anonymous_id_bytes, 'a');
  f.anonymous_id = anon_max;
  EXPECT_EQ(append(f).outcome, normalize_outcome::touchpoint);
  const std::string anon_long(max_anonymous_id_bytes + 1, 'a');
  f.anonymous_id = anon_long;
  EXPECT_TRUE(glob_match("anonymous_id: \"aaa*\" is longer than the column's key allows (1025 bytes, at most 1024)",
                         append(f).reason()))
      << append(f).reason();
  EXPECT_EQ(run(touch("").replace(touch("").find("\"a1\""), 4, "\"" + anon_long + "\"")).outcome,
            normalize_outcome::rejected);

  // A UTM tag taken from landing_url's query string is checked like one given as a field.
  const std::string campaign(max_utm_key_bytes + 1, 'c');
  const result from_url = run(touch(R"(,"landing_url":"https://shop.example/?utm_campaign=)" + campaign + "\""));
  EXPECT_EQ(from_url.outcome, normalize_outcome::rejected);
  EXPECT_EQ(from_url.reason().rfind("utm_campaign: ", 0), 0u) << from_url.reason();
  EXPECT_EQ(run(touch(R"(,"utm_source":")" + std::string(max_utm_key_bytes, 's') + "\"")).outcome,
            normalize_outcome::touchpoint);

  communication_fields c = delivered();
  const std::string test_id(max_ab_test_id_bytes + 1, 't');
  c.ab_test_id = test_id;
  c.variant = "B";
  EXPECT_EQ(append(c).reason().rfind("ab_test_id: ", 0), 0u) << append(c).reason();
  EXPECT_EQ(run(comm(R"(,"ab_test_id":")" + test_id + R"(","variant":"B")")).outcome, normalize_outcome::rejected);
}

// What a provider adapter hands over is checked like canonical input: NUL and invalid UTF-8 in any text,
// negative ids.
TEST(ColumnDomains, ProviderTextsAndIds) {
  communication_fields f = delivered();
  const std::string with_nul("msg\0id", 6);
  f.provider_message_id = with_nul;
  EXPECT_EQ(append(f).reason(),
            "provider_message_id: \"msg\\x00id\" contains a NUL character, which PostgreSQL's text does not accept");
  f = delivered();
  f.error_reason = "bad \xff byte";
  EXPECT_EQ(append(f).reason(), "error_reason: \"bad \\xff byte\" is not valid UTF-8");
  f = delivered();
  f.lead_id = -3;
  EXPECT_EQ(append(f).reason(), "lead_id: expected an integer >= 1, got -3");
  touchpoint_fields t = page_view();
  t.campaign_id = std::numeric_limits<std::int64_t>::min();
  EXPECT_EQ(append(t).reason(), "campaign_id: expected an integer >= 1, got -9223372036854775808");
  t = page_view();
  t.utm_term = "\xc3";
  EXPECT_EQ(append(t).reason(), "utm_term: \"\\xc3\" is not valid UTF-8");
}

// occurred_at stays inside timestamptz's range whatever the options allow, and received_at + max_future
// saturates instead of overflowing.
TEST(ColumnDomains, OccurredAtInsideTimestamptzWhateverTheOptions) {
  normalize_options wide;
  wide.min_occurred_at = std::numeric_limits<timestamp_us>::min();
  wide.max_future = std::numeric_limits<timestamp_us>::max();
  touchpoint_fields f = page_view();
  f.occurred_at = min_storable_timestamp - 1;
  const result before = append(f, wide);
  EXPECT_EQ(before.outcome, normalize_outcome::rejected);
  EXPECT_EQ(before.reason().rfind("occurred_at: ", 0), 0u) << before.reason();
  f.occurred_at = min_storable_timestamp;
  EXPECT_EQ(append(f, wide).outcome, normalize_outcome::touchpoint);
  f.occurred_at = std::numeric_limits<timestamp_us>::max();  // year 294247: timestamptz holds it
  EXPECT_EQ(append(f, wide).outcome, normalize_outcome::touchpoint);
  // Epoch numbers with huge exponents never wrap around into the accepted range.
  for (const char* n : {"1e300", "-1e300", "1e19", "9223372036854775807000"}) {
    const result r = run(R"({"kind":"touchpoint","touch_type":"page_view","anonymous_id":"a1","occurred_at":)" +
                         std::string(n) + "}");
    EXPECT_EQ(r.outcome, normalize_outcome::rejected) << n;
    EXPECT_EQ(r.reason().rfind("occurred_at", 0), 0u) << r.reason();
  }
}

// A decoded touchpoint or communication (as a normalized event batch from Kafka holds them) that fits.
template <class Record>
Record decoded() {
  Record r;
  r.occurred_at = may_first_10h;
  r.received_at = received;
  if constexpr (std::is_same_v<Record, touchpoint>) {
    r.anonymous_id = "a1";
  } else {
    r.provider = "generic";
  }
  return r;
}

// Records that did not come through the appender (a normalized event batch decoded from Kafka) are checked
// with the same domains.
TEST(ColumnDomains, DecodedRecordsAreCheckedToo) {
  event_batch b;
  touchpoint t = decoded<touchpoint>();
  b.touchpoints.push_back(t);
  std::string reason;
  EXPECT_TRUE(check_columns(b, 0, 0, 0, reason)) << reason;
  t.has_conversion_value = true;
  t.conversion_value = 1e15;
  b.touchpoints.push_back(t);
  EXPECT_TRUE(check_columns(b, 0, 2, 0, reason)) << "only the records from the given index on";
  EXPECT_FALSE(check_columns(b, 0, 1, 0, reason));
  EXPECT_EQ(reason, "conversion_value: expected a number >= 0 within numeric(20,6), got 1e+15");
  communication c = decoded<communication>();
  c.tenant_id = std::string_view("t\0", 2);
  b.communications.push_back(c);
  reason.clear();
  EXPECT_FALSE(check_columns(b, 0, 2, 0, reason));
  EXPECT_EQ(reason.rfind("tenant_id: ", 0), 0u) << reason;
  // A dead letter's received_at: a value outside timestamptz stalled `write` (the database refused the dead
  // letter, and a refused dead letter was retried for ever).
  b.communications.clear();
  b.touchpoints.resize(1);
  rejection r;
  r.received_at = received;
  r.raw = "{}";
  b.rejections.push_back(r);
  reason.clear();
  EXPECT_TRUE(check_columns(b, 0, 0, 0, reason)) << reason;
  r.received_at = -1'000'000'000'000'000'000LL;
  b.rejections.push_back(r);
  EXPECT_TRUE(check_columns(b, 0, 0, 2, reason)) << "only the records from the given index on";
  EXPECT_FALSE(check_columns(b, 0, 0, 1, reason));
  EXPECT_EQ(reason.rfind("received_at: -1000000000000000000 microseconds since 1970 is before", 0), 0u) << reason;
}

// A decoded record's metadata is what jsonb takes: a producer's bad metadata made the database refuse the row,
// and the writer split its batch ~9 times to find it.
TEST(ColumnDomains, DecodedMetadataIsOneJsonObjectJsonbAccepts) {
  event_batch b;
  communication c = decoded<communication>();
  for (const char* good : {"", R"({})", R"({"a":[1,{"b":null}],"c":"\u00e9"})", " {\"a\":1} "}) {
    c.metadata = good;
    b.communications.assign(1, c);
    std::string reason;
    EXPECT_TRUE(check_columns(b, 0, 0, 0, reason)) << good << ": " << reason;
  }
  const std::pair<const char*, const char*> bad[] = {
      {"not json", "metadata: is not one JSON object that jsonb accepts"},
      {R"([1,2])", "metadata: is not one JSON object that jsonb accepts"},
      {R"({"a":1} {"b":2})", "metadata: is not one JSON object that jsonb accepts"},
      {R"({"a":1)", "metadata: is not one JSON object that jsonb accepts"},
      {R"({"a":"\ud800"})", "metadata: is not one JSON object that jsonb accepts"},  // a lone surrogate
      {"{\"a\":\"\xff\"}", R"(metadata: "{\"a\":\"\xff\"}" is not valid UTF-8)"},  // the texts' rule first
      {R"({"a":"x\u0000y"})", "metadata: contains \\u0000, which PostgreSQL does not accept"},
      {R"({"a":1e999999})", "metadata: contains a number out of PostgreSQL's numeric range"},
  };
  for (const auto& [text, expected] : bad) {
    c.metadata = text;
    b.communications.assign(1, c);
    std::string reason;
    EXPECT_FALSE(check_columns(b, 0, 0, 0, reason)) << text;
    EXPECT_EQ(reason, expected) << text;
  }
  // Touchpoints too, and a nesting deeper than the copier's bound.
  touchpoint t = decoded<touchpoint>();
  const std::string deep = R"({"a":)" + std::string(40, '[') + std::string(40, ']') + "}";
  t.metadata = deep;
  b.communications.clear();
  b.touchpoints.assign(1, t);
  std::string reason;
  EXPECT_FALSE(check_columns(b, 0, 0, 0, reason));
  EXPECT_EQ(reason.rfind("metadata: nested deeper", 0), 0u) << reason;
}

}  // namespace
}  // namespace crm::transform
