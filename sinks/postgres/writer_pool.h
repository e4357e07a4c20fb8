// The PostgreSQL write path of every command: serve's drainer, consume, write, import and rejected replay
// submit batches here and get completions back. The pool owns the writers (one connection each), the
// retry policy, the accounting (batch_result) and the observer; a source keeps only what is its own: where
// its records come from, and when their position (log checkpoint, Kafka offsets, import success) may be
// released — on a batch's completion, which arrives in submission order.
//
// A submitted batch is split by event id among the writers (partition_by_key: both copies of a duplicate
// go to the same writer) and each part is queued to its writer. Writers do not wait for each other: each
// works through its own queue, so writer 0 may be on batch k+1 while writer 1 still commits batch k. A
// batch is complete when all its parts are; completions are handed out strictly in submission order, so
// a source that releases positions on completion releases them in its own order.
//
// Threads: each writer thread owns one sinks::postgres::writer. submit(), poll() and next() belong to
// the source's thread (one thread per pool). When `max_in_flight` batches are incomplete or undelivered
// the pool is full(): the source must take completions (next()) before it submits again, which is how
// backpressure reaches it (the drainer stops reading the log, Kafka partitions pause, import stops
// reading its file). Batch memory is the source's: submit() takes a shared_ptr and the completion hands
// it back untouched (except for the reordering of partition_by_key) for reuse.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sinks/postgres/writer.h"

namespace crm::sinks::postgres {

// How large a batch a source gathers for the write path before it submits it: the one definition of
// the defaults (postgres.batch_rows, batch_bytes, linger_ms).
struct batch_limits {
  std::size_t rows = 20000;
  std::size_t bytes = 16 << 20;
  // Longest time a record waits for its batch to fill before the batch is submitted anyway.
  std::chrono::milliseconds linger{50};

  bool reached(const transform::event_batch& b) const noexcept {
    return b.record_count() >= rows || b.text.bytes_used() >= bytes;
  }
};

struct pool_options {
  writer_options writer;  // every writer's: DSN, application name, backoff, retry policy, analytics, observer
  batch_limits batch;     // for the source: how large the batches it submits are
  int writers = 2;
  // Batches submitted and not yet taken back with poll()/next(); full() beyond it.
  std::size_t max_in_flight = 1;
  // Pause before a refused batch is tried again (retry_policy::for_ever only).
  std::chrono::milliseconds refusal_pause{5000};
};

enum class batch_status {
  written,    // every part committed (or was found committed in the ledger)
  failed,     // a part was refused for good, or retried longer than the policy allows: `error` says why
  abandoned,  // abandon() or stop_retrying() was called before a part could be written
};

struct batch_completion {
  std::uint64_t token = 0;                        // the source's, from submit()
  std::shared_ptr<transform::event_batch> batch;  // handed back for reuse
  batch_status status = batch_status::written;
  batch_result result;  // what the committed parts did (all of them when written)
  std::string error;    // the first failure, when not written
  double seconds = 0;   // from submission to the last part's end
};

class writer_pool {
 public:
  explicit writer_pool(pool_options options);
  // Finishes every queued part (subject to abandon()/stop_retrying()), then joins the writers.
  ~writer_pool();
  writer_pool(const writer_pool&) = delete;
  writer_pool& operator=(const writer_pool&) = delete;

  // Queues `batch` (split among the writers) and returns at once; `info.position` names it in the ledger
  // (a part number is appended when it is split). The source must not touch the batch until its
  // completion. Requires !full(). `token` is the source's opaque name for the batch's position.
  void submit(std::shared_ptr<transform::event_batch> batch, batch_info info, std::uint64_t token);
  // The oldest batch, once it and every batch before it are complete; nullopt otherwise. Never blocks.
  std::optional<batch_completion> poll();
  // Like poll(), waiting up to `timeout` for the oldest batch to complete (nullopt: nothing in flight, or
  // timed out).
  std::optional<batch_completion> next(std::chrono::milliseconds timeout);
  // Waits for the oldest batch however long it takes (nullopt: nothing in flight).
  std::optional<batch_completion> next();

  std::size_t in_flight() const;
  bool full() const { return in_flight() >= max_in_flight_; }
  std::size_t writers() const noexcept { return slots_.size(); }
  const retry_policy& policy() const noexcept { return options_.writer.retry; }

  // Parts that are failing stop retrying and complete as abandoned; parts that succeed still commit,
  // and queued parts are still tried (once). For a graceful stop of a source whose data is kept
  // elsewhere (Kafka): what can be written is, the rest is left to the next run.
  void stop_retrying() noexcept;
  // stop_retrying(), and queued parts are not even tried: after a failure that ends the run (import).
  void abandon() noexcept;

  // False from a writer's failed attempt until its next success (readiness probes; any thread).
  bool reachable() const noexcept;

 private:
  struct part {
    std::uint64_t sequence;
    batch_view view;
    batch_info info;
  };
  struct slot {
    explicit slot(const writer_options& o) : w(o) {}
    writer w;
    std::deque<part> queue;  // guarded by the pool's mutex
    std::thread thread;
  };
  struct pending {
    std::uint64_t token;
    std::shared_ptr<transform::event_batch> batch;
    std::size_t parts_left;
    std::size_t records;
    batch_status status = batch_status::written;
    batch_result result;
    std::string error;
    std::chrono::steady_clock::time_point submitted;
    double seconds = 0;
  };

  void work(slot& s);
  // Writes one part under the retry policy; returns its status (and `error`).
  batch_status write_part(slot& s, const part& p, batch_result& r, std::string& error);
  std::optional<batch_completion> take_front_locked();

  pool_options options_;
  std::size_t max_in_flight_;
  std::atomic<bool> stop_retrying_{false};
  std::atomic<bool> abandoned_{false};
  std::vector<std::unique_ptr<slot>> slots_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<pending> pending_;   // submission order; front = the oldest undelivered
  std::uint64_t next_sequence_ = 0;  // sequence of the next submitted batch
  std::uint64_t front_sequence_ = 0;  // sequence of pending_.front()
  bool closing_ = false;
};

}  // namespace crm::sinks::postgres
