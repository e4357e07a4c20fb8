// What a PostgreSQL writer reports about failures and failovers, for metrics (ingest/writer_metrics.h)
// and summaries. The sinks know no Prometheus: the process that owns the writers plugs an observer in.
//
// Thread ownership: every writer calls its observer from the writer's own thread, so an observer
// shared by several writers must be thread-safe. Calls happen per batch attempt, never per event.
#pragma once

#include <string_view>

namespace crm::sinks::postgres {

struct failure;

class writer_observer {
 public:
  virtual ~writer_observer() = default;
  // A batch committed (first try, replay, or found in the ledger): a primary is there.
  virtual void batch_committed() {}
  // A batch attempt failed for a reason a retry may fix (failure_kind reconnect or in_doubt);
  // `will_retry` is false when the writer gives up (retry_for exhausted).
  virtual void attempt_failed(const failure& /*f*/, bool /*will_retry*/) {}
  // A new session on a primary was opened after a failure.
  virtual void reconnected() {}
  // A batch is being written again after a failure (it was not in the ledger).
  virtual void batch_replayed() {}
  // After a COMMIT whose outcome was unknown: `committed` = the ledger had the batch (not replayed).
  virtual void in_doubt_settled(bool /*committed*/) {}
};

}  // namespace crm::sinks::postgres
