// `crm-ingest rates import / reporting-currency / status` and what `report attribution` says about currencies,
// through the real binary: conversions in GBP, JPY and PLN await their rates, the ECB's history brings GBP and
// JPY (a Saturday takes Friday's rate), the daily file brings PLN late; a bad file writes nothing.
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "support/run_command.h"
#include "support/scratch.h"
#include "support/test_db.h"

namespace fs = std::filesystem;

namespace {

crm_test::command_result run(const std::string& args) { return crm_test::run_ingest("--log-level warn " + args); }

std::string fixture(const std::string& name) { return std::string(CRM_FIXTURES_DIR) + "/rates/" + name; }

std::string text(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  auto f = tx.exec(sql)[0][0];
  return f.is_null() ? "NULL" : f.as<std::string>();
}

void expect_has(const std::string& out, const std::string& piece) {
  EXPECT_NE(out.find(piece), std::string::npos) << "expected " << piece << " in:\n" << out;
}

std::string conversion(int n, const char* at, const char* currency, const char* value) {
  return std::string(R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-00000000000)") +
         std::to_string(n) + R"(","occurred_at":")" + at + R"(","lead_id":)" + std::to_string(n) +
         R"(,"touch_type":"conversion","conversion_value":)" + value + R"(,"currency":")" + currency + "\"}\n";
}

TEST(RatesImport, MissingRatesArriveLateAndAreConverted) {
  auto dir = crm_test::scratch("rates");
  crm_test::write_file(dir / "conversions.ndjson",
                       conversion(1, "2024-01-06T10:00:00Z", "gbp", "100") +    // Saturday: Friday's rate
                           conversion(2, "2024-01-08T10:00:00Z", "JPY", "1000") +
                           conversion(3, "2024-01-09T10:00:00Z", "PLN", "400") +  // its rate comes late
                           conversion(4, "2024-01-05T10:00:00Z", "USD", "50") +
                           conversion(5, "2024-01-05T11:00:00Z", "XYZ", "9"));    // not ISO 4217: dead letter
  auto dsn = crm_test::fresh_database("t_rates_cli");
  const std::string db = " --dsn '" + dsn + "'";
  auto r = run("import --no-progress" + db + " " + (dir / "conversions.ndjson").string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(text(dsn, "SELECT reason FROM rejected_events"), "currency: \"XYZ\" is not an ISO 4217 code");

  r = run("report attribution --by channel_group --model linear --format json" + db);
  ASSERT_EQ(r.status, 0) << r.out;
  expect_has(r.out, "revenue in USD (the reporting currency); 3 conversions awaiting an exchange rate");
  expect_has(r.out, R"("conversions":4,)");
  expect_has(r.out, R"(,"currency":"USD","awaiting_rate":3})");
  // Revenue is in the reporting currency: only the USD conversion has a value yet; the others keep their credit.
  const std::string revenue = "SELECT round(sum(revenue_credit), 6)::text FROM attribution_credits WHERE model = 'linear'";
  EXPECT_EQ(text(dsn, revenue), "50.000000");
  EXPECT_EQ(text(dsn, "SELECT count(*) FROM attribution_credits WHERE model = 'linear'"), "4");

  // The ECB's history: USD (the reporting currency) changed, so every non-USD conversion is re-attributed.
  r = run("rates import --summary json" + db + " " + fixture("eurofxref-hist-sample.csv"));
  ASSERT_EQ(r.status, 0) << r.out;
  expect_has(r.out, R"("format":"ecb","lines":6,"rates":44,"not_quoted":10,"base":"EUR","first_day":"2007-12-31",)"
                    R"("last_day":"2024-01-08","inserted":44,"updated":0,"unchanged":0,)"
                    R"("changed_currencies":"BGN,CHF,CYP,CZK,GBP,HRK,JPY,SEK,USD","conversions_refreshed":3,)");
  EXPECT_EQ(text(dsn, "SELECT round(crm_fx_factor('GBP', '2024-01-06'), 12)::text"), "1.266937354988");  // 1.0921/0.862
  EXPECT_EQ(text(dsn, "SELECT round(crm_fx_factor('JPY', '2024-01-08'), 12)::text"), "0.006924780161");  // 1.0946/158.07
  // 50 + 100 GBP x 1.0921/0.862 (Friday's rates) + 1000 JPY x 1.0946/158.07 = 50 + 126.693735 + 6.924780.
  EXPECT_EQ(text(dsn, revenue), "183.618516");
  EXPECT_EQ(text(dsn, "SELECT round(revenue_credit, 9)::text FROM attribution_credits WHERE model = 'linear'"
                      " AND lead_id = 1"), "126.693735499");
  r = run("report attribution --by channel_group --model linear --format json" + db);
  expect_has(r.out, "1 conversions awaiting an exchange rate, not in the revenue until it is loaded (`crm-ingest rates "
                    "import`): PLN 1 from 2024-01-09 to 2024-01-09");
  expect_has(r.out, R"("awaiting_rate":1})");

  // The daily file: PLN arrives; from 9 January on, only the PLN conversion is left to convert.
  r = run("rates import" + db + " " + fixture("eurofxref-daily-sample.csv"));
  ASSERT_EQ(r.status, 0) << r.out;
  expect_has(r.out, "read 1 lines (ecb form): 11 rates against EUR from 2024-01-09 to 2024-01-09");
  expect_has(r.out, "11 inserted, 0 updated, 0 unchanged");
  expect_has(r.out, "1 conversions re-converted into USD (the reporting currency)");
  EXPECT_EQ(text(dsn, "SELECT round(crm_fx_factor('PLN', '2024-01-09'), 12)::text"), "0.251448009561");  // 1.094/4.3508
  r = run("report attribution --by channel_group --model linear --format json" + db);
  expect_has(r.out, "every conversion has its exchange rate");
  EXPECT_EQ(text(dsn, revenue), "284.197719");  // + 400 PLN x 1.094/4.3508 = 100.579204, converted late
  // The tables are what a recompute gives.
  const std::string all = "SELECT string_agg(conversion_id::text || model || trim_scale(revenue_credit)::text, ','"
                          " ORDER BY conversion_id, model) FROM attribution_credits";
  const std::string before = text(dsn, all);
  ASSERT_EQ(run("report attribution --recompute" + db).status, 0);
  EXPECT_EQ(text(dsn, all), before);
  expect_has(r.out, R"("awaiting_rate":0})");

  // Again, and the long form of the same JPY rates: nothing changes, nothing is re-attributed.
  r = run("rates import --summary json" + db + " " + fixture("eurofxref-hist-sample.csv"));
  expect_has(r.out, R"("inserted":0,"updated":0,"unchanged":44,"changed_currencies":"","conversions_refreshed":0)");
  r = run("rates import --base eur --summary json" + db + " " + fixture("long-jpy.csv"));
  expect_has(r.out, R"("format":"long","lines":2,"rates":2,)");
  expect_has(r.out, R"("unchanged":2,)");

  // A bad line: every bad line named, nothing written, exit code 1.
  crm_test::write_file(dir / "bad.csv", "date,currency,rate\n2024-01-10,USD,1.0987\n2024-01-10,ABC,1\n"
                                        "2024-01-10,GBP,0\n");
  r = run("rates import" + db + " " + (dir / "bad.csv").string());
  EXPECT_EQ(r.status, 1) << r.out;
  expect_has(r.out, "bad.csv:3: currency \"ABC\" is not an ISO 4217 code");
  expect_has(r.out, "bad.csv:4: GBP rate \"0\" is not a positive finite number");
  expect_has(r.out, "2 bad line(s); nothing was written");
  EXPECT_EQ(text(dsn, "SELECT count(*) FROM exchange_rates WHERE day = '2024-01-10'"), "0");

  r = run("rates status" + db);
  ASSERT_EQ(r.status, 0) << r.out;
  expect_has(r.out, "reporting currency USD");
  expect_has(r.out, "rates EUR->PLN: 1 days from 2024-01-09 to 2024-01-09");
  expect_has(r.out, "no conversion awaits a rate");
}

TEST(RatesImport, ReportingCurrencyRecomputesAndCommandsExplainThemselves) {
  auto dsn = crm_test::fresh_database("t_rates_reporting");
  const std::string db = " --dsn '" + dsn + "'";
  auto r = run("rates import" + db + " " + fixture("eurofxref-hist-sample.csv"));
  ASSERT_EQ(r.status, 0) << r.out;
  r = run("rates reporting-currency eur" + db);
  ASSERT_EQ(r.status, 0) << r.out;
  expect_has(r.out, "reporting currency EUR (was USD); recomputed:");
  EXPECT_EQ(text(dsn, "SELECT round(crm_fx_factor('USD', '2024-01-06'), 12)::text"), "0.915667063456");  // 1/1.0921
  r = run("rates status" + db);
  expect_has(r.out, "reporting currency EUR");

  EXPECT_EQ(run("rates reporting-currency XYZ" + db).status, 2);
  EXPECT_EQ(run("rates import --base XYZ" + db + " " + fixture("long-jpy.csv")).status, 2);
  r = run("rates import" + db + " /nonexistent/rates.csv");
  EXPECT_EQ(r.status, 1) << r.out;
  for (const char* cmd : {"rates --help", "rates import --help", "rates reporting-currency --help",
                          "rates status --help"}) {
    r = run(cmd);
    EXPECT_EQ(r.status, 0) << cmd << r.out;
  }
  expect_has(run("rates import --help").out, "eurofxref");
  r = run("rates import --dry-run" + db + " " + fixture("eurofxref-daily-sample.csv"));
  expect_has(r.out, "dry run: nothing written");
  EXPECT_EQ(text(dsn, "SELECT count(*) FROM exchange_rates WHERE currency = 'PLN'"), "0");
}

}  // namespace
