// Exchange-rate files (ingest/rates/rates_csv.h): the ECB's wide forms (history with N/A and the trailing comma,
// the daily file with blanks and written-out dates), the long form, and every bad line named with file:line.
#include "ingest/rates/rates_csv.h"

#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace {

using crm::ingest::rates::is_rate;
using crm::ingest::rates::parse_rate_day;
using crm::ingest::rates::parse_rates_csv;
using crm::ingest::rates::rates_file;

std::string fixture(const std::string& name) {
  std::ifstream f(std::string(CRM_FIXTURES_DIR) + "/rates/" + name, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string quote_of(const rates_file& r, const std::string& day, const std::string& currency) {
  for (const auto& q : r.quotes) {
    if (q.day == day && q.currency == currency) return q.rate;
  }
  return "(none)";
}

TEST(RatesCsv, EcbHistoryWithNotQuotedCellsAndTrailingComma) {
  const auto r = parse_rates_csv(fixture("eurofxref-hist-sample.csv"), "hist.csv", "EUR");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.format, "ecb");
  EXPECT_EQ(r.data_lines, 6u);
  // 9 currencies; the 2024 rows leave CYP and HRK N/A (5 rows x 2), the 2007 row quotes all.
  EXPECT_EQ(r.not_quoted, 10u);
  EXPECT_EQ(r.quotes.size(), 6u * 9u - 10u);
  EXPECT_EQ(quote_of(r, "2024-01-05", "USD"), "1.0921");
  EXPECT_EQ(quote_of(r, "2024-01-08", "GBP"), "0.86030");  // kept as written
  EXPECT_EQ(quote_of(r, "2007-12-31", "CYP"), "0.58420");
  EXPECT_EQ(quote_of(r, "2024-01-05", "CYP"), "(none)");
  EXPECT_EQ(r.quotes.front().line, 2u);
}

TEST(RatesCsv, EcbDailyFileWithBlanksAndWrittenDate) {
  const auto r = parse_rates_csv(fixture("eurofxref-daily-sample.csv"), "daily.csv", "EUR");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.format, "ecb");
  EXPECT_EQ(r.quotes.size(), 11u);
  EXPECT_EQ(quote_of(r, "2024-01-09", "PLN"), "4.3508");
  EXPECT_EQ(quote_of(r, "2024-01-09", "USD"), "1.0940");
}

TEST(RatesCsv, LongFormAnyColumnOrderAndCase) {
  auto r = parse_rates_csv(fixture("long-jpy.csv"), "long.csv", "EUR");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.format, "long");
  ASSERT_EQ(r.quotes.size(), 2u);
  EXPECT_EQ(quote_of(r, "2024-01-08", "JPY"), "158.07");
  r = parse_rates_csv("\xEF\xBB\xBFRate,Currency,Date\r\n\r\n0.9,gbp,2024-02-01\r\n\"1.25\",\"usd\",\"1 Feb 2024\"\r\n",
                      "l.csv", "EUR");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(quote_of(r, "2024-02-01", "GBP"), "0.9");
  EXPECT_EQ(quote_of(r, "2024-02-01", "USD"), "1.25");
  EXPECT_EQ(r.quotes[1].line, 4u);
}

TEST(RatesCsv, EveryBadLineIsNamed) {
  const std::string text =
      "date,currency,rate\n"
      "2024-01-05,USD,1.0921\n"
      "2024-02-30,USD,1.1\n"      // 3: no such day
      "2024-01-05,XYZ,1.1\n"      // 4: not ISO 4217
      "2024-01-05,GBP,0\n"        // 5: not positive
      "2024-01-05,GBP,-0.8\n"     // 6
      "2024-01-05,GBP,abc\n"      // 7
      "2024-01-05,GBP,inf\n"      // 8
      "2024-01-05,USD,1.0922\n"   // 9: twice
      "2024-01-05,EUR,1\n"        // 10: the base
      "2024-01-05,GBP\n"          // 11: a field short
      "2024-01-05,GBP,0.86\n";    // fine
  const auto r = parse_rates_csv(text, "bad.csv", "EUR");
  ASSERT_EQ(r.errors.size(), 9u);
  EXPECT_EQ(r.errors[0], "bad.csv:3: \"2024-02-30\" is not a date (YYYY-MM-DD or 5 January 2024)");
  EXPECT_EQ(r.errors[1], "bad.csv:4: currency \"XYZ\" is not an ISO 4217 code");
  EXPECT_EQ(r.errors[2], "bad.csv:5: GBP rate \"0\" is not a positive finite number");
  EXPECT_EQ(r.errors[3], "bad.csv:6: GBP rate \"-0.8\" is not a positive finite number");
  EXPECT_EQ(r.errors[4], "bad.csv:7: GBP rate \"abc\" is not a positive finite number");
  EXPECT_EQ(r.errors[5], "bad.csv:8: GBP rate \"inf\" is not a positive finite number");
  EXPECT_EQ(r.errors[6], "bad.csv:9: USD on 2024-01-05 already given on line 2");
  EXPECT_EQ(r.errors[7], "bad.csv:10: EUR is the base currency (--base EUR)");
  EXPECT_EQ(r.errors[8], "bad.csv:11: expected 3 fields (as the header), got 2");
  EXPECT_EQ(r.quotes.size(), 2u);
}

TEST(RatesCsv, BadEcbHeaderAndRows) {
  auto r = parse_rates_csv("Date,USD,XYZ,\n2024-01-05,1.09,1.0,\n", "h.csv", "EUR");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], "h.csv:1: column 3: \"XYZ\" is not an ISO 4217 code");
  r = parse_rates_csv("Date,USD,GBP,\n2024-01-05,1.09\n05/01/2024,1.09,0.86,\n2024-01-08,1.09,0.86,7,\n", "r.csv", "EUR");
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[0], "r.csv:2: expected 3 fields (as the header), got 2");
  EXPECT_EQ(r.errors[1], "r.csv:3: \"05/01/2024\" is not a date (YYYY-MM-DD or 5 January 2024)");  // once a row
  EXPECT_EQ(r.errors[2], "r.csv:4: field 4 has no currency in the header");
  r = parse_rates_csv("id,name\n1,2\n", "x.csv", "EUR");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0],
            "x.csv:1: expected a header: `Date,USD,JPY,...` (the ECB's reference rates) or `date,currency,rate`");
  r = parse_rates_csv("\n\n", "e.csv", "EUR");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], "e.csv:1: the file is empty");
  // Against USD, the ECB's USD column is the base itself.
  r = parse_rates_csv("Date,USD,GBP\n2024-01-05,1.09,0.86\n", "b.csv", "USD");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], "b.csv:1: column 2: USD is the base currency (--base USD)");
}

TEST(RatesCsv, DaysAndRates) {
  EXPECT_EQ(parse_rate_day("2024-01-05"), "2024-01-05");
  EXPECT_EQ(parse_rate_day("05 January 2024"), "2024-01-05");
  EXPECT_EQ(parse_rate_day("5 jan 2024"), "2024-01-05");
  EXPECT_EQ(parse_rate_day("29 February 2024"), "2024-02-29");
  for (const char* bad : {"29 February 2023", "2024-1-5", "2024-13-01", "January 5 2024", "5 Janvier 2024", "", "x"}) {
    EXPECT_EQ(parse_rate_day(bad), "") << bad;
  }
  for (const char* good : {"1.0921", "158.22", "0.5842", "1e-3", "20", ".5"}) EXPECT_TRUE(is_rate(good)) << good;
  for (const char* bad : {"0", "0.000", "-1", "+1", "1,5", "nan", "inf", "1e999", "", "1.2.3", "N/A", "0x10"}) {
    EXPECT_FALSE(is_rate(bad)) << bad;
  }
}

}  // namespace
