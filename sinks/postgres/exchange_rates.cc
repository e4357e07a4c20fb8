#include "sinks/postgres/exchange_rates.h"

#include <algorithm>

namespace crm::sinks::postgres {

namespace {

const char* or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

// A PostgreSQL array literal of values that need no quoting (dates, currency codes, decimals).
template <typename Field>
std::string array_of(const std::vector<rate_input>& rates, Field field) {
  std::string a = "{";
  for (std::size_t i = 0; i < rates.size(); ++i) a.append(i ? "," : "").append(rates[i].*field);
  return a.append("}");
}

}  // namespace

rates_write_result write_exchange_rates(pqxx::connection& conn, const std::string& base,
                                        const std::vector<rate_input>& rates) {
  rates_write_result r;
  pqxx::work tx(conn);
  tx.exec("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");  // crm_rates_changed's refresh needs it (0005)
  auto changed = tx.exec_params(
      "WITH w AS (INSERT INTO exchange_rates AS e (day, base, currency, rate)"
      " SELECT d, $1::char(3), c, x FROM unnest($2::date[], $3::text[], $4::numeric[]) AS u(d, c, x)"
      " ORDER BY d, c"
      " ON CONFLICT (day, base, currency) DO UPDATE SET rate = EXCLUDED.rate, loaded_at = now()"
      " WHERE e.rate <> EXCLUDED.rate"
      " RETURNING (xmax = 0) AS inserted, day, currency)"
      " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), min(day)::text,"
      " max(day)::text, coalesce(string_agg(DISTINCT currency::text, ','), '') FROM w",
      base, array_of(rates, &rate_input::day), array_of(rates, &rate_input::currency),
      array_of(rates, &rate_input::rate));
  const auto row = changed[0];
  r.inserted = row[0].as<long long>();
  r.updated = row[1].as<long long>();
  r.unchanged = static_cast<long long>(rates.size()) - r.inserted - r.updated;
  if (!row[2].is_null()) r.first_day = row[2].as<std::string>();
  if (!row[3].is_null()) r.last_day = row[3].as<std::string>();
  const std::string codes = row[4].as<std::string>();  // sorted (DISTINCT), comma-separated
  for (std::size_t at = 0; at < codes.size();) {
    const std::size_t comma = std::min(codes.find(',', at), codes.size());
    r.currencies.push_back(codes.substr(at, comma - at));
    at = comma + 1;
  }
  if (!r.currencies.empty()) {
    r.conversions_refreshed =
        tx.exec_params("SELECT crm_rates_changed($1::text[], $2::date)", "{" + codes + "}", r.first_day)[0][0]
            .as<long long>();
  }
  tx.commit();
  return r;
}

std::string read_reporting_currency(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  return tx.exec("SELECT reporting_currency::text FROM attribution_settings")[0][0].as<std::string>();
}

std::vector<awaiting_rate> read_awaiting_rates(pqxx::connection& conn, const std::string& from, const std::string& to) {
  pqxx::read_transaction tx(conn);
  // One factor per currency and day, not per conversion.
  auto rows = tx.exec_params(
      "WITH c AS (SELECT currency, (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n"
      " FROM customer_touchpoints WHERE touch_type = 'conversion' AND conversion_value <> 0 AND currency IS NOT NULL"
      " AND ($1::date IS NULL OR occurred_at >= ($1::date::timestamp AT TIME ZONE 'UTC'))"
      " AND ($2::date IS NULL OR occurred_at < (($2::date + 1)::timestamp AT TIME ZONE 'UTC'))"
      " GROUP BY 1, 2)"
      " SELECT coalesce(c.currency::text, ''), sum(c.n)::bigint, min(c.day)::text, max(c.day)::text"
      " FROM c, attribution_settings s WHERE crm_fx_factor(c.currency, c.day, s.reporting_currency) IS NULL"
      " GROUP BY 1 ORDER BY 1",
      or_null(from), or_null(to));
  std::vector<awaiting_rate> out;
  for (const auto& row : rows) {
    out.push_back({row[0].as<std::string>(), row[1].as<long long>(), row[2].as<std::string>(), row[3].as<std::string>()});
  }
  return out;
}

std::vector<rates_coverage> read_rates_coverage(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  std::vector<rates_coverage> out;
  for (const auto& row : tx.exec("SELECT base::text, currency::text, min(day)::text, max(day)::text, count(*)"
                                 " FROM exchange_rates GROUP BY 1, 2 ORDER BY 1, 2")) {
    out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                   row[3].as<std::string>(), row[4].as<long long>()});
  }
  return out;
}

}  // namespace crm::sinks::postgres
