#include "ingest/kafka/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <stdexcept>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ingest/kafka/kafka_error.h"
#include "sinks/spool/event_codec.h"

namespace crm::ingest {

namespace {

template <class Record, std::size_t N>
void copy_record(const Record& from, std::string_view Record::* const (&texts)[N], std::vector<Record>& to,
                 transform::text_arena& arena) {
  Record r = from;
  for (auto f : texts) r.*f = arena.copy(from.*f);
  to.push_back(r);
}

std::string lead_key(std::int64_t lead_id, const transform::uuid& id) {
  return lead_id != 0 ? fmt::format("lead:{}", lead_id) : "id:" + transform::to_string(id);
}

}  // namespace

struct kafka_sink::request {
  kafka_sink* sink = nullptr;
  std::function<void(sink_status)> done;
  std::atomic<int> remaining{1};  // messages without a report, plus one held by submit()
  std::atomic<bool> failed{false};
  std::atomic<bool> full{false};
};

kafka_sink::kafka_sink(kafka_sink_options options) : options_(std::move(options)) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto set = [&](const std::string& k, const std::string& v) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw std::invalid_argument(fmt::format("kafka: {}={}: {}", k, v, err));
    }
  };
  set("bootstrap.servers", options_.brokers);
  set("enable.idempotence", "true");
  set("acks", "all");
  set("linger.ms", "5");
  set("delivery.timeout.ms", std::to_string(options_.delivery_timeout_ms));
  set("client.id", "crm-ingest-collector");
  for (const auto& [k, v] : options_.properties) set(k, v);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque) {
    kafka_sink::on_delivery(rk, m, opaque);
  });
  rd_kafka_conf_set_opaque(conf, this);
  rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk_) {
    rd_kafka_conf_destroy(conf);
    throw kafka_error(fmt::format("kafka: cannot create the producer: {}", err));
  }
  poller_ = std::thread([this] {
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

void kafka_sink::submit(std::shared_ptr<const std::string> payload, std::function<void(sink_status)> done) {
  if (in_flight_.fetch_add(1, std::memory_order_relaxed) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    return done(sink_status::full);
  }
  thread_local transform::event_batch batch;
  thread_local std::vector<transform::event_batch> parts;
  thread_local std::vector<std::string> keys;
  thread_local std::string encoded;
  if (auto ec = sinks::spool::decode_event_batch(*payload, batch)) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    spdlog::error("A request's batch could not be decoded for Kafka; it was refused with 503. error={}", ec.message());
    return done(sink_status::failed);
  }
  // Group by lead, in request order; a group holds at most max_records_per_message records.
  std::size_t used = 0;
  std::unordered_map<std::string, std::size_t> open;  // key -> its part being filled
  auto part_for = [&](std::string key) -> transform::event_batch& {
    auto it = open.find(key);
    if (it != open.end() && parts[it->second].record_count() < options_.max_records_per_message) {
      return parts[it->second];
    }
    if (parts.size() <= used) parts.emplace_back();
    parts[used].clear();
    if (keys.size() <= used) keys.emplace_back();
    keys[used] = key;
    open[std::move(key)] = used;
    return parts[used++];
  };
  for (const auto& c : batch.communications) {
    auto& p = part_for(lead_key(c.lead_id, c.event_id));
    copy_record(c, transform::communication_texts, p.communications, p.text);
  }
  for (const auto& t : batch.touchpoints) {
    auto& p = part_for(lead_key(t.lead_id, t.touchpoint_id));
    copy_record(t, transform::touchpoint_texts, p.touchpoints, p.text);
  }
  for (const auto& j : batch.rejections) {
    auto& p = part_for("");
    copy_record(j, transform::rejection_texts, p.rejections, p.text);
  }

  auto* r = new request;
  r->sink = this;
  r->done = std::move(done);
  for (std::size_t i = 0; i < used; ++i) {
    sinks::spool::encode_event_batch(parts[i], encoded);
    r->remaining.fetch_add(1);
    const bool keyed = !keys[i].empty();
    auto e = rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(options_.topic.c_str()),
                               RD_KAFKA_V_KEY(keyed ? keys[i].data() : nullptr, keyed ? keys[i].size() : 0),
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

}  // namespace crm::ingest
