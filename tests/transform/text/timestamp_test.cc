#include "transform/text/timestamp.h"

#include <gtest/gtest.h>

#include <string>

namespace crm::transform::detail {
namespace {

constexpr timestamp_us us(std::int64_t seconds, std::int64_t micros = 0) { return seconds * 1'000'000 + micros; }

// A text and the instant it must read as.
struct parse_case {
  const char* text;
  timestamp_us expected;
};
using rfc3339_case = parse_case;
using epoch_case = parse_case;

// `parse` reads c.text as exactly c.expected, reporting no problem.
void expect_parses(const char* (*parse)(std::string_view, timestamp_us&) noexcept, const parse_case& c) {
  timestamp_us t = 0;
  const char* problem = parse(c.text, t);
  ASSERT_EQ(problem, nullptr) << c.text << ": " << problem;
  EXPECT_EQ(t, c.expected) << c.text;
}

class Rfc3339Valid : public ::testing::TestWithParam<rfc3339_case> {};

TEST_P(Rfc3339Valid, Parses) { expect_parses(parse_rfc3339, GetParam()); }

// 1714557600 = 2024-05-01T10:00:00Z
INSTANTIATE_TEST_SUITE_P(
    Timestamps, Rfc3339Valid,
    ::testing::Values(rfc3339_case{"2024-05-01T10:00:00Z", us(1714557600)},
                      rfc3339_case{"2024-05-01t10:00:00z", us(1714557600)},
                      rfc3339_case{"2024-05-01 10:00:00Z", us(1714557600)},
                      rfc3339_case{"2024-05-01T12:00:00+02:00", us(1714557600)},
                      rfc3339_case{"2024-05-01T04:30:00-05:30", us(1714557600)},
                      rfc3339_case{"2024-05-01T10:00:00-00:00", us(1714557600)},
                      rfc3339_case{"2024-05-01T10:00:00.5Z", us(1714557600, 500000)},
                      rfc3339_case{"2024-05-01T10:00:00.123456Z", us(1714557600, 123456)},
                      rfc3339_case{"2024-05-01T10:00:00.123456789Z", us(1714557600, 123456)},  // truncated
                      rfc3339_case{"2024-05-01T10:00:00.000001+00:00", us(1714557600, 1)},
                      rfc3339_case{"2024-02-29T00:00:00Z", us(1709164800)},                  // leap year
                      rfc3339_case{"2000-02-29T00:00:00Z", us(951782400)},                   // 400-year rule
                      rfc3339_case{"1970-01-01T00:00:00Z", 0},
                      rfc3339_case{"1969-12-31T23:59:59.999999Z", -1},
                      rfc3339_case{"2016-12-31T23:59:60Z", us(1483228800)},                  // leap second rolls over
                      rfc3339_case{"2024-05-01T10:59:60+00:00", us(1714561200)},
                      rfc3339_case{"2024-01-01T00:30:00+01:00", us(1704067200 - 1800)}));     // offset crosses a year

class Rfc3339Invalid : public ::testing::TestWithParam<const char*> {};

TEST_P(Rfc3339Invalid, IsRejected) {
  timestamp_us t = 0;
  EXPECT_NE(parse_rfc3339(GetParam(), t), nullptr) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Timestamps, Rfc3339Invalid,
                         ::testing::Values("", "2024-05-01", "2024-05-01T10:00:00",  // no offset
                                           "2023-02-29T00:00:00Z",                  // not a leap year
                                           "1900-02-29T00:00:00Z",                  // century rule
                                           "2024-02-30T00:00:00Z", "2024-04-31T00:00:00Z",
                                           "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z",
                                           "2024-05-00T00:00:00Z", "2024-05-01T24:00:00Z",
                                           "2024-05-01T10:60:00Z", "2024-05-01T10:00:61Z",
                                           "2024-05-01T10:00:00.Z", "2024-05-01T10:00:00.1234567890Z",
                                           "2024-05-01T10:00:00+2:00", "2024-05-01T10:00:00+24:00",
                                           "2024-05-01T10:00:00+02:60", "2024-05-01T10:00:00+0200",
                                           "2024-05-01X10:00:00Z", "2024-5-01T10:00:00Z",
                                           "2024-05-01T10:00:00Z ", " 2024-05-01T10:00:00Z",
                                           "2024-05-01T10:00:00ZZ", "yesterday", "1714557600"));

class EpochNumbers : public ::testing::TestWithParam<epoch_case> {};

TEST_P(EpochNumbers, ConvertExactly) { expect_parses(epoch_number_to_us, GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Timestamps, EpochNumbers,
    ::testing::Values(epoch_case{"1714557600", us(1714557600)},                 // seconds
                      epoch_case{"1714557600123", us(1714557600, 123000)},      // milliseconds
                      epoch_case{"1714557600.123456", us(1714557600, 123456)},  // fraction of seconds
                      epoch_case{"1714557600.1234569", us(1714557600, 123456)}, // floored to microseconds
                      epoch_case{"1714557600123.5", us(1714557600, 123500)},    // fraction of milliseconds
                      epoch_case{"1.7145576e9", us(1714557600)},                // exponent
                      epoch_case{"1.714557600123E12", us(1714557600, 123000)},
                      epoch_case{"99999999999", us(99999999999)},               // < 1e11: seconds
                      epoch_case{"100000000000", us(100000000)},                // >= 1e11: milliseconds
                      epoch_case{"0", 0}, epoch_case{"-1.5", -1'500'000}, epoch_case{"0.0000001", 0}));

TEST(EpochNumbers, OutOfRangeIsAnError) {
  timestamp_us t = 0;
  EXPECT_NE(epoch_number_to_us("1e400", t), nullptr);
  EXPECT_NE(epoch_number_to_us("99999999999999999999999", t), nullptr);
  EXPECT_NE(epoch_number_to_us("abc", t), nullptr);
  EXPECT_NE(epoch_number_to_us("1e", t), nullptr);
}

TEST(FormatRfc3339, RoundTrips) {
  char buf[48];
  EXPECT_EQ(std::string(buf, format_rfc3339(us(1714557600), buf)), "2024-05-01T10:00:00Z");
  EXPECT_EQ(std::string(buf, format_rfc3339(us(1714557600, 42), buf)), "2024-05-01T10:00:00.000042Z");
  EXPECT_EQ(std::string(buf, format_rfc3339(-1, buf)), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(std::string(buf, format_rfc3339(us(951782400), buf)), "2000-02-29T00:00:00Z");
}

TEST(Calendar, LeapYears) {
  EXPECT_TRUE(is_leap_year(2024));
  EXPECT_TRUE(is_leap_year(2000));
  EXPECT_FALSE(is_leap_year(1900));
  EXPECT_FALSE(is_leap_year(2023));
  EXPECT_EQ(days_in_month(2024, 2), 29u);
  EXPECT_EQ(days_in_month(2023, 2), 28u);
  EXPECT_EQ(days_from_civil(1970, 1, 1), 0);
}

}  // namespace
}  // namespace crm::transform::detail
