#include "ingest/writer_metrics.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include "ingest/metrics.h"
#include "sinks/postgres/connection.h"

namespace crm::ingest {

writer_failover_stats::writer_failover_stats(metrics* m) : metrics_(m) {
  if (!m) return;
  auto& r = m->registry();
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  reconnects_counter_ = &BuildCounter()
                             .Name("crm_ingest_writer_reconnects_total")
                             .Help("Sessions re-opened on a primary after a failure")
                             .Register(r)
                             .Add({});
  retries_family_ = &BuildCounter()
                         .Name("crm_ingest_writer_retries_total")
                         .Help("Failed batch attempts that were retried, by reason (broken_connection, 57P01, 25006, ...)")
                         .Register(r);
  give_ups_family_ = &BuildCounter()
                          .Name("crm_ingest_writer_give_ups_total")
                          .Help("Batches abandoned after retrying for the configured time, by last reason")
                          .Register(r);
  without_primary_counter_ = &BuildCounter()
                                  .Name("crm_ingest_writer_seconds_without_primary_total")
                                  .Help("Seconds from a writer's first failure to the next commit, summed over outages")
                                  .Register(r)
                                  .Add({});
  without_primary_gauge_ = &BuildGauge()
                                .Name("crm_ingest_writer_without_primary_seconds")
                                .Help("Length of the current outage (0 while batches commit)")
                                .Register(r)
                                .Add({});
  replayed_counter_ = &BuildCounter()
                           .Name("crm_ingest_writer_replayed_batches_total")
                           .Help("Batches written again after a failure (not found in the ledger)")
                           .Register(r)
                           .Add({});
  auto& in_doubt = BuildCounter()
                       .Name("crm_ingest_writer_in_doubt_commits_total")
                       .Help("COMMITs whose outcome was unknown, by how the ledger settled them")
                       .Register(r);
  in_doubt_committed_counter_ = &in_doubt.Add({{"settled", "committed"}});
  in_doubt_not_committed_counter_ = &in_doubt.Add({{"settled", "not_committed"}});
}

void writer_failover_stats::batch_committed() {
  std::lock_guard lock(mu_);
  if (!outage_since_) return;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - *outage_since_).count();
  outage_since_.reset();
  outage_seconds_total_ += s;
  if (without_primary_counter_) without_primary_counter_->Increment(s);
  if (without_primary_gauge_) without_primary_gauge_->Set(0);
  spdlog::info("Writing to PostgreSQL again. seconds_without_primary={:.3f}", s);
}

void writer_failover_stats::attempt_failed(const sinks::postgres::failure& f, bool will_retry) {
  if (will_retry) ++retries_;
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!outage_since_) {
    outage_since_ = now;
    spdlog::warn("PostgreSQL writes are failing; retrying until a primary accepts them. reason={}", f.reason);
  }
  if (without_primary_gauge_) {
    without_primary_gauge_->Set(std::chrono::duration<double>(now - *outage_since_).count());
  }
  if (will_retry && retries_family_) retries_family_->Add({{"reason", f.reason}}).Increment();
  if (!will_retry && give_ups_family_) give_ups_family_->Add({{"reason", f.reason}}).Increment();
}

void writer_failover_stats::reconnected() {
  ++reconnects_;
  if (reconnects_counter_) reconnects_counter_->Increment();
}

void writer_failover_stats::batch_replayed() {
  ++replayed_;
  if (replayed_counter_) replayed_counter_->Increment();
}

void writer_failover_stats::in_doubt_settled(bool committed) {
  if (committed) {
    ++in_doubt_committed_;
    if (in_doubt_committed_counter_) in_doubt_committed_counter_->Increment();
  } else {
    ++in_doubt_not_committed_;
    if (in_doubt_not_committed_counter_) in_doubt_not_committed_counter_->Increment();
  }
}

double writer_failover_stats::seconds_without_primary() const {
  std::lock_guard lock(mu_);
  double s = outage_seconds_total_;
  if (outage_since_) s += std::chrono::duration<double>(std::chrono::steady_clock::now() - *outage_since_).count();
  return s;
}

std::string writer_failover_stats::summary() const {
  return fmt::format(
      "reconnects={} retries={} replayed_batches={} in_doubt_committed={} in_doubt_not_committed={} "
      "seconds_without_primary={:.3f}",
      reconnects(), retries(), replayed_batches(), in_doubt_committed(), in_doubt_not_committed(),
      seconds_without_primary());
}

}  // namespace crm::ingest
