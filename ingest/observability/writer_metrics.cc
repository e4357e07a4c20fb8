#include "ingest/observability/writer_metrics.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "sinks/postgres/connection.h"
#include "sinks/postgres/writer.h"

namespace crm::ingest {

namespace {
const prometheus::Histogram::BucketBoundaries latency_buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                 0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
const prometheus::Histogram::BucketBoundaries row_buckets = {1, 10, 100, 1000, 5000, 10000, 20000, 50000, 100000};
}  // namespace

writer_failover_stats::writer_failover_stats(prometheus::Registry* registry) {
  if (!registry) return;
  auto& r = *registry;
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  batch_rows_ = &BuildHistogram().Name("crm_ingest_writer_batch_rows").Help("Records per PostgreSQL transaction").Register(r).Add({}, row_buckets);
  batch_seconds_ = &BuildHistogram().Name("crm_ingest_writer_batch_seconds").Help("Duration of one batch transaction, retries included").Register(r).Add({}, latency_buckets);
  auto& rows = BuildCounter().Name("crm_ingest_writer_rows_total").Help("Rows inserted, by table").Register(r);
  rows_communications_ = &rows.Add({{"table", "communications"}});
  rows_touchpoints_ = &rows.Add({{"table", "customer_touchpoints"}});
  rows_rejected_ = &rows.Add({{"table", "rejected_events"}});
  duplicates_counter_ = &BuildCounter().Name("crm_ingest_writer_duplicates_total").Help("Events already stored (replays, provider retries)").Register(r).Add({});
  batches_counter_ = &BuildCounter().Name("crm_ingest_writer_batches_total").Help("Batch transactions committed").Register(r).Add({});
  failures_counter_ = &BuildCounter().Name("crm_ingest_writer_failures_total").Help("Batches the database refused for good").Register(r).Add({});
  database_up_gauge_ = &BuildGauge().Name("crm_ingest_writer_database_up").Help("1 while a writer has a session on the primary (from start-up), 0 from a failed attempt until the next success").Register(r).Add({});
  last_commit_gauge_ = &BuildGauge().Name("crm_ingest_writer_last_commit_timestamp_seconds").Help("Unix time of the last committed batch").Register(r).Add({});
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

void writer_failover_stats::set_up(int up) {
  database_up_ = up;
  if (database_up_gauge_) database_up_gauge_->Set(up);
}

void writer_failover_stats::connected() { set_up(1); }

void writer_failover_stats::connect_failed(std::string_view) { set_up(0); }

void writer_failover_stats::batch_written(const sinks::postgres::batch_result& r, std::size_t records,
                                          double seconds) {
  ++batches_;
  if (!batches_counter_) return;
  batch_rows_->Observe(static_cast<double>(records));
  batch_seconds_->Observe(seconds);
  rows_communications_->Increment(static_cast<double>(r.communications_inserted));
  rows_touchpoints_->Increment(static_cast<double>(r.touchpoints_inserted));
  rows_rejected_->Increment(static_cast<double>(r.rejected_inserted));
  duplicates_counter_->Increment(static_cast<double>(r.duplicates()));
  batches_counter_->Increment();
  last_commit_gauge_->Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void writer_failover_stats::batch_refused(std::string_view, bool) {
  ++refused_;
  set_up(0);
  if (failures_counter_) failures_counter_->Increment();
}

void writer_failover_stats::batch_committed() {
  set_up(1);
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
  set_up(0);
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
