#include "sinks/postgres/copy_encoder.h"

#include <gtest/gtest.h>

namespace pg = crm::sinks::postgres;

namespace {

TEST(CopyEncoder, FormatsTimestampsInUtcWithMicroseconds) {
  struct row {
    crm::transform::timestamp_us us;
    const char* text;
  } rows[] = {
      {0, "1970-01-01 00:00:00.000000+00"},
      {1793491200LL * 1000000 + 123456, "2026-11-01 00:00:00.123456+00"},
      {951782400LL * 1000000, "2000-02-29 00:00:00.000000+00"},   // leap day
      {4102444799LL * 1000000 + 999999, "2099-12-31 23:59:59.999999+00"},
      {-1, "1969-12-31 23:59:59.999999+00"},
  };
  for (const auto& r : rows) {
    char buf[32];
    auto n = pg::format_timestamp(r.us, buf);
    EXPECT_EQ(std::string(buf, n), r.text) << r.us;
  }
}

TEST(CopyEncoder, MonthIndexCountsFromYearZero) {
  EXPECT_EQ(pg::month_index(0), 1970 * 12);
  EXPECT_EQ(pg::month_index(1793491200LL * 1000000), 2026 * 12 + 10);  // November
  EXPECT_EQ(pg::month_index(1793491200LL * 1000000 - 1), 2026 * 12 + 9);
}

TEST(CopyEncoder, EscapesCopyTextSpecialCharacters) {
  pg::copy_encoder e;
  e.text("a\tb\nc\rd\\e");
  e.tab();
  e.text("");
  EXPECT_EQ(e.buffer(), "a\\tb\\nc\\rd\\\\e\t\\N");
}

TEST(CopyEncoder, RejectionKeepsInvalidUtf8AsBytes) {
  pg::copy_encoder e;
  crm::transform::rejection r;
  r.source = "f:1";
  r.reason = "bad";
  r.raw = std::string_view("ok\xff\0x", 5);
  e.append(r);
  // raw shows U+FFFD for the bad byte and the NUL, raw_bytes keeps the exact bytes.
  EXPECT_NE(e.buffer().find("ok\xEF\xBF\xBD\xEF\xBF\xBDx\t\\\\x6f6bff0078\n"), std::string::npos) << e.buffer();
}

TEST(CopyEncoder, ValidUtf8RejectionHasNoBytes) {
  pg::copy_encoder e;
  crm::transform::rejection r;
  r.source = "f:2";
  r.reason = "bad";
  r.raw = "{\"a\":\"\xC3\xA9\"}";
  e.append(r);
  EXPECT_NE(e.buffer().find("{\"a\":\"\xC3\xA9\"}\t\\N\n"), std::string::npos) << e.buffer();
}

}  // namespace
