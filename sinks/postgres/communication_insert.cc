#include "sinks/postgres/communication_insert.h"

#include "sinks/postgres/attribution.h"
#include "sinks/postgres/copy_encoder.h"
#include "sinks/postgres/direct_copy.h"

namespace crm::sinks::postgres {

namespace {

// Days since 1970-01-01 of a UTC timestamp: `(occurred_at AT TIME ZONE 'UTC')::date`.
std::int32_t utc_day(transform::timestamp_us us) noexcept {
  constexpr std::int64_t day_us = 86400LL * 1000000;
  std::int64_t d = us / day_us;
  if (us % day_us < 0) --d;
  return static_cast<std::int32_t>(d);
}

}  // namespace

std::string communications_copy_target() {
  return std::string("communications (") + communication_columns + ")";
}

std::string receipt_retry_match(const std::string& row, const std::string& id, const std::string& at) {
  return row + ".event_id = " + id + " AND " + row + ".occurred_at >= " + at + " - interval '7 days' AND " + row +
         ".occurred_at <= " + at + " + interval '1 day'";
}

std::string receipt_time_locks_statement(const char* stage) {
  // The ids' buckets in order, locked in that order (the aggregate reads the sorted subquery row by row).
  return std::string("SELECT count(pg_advisory_xact_lock(hashtext('crm_receipt_time_event'), b)) FROM (SELECT DISTINCT"
                     " hashtext(event_id::text) & ") +
         std::to_string(receipt_time_lock_buckets - 1) + " AS b FROM " + stage +
         " WHERE occurred_at_is_receipt_time ORDER BY b OFFSET 0) ids";
}

std::string communications_insert_statement(const char* stage, bool maintain_analytics) {
  return std::string("WITH ins AS (INSERT INTO communications (") + communication_columns + ") SELECT " +
         communication_columns + " FROM " + stage + " s" +
         // No event time from the source (occurred_at = receipt): a retry of the same event has a
         // later occurred_at, so look for the event_id near it, not for the exact key.
         " WHERE NOT s.occurred_at_is_receipt_time OR NOT EXISTS (SELECT 1 FROM communications c WHERE " +
         receipt_retry_match("c", "s.event_id", "s.occurred_at") + ")"
         " ON CONFLICT DO NOTHING"
         " RETURNING occurred_at, campaign_id, campaign_ref, channel, status, ab_test_id, variant),"
         // The rows this statement inserted, one by one, and those the batch copied directly, counted by key.
         " tally AS (SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, campaign_id, campaign_ref, channel,"
         " status, ab_test_id, variant, 1::bigint AS n FROM ins"
         " UNION ALL SELECT date '1970-01-01' + days, campaign_id, campaign_ref, channel, status, ab_test_id,"
         " variant, n FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],"
         " $7::text[], $8::bigint[]) AS u(days, campaign_id, campaign_ref, channel, status, ab_test_id, variant, n)),"
         " agg AS (SELECT day, campaign_id, channel, status, min(campaign_ref) AS campaign_ref, sum(n)::bigint AS n"
         " FROM tally GROUP BY 1, 2, 3, 4)" +
         ab_message_counts(maintain_analytics) +
         // Appended, not upserted: no counter row is locked until COMMIT (crm_metrics_fold() folds them later,
         // communication_metrics reads both; schemas/0021_pending_metric_counts.sql).
         ", bump AS (INSERT INTO communication_metrics_pending (day, campaign_id, channel, status, event_count,"
         " campaign_ref)"
         " SELECT day, campaign_id, channel, status, n, campaign_ref FROM agg)"
         " SELECT count(*) FROM ins";
}

void metric_tally::add(const transform::communication& c) {
  const std::int32_t day = utc_day(c.occurred_at);
  const auto channel = transform::to_string(c.channel_);
  const auto status = transform::to_string(c.status);
  key_.clear();
  key_.append(reinterpret_cast<const char*>(&day), sizeof day);
  key_.append(reinterpret_cast<const char*>(&c.campaign_id), sizeof c.campaign_id);
  // Lengths first: no separator is needed, whatever the strings hold.
  for (std::string_view s : {std::string_view(channel), std::string_view(status), c.campaign_ref, c.ab_test_id,
                             c.variant}) {
    const auto n = static_cast<std::uint32_t>(s.size());
    key_.append(reinterpret_cast<const char*>(&n), sizeof n);
    key_.append(s);
  }
  auto it = groups_.find(key_);
  if (it == groups_.end()) {
    group g;
    g.day = day;
    g.campaign_id = c.campaign_id;
    g.campaign_ref = c.campaign_ref;
    g.channel = channel;
    g.status = status;
    g.ab_test_id = c.ab_test_id;
    g.variant = c.variant;
    it = groups_.emplace(key_, std::move(g)).first;
  }
  ++it->second.rows;
}

std::array<std::string, 8> metric_tally::params() const {
  std::array<std::string, 8> p;
  for (auto& s : p) s.push_back('{');
  for (const auto& [key, g] : groups_) {
    append_array_number(p[0], g.day, false);
    append_array_number(p[1], g.campaign_id, true);
    append_array_text(p[2], g.campaign_ref);
    append_array_text(p[3], g.channel);
    append_array_text(p[4], g.status);
    append_array_text(p[5], g.ab_test_id);
    append_array_text(p[6], g.variant);
    append_array_number(p[7], static_cast<std::int64_t>(g.rows), false);
  }
  for (auto& s : p) s.push_back('}');
  return p;
}

}  // namespace crm::sinks::postgres
