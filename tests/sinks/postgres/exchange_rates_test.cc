// Currencies in the database (schemas/0007_currencies.sql, sinks/postgres/exchange_rates.h): crm_fx_factor on
// hand-computed cases (the same currency, an EUR-based cross rate, the last known rate before a weekend day,
// a missing rate), the upsert of rates, and crm_rates_changed re-attributing exactly the conversions a change
// can convert.
#include "sinks/postgres/exchange_rates.h"

#include <string>

#include <gtest/gtest.h>

#include "support/test_db.h"

namespace pg = crm::sinks::postgres;

namespace {

// The first value of `sql` as text, "NULL" for NULL (committed: crm_rates_changed writes).
std::string text(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  auto f = tx.exec(sql)[0][0];
  std::string v = f.is_null() ? "NULL" : f.as<std::string>();
  tx.commit();
  return v;
}

void exec(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  tx.exec(sql);
  tx.commit();
}

// The ECB's rates of Friday 5 and Monday 8 January 2024 (1 EUR = ... USD / GBP), hand-entered.
std::string with_rates(const std::string& name) {
  auto dsn = crm_test::fresh_database(name);
  exec(dsn, "INSERT INTO exchange_rates (day, base, currency, rate) VALUES"
            " ('2024-01-05', 'EUR', 'USD', 1.0921), ('2024-01-05', 'EUR', 'GBP', 0.86200),"
            " ('2024-01-08', 'EUR', 'USD', 1.0946), ('2024-01-08', 'EUR', 'GBP', 0.86030)");
  return dsn;
}

std::string factor(const std::string& dsn, const std::string& currency, const std::string& day,
                   const std::string& reporting) {
  return text(dsn, "SELECT round(crm_fx_factor('" + currency + "', '" + day + "', '" + reporting + "'), 12)::text");
}

TEST(ExchangeRates, SameCurrencyIsOneWithOrWithoutRates) {
  auto dsn = crm_test::fresh_database("t_fx_same");
  EXPECT_EQ(text(dsn, "SELECT crm_fx_factor('USD', '2024-01-06', 'USD')::text"), "1");
  EXPECT_EQ(text(dsn, "SELECT crm_fx_factor('jpy', '1999-01-01', 'JPY')::text"), "1");
  // The stored reporting currency is USD by default.
  EXPECT_EQ(text(dsn, "SELECT reporting_currency::text FROM attribution_settings"), "USD");
  EXPECT_EQ(text(dsn, "SELECT crm_fx_factor('USD', '2024-01-06')::text"), "1");
}

TEST(ExchangeRates, CrossRateThroughTheEuro) {
  auto dsn = with_rates("t_fx_cross");
  // 100 USD in GBP on 5 January: 100 / 1.0921 EUR = 100 * 0.86200 / 1.0921 GBP.
  EXPECT_EQ(factor(dsn, "USD", "2024-01-05", "GBP"), "0.789305008699");  // 0.86200 / 1.0921
  EXPECT_EQ(factor(dsn, "GBP", "2024-01-08", "USD"), "1.272346855748");  // 1.0946 / 0.86030
  // The base itself, both ways.
  EXPECT_EQ(factor(dsn, "EUR", "2024-01-05", "USD"), "1.092100000000");
  EXPECT_EQ(factor(dsn, "USD", "2024-01-05", "EUR"), "0.915667063456");  // 1 / 1.0921
}

TEST(ExchangeRates, WeekendTakesTheLastKnownRate) {
  auto dsn = with_rates("t_fx_weekend");
  // Saturday 6 and Sunday 7 January: Friday's rates; Monday: Monday's; later days: the last loaded (Monday).
  EXPECT_EQ(factor(dsn, "USD", "2024-01-06", "GBP"), "0.789305008699");
  EXPECT_EQ(factor(dsn, "USD", "2024-01-07", "GBP"), "0.789305008699");
  EXPECT_EQ(factor(dsn, "USD", "2024-01-08", "GBP"), "0.785949205189");  // 0.86030 / 1.0946
  EXPECT_EQ(factor(dsn, "USD", "2024-03-01", "GBP"), "0.785949205189");
}

TEST(ExchangeRates, MissingRateIsNull) {
  auto dsn = with_rates("t_fx_missing");
  EXPECT_EQ(factor(dsn, "JPY", "2024-01-08", "USD"), "NULL");  // never loaded
  EXPECT_EQ(factor(dsn, "USD", "2024-01-04", "GBP"), "NULL");  // before the first rate
  EXPECT_EQ(text(dsn, "SELECT crm_fx_factor(NULL, '2024-01-08')::text"), "NULL");
  EXPECT_EQ(text(dsn, "SELECT crm_fx_factor('GBP', NULL)::text"), "NULL");
  // A rate quoted against another base is used when it is the only way: 1 USD = 150 JPY.
  exec(dsn, "INSERT INTO exchange_rates VALUES ('2024-01-02', 'USD', 'JPY', 150)");
  EXPECT_EQ(factor(dsn, "JPY", "2024-01-08", "USD"), "0.006666666667");
  // The stored reporting currency drives the two-argument form.
  exec(dsn, "UPDATE attribution_settings SET reporting_currency = 'GBP'");
  EXPECT_EQ(text(dsn, "SELECT round(crm_fx_factor('USD', '2024-01-06'), 12)::text"), "0.789305008699");
}

TEST(ExchangeRates, RatesAreChecked) {
  auto dsn = crm_test::fresh_database("t_fx_checks");
  for (const char* bad : {"('2024-01-05', 'EUR', 'USD', 0)", "('2024-01-05', 'EUR', 'USD', -1)",
                          "('2024-01-05', 'EUR', 'EUR', 1)", "('2024-01-05', 'EUR', 'usd', 1)",
                          "('2024-01-05', 'EUR', 'USD', 'Infinity')"}) {
    EXPECT_THROW(exec(dsn, std::string("INSERT INTO exchange_rates (day, base, currency, rate) VALUES ") + bad),
                 pqxx::sql_error)
        << bad;
  }
}

// Conversions inserted as the writer would (the owner bypasses RLS), then re-attributed by a rate change.
TEST(ExchangeRates, UpsertThenRefreshTheConversionsTheRatesConvert) {
  auto dsn = crm_test::fresh_database("t_fx_changed");
  exec(dsn,
       "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, touch_type, channel_group,"
       " is_conversion, conversion_value, currency) VALUES"
       " ('00000000-0000-4000-8000-000000000001', '2024-01-06T12:00:00Z', now(), 1, 'conversion', 'Direct', true, 100, 'GBP'),"
       " ('00000000-0000-4000-8000-000000000002', '2024-01-08T12:00:00Z', now(), 2, 'conversion', 'Direct', true, 1000, 'JPY'),"
       " ('00000000-0000-4000-8000-000000000003', '2024-01-05T12:00:00Z', now(), 3, 'conversion', 'Direct', true, 50, 'USD'),"
       " ('00000000-0000-4000-8000-000000000004', '2023-12-01T12:00:00Z', now(), 4, 'conversion', 'Direct', true, 70, 'GBP')");
  pqxx::connection c(dsn);
  auto awaiting = pg::read_awaiting_rates(c, "", "");
  ASSERT_EQ(awaiting.size(), 2u);
  EXPECT_EQ(awaiting[0].currency, "GBP");
  EXPECT_EQ(awaiting[0].conversions, 2);
  EXPECT_EQ(awaiting[0].first_day, "2023-12-01");
  EXPECT_EQ(awaiting[1].currency, "JPY");

  // USD (the reporting currency) changes every cross rate: GBP and JPY conversions from 5 January on.
  auto w = pg::write_exchange_rates(c, "EUR", {{"2024-01-05", "USD", "1.0921"}, {"2024-01-05", "GBP", "0.86200"}});
  EXPECT_EQ(w.inserted, 2);
  EXPECT_EQ(w.updated, 0);
  EXPECT_EQ(w.currencies, (std::vector<std::string>{"GBP", "USD"}));
  EXPECT_EQ(w.first_day, "2024-01-05");
  EXPECT_EQ(w.conversions_refreshed, 2);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT conversion_id) FROM attribution_credits"), 2);
  awaiting = pg::read_awaiting_rates(c, "", "");
  ASSERT_EQ(awaiting.size(), 2u);  // JPY, and the December GBP one (before the first rate)
  EXPECT_EQ(awaiting[0].currency, "GBP");
  EXPECT_EQ(awaiting[0].conversions, 1);
  EXPECT_EQ(awaiting[1].currency, "JPY");

  // The same rates again: nothing changes, nothing is refreshed. A late JPY rate: only the JPY conversion.
  w = pg::write_exchange_rates(c, "EUR", {{"2024-01-05", "USD", "1.0921"}, {"2024-01-05", "GBP", "0.862"}});
  EXPECT_EQ(w.unchanged, 2);
  EXPECT_EQ(w.conversions_refreshed, 0);
  w = pg::write_exchange_rates(c, "EUR", {{"2024-01-08", "JPY", "158.07"}, {"2024-01-05", "GBP", "0.8625"}});
  EXPECT_EQ(w.inserted, 1);
  EXPECT_EQ(w.updated, 1);
  EXPECT_EQ(w.conversions_refreshed, 2);  // the GBP one of 6 January and the JPY one
  awaiting = pg::read_awaiting_rates(c, "2024-01-01", "");
  EXPECT_TRUE(awaiting.empty());
  EXPECT_EQ(text(dsn, "SELECT round(crm_fx_factor('JPY', '2024-01-08'), 12)::text"), "0.006908964383");  // 1.0921 / 158.07

  // A base in the set: every conversion not in the reporting currency, from that day on.
  EXPECT_EQ(text(dsn, "SELECT crm_rates_changed(ARRAY['EUR'], '2024-01-01')::text"), "2");
  EXPECT_EQ(text(dsn, "SELECT crm_rates_changed(ARRAY['GBP'], NULL)::text"), "2");
  EXPECT_EQ(text(dsn, "SELECT crm_rates_changed(ARRAY['CHF'], NULL)::text"), "0");
}

}  // namespace
