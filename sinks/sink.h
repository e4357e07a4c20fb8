// The seam between the sources that answer a sender (the HTTP collector) and where their records become
// durable: a sink takes a batch of canonical records (transform::event_batch) and reports once the batch
// is durable (or refused). Each sink encodes what it needs from the batch: the local log its record codec
// (transform/canonical/event_codec.h), Kafka one keyed message per lead.
//
// Threads: submit() runs on the caller's thread (an HTTP I/O thread) and must not block on I/O; `done`
// is called exactly once, from any thread, after the records are durable or refused. When the sink is
// full it answers `full` at once (the collector answers 503 with Retry-After): nothing queues without
// bound.
#pragma once

#include <cstddef>
#include <functional>

#include "transform/canonical/canonical_event.h"

namespace crm::sinks {

enum class sink_status { durable, full, failed };

class batch_sink {
 public:
  virtual ~batch_sink() = default;
  // `batch` is the caller's and valid only during the call: the sink encodes (or copies) what it keeps
  // before it returns.
  virtual void submit(const transform::event_batch& batch, std::function<void(sink_status)> done) = 0;
  // Nearly full (readiness probes fail above it).
  virtual bool above_high_water() const = 0;
  // Takes nothing now (the local log after a write or fsync error, a full disk: until it has cut what the failed
  // write left and can write again, which it checks every second). Readiness probes fail meanwhile.
  virtual bool failed() const { return false; }
  // Submitted and not yet durable or refused.
  virtual std::size_t queued() const = 0;
};

}  // namespace crm::sinks
