// The drainer: moves durable records from the local log into PostgreSQL, exactly once, and
// checkpoints the log only past records whose batch has committed.
//
// Threads: one drain thread owns the log's reader side and the source side of a sinks::postgres::
// writer_pool (whose writer threads own one connection each). It gathers records into an event_batch (up
// to batch_rows/batch_bytes, or whatever arrived within linger) and submits it; while the pool writes it,
// the thread reads the next batch into a second buffer, and it checkpoints the log past a batch when the
// pool hands back its completion (in log order). So at most max_in_flight + 1 batches are in memory. When
// the pool is full the thread stops reading the log: the log absorbs the backlog up to its bound, and the
// collector answers 503 when it is full. The retry policy is for ever: the log holds the data. A crash
// between commit and checkpoint replays batches whose rows are already stored; their deterministic ids
// make that a no-op.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>

#include "ingest/observability/metrics.h"
#include "sinks/postgres/writer_pool.h"
#include "sinks/spool/durable_log.h"

namespace crm::ingest {

struct drainer_options {
  sinks::postgres::pool_options pool;  // its retry policy is set to for ever: the log holds the data
  // After stop(): how long the drain goes on without a batch written (counted from the stop or the last batch
  // written). Then failing batches are given up (their records stay in the log, the checkpoint before them) and
  // no new batch starts (log.drain_on_stop_s).
  std::chrono::milliseconds drain_on_stop{std::chrono::seconds(30)};
};

class drainer {
 public:
  drainer(drainer_options options, sinks::spool::durable_log& log, metrics& m);
  ~drainer();
  drainer(const drainer&) = delete;
  drainer& operator=(const drainer&) = delete;

  void start();
  // Writes everything already durable in the log, then stops (graceful shutdown); after drain_on_stop without
  // a batch written (the database down, refusing, or not confirming) it leaves the rest in the log for the next
  // start.
  void stop();
  // True while batches reach the primary (or nothing has failed yet).
  bool database_ready() const noexcept;
  std::uint64_t batches_committed() const noexcept { return batches_.load(); }

 private:
  void drain_main();
  // Reads records after `pos` into `batch`; `writing`: a batch is in flight, so return (false) after
  // linger when nothing arrives instead of waiting for data.
  bool fill(transform::event_batch& batch, sinks::spool::log_position& pos, std::string& first, bool draining,
            bool writing);
  // Checkpoints the log past a completed batch.
  void complete(const sinks::postgres::batch_completion& c);
  void publish_log_stats();

  drainer_options options_;
  sinks::spool::durable_log& log_;
  metrics& metrics_;
  std::unique_ptr<sinks::postgres::writer_pool> pool_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> batches_{0};
  std::deque<sinks::spool::log_position> in_flight_ends_;  // drain thread only: where each batch ends
  // Drain thread only: a batch was given up at the stop, so no later batch may move the checkpoint past it.
  bool checkpoint_held_ = false;
  std::uint64_t last_group_commits_ = 0, last_fsyncs_ = 0, last_fsync_ns_ = 0;  // drain thread only
  std::uint64_t last_write_failures_ = 0, last_write_recoveries_ = 0, last_in_place_ = 0;  // drain thread only
};

}  // namespace crm::ingest
