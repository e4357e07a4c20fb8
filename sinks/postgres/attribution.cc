#include "sinks/postgres/attribution.h"

#include "sinks/postgres/copy_encoder.h"
#include "sinks/postgres/direct_copy.h"

namespace crm::sinks::postgres {

std::string touchpoint_returning(bool maintain) {
  return maintain ? "touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id, variant, tenant_id" : "1";
}

std::string touchpoint_backlog(bool maintain) {
  return maintain ? ", crm_backlog AS (INSERT INTO analytics_backlog (batch_id, touchpoints, touchpoint_id, occurred_at,"
                    " lead_id, anonymous_id, touch_type, ab_test_id, variant, tenant_id)"
                    " SELECT $1::uuid, count(*), array_agg(touchpoint_id), array_agg(occurred_at), array_agg(lead_id),"
                    " array_agg(anonymous_id), array_agg(touch_type), array_agg(ab_test_id), array_agg(variant),"
                    " array_agg(tenant_id)"
                    " FROM ins HAVING count(*) > 0)"
                  : "";
}

std::string touchpoint_backlog_insert() {
  return "INSERT INTO analytics_backlog (batch_id, touchpoints, touchpoint_id, occurred_at, lead_id, anonymous_id,"
         " touch_type, ab_test_id, variant, tenant_id)"
         " VALUES ($1::uuid, $2::integer, $3::uuid[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[],"
         " $8::text[], $9::text[], $10::text[])";
}

std::array<std::string, 8> touchpoint_backlog_arrays(std::span<const transform::touchpoint> all,
                                                     std::span<const std::uint32_t> rows) {
  std::array<std::string, 8> p;
  for (auto& s : p) s.push_back('{');
  char at[40];
  for (auto i : rows) {
    const auto& t = all[i];
    append_array_text(p[0], transform::to_string(t.touchpoint_id));
    append_array_text(p[1], std::string_view(at, format_timestamp(t.occurred_at, at)));
    append_array_number(p[2], t.lead_id, true);
    append_array_text(p[3], t.anonymous_id);
    append_array_text(p[4], transform::to_string(t.type));
    append_array_text(p[5], t.ab_test_id);
    append_array_text(p[6], t.variant);
    append_array_text(p[7], t.tenant_id);
  }
  for (auto& s : p) s.push_back('}');
  return p;
}

std::string ab_message_counts(bool maintain) {
  return maintain ? ", crm_ab_messages AS (INSERT INTO ab_test_message_counts_pending (ab_test_id, variant, status,"
                    " events) SELECT ab_test_id, variant, status, sum(n)::bigint FROM tally"
                    " WHERE ab_test_id IS NOT NULL AND variant IS NOT NULL GROUP BY ab_test_id, variant, status)"
                  : "";
}

recompute_result recompute_analytics(pqxx::connection& conn, const recompute_options& opt,
                                     const std::optional<std::string>& reporting_currency) {
  pqxx::work tx(conn);  // crm_analytics_recompute() creates the session's working tables itself
  tx.exec("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");  // the recompute's argument needs it (0005)
  // Take the exclusive lock before changing the settings, so no batch attributes with half-changed ones.
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('crm_analytics'), 0)");
  // The recount reads both parents, touchpoints first: take them in the one order (schemas/0022) so that a
  // partition being created meanwhile cannot deadlock with it.
  tx.exec("LOCK TABLE ONLY communications, ONLY customer_touchpoints IN ACCESS SHARE MODE");
  if (opt.lookback_days) {
    tx.exec_params("UPDATE attribution_settings SET lookback = make_interval(days => $1), updated_at = now()",
                   *opt.lookback_days);
  }
  if (opt.half_life_days) {
    tx.exec_params("UPDATE attribution_settings SET half_life = make_interval(days => $1), updated_at = now()",
                   *opt.half_life_days);
  }
  if (reporting_currency) {
    tx.exec_params("UPDATE attribution_settings SET reporting_currency = $1, updated_at = now()", *reporting_currency);
  }
  tx.exec("SELECT crm_analytics_recompute()");
  recompute_result r;
  auto row = tx.exec(
      "SELECT (SELECT count(DISTINCT (conversion_id, conversion_occurred_at)) FROM attribution_credits),"
      " (SELECT count(*) FROM attribution_credits), (SELECT count(*) FROM ab_test_units),"
      " lookback::text, half_life::text, reporting_currency::text FROM attribution_settings")[0];
  r.conversions = row[0].as<long long>();
  r.credit_rows = row[1].as<long long>();
  r.ab_units = row[2].as<long long>();
  r.lookback = row[3].as<std::string>();
  r.half_life = row[4].as<std::string>();
  r.reporting_currency = row[5].as<std::string>();
  tx.commit();
  return r;
}

}  // namespace crm::sinks::postgres
