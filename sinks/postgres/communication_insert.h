// The communications part of a batch transaction (writer.cc runs it; this holds its statement and its
// pieces).
//
// A part's rows go straight into `communications` by binary COPY when the session may (direct_copy.h), and are
// staged otherwise. A part with a row whose time is the receipt time is staged whole: a retry of one has a later
// time, so its duplicate is found by a window search, not by the key, and that search must not see the part's own
// rows.
//
// The metric upkeep of the rows copied directly is tallied here on the writer's thread and applied by the staging
// statement, together with the rows it inserts itself: one row per key appended to communication_metrics_pending
// (no counter row is locked; crm_metrics_fold() folds them, schemas/0021_pending_metric_counts.sql).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <span>
#include <unordered_map>
#include <vector>

#include <pqxx/pqxx>

#include "transform/canonical/canonical_event.h"

namespace crm::sinks::postgres {

// The insert of the staged communications (`stage`: the session's staging table) with ON CONFLICT DO NOTHING,
// counting into communication_metrics (and, with `maintain_analytics`, ab_test_message_counts) the rows it inserted
// plus the tally of rows copied directly ($1..$8: metric_tally::params()). Returns the number of rows it inserted.
std::string communications_insert_statement(const char* stage, bool maintain_analytics);

// Locks (for the transaction) the event ids of the staged rows whose time is their receipt, in one order, so that
// the window search of the insert that follows (a separate statement: it sees what committed meanwhile) finds a
// copy another writer is committing: two writers of the same callback and its retry, each missing the other's
// uncommitted row (its key differs: another receipt time), stored it twice. One transaction advisory lock per
// bucket of id hashes, at most receipt_time_lock_buckets per transaction: a lock per id took 20,000 entries of the
// server's lock table for a full batch ("out of shared memory", and the batch was retried for ever). Two writers
// with such parts at once mostly share a bucket, so the second one's insert waits for the first one's COMMIT: their
// parts without an event time are written one after the other.
inline constexpr int receipt_time_lock_buckets = 64;
std::string receipt_time_locks_statement(const char* stage);

// The rule that finds the stored copy of a communication whose time is its receipt (a provider's retry of it
// has a later time): the SQL condition on the communications row `row` for the event id `id` received at `at`
// (SQL expressions). The staging insert uses it to skip a retry; rejected replay to find the event stored.
std::string receipt_retry_match(const std::string& row, const std::string& id, const std::string& at);

// The target of the direct COPY: the table and its column list.
std::string communications_copy_target();

// Counts of rows per metric key (UTC day, campaign, channel, status, and the A/B test and variant), for the
// statement above. Thread ownership: the writer's.
class metric_tally {
 public:
  void clear() noexcept { groups_.clear(); }
  // Keys counted (each an appended row of communication_metrics_pending, at most).
  std::size_t size() const noexcept { return groups_.size(); }
  void add(const transform::communication& c);
  // $1..$8: days since 1970-01-01, campaign_id, campaign_ref, channel, status, ab_test_id, variant, rows — as
  // PostgreSQL array literals (NULL for an absent campaign, reference, test or variant).
  std::array<std::string, 8> params() const;

 private:
  struct group {
    std::int32_t day = 0;
    std::int64_t campaign_id = 0;
    std::string campaign_ref, channel, status, ab_test_id, variant;
    std::uint64_t rows = 0;
  };
  std::unordered_map<std::string, group> groups_;
  std::string key_;
};

}  // namespace crm::sinks::postgres
