// Exchange rates and the reporting currency (schemas/0007_currencies.sql): the writes of `crm-ingest rates
// import` and `rates reporting-currency`, and what the reports say about currencies. Each function runs its
// statements on the caller's connection and thread; libpqxx errors go through to the caller.
#pragma once

#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace crm::sinks::postgres {

struct rate_input {
  std::string day;       // YYYY-MM-DD
  std::string currency;  // ISO 4217, upper case, not the base
  std::string rate;      // a positive decimal
};

struct rates_write_result {
  long long inserted = 0, updated = 0, unchanged = 0;
  std::vector<std::string> currencies;  // of the inserted or updated rows, sorted
  std::string first_day, last_day;      // of the inserted or updated rows; empty when none
  long long conversions_refreshed = 0;  // crm_rates_changed()
};
// Upserts the rates against `base` in one transaction (a rate equal to the stored one is left alone), then, in
// the same transaction, re-attributes the conversions they convert (crm_rates_changed). The input holds no
// (day, currency) twice.
rates_write_result write_exchange_rates(pqxx::connection& conn, const std::string& base,
                                        const std::vector<rate_input>& rates);

// attribution_settings.reporting_currency.
std::string read_reporting_currency(pqxx::connection& conn);

// Conversions with a value whose rate is missing (crm_fx_factor NULL), by currency (empty = no currency);
// `from`/`to` bound the UTC day of the conversion (YYYY-MM-DD, inclusive; empty = open).
struct awaiting_rate {
  std::string currency;
  long long conversions = 0;
  std::string first_day, last_day;
};
std::vector<awaiting_rate> read_awaiting_rates(pqxx::connection& conn, const std::string& from, const std::string& to);

// What is loaded: one row per base and currency.
struct rates_coverage {
  std::string base, currency, first_day, last_day;
  long long days = 0;
};
std::vector<rates_coverage> read_rates_coverage(pqxx::connection& conn);

}  // namespace crm::sinks::postgres
