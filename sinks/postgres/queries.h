// The SQL of the commands around the write path, so that all of the product's SQL outside schemas/ lives
// in sinks/postgres: the partition catalog watch (serve), the dead-letter replay's paging and marking
// (rejected replay) and the reports (report attribution, report ab-test). Each function runs its statements
// on the caller's connection, on the caller's thread; libpqxx errors go through to the caller.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "sinks/postgres/direct_copy.h"
#include "transform/stats/ab_stats.h"

namespace crm::sinks::postgres {

// ---- the partition catalog (serve's crm_ingest_partition_* gauges)
struct partition_catalog {
  bool next_month_present = false;  // both tables have next month's partition
  long long default_rows = 0;       // rows in the DEFAULT partitions, counted up to 1e6 per table
};
partition_catalog read_partition_catalog(pqxx::connection& conn);

// ---- dead letters (rejected replay)
struct dead_letter_filter {
  std::string source_like;  // SQL LIKE pattern on rejected_events.source; empty = any
  std::string reason_like;  // on rejected_events.reason; empty = any
  std::string since;        // received_at >= since (timestamptz text); empty = open
  std::string until;        // received_at <  until; empty = open
};
struct dead_letter {
  std::string rejection_id;
  long long received_at_us = 0;
  std::string source, reason, raw;  // raw: raw_bytes when set, else raw
  std::string tenant_id;            // the tenant that brought it; empty = none (NULL)
  std::string idempotency_key;      // the key its event would have had; empty = none (NULL)
};
// Not yet replayed dead letters matching `f` with rejection_id > `after_id` (empty = from the start), in
// rejection_id order (keyset pagination: one pass over the primary key whatever the filters), at most `limit`
// rows, and no more after the rows read hold `max_bytes` of raw (at least one row, whatever its size). Fewer rows
// than `limit` whose raw adds up to less than `max_bytes` is the end of the matching rows.
std::vector<dead_letter> read_dead_letters(pqxx::connection& conn, const dead_letter_filter& f,
                                           const std::string& after_id, long long limit, std::size_t max_bytes);
// Marks the dead letters replayed (replayed_at = now()), or deletes them, in one transaction.
void settle_dead_letters(pqxx::connection& conn, const std::vector<std::string>& rejection_ids, bool remove);
// Deletes the not yet replayed dead letters whose source starts with `source_prefix` (those the writer made of
// rows the database refused during one replay page) and returns their reasons.
std::vector<std::string> drop_dead_letters_from(pqxx::connection& conn, const std::string& source_prefix);
// Which of the given events are stored: flags in the order given. A row counts only with the event's own key,
// (id, occurred_at) — the same id in another month is another event — or, for a communication whose time is
// its receipt (receipt[i]), with its id from 7 days before to 1 day after, as the writer's insert judges a retry.
struct stored_flags {
  std::vector<bool> communications, touchpoints;
};
stored_flags stored_events(pqxx::connection& conn, std::span<const row_key> communications,
                           const std::vector<bool>& receipt, std::span<const row_key> touchpoints);

// ---- reports
struct attribution_row {
  std::string model;
  std::optional<std::string> first, second;  // the grouping's two columns (NULL = absent)
  std::string conversions, revenue;          // as PostgreSQL prints them
  std::string awaiting_rate;                 // of `conversions`, the credit of those awaiting an exchange rate
};
// campaign_attribution_daily grouped `by` "campaign" (campaign_id, utm_campaign), "source" (utm_source,
// utm_medium) or "channel_group" (channel_group, NULL); empty model/from/to = no bound. awaiting_rate: the same
// grouping of attribution_credits, over the conversions with a value whose exchange rate is missing
// (crm_fx_factor NULL, schemas/0007_currencies.sql).
std::vector<attribution_row> read_attribution(pqxx::connection& conn, const std::string& by, const std::string& model,
                                              const std::string& from, const std::string& to);

// Identity stitching (schemas/0008_identity.sql): visitors linked to a lead (identity_links: a claimed visitor with
// anonymous touchpoints), those of them claimed by more than one lead (the first link won), every visitor a lead
// claimed (identity_claims, linked or not), and conversions whose credits came through a link.
struct identity_summary {
  long long linked_visitors = 0, contested_visitors = 0, stitched_conversions = 0, claimed_visitors = 0;
};
identity_summary read_identity_summary(pqxx::connection& conn);

struct ab_test_data {
  bool configured = false;  // an ab_tests row exists
  std::string control;      // its control_variant (empty = none)
  std::string problem;      // why the row describes no computable test (crm_ab_test_problem); empty = none
  std::vector<std::string> variants;      // configured, in order
  std::map<std::string, double> weights;  // configured weights (empty = equal)
  std::vector<transform::ab::variant_counts> stats;                      // ab_test_variant_stats
  std::map<std::string, std::map<std::string, long long>> message_counts;  // variant -> status -> events
};
ab_test_data read_ab_test(pqxx::connection& conn, const std::string& ab_test_id);

}  // namespace crm::sinks::postgres
