// event_codec: every field round-trips; untrusted bytes fail with an error code, never a crash.
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "transform/canonical/event_codec.h"

namespace crm::transform {
namespace {


constexpr std::int64_t i64_min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t i64_max = std::numeric_limits<std::int64_t>::max();

uuid make_id(std::uint8_t seed) {
  uuid id{};
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(seed * 31 + i * 17);
  return id;
}

// A distinct, non-empty value per field so that a swapped or dropped field shows.
std::string_view text(event_batch& b, const std::string& s) { return b.text.copy(s); }

communication full_communication(event_batch& b, int n) {
  const std::string k = std::to_string(n);
  communication c;
  c.event_id = make_id(static_cast<std::uint8_t>(n));
  c.occurred_at = 1'732'000'000'000'000 + n * 1000;
  c.received_at = c.occurred_at + 250'000;
  c.lead_id = 4200 + n;
  c.campaign_id = 77 + n;
  c.channel_ = static_cast<channel>(n % 6);
  c.direction_ = static_cast<direction>(n % 2);
  c.occurred_at_is_receipt_time = n % 3 == 1;
  c.status = static_cast<comm_status>(n % 11);
  c.provider = text(b, "sendgrid" + k);
  c.provider_message_id = text(b, "msg-" + k);
  c.provider_event_id = text(b, "evt-" + k);
  c.email = text(b, "lead" + k + "@example.com");
  c.phone = text(b, "+1555000" + k);
  c.ab_test_id = text(b, "ab-" + k);
  c.variant = text(b, "B" + k);
  c.url = text(b, "https://example.com/x?" + k);
  c.error_code = text(b, "550-" + k);
  c.error_reason = text(b, "mailbox unavailable " + k);
  c.metadata = text(b, R"({"k":")" + k + R"("})");
  c.tenant_id = text(b, "tenant-" + k);
  return c;
}

touchpoint full_touchpoint(event_batch& b, int n) {
  const std::string k = std::to_string(n);
  touchpoint t;
  t.touchpoint_id = make_id(static_cast<std::uint8_t>(100 + n));
  t.occurred_at = 1'732'000'000'000'000 - n * 777;
  t.received_at = t.occurred_at + 3;
  t.lead_id = n;
  t.campaign_id = 9000 + n;
  t.type = static_cast<touch_type>(n % 9);
  t.group = static_cast<channel_group>(n % 11);
  t.is_conversion = n % 2 == 0;
  t.has_conversion_value = n % 3 == 0;
  t.conversion_value = 19.99 * n;
  t.anonymous_id = text(b, "anon-" + k);
  t.message_id = text(b, "m-" + k);
  t.utm_source = text(b, "google" + k);
  t.utm_medium = text(b, "cpc" + k);
  t.utm_campaign = text(b, "spring" + k);
  t.utm_term = text(b, "shoes" + k);
  t.utm_content = text(b, "banner" + k);
  t.gclid = text(b, "gclid" + k);
  t.fbclid = text(b, "fbclid" + k);
  t.msclkid = text(b, "msclkid" + k);
  t.landing_url = text(b, "https://shop.example/" + k);
  t.referrer = text(b, "https://ref.example/" + k);
  t.conversion_type = text(b, "purchase" + k);
  t.currency = text(b, "EU" + k);
  t.ab_test_id = text(b, "exp-" + k);
  t.variant = text(b, "control" + k);
  t.metadata = text(b, R"({"t":)" + k + "}");
  t.tenant_id = text(b, "tn" + k);
  return t;
}

rejection full_rejection(event_batch& b, int n) {
  const std::string k = std::to_string(n);
  rejection r;
  r.received_at = 1'732'000'000'000'000 + n;
  r.source = text(b, "file.ndjson:" + k);
  r.reason = text(b, "occurred_at: not a timestamp " + k);
  r.raw = text(b, std::string("{\"bad\":\xff\xfe\0", 10) + k);  // not UTF-8, with a NUL
  r.tenant_id = text(b, "tenant-" + k);
  r.idempotency_key = text(b, "acme-std:msg_" + k);
  return r;
}

bool same_bits(double a, double b) { return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b); }

// Every field, spelled out: a field the codec forgets fails here.
void expect_same(const communication& a, const communication& b, std::size_t i) {
  SCOPED_TRACE("communication " + std::to_string(i));
  EXPECT_EQ(a.event_id, b.event_id);
  EXPECT_EQ(a.occurred_at, b.occurred_at);
  EXPECT_EQ(a.received_at, b.received_at);
  EXPECT_EQ(a.lead_id, b.lead_id);
  EXPECT_EQ(a.campaign_id, b.campaign_id);
  EXPECT_EQ(a.channel_, b.channel_);
  EXPECT_EQ(a.direction_, b.direction_);
  EXPECT_EQ(a.occurred_at_is_receipt_time, b.occurred_at_is_receipt_time);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.provider, b.provider);
  EXPECT_EQ(a.provider_message_id, b.provider_message_id);
  EXPECT_EQ(a.provider_event_id, b.provider_event_id);
  EXPECT_EQ(a.email, b.email);
  EXPECT_EQ(a.phone, b.phone);
  EXPECT_EQ(a.ab_test_id, b.ab_test_id);
  EXPECT_EQ(a.variant, b.variant);
  EXPECT_EQ(a.url, b.url);
  EXPECT_EQ(a.error_code, b.error_code);
  EXPECT_EQ(a.error_reason, b.error_reason);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.tenant_id, b.tenant_id);
}

void expect_same(const touchpoint& a, const touchpoint& b, std::size_t i) {
  SCOPED_TRACE("touchpoint " + std::to_string(i));
  EXPECT_EQ(a.touchpoint_id, b.touchpoint_id);
  EXPECT_EQ(a.occurred_at, b.occurred_at);
  EXPECT_EQ(a.received_at, b.received_at);
  EXPECT_EQ(a.lead_id, b.lead_id);
  EXPECT_EQ(a.campaign_id, b.campaign_id);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.group, b.group);
  EXPECT_EQ(a.is_conversion, b.is_conversion);
  EXPECT_EQ(a.has_conversion_value, b.has_conversion_value);
  EXPECT_TRUE(same_bits(a.conversion_value, b.conversion_value)) << a.conversion_value << " vs " << b.conversion_value;
  EXPECT_EQ(a.anonymous_id, b.anonymous_id);
  EXPECT_EQ(a.message_id, b.message_id);
  EXPECT_EQ(a.utm_source, b.utm_source);
  EXPECT_EQ(a.utm_medium, b.utm_medium);
  EXPECT_EQ(a.utm_campaign, b.utm_campaign);
  EXPECT_EQ(a.utm_term, b.utm_term);
  EXPECT_EQ(a.utm_content, b.utm_content);
  EXPECT_EQ(a.gclid, b.gclid);
  EXPECT_EQ(a.fbclid, b.fbclid);
  EXPECT_EQ(a.msclkid, b.msclkid);
  EXPECT_EQ(a.landing_url, b.landing_url);
  EXPECT_EQ(a.referrer, b.referrer);
  EXPECT_EQ(a.conversion_type, b.conversion_type);
  EXPECT_EQ(a.currency, b.currency);
  EXPECT_EQ(a.ab_test_id, b.ab_test_id);
  EXPECT_EQ(a.variant, b.variant);
  EXPECT_EQ(a.metadata, b.metadata);
  EXPECT_EQ(a.tenant_id, b.tenant_id);
}

void expect_same(const rejection& a, const rejection& b, std::size_t i) {
  SCOPED_TRACE("rejection " + std::to_string(i));
  EXPECT_EQ(a.received_at, b.received_at);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.raw, b.raw);
  EXPECT_EQ(a.tenant_id, b.tenant_id);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
}

void expect_same(const event_batch& a, const event_batch& b) {
  ASSERT_EQ(a.communications.size(), b.communications.size());
  ASSERT_EQ(a.touchpoints.size(), b.touchpoints.size());
  ASSERT_EQ(a.rejections.size(), b.rejections.size());
  for (std::size_t i = 0; i < a.communications.size(); ++i) expect_same(a.communications[i], b.communications[i], i);
  for (std::size_t i = 0; i < a.touchpoints.size(); ++i) expect_same(a.touchpoints[i], b.touchpoints[i], i);
  for (std::size_t i = 0; i < a.rejections.size(); ++i) expect_same(a.rejections[i], b.rejections[i], i);
}

struct round_trip_case {
  const char* name;
  void (*fill)(event_batch& b);
};

class EventCodecRoundTrip : public ::testing::TestWithParam<round_trip_case> {};

TEST_P(EventCodecRoundTrip, EveryFieldComesBack) {
  event_batch original;
  GetParam().fill(original);
  std::string bytes;
  encode_event_batch(original, bytes);

  event_batch decoded;
  decoded.communications.resize(3);  // stale content must be replaced
  const auto ec = decode_event_batch(bytes, decoded);
  ASSERT_FALSE(ec) << ec.message();
  expect_same(original, decoded);

  // Decoded strings live in the decoded batch's arena, not in the input.
  bytes.assign(bytes.size(), '\0');
  event_batch again;
  std::string reencoded;
  encode_event_batch(decoded, reencoded);
  ASSERT_FALSE(decode_event_batch(reencoded, again));
  expect_same(original, again);
}

INSTANTIATE_TEST_SUITE_P(
    Batches, EventCodecRoundTrip,
    ::testing::Values(
        round_trip_case{"empty", [](event_batch&) {}},
        round_trip_case{"one_of_each",
                        [](event_batch& b) {
                          b.communications.push_back(full_communication(b, 1));
                          b.touchpoints.push_back(full_touchpoint(b, 1));
                          b.rejections.push_back(full_rejection(b, 1));
                        }},
        round_trip_case{"every_enum_value",  // 6 channels x 2 directions x 11 statuses, 9 types x 11 groups
                        [](event_batch& b) {
                          for (int i = 0; i < 66; ++i) b.communications.push_back(full_communication(b, i));
                          for (int i = 0; i < 99; ++i) b.touchpoints.push_back(full_touchpoint(b, i));
                        }},
        round_trip_case{"absent_fields_stay_absent",
                        [](event_batch& b) {
                          b.communications.emplace_back();
                          b.touchpoints.emplace_back();
                          b.rejections.emplace_back();
                        }},
        round_trip_case{"extreme_numbers",
                        [](event_batch& b) {
                          const std::int64_t values[] = {i64_min, i64_max, -1, 0, 1, i64_min + 1, i64_max - 1};
                          for (auto v : values) {
                            communication c = full_communication(b, 3);
                            c.occurred_at = v;
                            c.received_at = v == i64_min ? i64_max : i64_min;  // the largest possible deltas
                            c.lead_id = v;
                            c.campaign_id = -v - 1;
                            b.communications.push_back(c);
                            touchpoint t = full_touchpoint(b, 3);
                            t.occurred_at = -v - 1;
                            t.received_at = v;
                            t.lead_id = v;
                            t.campaign_id = v;
                            b.touchpoints.push_back(t);
                            rejection r = full_rejection(b, 3);
                            r.received_at = v;
                            b.rejections.push_back(r);
                          }
                        }},
        round_trip_case{"special_doubles_and_flag_combinations",
                        [](event_batch& b) {
                          const double values[] = {0.0,
                                                   -0.0,
                                                   std::numeric_limits<double>::quiet_NaN(),
                                                   -std::numeric_limits<double>::infinity(),
                                                   std::numeric_limits<double>::denorm_min(),
                                                   std::numeric_limits<double>::max(),
                                                   123456.789};
                          int n = 0;
                          for (double v : values) {
                            for (int flags = 0; flags < 4; ++flags, ++n) {
                              touchpoint t = full_touchpoint(b, n);
                              t.conversion_value = v;
                              t.is_conversion = (flags & 1) != 0;
                              t.has_conversion_value = (flags & 2) != 0;
                              b.touchpoints.push_back(t);
                            }
                          }
                        }},
        round_trip_case{"large_and_binary_strings",
                        [](event_batch& b) {
                          std::string big(300000, 'q');
                          for (std::size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>(i);
                          rejection r = full_rejection(b, 9);
                          r.raw = b.text.copy(big);
                          b.rejections.push_back(r);
                          communication c = full_communication(b, 9);
                          c.metadata = b.text.copy(std::string(200, '\0'));
                          b.communications.push_back(c);
                        }}),
    [](const auto& info) { return std::string(info.param.name); });

event_batch sample_batch() {
  event_batch b;
  for (int i = 0; i < 3; ++i) b.communications.push_back(full_communication(b, i));
  for (int i = 0; i < 3; ++i) b.touchpoints.push_back(full_touchpoint(b, i));
  for (int i = 0; i < 2; ++i) b.rejections.push_back(full_rejection(b, i));
  return b;
}

TEST(EventCodec, EncodingIsCompact) {
  const event_batch b = sample_batch();
  std::string bytes;
  encode_event_batch(b, bytes);
  // Fixed-size fields are a small part: ids 16 bytes, timestamps a few bytes thanks to deltas.
  EXPECT_LT(bytes.size(), b.text.bytes_used() + b.record_count() * 48);
}

TEST(EventCodec, EveryTruncationFailsCleanly) {
  std::string bytes;
  encode_event_batch(sample_batch(), bytes);
  event_batch out;
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    // A copy of exactly n bytes, so ASan sees any read past the end.
    const std::string prefix = bytes.substr(0, n);
    const auto ec = decode_event_batch(prefix, out);
    ASSERT_TRUE(ec) << "a " << n << "-byte prefix decoded";
    EXPECT_EQ(&ec.category(), &codec_category());
    EXPECT_EQ(out.record_count(), 0u);
  }
  ASSERT_FALSE(decode_event_batch(bytes, out));
}

struct corruption_case {
  const char* name;
  void (*corrupt)(std::string& bytes);
  codec_errc expected;
};

class EventCodecCorruption : public ::testing::TestWithParam<corruption_case> {};

TEST_P(EventCodecCorruption, IsReportedWithItsReason) {
  event_batch b;
  b.touchpoints.push_back(full_touchpoint(b, 1));
  std::string bytes;
  encode_event_batch(b, bytes);
  GetParam().corrupt(bytes);
  event_batch out;
  EXPECT_EQ(decode_event_batch(bytes, out), GetParam().expected);
  EXPECT_EQ(out.record_count(), 0u);
}

// Layout of the one-touchpoint batch: 4 header bytes, counts 0,1,0 at [4,7), the touchpoint from 7:
// id [7,23), then occurred_at and received_at varints, lead_id, campaign_id, type, group, flags.
INSTANTIATE_TEST_SUITE_P(
    Corruptions, EventCodecCorruption,
    ::testing::Values(
        corruption_case{"bad_magic", [](std::string& s) { s[0] = 'X'; }, codec_errc::bad_magic},
        corruption_case{"newer_version", [](std::string& s) { s[2] = event_codec_version + 1; },
                        codec_errc::unsupported_version},
        corruption_case{"version_zero", [](std::string& s) { s[2] = 0; }, codec_errc::unsupported_version},
        corruption_case{"unknown_header_flags", [](std::string& s) { s[3] = 1; }, codec_errc::unsupported_version},
        corruption_case{"count_larger_than_the_input",
                        [](std::string& s) { s[5] = 0x7f; }, codec_errc::too_many_records},
        corruption_case{"huge_count",
                        [](std::string& s) { s.replace(4, 1, "\xff\xff\xff\xff\xff\xff\xff\xff\x7f"); },
                        codec_errc::too_many_records},
        corruption_case{"overlong_varint",
                        [](std::string& s) { s.replace(4, 1, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"); },
                        codec_errc::bad_varint},
        corruption_case{"eleven_byte_varint",
                        [](std::string& s) { s.replace(4, 1, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00"); },
                        codec_errc::bad_varint},
        corruption_case{"trailing_bytes", [](std::string& s) { s.push_back('!'); }, codec_errc::trailing_bytes},
        corruption_case{"string_length_past_the_end",
                        [](std::string& s) {
                          // The last tenant_id ("tn1") is preceded by its length byte 3; what follows it is
                          // shorter than 0x7f bytes.
                          const auto at = s.rfind(std::string("\x03tn1"));
                          ASSERT_NE(at, std::string::npos);
                          s[at] = 0x7f;
                        },
                        codec_errc::truncated}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(EventCodec, UndefinedEnumAndFlagValuesAreRefused) {
  event_batch b;
  b.touchpoints.push_back(full_touchpoint(b, 1));
  b.communications.push_back(full_communication(b, 1));
  std::string good;
  encode_event_batch(b, good);
  // Find the enum bytes by re-encoding with a marker value in each and diffing.
  struct probe {
    const char* name;
    void (*set)(event_batch& b);
    std::uint8_t bad;
  };
  const probe probes[] = {
      {"channel", [](event_batch& x) { x.communications[0].channel_ = channel::push; }, 6},
      {"direction", [](event_batch& x) { x.communications[0].direction_ = direction::outbound; }, 2},
      {"status", [](event_batch& x) { x.communications[0].status = comm_status::spam; }, 11},
      {"touch_type", [](event_batch& x) { x.touchpoints[0].type = touch_type::identify; }, 10},
      {"channel_group", [](event_batch& x) { x.touchpoints[0].group = channel_group::other; }, 11},
      {"touch_flags", [](event_batch& x) { x.touchpoints[0].is_conversion = !x.touchpoints[0].is_conversion; }, 8},
  };
  for (const auto& p : probes) {
    SCOPED_TRACE(p.name);
    event_batch changed;
    changed.communications.push_back(full_communication(changed, 1));
    changed.touchpoints.push_back(full_touchpoint(changed, 1));
    p.set(changed);
    std::string other;
    encode_event_batch(changed, other);
    ASSERT_EQ(other.size(), good.size());
    std::size_t at = good.size();
    for (std::size_t i = 0; i < good.size(); ++i) {
      if (good[i] != other[i]) {
        at = i;
        break;
      }
    }
    ASSERT_LT(at, good.size());
    std::string bad = good;
    bad[at] = static_cast<char>(p.name == std::string("touch_flags") ? (bad[at] | p.bad) : p.bad);
    event_batch out;
    EXPECT_EQ(decode_event_batch(bad, out), codec_errc::value_out_of_range);
  }
}

TEST(EventCodec, RandomGarbageAndBitFlipsNeverCrash) {
  std::mt19937_64 rng(12345);
  std::string good;
  encode_event_batch(sample_batch(), good);
  event_batch out;
  int decoded_ok = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string bytes;
    if (round % 2 == 0) {
      // Flip a few bits of a valid encoding: gets past the header and deep into the records.
      bytes = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] ^= static_cast<char>(1u << (rng() % 8));
    } else {
      bytes.resize(rng() % 256);
      for (auto& c : bytes) c = static_cast<char>(rng());
      if (bytes.size() >= 4 && round % 4 == 1) bytes.replace(0, 4, std::string("EB\x01\x00", 4));
    }
    const auto ec = decode_event_batch(bytes, out);
    if (!ec) {
      ++decoded_ok;
      // Whatever decoded must be self-consistent: it re-encodes to the same bytes or at least decodes again.
      std::string again;
      encode_event_batch(out, again);
      event_batch back;
      EXPECT_FALSE(decode_event_batch(again, back));
    } else {
      EXPECT_EQ(out.record_count(), 0u);
    }
  }
  // Flipping bits inside strings or ids leaves a valid batch: some must decode.
  EXPECT_GT(decoded_ok, 0);
}

// What the drainer and the Kafka source do: decode many records straight into the batch being filled.
TEST(EventCodec, AppendingDecodesAddToTheBatchAndAFailureLeavesItAsItWas) {
  const event_batch a = sample_batch();
  std::string bytes_a, bytes_b;
  encode_event_batch(a, bytes_a);
  event_batch b;
  b.communications.push_back(full_communication(b, 7));
  encode_event_batch(b, bytes_b);

  event_batch gathered;
  ASSERT_FALSE(append_decoded_event_batch(bytes_a, gathered));
  ASSERT_FALSE(append_decoded_event_batch(bytes_b, gathered));
  ASSERT_EQ(gathered.communications.size(), a.communications.size() + 1);
  ASSERT_EQ(gathered.touchpoints.size(), a.touchpoints.size());
  ASSERT_EQ(gathered.rejections.size(), a.rejections.size());
  // The gathered batch encodes like its parts together.
  event_batch both;
  both.append_copy(a);
  both.append_copy(b);
  std::string expected, got;
  encode_event_batch(both, expected);
  encode_event_batch(gathered, got);
  EXPECT_EQ(got, expected);

  // A record cut short in its last field: nothing of it stays, and what was gathered is intact.
  const auto before = gathered.record_count();
  EXPECT_EQ(append_decoded_event_batch(std::string_view(bytes_a).substr(0, bytes_a.size() - 1), gathered),
            codec_errc::truncated);
  EXPECT_EQ(gathered.record_count(), before);
  encode_event_batch(gathered, got);
  EXPECT_EQ(got, expected);
}

TEST(EventCodec, ErrorMessagesSayWhatWasWrong) {
  event_batch out;
  const auto ec = decode_event_batch("nope", out);
  EXPECT_EQ(ec, codec_errc::bad_magic);
  EXPECT_NE(ec.message().find("not an encoded event batch"), std::string::npos);
  EXPECT_STREQ(ec.category().name(), "spool.codec");
}

}  // namespace
// Records written by the previous version (1: rejections without tenant_id) are still read from a log.
TEST(EventCodec, Version1RecordsStillDecode) {
  // "EB" version 1, flags 0; no communications or touchpoints, two rejections: received_at deltas (zigzag
  // varints), then source, reason and raw, each length + bytes.
  const std::string v1 = std::string("EB\x01\x00\x00\x00\x02", 7) + "\x04" + "\x03s:1" + "\x02r1" + "\x02{}" + "\x02" +
                         "\x03s:2" + "\x02r2" + std::string("\x00", 1);
  event_batch out;
  ASSERT_FALSE(decode_event_batch(v1, out));
  ASSERT_EQ(out.rejections.size(), 2u);
  EXPECT_EQ(out.rejections[0].received_at, 2);
  EXPECT_EQ(out.rejections[0].source, "s:1");
  EXPECT_EQ(out.rejections[0].raw, "{}");
  EXPECT_TRUE(out.rejections[0].tenant_id.empty());
  EXPECT_EQ(out.rejections[1].received_at, 3);
  EXPECT_EQ(out.rejections[1].reason, "r2");
  EXPECT_TRUE(out.rejections[1].raw.empty());
  // The same bytes as version 2 lack the tenant strings: refused, not misread.
  std::string v2 = v1;
  v2[2] = 2;
  EXPECT_TRUE(decode_event_batch(v2, out));
}

// Version 2 (no lead_ref/campaign_ref, the last two strings of communications and touchpoints) is still read
// from a log or a topic, and a batch without references is still written so, for the previous release's readers.
TEST(EventCodec, Version2RecordsStillDecode) {
  event_batch batch;
  communication& c = batch.communications.emplace_back();
  c.event_id[0] = 1;
  c.occurred_at = 1700000000000000;
  c.received_at = c.occurred_at + 5;
  c.lead_id = 42;
  c.provider = batch.text.copy("sendgrid");
  c.tenant_id = batch.text.copy("t1");
  touchpoint& t = batch.touchpoints.emplace_back();
  t.touchpoint_id[0] = 2;
  t.occurred_at = c.occurred_at;
  t.received_at = c.received_at;
  t.anonymous_id = batch.text.copy("anon");
  t.tenant_id = batch.text.copy("t2");
  std::string v2;
  encode_event_batch(batch, v2);
  ASSERT_EQ(v2[2], 2);
  // Version 2 records end with their tenant_id.
  const auto at = v2.rfind(std::string("\x02t2"));
  ASSERT_NE(at, std::string::npos);
  EXPECT_EQ(at + 3, v2.size());  // the touchpoint's tenant_id is the last string: no references follow
  event_batch out;
  ASSERT_FALSE(decode_event_batch(v2, out));
  std::string again;
  encode_event_batch(out, again);
  EXPECT_EQ(again, v2);
  std::string v3;
  // A version 3 batch carries the references.
  batch.communications[0].lead_id = -7;
  batch.communications[0].lead_ref = batch.text.copy("L-1001");
  batch.touchpoints[0].campaign_id = -9;
  batch.touchpoints[0].campaign_ref = batch.text.copy("C-42");
  encode_event_batch(batch, v3);
  ASSERT_EQ(v3[2], 3);
  ASSERT_FALSE(decode_event_batch(v3, out));
  EXPECT_EQ(out.communications[0].lead_ref, "L-1001");
  EXPECT_EQ(out.communications[0].lead_id, -7);
  EXPECT_EQ(out.touchpoints[0].campaign_ref, "C-42");
  EXPECT_EQ(out.touchpoints[0].campaign_id, -9);
}

// From a review: a dead letter's idempotency key (what `rejected replay` needs to give its event the id a
// redelivery stores) travels in version 4; a batch whose dead letters have none is still written as version 3
// (or 2), and the dead letters of such a batch decode with no key.
TEST(EventCodec, ADeadLettersIdempotencyKeyTravelsInVersion4) {
  event_batch batch;
  rejection& r = batch.rejections.emplace_back();
  r.source = batch.text.copy("POST /v1/webhooks/standard:0");
  r.raw = batch.text.copy("{}");
  r.tenant_id = batch.text.copy("acme");
  std::string old;
  encode_event_batch(batch, old);
  ASSERT_EQ(old[2], 2);
  EXPECT_EQ(old.substr(old.size() - 5), "\x04" "acme");  // the tenant is the last string: no key follows
  event_batch out;
  ASSERT_FALSE(decode_event_batch(old, out));
  EXPECT_TRUE(out.rejections[0].idempotency_key.empty());
  EXPECT_EQ(out.rejections[0].tenant_id, "acme");
  batch.rejections[0].idempotency_key = batch.text.copy("acme-std:msg_77");
  std::string v4;
  encode_event_batch(batch, v4);
  ASSERT_EQ(v4[2], 4);
  ASSERT_FALSE(decode_event_batch(v4, out));
  EXPECT_EQ(out.rejections[0].idempotency_key, "acme-std:msg_77");
  EXPECT_EQ(out.rejections[0].tenant_id, "acme");
}

}  // namespace crm::transform
