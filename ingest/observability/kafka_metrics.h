// The Kafka source's series for `consume` and `write` (next to the write path's crm_ingest_writer_*):
//   crm_ingest_kafka_messages_total          messages consumed and written (events and dead letters)
//   crm_ingest_kafka_offset_commits_total    successful offset commits
//   crm_ingest_kafka_pauses_total            times the partitions were paused (the writers were behind)
//   crm_ingest_kafka_rebalances_total        assignments received
//   crm_ingest_kafka_assigned_partitions     partitions this member holds
//   crm_ingest_kafka_lag_messages            messages in the assigned partitions not yet consumed
//                                            (high watermark - position, from librdkafka's cache)
//
// Thread ownership: update() runs on the metrics listener's thread before each scrape and copies the
// source's atomic counters (kafka_source::stats()); counters move by the difference since the last call.
#pragma once

#include <cstdint>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "ingest/kafka/kafka_source.h"

namespace crm::ingest::observability {

class kafka_metrics {
 public:
  explicit kafka_metrics(prometheus::Registry& r);
  void update(const kafka_source_stats& s, std::size_t assigned);

 private:
  prometheus::Counter& messages_;
  prometheus::Counter& commits_;
  prometheus::Counter& pauses_;
  prometheus::Counter& rebalances_;
  prometheus::Gauge& assigned_;
  prometheus::Gauge& lag_;
  kafka_source_stats last_;
};

}  // namespace crm::ingest::observability
