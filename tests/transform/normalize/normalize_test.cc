#include "transform/normalize/normalize.h"

#include <cmath>
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "transform/normalize/record_splitter.h"
#include "transform/normalize/uuid_v5.h"

#include "tests/transform/test_names.h"

#include "tests/transform/normalize/normalize_test_support.h"

namespace crm::transform {
namespace {

using namespace test_support;

// ----------------------------------------------------------------------------------------------------------
// Communications

TEST(Communication, MinimalRecordGetsDefaults) {
  const result r = run(comm(""));
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  const communication& c = r.comm();
  EXPECT_EQ(c.occurred_at, may_first_10h);
  EXPECT_EQ(c.received_at, received);
  EXPECT_EQ(c.channel_, channel::email);
  EXPECT_EQ(c.direction_, direction::outbound);
  EXPECT_EQ(c.status, comm_status::delivered);
  EXPECT_EQ(c.provider, "generic");
  EXPECT_EQ(c.lead_id, 0);
  EXPECT_EQ(c.campaign_id, 0);
  EXPECT_TRUE(c.email.empty());
  EXPECT_TRUE(c.metadata.empty());
  EXPECT_TRUE(c.tenant_id.empty());
}

TEST(Communication, AllFields) {
  const result r = run(R"({"kind":"communication","event_id":"0A1B2C3D-4E5F-4071-8899-AABBCCDDEEFF",
      "occurred_at":"2024-05-01T12:00:00.123456+02:00","lead_id":42,"campaign_id":7,"ab_test_id":"t1","variant":"B",
      "channel":"SMS","direction":"inbound","status":"Replied","provider":"twilio","provider_message_id":"SM1",
      "provider_event_id":"EV1","email":" Foo@Example.COM ","phone":"(415) 555-2671","url":"https://x.com/a",
      "error_code":30003,"error_reason":"Unreachable"})");
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  const communication& c = r.comm();
  EXPECT_EQ(to_string(c.event_id), "0a1b2c3d-4e5f-4071-8899-aabbccddeeff");
  EXPECT_EQ(c.occurred_at, may_first_10h + 123456);
  EXPECT_EQ(c.lead_id, 42);
  EXPECT_EQ(c.campaign_id, 7);
  EXPECT_EQ(c.ab_test_id, "t1");
  EXPECT_EQ(c.variant, "B");
  EXPECT_EQ(c.channel_, channel::sms);
  EXPECT_EQ(c.direction_, direction::inbound);
  EXPECT_EQ(c.status, comm_status::replied);
  EXPECT_EQ(c.provider, "twilio");
  EXPECT_EQ(c.provider_message_id, "SM1");
  EXPECT_EQ(c.provider_event_id, "EV1");
  EXPECT_EQ(c.email, "foo@example.com");
  EXPECT_EQ(c.phone, "+14155552671");
  EXPECT_EQ(c.url, "https://x.com/a");
  EXPECT_EQ(c.error_code, "30003");
  EXPECT_EQ(c.error_reason, "Unreachable");
  EXPECT_TRUE(c.metadata.empty());
}

TEST(Communication, OccurredAtForms) {
  const std::pair<std::string, timestamp_us> cases[] = {
      {R"("2024-05-01T10:00:00Z")", may_first_10h},
      {R"("2024-05-01 05:00:00-05:00")", may_first_10h},
      {R"("2024-05-01t10:00:00.999999999z")", may_first_10h + 999999},
      {"1714557600", may_first_10h},
      {"1714557600.25", may_first_10h + 250000},
      {"1714557600123", may_first_10h + 123000},
      {"1714557600123.456", may_first_10h + 123456},
      {"1.7145576e9", may_first_10h},
  };
  for (const auto& [value, expected] : cases) {
    const result r = run(R"({"kind":"communication","channel":"email","status":"sent","occurred_at":)" + value + "}");
    ASSERT_EQ(r.outcome, normalize_outcome::communication) << value << ": " << r.reason();
    EXPECT_EQ(r.comm().occurred_at, expected) << value;
  }
}

TEST(Communication, EmptyStringsAndNullsAreAbsent) {
  const result r = run(comm(R"(,"provider":"","email":"","phone":null,"lead_id":null,"url":"","metadata":null)"));
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().provider, "generic");
  EXPECT_TRUE(r.comm().email.empty());
  EXPECT_TRUE(r.comm().phone.empty());
  EXPECT_EQ(r.comm().lead_id, 0);
  EXPECT_TRUE(r.comm().url.empty());
  EXPECT_TRUE(r.comm().metadata.empty());
}

TEST(Communication, EscapedFieldNamesAreRecognized) {
  const result r = run(R"({"kind":"communication","occurred_at":"2024-05-01T10:00:00Z","ch\u0061nnel":"sms","st\u0061tus":"sent"})");
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().channel_, channel::sms);
}

TEST(Communication, OptionsAreHonoured) {
  normalize_options options;
  options.default_region = "GB";
  options.default_provider = "in-house";
  const result r = run(comm(R"(,"phone":"020 7946 0958")"), options);
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().phone, "+442079460958");
  EXPECT_EQ(r.comm().provider, "in-house");
}

TEST(Communication, PhoneNumbersToE164) {
  const std::pair<const char*, const char*> cases[] = {
      {"(415) 555-2671", "+14155552671"},
      {"+44 20 7946 0958", "+442079460958"},
      {"415.555.2671", "+14155552671"},
      {"+1-415-555-2671", "+14155552671"},
  };
  for (const auto& [in, e164] : cases) {
    const result r = run(comm(R"(,"phone":")" + std::string(in) + "\""));
    ASSERT_EQ(r.outcome, normalize_outcome::communication) << in << ": " << r.reason();
    EXPECT_EQ(r.comm().phone, e164);
  }
}

TEST(Communication, ErrorCodeAsStringOrInteger) {
  EXPECT_EQ(run(comm(R"(,"error_code":"5.1.1")")).comm().error_code, "5.1.1");
  EXPECT_EQ(run(comm(R"(,"error_code":550 )")).comm().error_code, "550");
  EXPECT_EQ(run(comm(R"(,"error_code":-1)")).comm().error_code, "-1");
}

// ----------------------------------------------------------------------------------------------------------
// Derived ids

TEST(DerivedIds, FromProviderEventId) {
  const result r = run(comm(R"(,"provider":"sendgrid","provider_event_id":"ev-1","provider_message_id":"m-1")"));
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().event_id, v5("communication\x1fsendgrid\x1f" "ev-1"));
}

TEST(DerivedIds, FromProviderMessageIdStatusAndTime) {
  const result r = run(comm(R"(,"provider":"sendgrid","provider_message_id":"m-1")"));
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().event_id, v5("communication\x1fsendgrid\x1fm-1\x1f" "delivered\x1f" "1714557600000000"));
}

TEST(DerivedIds, FallbackOverTheNormalizedFields) {
  const result r = run(comm(R"(,"lead_id":5,"email":"A@B.com","phone":"(415) 555-2671","campaign_id":9,"url":"u")"));
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().event_id, v5("communication\x1fgeneric\x1f\x1f" "email\x1foutbound\x1f" "delivered\x1f"
                                  "1714557600000000\x1f" "5\x1f" "a@b.com\x1f+14155552671\x1f" "9\x1fu"));
  const result bare = run(comm(""));
  EXPECT_EQ(bare.comm().event_id, v5("communication\x1fgeneric\x1f\x1f" "email\x1foutbound\x1f" "delivered\x1f"
                                     "1714557600000000\x1f\x1f\x1f\x1f\x1f"));
}

TEST(DerivedIds, DeterministicAndSensitive) {
  const std::string a = comm(R"(,"provider":"twilio","provider_message_id":"SM1")");
  EXPECT_EQ(run(a).comm().event_id, run(a).comm().event_id);
  // The same event written differently gets the same id.
  const std::string a2 =
      R"({"provider_message_id":"SM1","status":"delivered","channel":"email","provider":"twilio","kind":"communication","occurred_at":"2024-05-01T12:00:00+02:00"})";
  EXPECT_EQ(run(a2).comm().event_id, run(a).comm().event_id);
  // A different status or time is a different event.
  std::string b = a;
  b.replace(b.find("delivered"), 9, "opened");
  EXPECT_NE(run(b).comm().event_id, run(a).comm().event_id);
  std::string c = a;
  c.replace(c.find("10:00:00Z"), 9, "10:00:01Z");
  EXPECT_NE(run(c).comm().event_id, run(a).comm().event_id);
  // A given event_id wins.
  const result d = run(comm(R"(,"event_id":"2ed6657d-e927-568b-95e1-2665a8aea6a2","provider_message_id":"SM1")"));
  EXPECT_EQ(to_string(d.comm().event_id), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

// From a review: "conversion_value":-0 (or -1e-400, read as -0) and 0 are the same value but gave two ids, so one
// conversion was stored and credited twice.
TEST(DerivedIds, MinusZeroIsTheValueZero) {
  auto conversion = [](const std::string& value) {
    return R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion","lead_id":7,)"
           R"("conversion_value":)" + value + "}";
  };
  const result zero = run(conversion("0"));
  ASSERT_EQ(zero.outcome, normalize_outcome::touchpoint) << zero.reason();
  for (const char* v : {"-0", "-0.0", "-1e-400", "0.0"}) {
    const result r = run(conversion(v));
    ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << v << ": " << r.reason();
    EXPECT_EQ(r.touch().touchpoint_id, zero.touch().touchpoint_id) << v;
    EXPECT_FALSE(std::signbit(r.touch().conversion_value)) << v;
  }
}

TEST(DerivedIds, TouchpointFromMessageId) {
  const result r = run(touch(R"(,"message_id":"msg-9")"));
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_EQ(r.touch().touchpoint_id, v5("touchpoint\x1fmsg-9\x1f" "1714557600000000"));
  EXPECT_EQ(r.touch().message_id, "msg-9");
}

TEST(DerivedIds, TouchpointFallback) {
  const result r = run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion","lead_id":3,
      "anonymous_id":"an","landing_url":"https://s.com/?utm_source=google&gclid=G","referrer":"https://r.com/",
      "utm_medium":"cpc","conversion_type":"purchase","conversion_value":19.90,"ab_test_id":"t","variant":"v"})");
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_EQ(r.touch().touchpoint_id,
            v5("touchpoint\x1f\x1f" "conversion\x1f" "1714557600000000\x1f" "3\x1f" "an\x1fhttps://s.com/?utm_source=google&gclid=G"
               "\x1fhttps://r.com/\x1fgoogle\x1f" "cpc\x1f\x1f\x1f\x1fG\x1f\x1f\x1fpurchase\x1f" "19.9\x1ft\x1fv"));
  const result other = run(touch(""));
  EXPECT_EQ(other.touch().touchpoint_id, v5("touchpoint\x1f\x1fpage_view\x1f" "1714557600000000\x1f\x1f" "a1"
                                            "\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f"));
  const result given = run(touch(R"(,"touchpoint_id":"2ED6657D-E927-568B-95E1-2665A8AEA6A2")"));
  EXPECT_EQ(to_string(given.touch().touchpoint_id), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

// ----------------------------------------------------------------------------------------------------------
// Touchpoints

TEST(Touchpoint, UtmAndClickIdsFromTheLandingUrl) {
  const result r = run(touch(
      R"(,"landing_url":"https://shop.example.com/p?utm_source=Google&UTM_MEDIUM=cpc&utm_campaign=spring+sale%21&utm_term=crm%20tool&utm_content=hero%zz&gclid=EAIa&fbclid=IwAR&msclkid=ms1&utm_source=ignored#top")"));
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  const touchpoint& t = r.touch();
  EXPECT_EQ(t.utm_source, "Google");
  EXPECT_EQ(t.utm_medium, "cpc");
  EXPECT_EQ(t.utm_campaign, "spring sale!");
  EXPECT_EQ(t.utm_term, "crm tool");
  EXPECT_EQ(t.utm_content, "hero%zz");  // a malformed escape stays as it is
  EXPECT_EQ(t.gclid, "EAIa");
  EXPECT_EQ(t.fbclid, "IwAR");
  EXPECT_EQ(t.msclkid, "ms1");
  EXPECT_EQ(t.group, channel_group::paid_search);
}

TEST(Touchpoint, ExplicitFieldsWinOverTheUrl) {
  const result r = run(touch(R"(,"utm_source":"newsletter","utm_medium":"","landing_url":"https://s.com/?utm_source=google&utm_medium=email")"));
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_EQ(r.touch().utm_source, "newsletter");
  EXPECT_EQ(r.touch().utm_medium, "email");  // "" counts as absent: taken from the URL
  EXPECT_EQ(r.touch().group, channel_group::email);
}

TEST(Touchpoint, DecodedNulOrBadUtf8KeepsTheRawValue) {
  const result r = run(touch(R"(,"landing_url":"https://s.com/?utm_source=a%00b&utm_medium=%FF")"));
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_EQ(r.touch().utm_source, "a%00b");
  EXPECT_EQ(r.touch().utm_medium, "%FF");
}

TEST(Touchpoint, ConversionGetsDefaultCurrency) {
  const result r = run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion","lead_id":3,"conversion_type":"purchase","conversion_value":129.9})");
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_TRUE(r.touch().is_conversion);
  EXPECT_TRUE(r.touch().has_conversion_value);
  EXPECT_DOUBLE_EQ(r.touch().conversion_value, 129.9);
  EXPECT_EQ(r.touch().conversion_type, "purchase");
  EXPECT_EQ(r.touch().currency, "USD");
  EXPECT_EQ(r.touch().lead_id, 3);
  EXPECT_TRUE(r.touch().anonymous_id.empty());

  normalize_options options;
  options.default_currency = "EUR";
  EXPECT_EQ(run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion","lead_id":3})", options)
                .touch()
                .currency,
            "EUR");
}

TEST(Touchpoint, CurrencyIsUpperCased) {
  const result r = run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion","lead_id":3,"currency":"eur","conversion_value":0})");
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_EQ(r.touch().currency, "EUR");
  EXPECT_TRUE(r.touch().has_conversion_value);
  EXPECT_EQ(r.touch().conversion_value, 0);
}

TEST(Touchpoint, NonConversionHasNoDefaultCurrency) {
  const result r = run(touch(""));
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_FALSE(r.touch().is_conversion);
  EXPECT_FALSE(r.touch().has_conversion_value);
  EXPECT_TRUE(r.touch().currency.empty());
  EXPECT_EQ(r.touch().group, channel_group::direct);
  EXPECT_EQ(r.touch().anonymous_id, "a1");
}

TEST(Touchpoint, ExperimentExposure) {
  const result r = run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"experiment_exposure","anonymous_id":"a","ab_test_id":"checkout","variant":"B"})");
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_EQ(r.touch().type, touch_type::experiment_exposure);
  EXPECT_EQ(r.touch().ab_test_id, "checkout");
  EXPECT_EQ(r.touch().variant, "B");
}

TEST(Touchpoint, ChannelGroupEndToEnd) {
  const std::pair<const char*, channel_group> cases[] = {
      {R"(,"referrer":"https://www.google.co.uk/")", channel_group::organic_search},
      {R"(,"referrer":"https://l.facebook.com/")", channel_group::organic_social},
      {R"(,"referrer":"https://news.ycombinator.com/")", channel_group::referral},
      {R"(,"landing_url":"https://s.com/?utm_source=facebook&utm_medium=paid_social")", channel_group::paid_social},
      {R"(,"landing_url":"https://s.com/?utm_source=dv360&utm_medium=display")", channel_group::display},
      {R"(,"landing_url":"https://s.com/?utm_source=awin&utm_medium=affiliate")", channel_group::affiliates},
      {R"(,"landing_url":"https://s.com/?utm_source=twilio&utm_medium=sms")", channel_group::sms},
      {R"(,"utm_source":"newsletter","utm_medium":"e-mail")", channel_group::email},
      {R"(,"msclkid":"x")", channel_group::paid_search},
      {R"(,"utm_source":"partner","utm_medium":"unknown")", channel_group::other},
  };
  for (const auto& [extra, group] : cases) {
    const result r = run(touch(extra));
    ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << extra << ": " << r.reason();
    EXPECT_EQ(to_string(r.touch().group), to_string(group)) << extra;
  }
}

TEST(Touchpoint, FieldsOfTheOtherKindGoToMetadata) {
  const result r = run(touch(R"(,"channel":5,"status":"sent")"));
  ASSERT_EQ(r.outcome, normalize_outcome::touchpoint) << r.reason();
  EXPECT_EQ(r.touch().metadata, R"({"channel":5,"status":"sent"})");
  const result c = run(comm(R"(,"touch_type":["x"],"message_id":"m")"));
  ASSERT_EQ(c.outcome, normalize_outcome::communication) << c.reason();
  EXPECT_EQ(c.comm().metadata, R"({"touch_type":["x"],"message_id":"m"})");
}

// ----------------------------------------------------------------------------------------------------------
// Metadata

TEST(Metadata, MergesMetadataThenUnknownFieldsAsValidJson) {
  const result r = run(
      R"({"foo":"top","kind":"communication","metadata":{"foo":"meta","n":-1.5e-3,"deep":{"a":[1,{"b":null}],"t":true,"f":false},"uni":"\u00e9\"\\"},"occurred_at":"2024-05-01T10:00:00Z","channel":"email","status":"sent","tenant_id":"t-1","big":1e300,"k\u0065y":"v", "spaced" : [ 1 , 2 ] })");
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  const std::string_view meta = r.comm().metadata;
  EXPECT_EQ(meta,
            R"({"foo":"meta","n":-1.5e-3,"deep":{"a":[1,{"b":null}],"t":true,"f":false},"uni":"\u00e9\"\\","foo":"top","tenant_id":"t-1","big":1e300,"k\u0065y":"v","spaced":[1,2]})");
  EXPECT_TRUE(r.comm().tenant_id.empty()) << "a body cannot choose its tenant";

  // It parses back (simdjson DOM), members in order, duplicates kept.
  simdjson::dom::parser parser;
  simdjson::padded_string padded(meta);
  simdjson::dom::object object;
  ASSERT_EQ(parser.parse(padded).get(object), simdjson::SUCCESS);
  std::vector<std::string> keys;
  for (auto [key, value] : object) keys.emplace_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"foo", "n", "deep", "uni", "foo", "tenant_id", "big", "key", "spaced"}));
}

// PostgreSQL's numeric takes numbers no double can hold; they are kept as written.
TEST(Metadata, NumbersBeyondDoubleAreKeptVerbatim) {
  const result r = run(comm(R"(,"big":1e400,"long":123456789012345678901234567890,"tiny":-1E-400)"));
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().metadata, R"({"big":1e400,"long":123456789012345678901234567890,"tiny":-1E-400})");
}

TEST(Metadata, EmptyIsNull) {
  EXPECT_TRUE(run(comm(R"(,"metadata":{})")).comm().metadata.empty());
  EXPECT_EQ(run(comm(R"(,"metadata":{},"x":{})")).comm().metadata, R"({"x":{}})");
  EXPECT_EQ(run(comm(R"(,"x":[])")).comm().metadata, R"({"x":[]})");
}

TEST(Metadata, EveryEmittedTextParsesBack) {
  const char* const extras[] = {
      R"(,"a":"\ud83d\ude00","b":"\/","c":0,"d":-0,"e":1E+2)",
      R"(,"metadata":{"x":{"y":{"z":[[],[{}]]}}})",
      R"(,"metadata":{"a":1},"metadata2":{"a":2})",
      R"(,"s":"line\nbreak\ttab")",
  };
  simdjson::dom::parser parser;
  for (const char* extra : extras) {
    const result r = run(comm(extra));
    ASSERT_EQ(r.outcome, normalize_outcome::communication) << extra << ": " << r.reason();
    simdjson::padded_string padded(r.comm().metadata);
    simdjson::dom::element doc;
    EXPECT_EQ(parser.parse(padded).get(doc), simdjson::SUCCESS) << r.comm().metadata;
  }
}

// ----------------------------------------------------------------------------------------------------------
// Batches

TEST(Batch, ViewsLiveInTheBatchArena) {
  normalizer n;
  event_batch batch;
  std::string json = comm(R"(,"provider":"sendgrid","email":"a@b.com","metadata":{"k":"v"})");
  ASSERT_EQ(n.normalize(json, {"f", 1}, received, batch), normalize_outcome::communication);
  std::fill(json.begin(), json.end(), 'X');  // the input is gone
  for (int i = 0; i < 100; ++i) n.normalize(touch(""), {"f", 2}, received, batch);  // the parser is reused
  event_batch moved = std::move(batch);
  EXPECT_EQ(moved.communications[0].provider, "sendgrid");
  EXPECT_EQ(moved.communications[0].email, "a@b.com");
  EXPECT_EQ(moved.communications[0].metadata, R"({"k":"v"})");
  EXPECT_EQ(moved.record_count(), 101u);
  moved.clear();
  EXPECT_EQ(moved.record_count(), 0u);
}

TEST(Batch, NowIsPlausible) {
  EXPECT_GT(now_us(), 1700000000LL * 1000000);
}

// Robustness: mutated records (deleted, inserted, duplicated and cut bytes) never crash, never throw, always
// give exactly one record, and whatever is accepted carries valid UTF-8 and an object-shaped metadata text.
TEST(Robustness, MutatedRecordsAlwaysGiveOneRecord) {
  const std::vector<std::string> seeds = {
      comm(R"(,"lead_id":5,"email":" A@B.com","phone":"(415) 555-2671","metadata":{"a":[1,{"b":"\u00e9"}],"n":null},"x":true)"),
      touch(R"(,"landing_url":"https://s.com/?utm_source=google&utm_medium=cpc&gclid=x%20y","conversion_value":1.5e2,"currency":"eur")"),
      R"({"kind":"touchpoint","occurred_at":1714557600123,"touch_type":"experiment_exposure","lead_id":1,"ab_test_id":"t","variant":"v"})",
  };
  const std::string alphabet = "{}[]\",:\\u0123456789eE+-.tfnlrsa \t\n\x00\xff\xc3\xa9";
  std::mt19937_64 rng(20261122);
  normalizer n;
  event_batch batch;
  for (int i = 0; i < 20000; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const std::size_t pos = rng() % s.size();
      switch (rng() % 4) {
        case 0: s.erase(pos, 1 + rng() % 3); break;
        case 1: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        case 2: s.insert(pos, s.substr(rng() % s.size(), rng() % 8)); break;
        case 3: s.resize(pos); break;
      }
    }
    const std::size_t before = batch.record_count();
    const auto outcome = n.normalize(s, {"fuzz", static_cast<std::uint64_t>(i)}, received, batch);
    ASSERT_EQ(batch.record_count(), before + 1) << s;
    if (outcome == normalize_outcome::rejected) {
      const std::string_view reason = batch.rejections.back().reason;
      ASSERT_FALSE(reason.empty()) << s;
      ASSERT_TRUE(simdjson::validate_utf8(reason.data(), reason.size())) << s;
    } else {
      const std::string_view meta = outcome == normalize_outcome::communication ? batch.communications.back().metadata
                                                                                : batch.touchpoints.back().metadata;
      ASSERT_TRUE(meta.empty() || (meta.front() == '{' && meta.back() == '}')) << s;
      ASSERT_TRUE(simdjson::validate_utf8(meta.data(), meta.size())) << s;
    }
    if (batch.record_count() > 1000) batch.clear();
  }
}

// The sample file: every line normalizes, through the splitter, with the right line numbers.
TEST(SampleFile, EveryLineNormalizes) {
  std::ifstream file(CRM_SOURCE_DIR "/tests/transform/normalize/testdata/sample.ndjson", std::ios::binary);
  ASSERT_TRUE(file) << "missing testdata/sample.ndjson";
  std::stringstream content;
  content << file.rdbuf();
  normalizer n;
  event_batch batch;
  record_splitter splitter;
  std::vector<std::uint64_t> lines;
  auto on_record = [&](const split_record& r) {
    ASSERT_TRUE(r.error.empty()) << r.error;
    lines.push_back(r.line);
    const auto outcome = n.normalize(r.text, {"sample.ndjson", r.line}, received, batch);
    EXPECT_NE(outcome, normalize_outcome::rejected)
        << "line " << r.line << ": " << (batch.rejections.empty() ? "" : batch.rejections.back().reason);
  };
  splitter.feed(content.str(), on_record);
  splitter.finish(on_record);
  EXPECT_EQ(lines, (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 7, 8, 9, 10}));  // line 6 is blank
  EXPECT_EQ(batch.communications.size(), 5u);
  EXPECT_EQ(batch.touchpoints.size(), 4u);
  EXPECT_EQ(batch.touchpoints[0].group, channel_group::paid_search);
  EXPECT_EQ(batch.touchpoints[1].group, channel_group::referral);
  EXPECT_EQ(batch.touchpoints[2].currency, "EUR");
  EXPECT_EQ(batch.communications[3].error_code, "550");
}

}  // namespace
}  // namespace crm::transform
