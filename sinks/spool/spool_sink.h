// batch_sink over the durable local log, without threads of its own: submit() encodes the request's batch
// into one record (transform/canonical/event_codec.h), hands it to durable_log::append_async() and returns; the log's flusher thread calls the completion
// once the group commit holding it is fdatasync'ed (every request queued meanwhile shares that fsync),
// and the completion posts the HTTP answer back to the connection's strand. No HTTP I/O thread ever
// waits for a disk.
//
// Backpressure: at most `max_in_flight` requests may wait for their fsync; beyond that, and when the
// log is at its byte bound, the request is answered 503 at once instead of queueing without limit.
#pragma once

#include <atomic>
#include <cstddef>
#include <thread>

#include "sinks/sink.h"
#include "sinks/spool/durable_log.h"

namespace crm::sinks::spool {

class spool_sink final : public batch_sink {
 public:
  explicit spool_sink(durable_log& log, std::size_t max_in_flight = 8192);
  // Waits for every completion (they use the collector and the server's executors).
  ~spool_sink() override { wait_idle(); }

  // Returns once no submitted request waits for its completion. Call it after the HTTP server stopped
  // and before the collector and the server are destroyed.
  void wait_idle() const;

  void submit(const transform::event_batch& batch, std::function<void(sink_status)> done) override;
  bool above_high_water() const override { return log_.above_high_water(); }
  bool failed() const override { return log_.stats().failed; }
  std::size_t queued() const override { return in_flight_.load(std::memory_order_relaxed); }

 private:
  durable_log& log_;
  const std::size_t max_in_flight_;
  std::atomic<std::size_t> in_flight_{0};  // accepted by the log, completion not yet run
};

}  // namespace crm::sinks::spool
