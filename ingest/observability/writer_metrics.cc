#include "ingest/observability/writer_metrics.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "sinks/postgres/connection.h"
#include "sinks/postgres/replication_status.h"
#include "sinks/postgres/writer.h"

namespace crm::ingest {

namespace {
const prometheus::Histogram::BucketBoundaries latency_buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                 0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
const prometheus::Histogram::BucketBoundaries confirm_buckets = {0,    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                  0.1,  0.25,  0.5,    1,     2.5,  5,     10, 30};
const prometheus::Histogram::BucketBoundaries analytics_delay_buckets = {0.05, 0.1, 0.25, 0.5, 1,   2,   5,
                                                                          10,   30,  60,   300, 1800};
const prometheus::Histogram::BucketBoundaries row_buckets = {1, 10, 100, 1000, 5000, 10000, 20000, 50000, 100000};


prometheus::Counter& counter(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add({});
}
prometheus::Gauge& gauge(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}
prometheus::Histogram& histogram(prometheus::Registry& r, const char* name, const char* help,
                                 const prometheus::Histogram::BucketBoundaries& buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}
prometheus::Family<prometheus::Counter>& counters(prometheus::Registry& r, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

}  // namespace

// Each series with its name and help, registered in this order when the stats are made.
struct writer_failover_stats::series {
  prometheus::Registry& r;
  prometheus::Histogram& batch_rows =
      histogram(r, "crm_ingest_writer_batch_rows", "Records per PostgreSQL transaction", row_buckets);
  prometheus::Histogram& batch_seconds = histogram(r, "crm_ingest_writer_batch_seconds",
                                                   "Duration of one batch transaction, retries included",
                                                   latency_buckets);
  prometheus::Family<prometheus::Counter>& rows = counters(r, "crm_ingest_writer_rows_total", "Rows inserted, by table");
  prometheus::Counter& rows_communications = rows.Add({{"table", "communications"}});
  prometheus::Counter& rows_touchpoints = rows.Add({{"table", "customer_touchpoints"}});
  prometheus::Counter& rows_rejected = rows.Add({{"table", "rejected_events"}});
  prometheus::Counter& duplicates =
      counter(r, "crm_ingest_writer_duplicates_total", "Events already stored (replays, provider retries)");
  prometheus::Counter& batches = counter(r, "crm_ingest_writer_batches_total", "Batch transactions committed");
  prometheus::Counter& failures =
      counter(r, "crm_ingest_writer_failures_total", "Batches the database refused for good");
  prometheus::Gauge& database_up = gauge(r, "crm_ingest_writer_database_up",
                                         "1 while a writer has a session on the primary (from start-up), 0 from a "
                                         "failed attempt until the next success");
  prometheus::Gauge& last_commit =
      gauge(r, "crm_ingest_writer_last_commit_timestamp_seconds", "Unix time of the last committed batch");
  prometheus::Counter& reconnects =
      counter(r, "crm_ingest_writer_reconnects_total", "Sessions re-opened on a primary after a failure");
  prometheus::Family<prometheus::Counter>& retries = counters(
      r, "crm_ingest_writer_retries_total",
      "Failed batch attempts that were retried, by reason (broken_connection, 57P01, 25006, ...)");
  prometheus::Family<prometheus::Counter>& give_ups =
      counters(r, "crm_ingest_writer_give_ups_total",
               "Batches abandoned after retrying for the configured time, by last reason");
  prometheus::Counter& without_primary_total =
      counter(r, "crm_ingest_writer_seconds_without_primary_total",
              "Seconds from a writer's first failure to the next commit, summed over outages");
  prometheus::Gauge& without_primary = gauge(r, "crm_ingest_writer_without_primary_seconds",
                                             "Length of the current outage (0 while batches commit)");
  prometheus::Counter& replayed = counter(r, "crm_ingest_writer_replayed_batches_total",
                                          "Batches written again after a failure (not found in the ledger)");
  prometheus::Family<prometheus::Counter>& in_doubt =
      counters(r, "crm_ingest_writer_in_doubt_commits_total",
               "COMMITs whose outcome was unknown, by how the ledger settled them");
  prometheus::Counter& in_doubt_committed = in_doubt.Add({{"settled", "committed"}});
  prometheus::Counter& in_doubt_not_committed = in_doubt.Add({{"settled", "not_committed"}});
  prometheus::Gauge& unconfirmed_batches =
      gauge(r, "crm_ingest_writer_unconfirmed_batches",
            "Batches committed on the primary and waiting for the standbys to have them (their source positions "
            "are not released yet)");
  prometheus::Gauge& unconfirmed_bytes =
      gauge(r, "crm_ingest_writer_unconfirmed_bytes", "Memory of the batches waiting for the standbys");
  prometheus::Gauge& unconfirmed_oldest =
      gauge(r, "crm_ingest_writer_unconfirmed_oldest_seconds",
            "Age of the oldest batch waiting for the standbys, from its commit (0: none)");
  prometheus::Histogram& confirm_seconds =
      histogram(r, "crm_ingest_writer_confirm_seconds",
                "From a batch's last COMMIT until the cluster confirmed it (the standbys flushed it); 0 when its "
                "COMMIT was the confirmation (synchronous standby, single PostgreSQL)",
                confirm_buckets);
  prometheus::Gauge& writers_in_use =
      gauge(r, "crm_ingest_writer_writers_in_use",
            "Writers a batch is split among: postgres.writers, or as many of them as write faster with "
            "postgres.adaptive_writers");
  prometheus::Counter& rewritten =
      counter(r, "crm_ingest_writer_rewritten_batches_total",
              "Committed batches a new primary's ledger lacked after a failover, written again");
  prometheus::Family<prometheus::Gauge>& mode =
      prometheus::BuildGauge()
          .Name("crm_ingest_writer_replication_mode")
          .Help("1 for the replication mode of the primary seen last: standalone, asynchronous, synchronous")
          .Register(r);

  prometheus::Gauge& analytics_lag =
      gauge(r, "crm_ingest_analytics_lag_seconds",
            "Age of the oldest committed batch not yet applied to the attribution and A/B tables (0 when current)");
  prometheus::Gauge& analytics_pending = gauge(r, "crm_ingest_analytics_pending_batches",
                                               "Committed batches not yet applied to the attribution and A/B tables");
  prometheus::Histogram& analytics_delay =
      histogram(r, "crm_ingest_analytics_delay_seconds",
                "Per batch, from its commit to its application to the attribution and A/B tables",
                analytics_delay_buckets);
  prometheus::Histogram& analytics_run_seconds =
      histogram(r, "crm_ingest_analytics_run_seconds", "Duration of one analytics stage transaction", latency_buckets);
  prometheus::Counter& analytics_batches =
      counter(r, "crm_ingest_analytics_batches_total",
              "Batches applied to the attribution and A/B tables by this process's stage");
  prometheus::Counter& analytics_touchpoints =
      counter(r, "crm_ingest_analytics_touchpoints_total",
              "Touchpoints applied to the attribution and A/B tables by this process's stage");
  prometheus::Family<prometheus::Counter>& analytics_failures =
      counters(r, "crm_ingest_analytics_failures_total",
               "Analytics stage transactions that failed and are retried, by reason");

  void set_mode(std::string_view seen) {
    for (std::string_view m : sinks::postgres::replication_mode_names) {
      mode.Add({{"mode", std::string(m)}}).Set(seen == m ? 1 : 0);
    }
  }
};

writer_failover_stats::writer_failover_stats(prometheus::Registry* registry) {
  if (!registry) return;
  series_.reset(new series{*registry});
  series_->set_mode("");
}

writer_failover_stats::~writer_failover_stats() = default;

void writer_failover_stats::analytics_applied(std::size_t batches, std::uint64_t touchpoints, double seconds,
                                              std::span<const double> delays) {
  if (!series_) return;
  series_->analytics_batches.Increment(static_cast<double>(batches));
  series_->analytics_touchpoints.Increment(static_cast<double>(touchpoints));
  series_->analytics_run_seconds.Observe(seconds);
  for (double d : delays) series_->analytics_delay.Observe(d);
}

void writer_failover_stats::analytics_lag(long long pending_batches, double lag_seconds) {
  if (!series_) return;
  series_->analytics_lag.Set(lag_seconds);
  series_->analytics_pending.Set(static_cast<double>(pending_batches));
}

void writer_failover_stats::analytics_failed(std::string_view reason) {
  if (!series_) return;
  std::lock_guard lock(mu_);
  series_->analytics_failures.Add({{"reason", std::string(reason)}}).Increment();
}

void writer_failover_stats::batch_rewritten() {
  ++rewritten_;
  if (series_) series_->rewritten.Increment();
}

void writer_failover_stats::replication_mode(std::string_view mode) {
  if (!series_) return;
  std::lock_guard lock(mu_);
  series_->set_mode(mode);
}

void writer_failover_stats::writers_in_use(int writers) {
  if (series_) series_->writers_in_use.Set(writers);
}

void writer_failover_stats::unconfirmed(std::size_t batches, std::size_t bytes, double oldest_seconds) {
  if (!series_) return;
  series_->unconfirmed_batches.Set(static_cast<double>(batches));
  series_->unconfirmed_bytes.Set(static_cast<double>(bytes));
  series_->unconfirmed_oldest.Set(oldest_seconds);
}

void writer_failover_stats::batch_confirmed(double seconds) {
  if (series_) series_->confirm_seconds.Observe(seconds);
}

void writer_failover_stats::set_up(int up) {
  database_up_ = up;
  if (series_) series_->database_up.Set(up);
}

void writer_failover_stats::connected() { set_up(1); }

void writer_failover_stats::connect_failed(std::string_view) { set_up(0); }

void writer_failover_stats::batch_written(const sinks::postgres::batch_result& r, std::size_t records,
                                          double seconds) {
  ++batches_;
  if (!series_) return;
  auto& m = *series_;
  m.batch_rows.Observe(static_cast<double>(records));
  m.batch_seconds.Observe(seconds);
  m.rows_communications.Increment(static_cast<double>(r.communications_inserted));
  m.rows_touchpoints.Increment(static_cast<double>(r.touchpoints_inserted));
  m.rows_rejected.Increment(static_cast<double>(r.rejected_inserted));
  m.duplicates.Increment(static_cast<double>(r.duplicates()));
  m.batches.Increment();
  m.last_commit.Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void writer_failover_stats::batch_refused(std::string_view, bool) {
  ++refused_;
  set_up(0);
  if (series_) series_->failures.Increment();
}

void writer_failover_stats::batch_committed() {
  set_up(1);
  std::lock_guard lock(mu_);
  if (!outage_since_) return;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - *outage_since_).count();
  outage_since_.reset();
  outage_seconds_total_ += s;
  if (series_) {
    series_->without_primary_total.Increment(s);
    series_->without_primary.Set(0);
  }
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
  if (!series_) return;
  series_->without_primary.Set(std::chrono::duration<double>(now - *outage_since_).count());
  (will_retry ? series_->retries : series_->give_ups).Add({{"reason", f.reason}}).Increment();
}

void writer_failover_stats::reconnected() {
  ++reconnects_;
  if (series_) series_->reconnects.Increment();
}

void writer_failover_stats::batch_replayed() {
  ++replayed_;
  if (series_) series_->replayed.Increment();
}

void writer_failover_stats::in_doubt_settled(bool committed) {
  ++(committed ? in_doubt_committed_ : in_doubt_not_committed_);
  if (series_) (committed ? series_->in_doubt_committed : series_->in_doubt_not_committed).Increment();
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
      "seconds_without_primary={:.3f} rewritten_batches={}",
      reconnects(), retries(), replayed_batches(), in_doubt_committed(), in_doubt_not_committed(),
      seconds_without_primary(), rewritten_batches());
}

}  // namespace crm::ingest
