// batch_sink over a Kafka topic, for `crm-ingest serve --log kafka`: the collectors append normalized
// events to the topic and `crm-ingest write` processes consume it into PostgreSQL.
//
// submit() groups the request's records by lead (records without a lead by their own id; rejections have
// no key) without copying their text, encodes each group once (transform/canonical/event_codec.h) and
// produces one message per group, keyed by it, so the partitioner
// keeps a lead's events in one partition and in order. The producer is idempotent with acks=all, so a
// retried send is neither duplicated nor reordered. The request is acknowledged (done(durable)) only
// when every one of its messages has its delivery report; any failed report answers failed (503), and
// the client's retry is deduplicated downstream by event id.
//
// Threads: submit() runs on the HTTP I/O threads and never waits for the network; delivery reports
// run on this sink's poll thread, which completes the requests. Backpressure: at most `max_in_flight`
// requests wait for their reports; beyond that, or when librdkafka's queue is full, the answer is 503.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sinks/sink.h"

struct rd_kafka_s;

namespace crm::sinks::kafka {

struct kafka_sink_options {
  std::string brokers;
  std::string topic;
  std::vector<std::pair<std::string, std::string>> properties;  // passed to librdkafka as they are
  int delivery_timeout_ms = 30000;
  std::size_t max_in_flight = 8192;
  std::size_t max_records_per_message = 2000;
};

class kafka_sink final : public batch_sink {
 public:
  explicit kafka_sink(kafka_sink_options options);
  // Waits for the outstanding delivery reports (bounded by delivery_timeout_ms), then closes.
  ~kafka_sink() override;

  // Returns once no submitted request waits for its delivery reports.
  void wait_idle() const;

  void submit(const transform::event_batch& batch, std::function<void(sink_status)> done) override;
  bool above_high_water() const override {
    return in_flight_.load(std::memory_order_relaxed) >= options_.max_in_flight / 10 * 9;
  }
  std::size_t queued() const override { return in_flight_.load(std::memory_order_relaxed); }
  // False after a failed delivery report until the next successful one (readiness).
  bool healthy() const noexcept { return healthy_.load(std::memory_order_relaxed); }

 private:
  struct request;
  static void on_delivery(rd_kafka_s* rk, const void* message, void* opaque);
  void complete(request* r);

  kafka_sink_options options_;
  rd_kafka_s* rk_ = nullptr;
  std::thread poller_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<bool> healthy_{true};
};

}  // namespace crm::sinks::kafka
