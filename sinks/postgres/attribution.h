// Attribution credits and A/B-test metrics, kept current inside each batch transaction of the writer and
// recomputable from scratch. The maintenance itself is SQL (schemas/0002_attribution.sql: the functions
// crm_analytics_apply_batch, crm_attribution_refresh, crm_ab_refresh, crm_analytics_recompute, and the
// locks they take); this is the writer's side of it: the session's working tables, the RETURNING capture
// of the rows really inserted, and the call at the end of the batch.
//
// Thread ownership: like the writer, everything here runs on the thread that owns the connection.
#pragma once

#include <optional>
#include <string>

#include <pqxx/pqxx>

namespace crm::sinks::postgres {

// The attribution models, as stored in attribution_credits.model.
inline constexpr const char* attribution_models[] = {"first_touch", "last_touch", "linear",
                                                     "time_decay", "position_based", "last_non_direct"};

// Creates the session's temporary working tables; call once per connection before preparing statements
// that use the captures below.
void prepare_analytics_session(pqxx::connection& conn);

// For the touchpoint insert: the RETURNING list (without the keyword) and a CTE (with its leading comma)
// that keeps the rows really inserted in crm_new_touchpoints. Off: "1" and "".
std::string touchpoint_returning(bool maintain);
std::string touchpoint_capture(bool maintain);
// For the communication insert, whose RETURNING list must include ab_test_id and variant: a CTE (with a
// trailing comma) keeping those with an A/B test in crm_new_ab_messages. Off: "".
std::string communication_capture(bool maintain);

// Applies the batch's new touchpoints and communications to the attribution and A/B tables. Call inside the
// batch transaction after the inserts (takes the analytics locks; see the migration).
void apply_analytics(pqxx::dbtransaction& tx);

struct recompute_options {
  std::optional<int> lookback_days;    // set = store the new lookback first
  std::optional<int> half_life_days;   // set = store the new half-life first
};
struct recompute_result {
  long long conversions = 0, credit_rows = 0, ab_units = 0;
  std::string lookback, half_life;
};
// Rebuilds every attribution and A/B table from the stored events in one transaction.
recompute_result recompute_analytics(pqxx::connection& conn, const recompute_options& opt);

}  // namespace crm::sinks::postgres
