#include "sinks/postgres/attribution.h"

namespace crm::sinks::postgres {

void prepare_analytics_session(pqxx::connection& conn) {
  pqxx::nontransaction tx(conn);
  tx.exec("SELECT crm_analytics_session()");
}

std::string touchpoint_returning(bool maintain) {
  return maintain ? "touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id, variant" : "1";
}

std::string touchpoint_capture(bool maintain) {
  return maintain ? ", crm_touchpoint_capture AS (INSERT INTO crm_new_touchpoints SELECT * FROM ins)" : "";
}

std::string communication_capture(bool maintain) {
  return maintain ? " crm_ab_message_capture AS (INSERT INTO crm_new_ab_messages (ab_test_id, variant, status)"
                    " SELECT ab_test_id, variant, status FROM ins WHERE ab_test_id IS NOT NULL AND variant IS NOT NULL),"
                  : "";
}

void apply_analytics(pqxx::dbtransaction& tx) { tx.exec("SELECT crm_analytics_apply_batch()"); }

recompute_result recompute_analytics(pqxx::connection& conn, const recompute_options& opt) {
  prepare_analytics_session(conn);
  pqxx::work tx(conn);
  // Take the exclusive lock before changing the settings, so no batch attributes with half-changed ones.
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('crm_analytics'), 0)");
  if (opt.lookback_days) {
    tx.exec_params("UPDATE attribution_settings SET lookback = make_interval(days => $1), updated_at = now()",
                   *opt.lookback_days);
  }
  if (opt.half_life_days) {
    tx.exec_params("UPDATE attribution_settings SET half_life = make_interval(days => $1), updated_at = now()",
                   *opt.half_life_days);
  }
  tx.exec("SELECT crm_analytics_recompute()");
  recompute_result r;
  auto row = tx.exec(
      "SELECT (SELECT count(DISTINCT (conversion_id, conversion_occurred_at)) FROM attribution_credits),"
      " (SELECT count(*) FROM attribution_credits), (SELECT count(*) FROM ab_test_units),"
      " lookback::text, half_life::text FROM attribution_settings")[0];
  r.conversions = row[0].as<long long>();
  r.credit_rows = row[1].as<long long>();
  r.ab_units = row[2].as<long long>();
  r.lookback = row[3].as<std::string>();
  r.half_life = row[4].as<std::string>();
  tx.commit();
  return r;
}

}  // namespace crm::sinks::postgres
