#include "ingest/pipeline/drainer.h"

#include <pthread.h>
#include <optional>

#include <spdlog/spdlog.h>

#include "transform/canonical/event_codec.h"
#include "transform/normalize/normalize.h"

namespace crm::ingest {

namespace pg = crm::sinks::postgres;
namespace spool = crm::sinks::spool;

bool drainer::database_ready() const noexcept { return !pool_ || pool_->reachable(); }

drainer::drainer(drainer_options options, spool::durable_log& log, metrics& m)
    : options_(std::move(options)), log_(log), metrics_(m) {
  options_.pool.writer.retry = pg::retry_policy::for_ever();  // the log holds the data: never give up
  options_.pool.writer.application_name = "crm-ingest serve";
}

drainer::~drainer() { stop(); }

void drainer::start() {
  pool_ = std::make_unique<pg::writer_pool>(options_.pool);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "crm-drain");
    drain_main();
  });
}

void drainer::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  thread_.join();
  // The drain thread has settled what it will: a part the confirmer queues again now (a failover) must not
  // keep the writers retrying while the pool joins them. It stays in the log, its checkpoint before it.
  pool_->stop_retrying();
  pool_.reset();
}

bool drainer::fill(transform::event_batch& batch, spool::log_position& pos, std::string& first, bool draining,
                   bool writing) {
  spool::read_batch rb;
  const auto started = std::chrono::steady_clock::now();
  const auto& limits = options_.pool.batch;
  while (!limits.reached(batch)) {
    if (auto ec = log_.read(pos, 256, 4 << 20, rb)) {
      // What was read before the damage is written first (its checkpoint then stops at the damage).
      if (batch.record_count() > 0) break;
      spdlog::error("The local log could not be read; retrying. position={} error={}", spool::to_string(pos),
                    ec.message());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      return false;
    }
    if (rb.empty()) {
      if (draining) break;  // everything durable is in the batch
      auto waited = std::chrono::steady_clock::now() - started;
      if (batch.record_count() > 0 && waited >= limits.linger) break;
      auto left = batch.record_count() > 0 ? limits.linger - std::chrono::duration_cast<std::chrono::milliseconds>(waited)
                                           : std::chrono::milliseconds(200);
      // With a batch being written, an empty log must not hold back its checkpoint for long.
      if (writing && batch.record_count() == 0 && waited >= limits.linger) return false;
      if (writing && batch.record_count() == 0) left = limits.linger - std::chrono::duration_cast<std::chrono::milliseconds>(waited);
      log_.wait_for_data(pos, std::max(left, std::chrono::milliseconds(1)));
      // A stop while waiting: take what is durable by now (the records that woke this thread among them), then
      // stop reading. Returning at once left a record acknowledged just before the stop unwritten at exit.
      if (stopping_) draining = true;
      continue;
    }
    if (first.empty()) first = spool::to_string(rb.records().front().position);
    for (const auto& rec : rb.records()) {
      if (auto ec = transform::append_decoded_event_batch(rec.payload, batch)) {
        // The CRC matched, so these are our own bytes from another version or a bug: keep them visible.
        const std::string source = "log " + spool::to_string(rec.position);
        const std::string reason = "the local log holds a record this version cannot decode: " + ec.message();
        batch.rejections.push_back(transform::rejection{transform::now_us(), batch.text.copy(source),
                                                        batch.text.copy(reason), batch.text.copy(rec.payload), {}});
      }
    }
    pos = rb.next();
  }
  return batch.record_count() > 0;
}

void drainer::complete(const pg::batch_completion& c) {
  // The policy is for ever: a batch completes unwritten only when given up at the stop (drain_on_stop). It and
  // every batch after it stay in the log; their written parts are found by their event ids at the next start.
  const spool::log_position end = in_flight_ends_.front();
  in_flight_ends_.pop_front();
  if (c.status == pg::batch_status::written) {
    ++batches_;
  } else {
    checkpoint_held_ = true;
    spdlog::warn("A batch was not written before stopping; it stays in the local log. position={} error={}",
                 spool::to_string(end), c.error);
  }
  if (checkpoint_held_) {
    publish_log_stats();
    return;
  }
  if (auto ec = log_.checkpoint(end)) {
    spdlog::error("The local log's checkpoint could not be saved; the batch will be replayed (harmlessly) after a "
                  "restart. position={} error={}",
                  spool::to_string(end), ec.message());
  }
  (void)c;
  publish_log_stats();
}

void drainer::publish_log_stats() {
  auto st = log_.stats();
  metrics_.log_bytes.Set(static_cast<double>(st.bytes_on_disk));
  metrics_.log_segments.Set(static_cast<double>(st.segments));
  metrics_.log_backlog_bytes.Set(static_cast<double>(st.backlog_bytes));
  // The log counts for itself; counters only move forward, so publish the increase.
  // rate(crm_ingest_log_fsync_seconds_total) / rate(crm_ingest_log_fsyncs_total) is the mean fsync time.
  metrics_.log_fsyncs.Increment(static_cast<double>(st.fsyncs - last_fsyncs_));
  metrics_.log_fsync_seconds_total.Increment(static_cast<double>(st.total_fsync_ns - last_fsync_ns_) / 1e9);
  metrics_.log_fsync_max_seconds.Set(static_cast<double>(st.max_fsync_ns) / 1e9);
  metrics_.log_group_commits.Increment(static_cast<double>(st.group_commits - last_group_commits_));
  metrics_.log_failed.Set(st.failed ? 1 : 0);
  metrics_.log_write_failures.Increment(static_cast<double>(st.write_failures - last_write_failures_));
  metrics_.log_write_recoveries.Increment(static_cast<double>(st.write_recoveries - last_write_recoveries_));
  metrics_.log_checkpoints_in_place.Increment(static_cast<double>(st.checkpoints_in_place - last_in_place_));
  last_write_failures_ = st.write_failures;
  last_write_recoveries_ = st.write_recoveries;
  last_in_place_ = st.checkpoints_in_place;
  last_group_commits_ = st.group_commits;
  last_fsyncs_ = st.fsyncs;
  last_fsync_ns_ = st.total_fsync_ns;
}

// Double buffering: while the pool writes batch k (from one buffer), this thread reads and decodes batch
// k+1 into another; the checkpoint moves past batch k only once it is safe on the cluster (committed, and
// confirmed by the standbys under asynchronous replication), and completions come in submission order, so
// the order of checkpoints is that of the log.
void drainer::drain_main() {
  spool::log_position pos = log_.checkpointed();
  std::vector<std::shared_ptr<transform::event_batch>> free;
  for (std::size_t i = 0; i <= options_.pool.max_in_flight; ++i) free.push_back(std::make_shared<transform::event_batch>());
  // When a batch last came back written: a stop's limit counts from the later of it and the stop.
  std::chrono::steady_clock::time_point last_written{};
  auto take_completion = [&](std::optional<pg::batch_completion> c) {
    if (!c) return;
    if (c->status == pg::batch_status::written) last_written = std::chrono::steady_clock::now();
    complete(*c);
    free.push_back(std::move(c->batch));
  };
  std::uint64_t submitted = 0;
  // Stopping while every batch left is written but waits for standbys that do not confirm it (10 s after
  // the stop or the last batch written back): they stay in the log (its checkpoint is before them) and are
  // written again, harmlessly, at the next start.
  std::optional<std::chrono::steady_clock::time_point> stop_seen;
  // drain_on_stop after the stop without a batch written (the database down, refusing, or not confirming): no
  // new batch starts, and the pool gives up the batches that fail instead of retrying them; the loop ends once
  // nothing is being written. A drain that keeps writing goes on until the log is written.
  bool leaving = false;
  auto check_stop = [&] {
    if (!stop_seen) {
      if (!stopping_.load()) return;
      stop_seen = std::chrono::steady_clock::now();
    }
    if (leaving || std::chrono::steady_clock::now() - std::max(*stop_seen, last_written) < options_.drain_on_stop) {
      return;
    }
    leaving = true;
    pool_->stop_retrying();
    spdlog::warn("Stopping before the local log is written to PostgreSQL: no batch was written for "
                 "log.drain_on_stop_s = {} s. The batches in the writers' hands finish or are given up, and the records "
                 "not written are written at the next start. backlog_bytes={}",
                 std::chrono::duration_cast<std::chrono::seconds>(options_.drain_on_stop).count(),
                 log_.stats().backlog_bytes);
  };
  auto give_up_confirmations = [&] {
    check_stop();
    if (!stop_seen) return false;
    const auto now = std::chrono::steady_clock::now();
    // 10 s without a batch written back, like drain_on_stop: a batch that has just committed and waits for its
    // (asynchronous) standbys is no reason to leave while the ones before it keep being confirmed. (Once
    // leaving, the loop below leaves as soon as nothing is being written, these batches included.)
    if (pool_->in_flight() == 0 || pool_->unconfirmed().batches != pool_->in_flight() ||
        now - std::max(*stop_seen, last_written) < std::chrono::seconds(10)) {
      return false;
    }
    spdlog::warn("Stopping with written batches the standbys have not confirmed; they stay in the local log and are "
                 "written again at the next start. batches={}",
                 pool_->in_flight());
    return true;
  };
  // The log's gauges (backlog, size) also while no batch completes: the database unreachable, or written
  // batches waiting for the standbys' confirmation (their records stay in the backlog meanwhile).
  publish_log_stats();
  auto published = std::chrono::steady_clock::now();
  for (;;) {
    while (auto c = pool_->poll()) take_completion(std::move(c));
    const bool draining = stopping_.load();
    if (give_up_confirmations()) return;
    if (std::chrono::steady_clock::now() - published >= std::chrono::seconds(1)) {
      publish_log_stats();
      published = std::chrono::steady_clock::now();
    }
    if (leaving) {
      if (pool_->in_flight() == 0) break;
      // Nothing is being written any more: what is left waits for a confirmation (which, the database gone, may
      // never come) or behind such a batch, and comes back in order only after it. It all stays in the log.
      if (pool_->committing() == 0) {
        spdlog::warn("Stopping with batches not confirmed or not written; they stay in the local log and are "
                     "written again at the next start. batches={}",
                     pool_->in_flight());
        return;
      }
      take_completion(pool_->next(std::chrono::milliseconds(100)));
      continue;
    }
    // This thread's buffer from here on: completions taken below push theirs onto `free`. Batches waiting
    // for their confirmation keep theirs, so the list grows while the standbys lag (bounded by the pool:
    // postgres.max_unconfirmed_mb).
    if (free.empty()) free.push_back(std::make_shared<transform::event_batch>());
    auto batch = std::move(free.back());
    free.pop_back();
    batch->clear();
    spool::log_position start = pos;
    std::string first;
    const bool writing = pool_->in_flight() > 0;
    const bool filled = fill(*batch, pos, first, draining, writing);
    if (!filled) {
      free.push_back(std::move(batch));
      pos = start;  // nothing taken
      // An empty log must not hold back the checkpoint of the batch in flight.
      if (writing) take_completion(pool_->next(options_.pool.batch.linger));
      if ((draining || stopping_) && pool_->in_flight() == 0) break;
      continue;
    }
    while (pool_->full() && !leaving) {
      take_completion(pool_->next(std::chrono::milliseconds(100)));
      if (give_up_confirmations()) return;
    }
    if (leaving) {  // the batch read meanwhile stays in the log
      free.push_back(std::move(batch));
      pos = start;
      continue;
    }
    in_flight_ends_.push_back(pos);
    pool_->submit(std::move(batch), pg::batch_info{"log", first + "-" + spool::to_string(pos)}, submitted++);
  }
}

}  // namespace crm::ingest
