// The communications part of a batch transaction (writer.cc runs it; this holds its statement and its
// pieces).
//
// A part's rows go straight into `communications` by binary COPY when the session may COPY into it (Row Level
// Security does not apply to its role: the owner, or a role with BYPASSRLS; and the table has no triggers of the
// database's own). PostgreSQL batches heap and index inserts only for COPY; `INSERT … SELECT` from a staging table
// inserts row by row, at about twice the cost. The rows whose keys the writer sent lately (recent_keys) are probed
// first and those stored already left out. The COPY runs inside a savepoint: a unique violation (a row stored by
// another session: a replay, a redelivery) rolls it back, a probe of all rows finds the stored ones, and the rest
// is COPYed; the writer then probes first until four parts in a row come clean. A second failure stages the part:
// `INSERT … ON CONFLICT DO NOTHING`, exactly as when the direct path is not available. A part with a row whose time
// is the receipt time is staged whole: a retry of one has a later time, so its duplicate is found by a window
// search, not by the key, and that search must not see the part's own rows.
//
// The metric upkeep of the rows copied directly is tallied here on the writer's thread and applied by the staging
// statement, together with the rows it inserts itself: one statement locks the metric rows, in key order, as
// before (so two writers cannot deadlock on them).
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
// bumping communication_metrics (and, with `maintain_analytics`, ab_test_message_counts) by the rows it inserted
// plus the tally of rows copied directly ($1..$8: metric_tally::params()). Returns the number of rows it inserted.
std::string communications_insert_statement(const char* stage, bool maintain_analytics);

// The target of the direct COPY: the table and its column list.
std::string communications_copy_target();

// Counts of rows per metric key (UTC day, campaign, channel, status, and the A/B test and variant), for the
// statement above. Thread ownership: the writer's.
class metric_tally {
 public:
  void clear() noexcept { groups_.clear(); }
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

// Fingerprints of the (event_id, occurred_at) keys a writer sent lately, in a fixed table (8 MiB; a newer key
// overwrites an older one in its slot). Only a hint of which rows to probe before a COPY: a key it forgot, or
// one it remembers that is not stored (a batch rolled back, lost in a failover), costs time, never a row.
// Thread ownership: the writer's.
class recent_keys {
 public:
  recent_keys() : slots_(std::size_t{1} << 20, 0) {}
  bool seen(const transform::uuid& id, transform::timestamp_us at) const noexcept {
    const auto f = fingerprint(id, at);
    return slots_[f & (slots_.size() - 1)] == f;
  }
  void add(const transform::uuid& id, transform::timestamp_us at) noexcept {
    const auto f = fingerprint(id, at);
    slots_[f & (slots_.size() - 1)] = f;
  }

 private:
  static std::uint64_t fingerprint(const transform::uuid& id, transform::timestamp_us at) noexcept;
  std::vector<std::uint64_t> slots_;
};

// Whether `tx` may COPY into communications now: the table exists, Row Level Security does not apply to the role
// (PostgreSQL refuses COPY then), and neither it nor any of its partitions has a trigger of the database's (the
// writer's tally would count the rows sent, not the rows stored). Asked in every batch transaction, after the
// table's ROW EXCLUSIVE lock, which a CREATE TRIGGER on the table waits for; a trigger created on a partition in
// the moment between the question and the COPY is not seen.
bool may_copy_communications(pqxx::dbtransaction& tx);

// The positions in `rows` (indices into `all`) of the communications stored already (the same event_id and
// occurred_at), in ascending order: one index probe per row, parameters sent in binary.
std::vector<std::size_t> stored_already(pqxx::dbtransaction& tx, std::span<const transform::communication> all,
                                        const std::vector<std::uint32_t>& rows);

// Runs `COPY target FROM STDIN (FORMAT binary)` inside `tx` and streams `rows` (copy_encoder's output) in large
// messages. Returns the number of rows the server stored; throws pqxx::sql_error (with its SQLSTATE) or
// pqxx::broken_connection.
std::uint64_t copy_into(pqxx::dbtransaction& tx, const std::string& target, const std::string& rows);

}  // namespace crm::sinks::postgres
