// What the PostgreSQL write path reports, for metrics (ingest/observability) and summaries: the one
// observer of every command that writes. The sinks know no Prometheus: the process that owns the writer
// pool plugs an observer in.
//
// Thread ownership: writers call their observer from their own threads, so an observer shared by several
// writers (a pool's) must be thread-safe. Calls happen per batch or batch attempt, never per event.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace crm::sinks::postgres {

struct failure;
struct batch_result;

class writer_observer {
 public:
  virtual ~writer_observer() = default;
  // A batch committed (first try, replay, or found in the ledger): a primary is there.
  virtual void batch_committed() {}
  // A batch attempt failed for a reason a retry may fix (failure_kind reconnect or in_doubt);
  // `will_retry` is false when the writer gives up (retry_for exhausted).
  virtual void attempt_failed(const failure& /*f*/, bool /*will_retry*/) {}
  // A new session on a primary was opened after a failure.
  virtual void reconnected() {}
  // A batch is being written again after a failure (it was not in the ledger).
  virtual void batch_replayed() {}
  // After a COMMIT whose outcome was unknown: `committed` = the ledger had the batch (not replayed).
  virtual void in_doubt_settled(bool /*committed*/) {}

  // Pool level (sinks/postgres/writer_pool.h), once per batch a source submitted:
  // A writer opened its first session on a primary (start-up): the database is up before any batch.
  virtual void connected() {}
  // A writer could not open its first session; it keeps trying with the batches.
  virtual void connect_failed(std::string_view /*reason*/) {}
  // Every part of a submitted batch committed: `records` records in, `seconds` from submission to the
  // last commit (retries included), counted as in batch_result (inserted, duplicates, rejected).
  virtual void batch_written(const batch_result& /*r*/, std::size_t /*records*/, double /*seconds*/) {}
  // Confirmation (sinks/postgres/confirmation.md): a committed part the new primary's ledger lacked after a
  // failover is written again; the replication mode seen on a primary of a new identity (start-up, failover):
  // "standalone", "asynchronous" or "synchronous".
  virtual void batch_rewritten() {}
  virtual void replication_mode(std::string_view /*mode*/) {}
  // The batches committed and waiting for the cluster's confirmation: how many, their bytes, the age of the
  // oldest (after each round of the confirmer while any wait, and once when none is left).
  virtual void unconfirmed(std::size_t /*batches*/, std::size_t /*bytes*/, double /*oldest_seconds*/) {}
  // A batch is safe on the cluster, `seconds` after its last part committed (0: its COMMIT was the
  // confirmation: a synchronous standby, or a single PostgreSQL). Once per written batch.
  virtual void batch_confirmed(double /*seconds*/) {}
  // The database refused a part for good (failure_kind::fatal, or the retry policy ran out); `will_retry`:
  // the policy retries it after a pause (the source holds the data).
  virtual void batch_refused(std::string_view /*error*/, bool /*will_retry*/) {}
  // The writers a batch is split among: at start-up, and whenever the count the pool settles on changes
  // when it adapts it (writer_count.h).
  virtual void writers_in_use(int /*writers*/) {}
  // The direct COPY of a part's rows into `table` (direct_copy.h: communications, customer_touchpoints): `rows`
  // probed for stored keys before it, and a COPY that met a row stored already (rolled back, then the part probed
  // whole).
  virtual void rows_probed(const char* /*table*/, std::size_t /*rows*/) {}
  virtual void copy_met_stored_row(const char* /*table*/) {}

  // The analytics stage (sinks/postgres/analytics_stage.h), from its own thread:
  // One stage transaction applied `batches` backlog rows holding `touchpoints` touchpoints in `seconds`;
  // `delays`: for each batch, seconds from its commit to the end of the run.
  virtual void analytics_applied(std::size_t /*batches*/, std::uint64_t /*touchpoints*/, double /*seconds*/,
                                 std::span<const double> /*delays*/) {}
  // What is left after a run: committed batches not yet applied, and the age of the oldest (0 when current).
  virtual void analytics_lag(long long /*pending_batches*/, double /*lag_seconds*/) {}
  // A stage transaction failed (it is retried; the backlog stays): `reason` as in failure::reason.
  virtual void analytics_failed(std::string_view /*reason*/) {}
};

}  // namespace crm::sinks::postgres
