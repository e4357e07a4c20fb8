// How the PostgreSQL writers lived through failures and failovers: reconnects, retries by reason,
// seconds without a primary, replayed batches, in-doubt commits and how each was settled. Counts for
// a summary (import) and, when given the process's metrics, Prometheus series (serve):
//   crm_ingest_writer_reconnects_total                 sessions re-opened on a primary after a failure
//   crm_ingest_writer_retries_total{reason}            failed batch attempts that were retried
//   crm_ingest_writer_give_ups_total{reason}           batches abandoned after retry_for (import only)
//   crm_ingest_writer_seconds_without_primary_total    time from the first failure to the next commit
//   crm_ingest_writer_without_primary_seconds          length of the current outage (0 when writing)
//   crm_ingest_writer_replayed_batches_total           batches written again after a failure
//   crm_ingest_writer_in_doubt_commits_total{settled}  COMMITs of unknown outcome, settled from the
//                                                      ledger as "committed" or "not_committed" (replayed)
//
// Thread ownership: shared by all writer threads; counters are atomic, the outage clock is behind a
// mutex taken once per batch attempt (never per event).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "sinks/postgres/writer_observer.h"

namespace prometheus {
class Counter;
class Gauge;
template <typename T>
class Family;
}  // namespace prometheus

namespace crm::ingest {

class metrics;

class writer_failover_stats final : public sinks::postgres::writer_observer {
 public:
  explicit writer_failover_stats(metrics* m = nullptr);

  void batch_committed() override;
  void attempt_failed(const sinks::postgres::failure& f, bool will_retry) override;
  void reconnected() override;
  void batch_replayed() override;
  void in_doubt_settled(bool committed) override;

  std::uint64_t reconnects() const noexcept { return reconnects_.load(); }
  std::uint64_t retries() const noexcept { return retries_.load(); }
  std::uint64_t replayed_batches() const noexcept { return replayed_.load(); }
  std::uint64_t in_doubt_committed() const noexcept { return in_doubt_committed_.load(); }
  std::uint64_t in_doubt_not_committed() const noexcept { return in_doubt_not_committed_.load(); }
  double seconds_without_primary() const;
  // One line for logs and summaries: "reconnects=... retries=... ...".
  std::string summary() const;

 private:
  metrics* metrics_;
  prometheus::Family<prometheus::Counter>* retries_family_ = nullptr;
  prometheus::Family<prometheus::Counter>* give_ups_family_ = nullptr;
  prometheus::Counter* reconnects_counter_ = nullptr;
  prometheus::Counter* without_primary_counter_ = nullptr;
  prometheus::Gauge* without_primary_gauge_ = nullptr;
  prometheus::Counter* replayed_counter_ = nullptr;
  prometheus::Counter* in_doubt_committed_counter_ = nullptr;
  prometheus::Counter* in_doubt_not_committed_counter_ = nullptr;

  std::atomic<std::uint64_t> reconnects_{0}, retries_{0}, replayed_{0}, in_doubt_committed_{0},
      in_doubt_not_committed_{0};
  mutable std::mutex mu_;  // guards the outage clock and the label lookups
  std::optional<std::chrono::steady_clock::time_point> outage_since_;
  double outage_seconds_total_ = 0;
};

}  // namespace crm::ingest
