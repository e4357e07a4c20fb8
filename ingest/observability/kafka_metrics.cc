#include "ingest/observability/kafka_metrics.h"

namespace crm::ingest::observability {

using prometheus::BuildCounter;
using prometheus::BuildGauge;

kafka_metrics::kafka_metrics(prometheus::Registry& r)
    : messages_(BuildCounter().Name("crm_ingest_kafka_messages_total").Help("Kafka messages consumed and written (events and dead letters)").Register(r).Add({})),
      commits_(BuildCounter().Name("crm_ingest_kafka_offset_commits_total").Help("Successful Kafka offset commits").Register(r).Add({})),
      pauses_(BuildCounter().Name("crm_ingest_kafka_pauses_total").Help("Times the assigned partitions were paused because the writers were behind").Register(r).Add({})),
      rebalances_(BuildCounter().Name("crm_ingest_kafka_rebalances_total").Help("Partition assignments received").Register(r).Add({})),
      assigned_(BuildGauge().Name("crm_ingest_kafka_assigned_partitions").Help("Partitions this consumer-group member holds").Register(r).Add({})),
      lag_(BuildGauge().Name("crm_ingest_kafka_lag_messages").Help("Messages in the assigned partitions not yet consumed (high watermark - position)").Register(r).Add({})) {}

void kafka_metrics::update(const kafka_source_stats& s, std::size_t assigned) {
  messages_.Increment(static_cast<double>(s.messages - last_.messages));
  commits_.Increment(static_cast<double>(s.offset_commits - last_.offset_commits));
  pauses_.Increment(static_cast<double>(s.pauses - last_.pauses));
  rebalances_.Increment(static_cast<double>(s.rebalances - last_.rebalances));
  assigned_.Set(static_cast<double>(assigned));
  lag_.Set(static_cast<double>(s.lag));
  last_ = s;
}

}  // namespace crm::ingest::observability
