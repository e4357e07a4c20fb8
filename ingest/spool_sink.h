// batch_sink over the durable local log. durable_log::append() blocks until its group commit is
// fsynced, so appends run on a pool of appender threads, never on the HTTP I/O threads; all appenders
// blocked in the same group share one fsync. The pool's queue is bounded: when it is full the request
// is answered 503 at once instead of queueing without limit.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "ingest/collector.h"
#include "sinks/spool/durable_log.h"

namespace crm::ingest {

class spool_sink final : public batch_sink {
 public:
  spool_sink(sinks::spool::durable_log& log, int appender_threads = 64, std::size_t max_queued = 8192);
  ~spool_sink() override;

  void submit(std::shared_ptr<const std::string> encoded_batch, std::function<void(sink_status)> done) override;
  bool above_high_water() const override { return log_.above_high_water(); }
  std::size_t queued() const override { return queued_.load(std::memory_order_relaxed); }

 private:
  struct job {
    std::shared_ptr<const std::string> payload;
    std::function<void(sink_status)> done;
  };
  void work();

  sinks::spool::durable_log& log_;
  std::size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> queue_;
  bool closing_ = false;
  std::atomic<std::size_t> queued_{0};  // queue_ plus appends in progress
  std::vector<std::thread> threads_;
};

}  // namespace crm::ingest
