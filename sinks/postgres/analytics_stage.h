// The analytics stage: keeps attribution_credits, campaign_attribution_daily and the A/B tables current off the
// insert path. A batch transaction only records the touchpoints it really inserted in analytics_backlog (one
// row per batch, schemas/0005_analytics_stage.sql); this stage applies the backlog in transactions of its own
// (crm_analytics_stage_run), each deleting the rows it applied, so every row is applied exactly once, and the
// result is the one a recompute from the stored rows gives, whatever the order, batching or number of writers
// (the argument is at the top of the migration). One stage at a time works on a database (an advisory lock
// taken without waiting): with several processes writing, whichever is free applies everybody's backlog.
//
// Threads: one stage thread owns the stage's connection and runs the stage whenever woken (a batch with
// touchpoints committed in this process), at least every `idle_poll` (other processes' batches), and without a
// pause while it finds work. wake(), catch_up() and last_error() may be called from any thread. The stage never blocks
// a writer: when it falls behind, the backlog (in the database) grows and its lag is exported; when the database
// is unreachable it retries with capped backoff, like the writers.
#pragma once

#include <boost/noncopyable.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <pqxx/pqxx>

#include "sinks/postgres/connection.h"
#include "sinks/postgres/writer_observer.h"

namespace crm::sinks::postgres {

struct analytics_stage_options {
  std::string dsn;
  std::string application_name = "crm-ingest analytics";
  // Longest pause between two looks at the backlog when this process commits nothing.
  std::chrono::milliseconds idle_poll{1000};
  // One stage transaction applies at most this many backlog rows (batches) and stops taking rows once it has
  // this many touchpoints: large enough to share the work of many batches (a conversion touched by several is
  // recomputed once), small enough that a transaction stays short.
  int max_batches = 256;
  long long max_touchpoints = 100000;
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_cap{1000};
  std::shared_ptr<writer_observer> observer;  // analytics_applied / analytics_lag / analytics_failed
};

// How far behind the analytics tables are, as the stage last saw it.
struct analytics_lag {
  bool known = false;              // false until the stage has read it once
  long long pending_batches = 0;   // backlog rows (committed batches not yet applied)
  long long pending_touchpoints = 0;
  double lag_seconds = 0;          // age of the oldest backlog row; 0 when current
};

// Reads the lag on `conn` (any thread that owns the connection): the report commands' freshness line.
analytics_lag read_analytics_lag(pqxx::connection& conn);

class analytics_stage : boost::noncopyable {  // owns a thread
 public:
  explicit analytics_stage(analytics_stage_options options);
  // Stops the thread (a run in progress finishes or rolls back); the backlog stays for the next stage.
  ~analytics_stage();

  // A batch with new touchpoints committed: run soon.
  void wake() noexcept;
  // Waits until every backlog row committed before the call has been applied (by this stage or another
  // process's), or `timeout` passed, or the stage kept failing for `give_up_after`. Returns true when current.
  bool catch_up(std::chrono::milliseconds timeout, std::chrono::milliseconds give_up_after);
  // The last failure, when the stage is failing (empty while it works).
  std::string last_error() const;

 private:
  void main();
  // One stage transaction; returns the batches it applied (0: nothing to do, or busy elsewhere).
  int run_once(bool& busy);
  void refresh_lag();
  bool catch_up_done();

  analytics_stage_options options_;
  std::unique_ptr<pqxx::connection> conn_;  // the stage thread's
  backoff backoff_;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  bool woken_ = false;
  bool stopping_ = false;
  // catch_up(): requests are numbered; the stage thread fixes a target (the newest backlog row then) per
  // request and reports the request done once no row at or below it is left.
  std::uint64_t requested_ = 0, targeted_ = 0, done_ = 0;
  long long target_seq_ = 0;
  analytics_lag lag_;
  std::string error_;
  std::chrono::steady_clock::time_point failing_since_{};
  std::chrono::steady_clock::time_point not_before_{};  // no run before it (a failure's backoff), wakes or not
  bool failing_ = false;
  std::thread thread_;
};

}  // namespace crm::sinks::postgres
