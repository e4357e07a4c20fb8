#include "sinks/kafka/kafka_sink.h"

#include <pthread.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <stdexcept>
#include <charconv>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "sinks/kafka/kafka_conf.h"
#include "sinks/kafka/kafka_error.h"
#include "transform/canonical/event_codec.h"

namespace crm::sinks::kafka {

namespace {

// A record's message key: its lead ("lead:<id>"), or, without a lead, its own id ("id:<uuid>"), so the
// partitioner keeps a lead's events in one partition and in order; rejections have no key.
struct group_key {
  std::int64_t lead = 0;
  transform::uuid id{};
  bool keyed = true;
  bool operator==(const group_key&) const = default;
};

struct group_key_hash {
  std::size_t operator()(const group_key& k) const noexcept {
    std::uint64_t a, b;
    std::memcpy(&a, k.id.data(), 8);
    std::memcpy(&b, k.id.data() + 8, 8);
    return static_cast<std::size_t>((static_cast<std::uint64_t>(k.lead) * 0x9E3779B97F4A7C15ULL) ^ a ^ (b << 1) ^
                                    (k.keyed ? 0 : 0x5bd1e995));
  }
};

group_key key_of(std::int64_t lead_id, const transform::uuid& id) {
  return lead_id != 0 ? group_key{lead_id, {}, true} : group_key{0, id, true};
}

// The key's bytes, as the collectors have always keyed them (so a lead keeps its partition across versions).
std::string key_text(const group_key& k) {
  if (!k.keyed) return {};
  if (k.lead != 0) {
    char buf[32] = "lead:";
    auto [end, ec] = std::to_chars(buf + 5, buf + sizeof buf, k.lead);
    (void)ec;
    return std::string(buf, end);
  }
  return "id:" + transform::to_string(k.id);
}

// The request's records grouped by key, in request order; a group holds at most `max_records` records.
// Records are copied by value (their text stays in the request's batch, which outlives the encoding), so
// no text is copied and no string is built per event. Thread-local: one per HTTP I/O thread.
struct grouping {
  std::vector<transform::event_batch> parts;
  std::vector<group_key> keys;
  std::unordered_map<group_key, std::size_t, group_key_hash> open;  // key -> its part being filled
  std::size_t used = 0;

  void reset() {
    for (std::size_t i = 0; i < used; ++i) {
      parts[i].communications.clear();
      parts[i].touchpoints.clear();
      parts[i].rejections.clear();
    }
    used = 0;
    open.clear();
  }
  transform::event_batch& part_for(const group_key& key, std::size_t max_records) {
    auto it = open.find(key);
    if (it != open.end() && parts[it->second].record_count() < max_records) return parts[it->second];
    if (parts.size() <= used) parts.emplace_back();
    if (keys.size() <= used) keys.emplace_back();
    keys[used] = key;
    open[key] = used;
    return parts[used++];
  }
};

}  // namespace

struct kafka_sink::request {
  kafka_sink* sink = nullptr;
  std::function<void(sink_status)> done;
  std::atomic<int> remaining{1};  // messages without a report, plus one held by submit()
  std::atomic<bool> failed{false};
  std::atomic<bool> full{false};
};

kafka_sink::kafka_sink(kafka_sink_options options) : options_(std::move(options)) {
  rd_kafka_conf_t* conf = make_kafka_conf({{"bootstrap.servers", options_.brokers},
                                            {"enable.idempotence", "true"},
                                            {"acks", "all"},
                                            {"linger.ms", "5"},
                                            {"delivery.timeout.ms", std::to_string(options_.delivery_timeout_ms)},
                                            {"client.id", "crm-ingest-collector"}},
                                           options_.properties);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque) {
    kafka_sink::on_delivery(rk, m, opaque);
  });
  rd_kafka_conf_set_opaque(conf, this);
  char err[512];
  rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk_) {
    rd_kafka_conf_destroy(conf);
    throw kafka_error(fmt::format("kafka: cannot create the producer: {}", err));
  }
  poller_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "crm-kafka-poll");
    while (!stopping_.load()) rd_kafka_poll(rk_, 100);
  });
}

kafka_sink::~kafka_sink() {
  if (auto e = rd_kafka_flush(rk_, options_.delivery_timeout_ms + 1000); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::error("Closing the Kafka producer with messages still undelivered. error={}", rd_kafka_err2str(e));
  }
  stopping_ = true;
  poller_.join();
  rd_kafka_destroy(rk_);  // fails the reports still due (their requests are answered 503)
}

void kafka_sink::wait_idle() const {
  while (in_flight_.load(std::memory_order_acquire) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void kafka_sink::on_delivery(rd_kafka_s* rk, const void* message, void*) {
  (void)rk;
  const auto* m = static_cast<const rd_kafka_message_t*>(message);
  auto* r = static_cast<request*>(m->_private);
  if (m->err) {
    r->failed = true;
    r->sink->healthy_ = false;
    spdlog::error("A message to Kafka was not delivered; its request is answered 503. topic={} error={}",
                  rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
  } else {
    r->sink->healthy_ = true;
  }
  r->sink->complete(r);
}

void kafka_sink::complete(request* r) {
  if (r->remaining.fetch_sub(1) != 1) return;
  if (r->failed) r->done(r->full ? sink_status::full : sink_status::failed);
  else r->done(sink_status::durable);
  delete r;
  in_flight_.fetch_sub(1, std::memory_order_release);  // last: wait_idle() may return now
}

void kafka_sink::submit(const transform::event_batch& batch, std::function<void(sink_status)> done) {
  if (in_flight_.fetch_add(1, std::memory_order_relaxed) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    return done(sink_status::full);
  }
  thread_local grouping groups;
  thread_local std::string encoded;
  groups.reset();
  const std::size_t cap = options_.max_records_per_message;
  for (const auto& c : batch.communications) groups.part_for(key_of(c.lead_id, c.event_id), cap).communications.push_back(c);
  for (const auto& t : batch.touchpoints) groups.part_for(key_of(t.lead_id, t.touchpoint_id), cap).touchpoints.push_back(t);
  for (const auto& j : batch.rejections) groups.part_for(group_key{0, {}, false}, cap).rejections.push_back(j);

  auto* r = new request;
  r->sink = this;
  r->done = std::move(done);
  for (std::size_t i = 0; i < groups.used; ++i) {
    transform::encode_event_batch(groups.parts[i], encoded);
    const std::string key = key_text(groups.keys[i]);
    r->remaining.fetch_add(1);
    auto e = rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(options_.topic.c_str()),
                               RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()),
                               RD_KAFKA_V_VALUE(encoded.data(), encoded.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_OPAQUE(r), RD_KAFKA_V_END);
    if (e) {
      // Messages already queued are still delivered; the client's retry is deduplicated by event id.
      r->failed = true;
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) r->full = true;
      else spdlog::error("A message could not be queued for Kafka. error={}", rd_kafka_err2str(e));
      r->remaining.fetch_sub(1);
      break;
    }
  }
  complete(r);  // drops submit()'s hold
}

}  // namespace crm::sinks::kafka
