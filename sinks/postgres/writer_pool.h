// The PostgreSQL write path of every command: serve's drainer, consume, write, import and rejected replay
// submit batches here and get completions back. The pool owns the writers (one connection each), the
// retry policy, the accounting (batch_result) and the observer; a source keeps only what is its own: where
// its records come from, and when their position (log checkpoint, Kafka offsets, import success) may be
// released — on a batch's completion, which arrives in submission order.
//
// A submitted batch is split by event id among the writers (partition_by_key: both copies of a duplicate
// go to the same writer) and each part is queued to its writer; with `adaptive`, among only as many of
// them as write it faster (writer_count.h; the count changes between batches, never within one). Writers
// do not wait for each other: each works through its own queue, so writer 0 may be on batch k+1 while
// writer 1 still commits batch k. A batch is complete when all its parts are; completions are handed out
// strictly in submission order, so a source that releases positions on completion releases them in its
// own order.
//
// A batch is complete only once it is safe on the cluster, not merely committed on the primary
// (sinks/postgres/confirmation.md): with a synchronous standby, or on a single PostgreSQL, its COMMIT is
// enough; under asynchronous replication the pool's confirmer waits until the standbys have flushed it,
// and after a failover every part the new primary's ledger lacks is written again (same ledger ids) before
// its batch completes. Until then the source keeps the batch's position: it can be replayed.
//
// Threads: each writer thread owns one sinks::postgres::writer; the confirmer thread owns the confirmer's
// session and calls back into the pool (under the pool's mutex). submit(), poll() and next() belong to
// the source's thread (one thread per pool). When `max_in_flight` batches are incomplete or undelivered
// the pool is full(): the source must take completions (next()) before it submits again, which is how
// backpressure reaches it (the drainer stops reading the log, Kafka partitions pause, import stops
// reading its file). Batch memory is the source's: submit() takes a shared_ptr and the completion hands
// it back untouched (except for the reordering of partition_by_key) for reuse. With attribution maintained,
// the analytics stage's thread (analytics_stage.h) owns one more connection: the writers only wake it.
#pragma once

#include <boost/noncopyable.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sinks/postgres/analytics_stage.h"
#include "sinks/postgres/confirmer.h"
#include "sinks/postgres/writer_count.h"
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
  // When a batch is safe on the cluster (postgres.confirm, postgres.confirm_min_standbys).
  confirm_policy confirm;
  // Committed batches waiting for their confirmation may hold this many bytes of records (and the source
  // may submit new batches meanwhile); full() beyond it (postgres.max_unconfirmed_mb).
  std::size_t max_unconfirmed_bytes = std::size_t{256} << 20;
  // How often the confirmer reads the standbys' positions while batches wait.
  std::chrono::milliseconds confirm_interval{10};
  // Split each batch among only as many of the writers as make it faster (writer_count.h); false: among
  // all of them (postgres.adaptive_writers, serve's drainer).
  bool adaptive = false;
  writer_count_options adaptive_options;  // its `max` is `writers`
};

// The write path's batches that are committed but not yet safe on the cluster.
struct confirmation_stats {
  std::size_t batches = 0;
  std::size_t bytes = 0;
  double oldest_seconds = 0;  // age of the oldest (0: none)
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
  // From the last part's commit to the cluster's confirmation (0: its COMMIT was the confirmation).
  double confirm_seconds = 0;
};

class writer_pool : boost::noncopyable {  // owns a thread
 public:
  explicit writer_pool(pool_options options);
  // Finishes every queued part (subject to abandon()/stop_retrying()), then joins the writers.
  ~writer_pool();

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

  // Batches submitted and not yet taken back (written or not, confirmed or not).
  std::size_t in_flight() const;
  // No more submissions until a completion was taken: `max_in_flight` batches are not yet committed, or
  // the committed ones waiting for their confirmation hold max_unconfirmed_bytes.
  bool full() const;
  // Committed batches waiting for the cluster to confirm them (metrics; any thread).
  confirmation_stats unconfirmed() const;
  // Batches with a part still being written: not yet committed, given up or failed (a stopping source that
  // sees 0 here has nothing left but batches waiting for their confirmation or for their turn to come back).
  std::size_t committing() const;
  // The ledger source and position of every batch submitted and not yet taken back, oldest first (what an
  // import that stops waiting names for a re-run).
  std::vector<batch_info> outstanding() const;
  std::size_t writers() const noexcept { return slots_.size(); }
  // Writers the next batch is split among (all of them unless the pool adapts the count; any thread).
  int writers_in_use() const;
  const retry_policy& policy() const noexcept { return options_.writer.retry; }

  // Parts that are failing stop retrying and complete as abandoned; parts that succeed still commit,
  // and queued parts are still tried (once). For a graceful stop of a source whose data is kept
  // elsewhere (Kafka): what can be written is, the rest is left to the next run.
  void stop_retrying() noexcept;
  // stop_retrying(), and queued parts are not even tried: after a failure that ends the run (import).
  void abandon() noexcept;

  // False from a writer's failed attempt until its next success (readiness probes; any thread).
  bool reachable() const noexcept;

  // The analytics stage, when the pool runs one (else null).
  analytics_stage* analytics() noexcept { return stage_.get(); }
  // Waits until the analytics tables include every batch committed so far (see analytics_stage::catch_up);
  // true at once without a stage.
  bool catch_up_analytics(std::chrono::milliseconds timeout);

 private:
  struct part {
    std::uint64_t sequence;
    std::size_t writer;  // its slot
    batch_view view;
    batch_info info;
    transform::uuid id;    // its ledger id (the same when it is written again)
    bool rewrite = false;  // written again: the new primary's ledger lacked (some of) it
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
    std::size_t parts_left;    // not yet committed
    std::size_t unconfirmed = 0;  // committed, waiting for the cluster
    std::size_t records;
    std::size_t bytes = 0;
    batch_info info;
    std::vector<part> parts;               // kept for a rewrite after a failover
    std::vector<batch_result> part_results;  // a rewrite replaces its part's
    batch_status status = batch_status::written;
    batch_result result;
    std::string error;
    std::chrono::steady_clock::time_point submitted;
    double seconds = 0;
    double confirm_seconds = 0;
    std::size_t split = 1;    // the writers its parts went to
    double part_seconds = 0;  // the sum of its parts' write times
    // A measure for writer_count: it reached its size limit, and no part needed a second attempt or was
    // written again after a failover.
    bool measure = false;
  };

  void work(slot& s);
  // Writes one part under the retry policy; returns its status (and `error`).
  // `refused_before`: the part was refused (and paused) before this outcome.
  batch_status write_part(slot& s, const part& p, batch_result& r, std::string& error, commit_point& cp,
                          bool& refused_before);
  std::optional<batch_completion> take_front_locked();
  bool front_complete_locked() const;
  std::uint64_t part_key(const part& p) const noexcept { return p.sequence * 64 + p.writer; }
  void on_confirmed(std::uint64_t key);
  void on_missing(std::uint64_t key);

  pool_options options_;
  std::size_t max_in_flight_;
  std::atomic<bool> stop_retrying_{false};
  std::atomic<bool> abandoned_{false};
  std::unique_ptr<analytics_stage> stage_;  // before slots_: the writers wake it until they are joined
  std::vector<std::unique_ptr<slot>> slots_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<pending> pending_;   // submission order; front = the oldest undelivered
  std::uint64_t next_sequence_ = 0;  // sequence of the next submitted batch
  std::uint64_t front_sequence_ = 0;  // sequence of pending_.front()
  std::size_t committing_ = 0;          // batches with parts not yet committed
  std::size_t unconfirmed_bytes_ = 0;   // of batches committed and waiting for the cluster
  primary_identity seen_primary_;       // the primary and replication mode last logged
  replication_mode seen_mode_ = replication_mode::standalone;
  bool closing_ = false;
  std::optional<writer_count> count_;  // when the pool adapts its writer count
  std::mt19937_64 rng_{std::random_device{}()};
  // Last: constructed after, and destroyed before, everything its callbacks touch.
  std::unique_ptr<confirmer> confirmer_;
};

}  // namespace crm::sinks::postgres
