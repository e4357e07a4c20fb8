// The write path's observer (sinks/postgres/writer_observer.h) of every command that writes: what the
// batches did and how the writers lived through failures and failovers. Counts for a summary (import,
// rejected replay) and, when given a registry, Prometheus series (serve, consume, write):
//   crm_ingest_writer_batch_rows                       records per batch (histogram)
//   crm_ingest_writer_batch_seconds                    submission to commit, retries included (histogram)
//   crm_ingest_writer_rows_total{table}                rows inserted into communications,
//                                                      customer_touchpoints, rejected_events
//   crm_ingest_writer_duplicates_total                 events already stored
//   crm_ingest_writer_batches_total                    batches committed
//   crm_ingest_writer_failures_total                   batches the database refused for good
//   crm_ingest_writer_database_up                      1 from the first session on a primary (start-up)
//                                                      and after each commit, 0 from a failed attempt
//   crm_ingest_writer_last_commit_timestamp_seconds    Unix time of the last committed batch
//   crm_ingest_writer_reconnects_total                 sessions re-opened on a primary after a failure
//   crm_ingest_writer_retries_total{reason}            failed batch attempts that were retried
//   crm_ingest_writer_give_ups_total{reason}           batches abandoned after retry_for (import only)
//   crm_ingest_writer_seconds_without_primary_total    time from the first failure to the next commit
//   crm_ingest_writer_without_primary_seconds          length of the current outage (0 when writing)
//   crm_ingest_writer_replayed_batches_total           batches written again after a failure
//   crm_ingest_writer_in_doubt_commits_total{settled}  COMMITs of unknown outcome, settled from the
//                                                      ledger as "committed" or "not_committed" (replayed)
//   crm_ingest_writer_unconfirmed_batches              batches committed and waiting for the standbys
//   crm_ingest_writer_unconfirmed_bytes                their memory (records and text)
//   crm_ingest_writer_unconfirmed_oldest_seconds       age of the oldest, from its commit (0: none waits)
//   crm_ingest_writer_confirm_seconds                  histogram: from a batch's last COMMIT to the
//                                                      cluster's confirmation (0: the COMMIT confirmed it)
//   crm_ingest_writer_rewritten_batches_total          committed batches a new primary's ledger lacked
//                                                      after a failover, written again
//   crm_ingest_writer_replication_mode{mode}           1 for the mode seen last (standalone, asynchronous,
//                                                      synchronous), 0 for the others
//   crm_ingest_writer_writers_in_use                   writers a batch is split among (postgres.writers, or
//                                                      fewer with postgres.adaptive_writers)
// and of the analytics stage (sinks/postgres/analytics_stage.h), which keeps the attribution and A/B tables:
//   crm_ingest_analytics_lag_seconds                   age of the oldest committed batch not yet applied
//                                                      to them (0 when current), after each stage run
//   crm_ingest_analytics_pending_batches               committed batches not yet applied (the backlog)
//   crm_ingest_analytics_delay_seconds                 per applied batch: from its commit to the end of the
//                                                      stage run that applied it (histogram)
//   crm_ingest_analytics_batches_total                 batches applied by this process's stage
//   crm_ingest_analytics_touchpoints_total             touchpoints applied by this process's stage
//   crm_ingest_analytics_run_seconds                   duration of one stage transaction (histogram)
//   crm_ingest_analytics_failures_total{reason}        stage transactions that failed (retried)
//
// Thread ownership: shared by all writer threads; counters are atomic, the outage clock is behind a
// mutex taken once per batch attempt (never per event).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "sinks/postgres/writer_observer.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace crm::ingest {

class writer_failover_stats final : public sinks::postgres::writer_observer {
 public:
  // `registry` null: counts only (summaries).
  explicit writer_failover_stats(prometheus::Registry* registry = nullptr);
  ~writer_failover_stats() override;

  void batch_committed() override;
  void attempt_failed(const sinks::postgres::failure& f, bool will_retry) override;
  void reconnected() override;
  void batch_replayed() override;
  void in_doubt_settled(bool committed) override;
  void connected() override;
  void connect_failed(std::string_view reason) override;
  void batch_written(const sinks::postgres::batch_result& r, std::size_t records, double seconds) override;
  void batch_refused(std::string_view error, bool will_retry) override;
  void batch_rewritten() override;
  void replication_mode(std::string_view mode) override;
  void writers_in_use(int writers) override;
  void unconfirmed(std::size_t batches, std::size_t bytes, double oldest_seconds) override;
  void batch_confirmed(double seconds) override;
  void analytics_applied(std::size_t batches, std::uint64_t touchpoints, double seconds,
                         std::span<const double> delays) override;
  void analytics_lag(long long pending_batches, double lag_seconds) override;
  void analytics_failed(std::string_view reason) override;
  std::uint64_t rewritten_batches() const noexcept { return rewritten_.load(); }

  std::uint64_t reconnects() const noexcept { return reconnects_.load(); }
  std::uint64_t retries() const noexcept { return retries_.load(); }
  std::uint64_t replayed_batches() const noexcept { return replayed_.load(); }
  std::uint64_t in_doubt_committed() const noexcept { return in_doubt_committed_.load(); }
  std::uint64_t in_doubt_not_committed() const noexcept { return in_doubt_not_committed_.load(); }
  std::uint64_t batches_written() const noexcept { return batches_.load(); }
  std::uint64_t batches_refused() const noexcept { return refused_.load(); }
  // 1 / 0 as crm_ingest_writer_database_up; -1 before the first connection attempt.
  int database_up() const noexcept { return database_up_.load(); }
  double seconds_without_primary() const;
  // One line for logs and summaries: "reconnects=... retries=... ...".
  std::string summary() const;

 private:
  void set_up(int up);

  struct series;                   // the Prometheus series (writer_metrics.cc)
  std::unique_ptr<series> series_;  // null without a registry

  std::atomic<std::uint64_t> reconnects_{0}, retries_{0}, replayed_{0}, in_doubt_committed_{0},
      in_doubt_not_committed_{0}, batches_{0}, refused_{0}, rewritten_{0};
  std::atomic<int> database_up_{-1};
  mutable std::mutex mu_;  // guards the outage clock and the label lookups
  std::optional<std::chrono::steady_clock::time_point> outage_since_;
  double outage_seconds_total_ = 0;
};

}  // namespace crm::ingest
