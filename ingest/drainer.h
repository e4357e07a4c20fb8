// The drainer: moves durable records from the local log into PostgreSQL, exactly once, and
// checkpoints the log only past records whose batch has committed.
//
// Threads: one drain thread owns the log's reader side; it gathers records into one event_batch (up to
// batch_rows/batch_bytes, or whatever arrived within linger), splits it by event id among `writers`
// writer threads (each owns one sinks::postgres::writer and its connection) and, while they write,
// reads the next batch into a second buffer; it then waits for every part to commit and checkpoints.
// So at most two batches are in memory, one being written and one being read. While the database is unreachable the writers retry with backoff and the
// drain thread waits: the log absorbs the backlog up to its bound, and the collector answers 503 when it
// is full. A crash between commit and checkpoint replays batches whose rows are already stored; their
// deterministic ids make that a no-op.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ingest/metrics.h"
#include "sinks/postgres/writer.h"
#include "sinks/spool/durable_log.h"

namespace crm::ingest {

struct drainer_options {
  sinks::postgres::writer_options writer;  // retry_for 0: retry for ever (logged and counted)
  int writers = 2;
  std::size_t batch_rows = 20000;
  std::size_t batch_bytes = 16 << 20;
  std::chrono::milliseconds linger{50};
};

class drainer {
 public:
  drainer(drainer_options options, sinks::spool::durable_log& log, metrics& m);
  ~drainer();
  drainer(const drainer&) = delete;
  drainer& operator=(const drainer&) = delete;

  void start();
  // Writes everything already durable in the log, then stops (graceful shutdown).
  void stop();
  // True while batches reach the primary (or nothing has failed yet).
  bool database_ready() const noexcept;
  std::uint64_t batches_committed() const noexcept { return batches_.load(); }

 private:
  class writer_pool;
  void drain_main();
  // Reads records after `pos` into `batch`; `writing`: a batch is in flight, so return (false) after
  // linger when nothing arrives instead of waiting for data.
  bool fill(transform::event_batch& batch, sinks::spool::log_position& pos, std::string& first, bool draining,
            bool writing);
  void begin_write(transform::event_batch& batch, const std::string& position);
  void finish_write();
  void publish_log_stats();

  drainer_options options_;
  sinks::spool::durable_log& log_;
  metrics& metrics_;
  std::unique_ptr<writer_pool> pool_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> batches_{0};
  // The batch in flight (drain thread only).
  std::vector<sinks::postgres::batch_view> parts_;
  std::chrono::steady_clock::time_point write_started_{};
  std::size_t write_rows_ = 0;
  std::uint64_t last_group_commits_ = 0, last_fsyncs_ = 0, last_fsync_ns_ = 0;  // drain thread only
};

}  // namespace crm::ingest
