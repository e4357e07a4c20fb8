// The Kafka source: a consumer-group member that reads topics (each in a format of its own), normalizes
// the messages into event_batches and writes them into PostgreSQL exactly once through the write path
// (sinks::postgres::writer_pool). `crm-ingest consume` runs it over [kafka] topics; `crm-ingest write` runs
// it over the collectors' log topic (format "normalized").
//
// Offsets: a partition's offset is committed only after the PostgreSQL transaction holding every
// message before it has committed, rejected (dead-lettered) messages included, so a commit never
// passes unwritten data. A crash between the database commit and the offset commit replays messages
// whose rows are already stored; deterministic event ids (and rejection ids made of source + raw,
// the source being "topic/partition:offset") make that a no-op.
//
// Threads: run() owns the consumer (poll, rebalance callbacks, pause/resume, offset commits), the batch
// being filled and the source side of the writer pool (submit, completions); the pool's writer threads
// own one connection each. At most max_in_flight + 1 batches are in memory (plus librdkafka's bounded
// prefetch queue). When the batch being filled is full while the pool is full, the poll thread waits for
// a completion; if that takes longer than 500 ms (a slow or unreachable database) every assigned
// partition is paused and the poll loop keeps polling (staying in the group, serving rebalances) until a
// batch completes, then resumes them. Short waits do not pause: a pause discards librdkafka's prefetched
// messages. A batch that fails within the retry policy (postgres.retry_for_s > 0) stops the source
// without committing its offsets: run() throws write_error.
//
// Rebalances (eager protocol): on revocation the batch being written is finished and its offsets
// committed; the batch being filled is dropped (its messages are delivered again, from the committed
// offsets, to whichever member gets the partitions). A write that cannot finish before the group's
// rebalance timeout costs this member its place in the group, never data.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sinks/postgres/writer_pool.h"
#include "transform/normalize/normalize.h"

namespace crm::ingest {

// A topic and the format of its messages: "canonical" (one canonical JSON event per message),
// "normalized" (event batches appended by `crm-ingest serve --log kafka`) or a provider's webhook body
// (a name of transform/providers/registry.h).
struct kafka_topic {
  std::string topic;
  std::string format;
};

// Parses "topic=format, topic=format"; throws std::invalid_argument naming the mistake.
std::vector<kafka_topic> parse_kafka_topics(std::string_view spec);
// Parses "key=value, key=value" (extra librdkafka properties); throws std::invalid_argument.
std::vector<std::pair<std::string, std::string>> parse_kafka_properties(std::string_view spec);
// The formats parse_kafka_topics accepts.
const std::vector<std::string>& kafka_formats();

struct kafka_source_options {
  std::string brokers;
  std::string group;
  std::vector<kafka_topic> topics;
  std::vector<std::pair<std::string, std::string>> properties;  // passed to librdkafka as they are
  int session_timeout_ms = 10000;
  transform::normalize_options normalize;
  // The write path: writers, retry policy (postgres.retry_for_s), batch limits; max_in_flight batches are
  // written while the next one fills.
  sinks::postgres::pool_options write;
  std::string ledger_source = "kafka";  // ingest_batches.source
};

struct kafka_source_stats {
  std::uint64_t messages = 0;        // consumed and written (events, rejections)
  std::uint64_t inserted = 0;        // events newly stored
  std::uint64_t duplicates = 0;      // events already stored
  std::uint64_t rejected = 0;        // records dead-lettered
  std::uint64_t batches = 0;         // transactions committed
  std::uint64_t offset_commits = 0;  // successful offset commits
  std::uint64_t pauses = 0;          // times the partitions were paused for backpressure
  std::uint64_t rebalances = 0;      // assignments received
  std::int64_t lag = 0;              // messages in the assigned partitions not yet consumed
};

class kafka_source {
 public:
  explicit kafka_source(kafka_source_options options);
  kafka_source(const kafka_source&) = delete;
  kafka_source& operator=(const kafka_source&) = delete;

  // Consumes until stop() (any thread): then writes and commits what was consumed, leaves the group
  // and returns. Throws std::runtime_error when the consumer cannot be created, and
  // sinks::postgres::write_error when a batch failed within the retry policy.
  void run();
  void stop() noexcept { stopping_.store(true); }

  // Consistent after run() returned; approximate while it runs (any thread).
  kafka_source_stats stats() const;
  // Partitions currently assigned (any thread).
  std::size_t assigned_partitions() const noexcept { return assigned_.load(); }

 private:
  struct impl;
  kafka_source_options options_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> assigned_{0};
  std::atomic<std::uint64_t> messages_{0}, inserted_{0}, duplicates_{0}, rejected_{0}, batches_{0}, commits_{0},
      pauses_{0}, rebalances_{0};
  std::atomic<std::int64_t> lag_{0};
  friend struct impl;
};

}  // namespace crm::ingest
