// Attribution credits and A/B-test metrics, kept current by the analytics stage (analytics_stage.h) from the
// backlog each batch transaction records, and recomputable from scratch. The maintenance itself is SQL
// (schemas/0002_attribution.sql: crm_attribution_refresh, crm_ab_refresh, crm_analytics_recompute;
// schemas/0005_analytics_stage.sql: the backlog and crm_analytics_stage_run); this is the writer's side of it
// (the backlog row and the A/B message counts of a batch) and the recompute.
//
// Thread ownership: like the writer, everything here runs on the thread that owns the connection.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <pqxx/pqxx>

#include "transform/canonical/canonical_event.h"

namespace crm::sinks::postgres {

// The attribution models, as stored in attribution_credits.model.
inline constexpr const char* attribution_models[] = {"first_touch", "last_touch", "linear",
                                                     "time_decay", "position_based", "last_non_direct"};

// For the touchpoint insert of a batch transaction: the RETURNING list (without the keyword) and a CTE (with its
// leading comma) that records the rows really inserted as the batch's analytics_backlog row, for the analytics
// stage (sinks/postgres/analytics_stage.h); the statement's $1 is then the batch id. Off: "1" and "".
std::string touchpoint_returning(bool maintain);
std::string touchpoint_backlog(bool maintain);
// The same backlog row for the touchpoints a batch COPYed straight into customer_touchpoints (direct_copy.h):
// the statement ($1 the batch id, $2 the count, $3..$10 the columns as arrays) and its arrays, of the rows `rows`
// (indices into `all`), with the values the table stores (empty text and a zero lead as NULL).
std::string touchpoint_backlog_insert();
std::array<std::string, 8> touchpoint_backlog_arrays(std::span<const transform::touchpoint> all,
                                                     std::span<const std::uint32_t> rows);
// For the communication insert (communication_insert.h), whose `tally` CTE counts the rows really inserted by
// status, ab_test_id and variant (its column n): a CTE (with its leading comma) appending the A/B-tagged ones'
// counts to ab_test_message_counts_pending (no counter row locked; folded with the communications' daily counts,
// schemas/0021_pending_metric_counts.sql). Off: "".
std::string ab_message_counts(bool maintain);

struct recompute_options {
  std::optional<int> lookback_days;    // set = store the new lookback first
  std::optional<int> half_life_days;   // set = store the new half-life first
};
struct recompute_result {
  long long conversions = 0, credit_rows = 0, ab_units = 0;
  std::string lookback, half_life, reporting_currency;
};
// Rebuilds every attribution and A/B table from the stored events in one transaction; `reporting_currency` set
// (ISO 4217, `rates reporting-currency`) = store it as the new reporting currency first.
recompute_result recompute_analytics(pqxx::connection& conn, const recompute_options& opt,
                                     const std::optional<std::string>& reporting_currency = std::nullopt);

}  // namespace crm::sinks::postgres
