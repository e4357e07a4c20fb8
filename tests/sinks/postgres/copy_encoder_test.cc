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
      {253402300799LL * 1000000 + 999999, "9999-12-31 23:59:59.999999+00"},
      {253402300800LL * 1000000, "10000-01-01 00:00:00.000000+00"},
      {317278807200LL * 1000000 + 1, "12024-03-01 10:00:00.000001+00"},
      {6249223180800LL * 1000000 + 999999, "200000-01-01 00:00:00.999999+00"},
  };
  for (const auto& r : rows) {
    char buf[40];
    auto n = pg::format_timestamp(r.us, buf);
    EXPECT_EQ(std::string(buf, n), r.text) << r.us;
  }
}

TEST(CopyEncoder, MonthIndexCountsFromYearZero) {
  EXPECT_EQ(pg::month_index(0), 1970 * 12);
  EXPECT_EQ(pg::month_index(1793491200LL * 1000000), 2026 * 12 + 10);  // November
  EXPECT_EQ(pg::month_index(1793491200LL * 1000000 - 1), 2026 * 12 + 9);
}

TEST(CopyEncoder, WritesTheBinaryCopyHeaderFieldsAndTrailer) {
  pg::copy_encoder e;
  EXPECT_TRUE(e.finish().empty());  // no rows, no stream
  e.begin_row(4);
  e.int8(0x0102030405060708LL);
  e.null();
  e.text("hé");
  e.timestamp(946684800LL * 1000000 + 1);  // 2000-01-01T00:00:00.000001Z = 1 in PostgreSQL's epoch
  const std::string& s = e.finish();
  const std::string expected = std::string("PGCOPY\n\377\r\n\0", 11) + std::string(8, '\0') +  // signature, flags, ext
                               std::string("\0\4", 2) +                                         // 4 fields
                               std::string("\0\0\0\x08\x01\x02\x03\x04\x05\x06\x07\x08", 12) +   // int8
                               std::string("\xff\xff\xff\xff", 4) +                              // NULL
                               std::string("\0\0\0\3h\xC3\xA9", 7) +                             // text
                               std::string("\0\0\0\x08\0\0\0\0\0\0\0\x01", 12) +                 // timestamptz
                               std::string("\xff\xff", 2);                                       // trailer
  EXPECT_EQ(s, expected);
  EXPECT_EQ(e.rows(), 1u);
}

TEST(CopyEncoder, ZeroIdsAndEmptyTextsAreNull) {
  pg::copy_encoder e;
  e.begin_row(3);
  e.id(0);
  e.text("");
  e.jsonb("");
  EXPECT_EQ(e.buffer().substr(21), std::string(12, '\xff'));
}

TEST(CopyEncoder, JsonbCarriesItsVersionByte) {
  pg::copy_encoder e;
  e.begin_row(1);
  e.jsonb("{}");
  EXPECT_EQ(e.buffer().substr(21), std::string("\0\0\0\3\1{}", 7));
}

TEST(CopyEncoder, InvalidUtf8IsShownReplacedAndKeptExactly) {
  std::string clean;
  EXPECT_TRUE(pg::to_valid_utf8(std::string_view("ok\xff\0x", 5), clean));
  EXPECT_EQ(clean, "ok\xEF\xBF\xBD\xEF\xBF\xBDx");
  EXPECT_FALSE(pg::to_valid_utf8("{\"a\":\"\xC3\xA9\"}", clean));
  EXPECT_TRUE(pg::to_valid_utf8("\xC0\xAF", clean));      // overlong '/'
  EXPECT_TRUE(pg::to_valid_utf8("\xED\xA0\x80", clean));  // surrogate
  EXPECT_TRUE(pg::to_valid_utf8("\xE2\x82", clean));      // truncated sequence

  pg::copy_encoder e;
  crm::transform::rejection r;
  r.source = "f:1";
  r.reason = "bad";
  r.raw = std::string_view("ok\xff", 3);
  e.append(r);
  // raw_bytes: the exact 3 bytes, not NULL; then tenant_id and idempotency_key: NULL (none).
  EXPECT_EQ(e.buffer().substr(e.buffer().size() - 15),
            std::string("\0\0\0\3ok\xff\xff\xff\xff\xff\xff\xff\xff\xff", 15));
  r.tenant_id = "acme";
  e.append(r);
  EXPECT_EQ(e.buffer().substr(e.buffer().size() - 12), std::string("\0\0\0\4acme\xff\xff\xff\xff", 12));
  r.idempotency_key = "acme-std:msg_77";
  e.append(r);
  EXPECT_EQ(e.buffer().substr(e.buffer().size() - 27), std::string("\0\0\0\4acme\0\0\0\x0f" "acme-std:msg_77", 27));
}

}  // namespace

#include "sinks/postgres/connection.h"

namespace {

TEST(RedactDsn, HidesPasswordsInEveryForm) {
  using crm::sinks::postgres::redact_dsn;
  EXPECT_EQ(redact_dsn("postgresql://crm:s3cret@db:5432/crm"), "postgresql://crm:***@db:5432/crm");
  EXPECT_EQ(redact_dsn("host=db user=crm password=s3cret dbname=crm"), "host=db user=crm password=*** dbname=crm");
  EXPECT_EQ(redact_dsn("host=db password = 'a b c' dbname=crm"), "host=db password = *** dbname=crm");
  EXPECT_EQ(redact_dsn("postgresql://db/crm?user=crm&password=s3cret&sslmode=require"),
            "postgresql://db/crm?user=crm&password=***&sslmode=require");
  EXPECT_EQ(redact_dsn("postgresql://crm@127.0.0.1:5432/crm"), "postgresql://crm@127.0.0.1:5432/crm");
}

}  // namespace
