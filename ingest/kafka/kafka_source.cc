#include "ingest/kafka/kafka_source.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "sinks/kafka/kafka_conf.h"
#include "sinks/kafka/kafka_error.h"
#include "transform/canonical/event_codec.h"
#include "transform/normalize/column_domains.h"
#include "transform/providers/registry.h"

namespace crm::ingest {

namespace pg = crm::sinks::postgres;
namespace tp = crm::transform::providers;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits "a=b, c=d" into pairs; `what` names the setting in errors.
std::vector<std::pair<std::string, std::string>> split_pairs(std::string_view spec, const char* what) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!trim(spec).empty()) {
    auto comma = spec.find(',');
    auto item = trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    auto eq = item.find('=');
    if (eq == std::string_view::npos || trim(item.substr(0, eq)).empty() || trim(item.substr(eq + 1)).empty()) {
      throw std::invalid_argument(fmt::format("{}: \"{}\" is not name=value", what, item));
    }
    out.emplace_back(std::string(trim(item.substr(0, eq))), std::string(trim(item.substr(eq + 1))));
  }
  return out;
}

using partition_key = std::pair<std::string, std::int32_t>;
using offset_map = std::map<partition_key, std::int64_t>;

// One batch and the offsets it covers.
struct batch_slot {
  std::shared_ptr<transform::event_batch> batch = std::make_shared<transform::event_batch>();
  offset_map first;  // first offset per partition
  offset_map next;   // offset after the last message per partition: what is committed once written
  std::uint64_t messages = 0;
  std::chrono::steady_clock::time_point started;

  void clear() {
    batch->clear();
    first.clear();
    next.clear();
    messages = 0;
  }
  std::string position() const {
    std::string out;
    for (const auto& [k, off] : first) {
      if (!out.empty()) out.push_back(' ');
      out += fmt::format("{}/{}:{}-{}", k.first, k.second, off, next.at(k) - 1);
    }
    return out;
  }
};

}  // namespace

const std::vector<std::string>& kafka_formats() {
  static const std::vector<std::string> formats = [] {
    std::vector<std::string> f{"canonical", "normalized"};
    for (const auto& p : tp::registry) f.emplace_back(p.name);
    return f;
  }();
  return formats;
}

std::vector<kafka_topic> parse_kafka_topics(std::string_view spec) {
  std::vector<kafka_topic> out;
  for (auto& [topic, format] : split_pairs(spec, "kafka.topics")) {
    const auto& known = kafka_formats();
    if (std::find(known.begin(), known.end(), format) == known.end()) {
      throw std::invalid_argument(fmt::format("kafka.topics: topic {} has the unknown format \"{}\" (known: {})",
                                              topic, format, fmt::join(known, ", ")));
    }
    for (const auto& t : out) {
      if (t.topic == topic) throw std::invalid_argument(fmt::format("kafka.topics: topic {} is listed twice", topic));
    }
    out.push_back({topic, format});
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_kafka_properties(std::string_view spec) {
  return split_pairs(spec, "kafka.properties");
}

struct kafka_source::impl {
  impl(kafka_source& s, const kafka_source_options& o) : self(s), opt(o), norm(o.normalize) {
    for (const auto& t : opt.topics) {
      topic_format f;
      f.canonical = t.format == "canonical";
      f.normalized = t.format == "normalized";
      f.provider = tp::find_provider(t.format);
      formats[t.topic] = f;
    }
  }

  struct topic_format {
    bool canonical = false, normalized = false;
    const tp::provider* provider = nullptr;
  };

  kafka_source& self;
  const kafka_source_options& opt;
  rd_kafka_t* rk = nullptr;
  transform::normalizer norm;
  std::map<std::string, topic_format, std::less<>> formats;
  std::string source_text;

  // The poll thread's: the batch being filled, the batches in the write path (in submission order, the
  // pool's completions come back in the same order) and the offsets to commit.
  std::unique_ptr<pg::writer_pool> pool;
  batch_slot filling;
  std::deque<batch_slot> in_flight;
  std::vector<std::shared_ptr<transform::event_batch>> free_batches;
  offset_map uncommitted;  // written to PostgreSQL, not yet committed to Kafka
  offset_map positions;    // next offset expected per partition (since the assignment)
  bool paused = false;
  bool assigned = false;   // between an assignment and its revocation: commits carry a current generation
  std::string failure;  // a batch failed for good: the source stops and run() throws
  // A batch came back not written (given up at a stop, or failed): the offsets of the batches after it are not
  // committed either, since each one covers its partitions' earlier messages, that batch's among them.
  bool offsets_held = false;
  std::chrono::steady_clock::time_point lag_measured;

  // Messages in the assigned partitions not yet consumed, from librdkafka's cached watermarks (no
  // request to the brokers); about once a second.
  void measure_lag() {
    const auto now = std::chrono::steady_clock::now();
    if (now - lag_measured < std::chrono::seconds(1)) return;
    lag_measured = now;
    rd_kafka_topic_partition_list_t* a = nullptr;
    if (rd_kafka_assignment(rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a) return;
    std::int64_t lag = 0;
    if (rd_kafka_position(rk, a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < a->cnt; ++i) {
        const auto& p = a->elems[i];
        std::int64_t low = 0, high = 0;
        if (rd_kafka_get_watermark_offsets(rk, p.topic, p.partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            high < 0) {
          continue;
        }
        const std::int64_t position = p.offset >= 0 ? p.offset : low;
        lag += std::max<std::int64_t>(0, high - position);
      }
    }
    rd_kafka_topic_partition_list_destroy(a);
    self.lag_ = lag;
  }

  void start_write() {
    pool->submit(filling.batch, pg::batch_info{opt.ledger_source, filling.position()}, 0);
    in_flight.push_back(std::move(filling));
    filling = batch_slot{};
    if (!free_batches.empty()) {
      filling.batch = std::move(free_batches.back());
      free_batches.pop_back();
      filling.batch->clear();
    }
  }

  // Settles one completion: a written batch's offsets join the ones to commit.
  void settle(pg::batch_completion& c) {
    batch_slot s = std::move(in_flight.front());
    in_flight.pop_front();
    if (c.status != pg::batch_status::written) offsets_held = true;
    if (c.status == pg::batch_status::written) {
      if (!offsets_held) {
        for (const auto& [k, off] : s.next) uncommitted[k] = off;
      }
      const auto& r = c.result;
      self.messages_ += s.messages;
      self.inserted_ += r.inserted();
      self.duplicates_ += r.duplicates();
      self.rejected_ += r.rejected();
      self.batches_ += r.transactions;  // transactions committed (one per writer's part)
    } else if (c.status == pg::batch_status::abandoned) {
      // Only when stopping: these messages are consumed again by the next run.
      spdlog::warn("A batch was not written before stopping; its messages are consumed again. position={}",
                   s.position());
    } else if (failure.empty()) {
      failure = c.error;
      spdlog::error("A batch from Kafka could not be written within the retry policy; stopping without committing "
                    "its offsets (its messages are consumed again). position={} policy={} error={}",
                    s.position(), pool->policy().describe(), c.error);
      self.stopping_ = true;
      pool->stop_retrying();
    }
    free_batches.push_back(std::move(c.batch));
  }

  // Settles the completed writes (waiting for all of them when `wait`) and commits their offsets.
  // Returns false when nothing had completed. A written batch waiting for the standbys' confirmation is
  // waited for at most `confirm_wait`; after it, it stays in flight and its offsets uncommitted (a later
  // completion commits them if the partition is still this member's; else its next owner re-reads them,
  // a no-op for what is stored).
  bool finish_writes(bool wait, std::chrono::milliseconds confirm_wait = std::chrono::seconds(10)) {
    bool any = false;
    const auto until = std::chrono::steady_clock::now() + confirm_wait;
    for (;;) {
      auto c = wait ? pool->next(std::chrono::milliseconds(100)) : pool->poll();
      if (!c) {
        if (!wait || pool->in_flight() == 0) break;
        // Asked to stop while waiting (a revocation inside librdkafka's callback, whatever the database does): a
        // batch still being retried is given up, its offsets stay uncommitted, so the wait ends.
        if (self.stopping_) pool->stop_retrying();
        // Nothing is being written: what is in flight waits for its confirmation, or comes back in order behind
        // such a batch (given up at a stop, or written).
        const bool nothing_being_written = pool->committing() == 0;
        if (nothing_being_written && std::chrono::steady_clock::now() >= until) {
          spdlog::warn("Written batches are not confirmed by the standbys yet; their offsets stay uncommitted. "
                       "batches={}",
                       pool->in_flight());
          break;
        }
        continue;
      }
      settle(*c);
      any = true;
    }
    if (any) commit_offsets(3);
    return any;
  }

  void commit_offsets(int attempts) {
    if (uncommitted.empty()) return;
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(uncommitted.size()));
    for (const auto& [k, off] : uncommitted) rd_kafka_topic_partition_list_add(list, k.first.c_str(), k.second)->offset = off;
    for (int attempt = 1; attempt <= attempts; ++attempt) {
      auto err = rd_kafka_commit(rk, list, 0);
      if (!err) {
        uncommitted.clear();
        self.commits_ += 1;
        break;
      }
      // The rows are stored: a later commit (or a replay after a restart, a no-op) settles it.
      spdlog::warn("Kafka refused an offset commit; it is retried with the next one. attempt={} error={}", attempt,
                   rd_kafka_err2str(err));
      if (attempt < attempts) std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
    }
    rd_kafka_topic_partition_list_destroy(list);
  }

  // On an assignment: written offsets that a refused commit left behind are committed for the partitions
  // that came back to this member, and reading resumes after them. Those of partitions now owned by another
  // member are dropped: their owner reads on from the committed offset (rewriting stored rows is a no-op)
  // and commits past it, and committing ours later could move its offset backwards.
  void adopt_written(rd_kafka_topic_partition_list_t* parts) {
    if (uncommitted.empty()) return;
    offset_map kept;
    for (int i = 0; i < parts->cnt; ++i) {
      const auto& p = parts->elems[i];
      if (auto it = uncommitted.find({p.topic, p.partition}); it != uncommitted.end()) kept.insert(*it);
    }
    uncommitted = std::move(kept);
    if (uncommitted.empty()) return;
    rd_kafka_topic_partition_list_t* committed = rd_kafka_topic_partition_list_new(static_cast<int>(uncommitted.size()));
    for (const auto& [k, off] : uncommitted) rd_kafka_topic_partition_list_add(committed, k.first.c_str(), k.second);
    if (rd_kafka_committed(rk, committed, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < committed->cnt; ++i) {
        const auto& c = committed->elems[i];
        auto it = uncommitted.find({c.topic, c.partition});
        if (c.err == RD_KAFKA_RESP_ERR_NO_ERROR && c.offset >= 0 && it != uncommitted.end() && c.offset >= it->second) {
          uncommitted.erase(it);  // committed already (by a later owner): nothing of ours to add
        }
      }
    }
    rd_kafka_topic_partition_list_destroy(committed);
    for (int i = 0; i < parts->cnt; ++i) {
      auto& p = parts->elems[i];
      if (auto it = uncommitted.find({p.topic, p.partition}); it != uncommitted.end()) p.offset = it->second;
    }
    spdlog::info("Partitions came back with written offsets a refused commit had left; committing them. partitions={}",
                 uncommitted.size());
  }

  // Stopping: commits what was written before the member leaves its group. While the group rebalances (another
  // member joined or left) the broker refuses commits; polling lets the rebalance complete, then the commit
  // goes out with the new generation. Messages polled meanwhile are not written, so their offsets are never
  // committed: the next owner reads them.
  void commit_before_leaving() {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(opt.session_timeout_ms) + std::chrono::seconds(5);
    // Between a revocation and the next assignment a commit would only be refused (slowly): poll instead.
    if (assigned) commit_offsets(1);
    while (!uncommitted.empty() && std::chrono::steady_clock::now() < deadline) {
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100)) rd_kafka_message_destroy(m);
      if (assigned) commit_offsets(1);
    }
    if (!uncommitted.empty()) {
      spdlog::warn("Kafka refused the last offset commit until the stop deadline; the stored rows of these "
                   "partitions are read again by the next owner (a no-op). partitions={}",
                   uncommitted.size());
    }
  }

  void set_paused(bool pause) {
    if (paused == pause) return;
    rd_kafka_topic_partition_list_t* a = nullptr;
    if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
      if (pause) rd_kafka_pause_partitions(rk, a);
      else rd_kafka_resume_partitions(rk, a);
      rd_kafka_topic_partition_list_destroy(a);
    }
    paused = pause;
    if (pause) {
      self.pauses_ += 1;
      spdlog::debug("Paused the assigned partitions: the writer is behind.");
    }
  }

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque) {
    auto* me = static_cast<impl*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      me->adopt_written(parts);
      rd_kafka_assign(rk, parts);
      me->assigned = true;
      me->commit_offsets(3);
      me->paused = false;
      me->self.assigned_ = static_cast<std::size_t>(parts->cnt);
      me->self.rebalances_ += 1;
      spdlog::info("Kafka partitions assigned. group={} partitions={}", me->opt.group, parts->cnt);
      return;
    }
    // Revoked (or lost): finish and commit what is being written, drop what is only consumed. A broker may
    // refuse the commit while the group rebalances: what stays uncommitted is kept for adopt_written(). A
    // batch the standbys have not confirmed within half the session timeout is not waited for longer.
    me->finish_writes(true, std::chrono::milliseconds(me->opt.session_timeout_ms / 2));
    me->commit_offsets(3);
    me->assigned = false;
    me->positions.clear();
    me->filling.clear();
    rd_kafka_assign(rk, nullptr);
    me->paused = false;
    me->self.assigned_ = 0;
    spdlog::info("Kafka partitions revoked; written batches committed, unwritten messages left to the next owner. "
                 "group={} reason={}",
                 me->opt.group, rd_kafka_err2str(err));
  }

  void add(const rd_kafka_message_t* m, batch_slot& s) {
    const char* topic = rd_kafka_topic_name(m->rkt);
    source_text = fmt::format("{}/{}:{}", topic, m->partition, m->offset);
    const transform::source_ref src{source_text, 0};
    const auto now = transform::now_us();
    const std::string_view value(m->payload ? static_cast<const char*>(m->payload) : "", m->payload ? m->len : 0);
    auto f = formats.find(std::string_view(topic));
    if (value.empty()) {
      norm.reject_whole(value, src, now, "kafka: the message has no value", *s.batch);
    } else if (f == formats.end()) {
      norm.reject_whole(value, src, now, "kafka: a message from a topic with no configured format", *s.batch);
    } else if (f->second.canonical) {
      norm.normalize(value, src, now, *s.batch);
    } else if (f->second.normalized) {
      const std::size_t communications = s.batch->communications.size();
      const std::size_t touchpoints = s.batch->touchpoints.size();
      const std::size_t rejections = s.batch->rejections.size();
      std::string why;
      if (auto ec = transform::append_decoded_event_batch(value, *s.batch)) {
        norm.reject_whole(value, src, now, "kafka: the message is not a normalized event batch: " + ec.message(),
                          *s.batch);
      } else if (!transform::check_columns(*s.batch, communications, touchpoints, rejections, why)) {
        // Whoever produced it, a value the database refuses must not reach the writer (it would split its
        // batch): the whole message is dead-lettered with the first such value named.
        s.batch->communications.resize(communications);
        s.batch->touchpoints.resize(touchpoints);
        s.batch->rejections.resize(rejections);
        norm.reject_whole(value, src, now,
                          "kafka: the normalized event batch carries a value the database refuses: " + why,
                          *s.batch);
      }
    } else {
      std::string content_type(f->second.provider->default_content_type());
      rd_kafka_headers_t* headers = nullptr;
      const void* hv = nullptr;
      std::size_t hlen = 0;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
          rd_kafka_header_get_last(headers, "content-type", &hv, &hlen) == RD_KAFKA_RESP_ERR_NO_ERROR && hv) {
        content_type.assign(static_cast<const char*>(hv), hlen);
      }
      tp::webhook_input in{value, content_type, {}, source_text, now, {}};
      std::string error;
      if (!f->second.provider->normalize(norm, in, *s.batch, error)) {
        norm.reject_whole(value, src, now, std::string(f->second.provider->name) + ": " + error, *s.batch);
      }
    }
    const partition_key key{topic, m->partition};
    // Offsets are consecutive unless messages were deleted before we read them (retention, or an
    // offset reset) or the topic is compacted or transactional: say so, it may be data never stored.
    if (auto it = positions.find(key); it != positions.end() && m->offset > it->second) {
      spdlog::warn("Kafka offsets were skipped: messages deleted before they were consumed (retention, offset "
                   "reset), or a compacted or transactional topic. partition={}/{} skipped={}-{}",
                   topic, m->partition, it->second, m->offset - 1);
    }
    positions[key] = m->offset + 1;
    if (s.messages == 0) s.started = std::chrono::steady_clock::now();
    s.first.emplace(key, m->offset);
    s.next[key] = m->offset + 1;
    ++s.messages;
  }

  void run() {
    char err[512];
    rd_kafka_conf_t* conf = sinks::kafka::make_kafka_conf({{"bootstrap.servers", opt.brokers},
                                                           {"group.id", opt.group},
                                                           {"enable.auto.commit", "false"},
                                                           {"enable.auto.offset.store", "false"},
                                                           {"auto.offset.reset", "earliest"},
                                                           {"session.timeout.ms", std::to_string(opt.session_timeout_ms)},
                                                           {"client.id", "crm-ingest"}},
                                                          opt.properties);
    rd_kafka_conf_set_rebalance_cb(conf, &impl::on_rebalance);
    rd_kafka_conf_set_opaque(conf, this);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      throw sinks::kafka::kafka_error(fmt::format("kafka: cannot create the consumer: {}", err));
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(static_cast<int>(opt.topics.size()));
    for (const auto& t : opt.topics) rd_kafka_topic_partition_list_add(topics, t.topic.c_str(), RD_KAFKA_PARTITION_UA);
    auto sub = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (sub) {
      rd_kafka_destroy(rk);
      throw sinks::kafka::kafka_error(fmt::format("kafka: cannot subscribe: {}", rd_kafka_err2str(sub)));
    }
    pool = std::make_unique<pg::writer_pool>(opt.write);
    spdlog::info("Consuming from Kafka. brokers={} group={} topics={} writers={}", opt.brokers, opt.group,
                 opt.topics.size(), pool->writers());

    std::optional<std::chrono::steady_clock::time_point> waiting_since;
    const auto pause_after = std::chrono::milliseconds(500);
    auto full = [&] { return opt.write.batch.reached(*filling.batch); };
    auto last_commit_try = std::chrono::steady_clock::now();
    while (!self.stopping_) {
      if (finish_writes(false)) set_paused(false);
      // Written offsets a refused commit left behind (a rebalance) go out with the next batch, or within a
      // second while this member holds an assignment (a commit between revocation and assignment is refused).
      if (assigned && !uncommitted.empty() && std::chrono::steady_clock::now() - last_commit_try >= std::chrono::seconds(1)) {
        commit_offsets(1);
        last_commit_try = std::chrono::steady_clock::now();
      }
      if (full() && pool->full()) {
        // The next batch is ready and the writers still work. A short wait costs nothing; a long one
        // (a slow or unreachable database) pauses the partitions, and polling goes on meanwhile so
        // that this member keeps its place in the group and serves rebalances.
        if (!waiting_since) waiting_since = std::chrono::steady_clock::now();
        if (std::chrono::steady_clock::now() - *waiting_since < pause_after) {
          if (auto c = pool->next(std::chrono::milliseconds(20))) {
            settle(*c);
            commit_offsets(3);
          }
          continue;
        }
        set_paused(true);
      } else {
        waiting_since.reset();
      }
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 50);
      if (m) {
        if (!m->err) {
          add(m, filling);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          spdlog::warn("Kafka consumer error (librdkafka retries). error={}", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
      }
      measure_lag();
      if (filling.messages > 0 && !pool->full() &&
          (full() || std::chrono::steady_clock::now() - filling.started >= opt.write.batch.linger)) {
        start_write();
      }
    }

    // Stopping: write and commit what was consumed (a batch that keeps failing is left to the next run),
    // then leave the group.
    pool->stop_retrying();
    finish_writes(true);
    if (filling.messages > 0 && failure.empty() && !offsets_held) {
      start_write();
      finish_writes(true);
    }
    commit_before_leaving();
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    rk = nullptr;
    pool.reset();
    spdlog::info("Stopped consuming from Kafka. messages={} batches={} inserted={} rejected={}", self.messages_.load(),
                 self.batches_.load(), self.inserted_.load(), self.rejected_.load());
    if (!failure.empty()) throw pg::write_error(failure);
  }
};

kafka_source::kafka_source(kafka_source_options options) : options_(std::move(options)) {}

void kafka_source::run() {
  impl i(*this, options_);
  i.run();
}

kafka_source_stats kafka_source::stats() const {
  return {.messages = messages_, .inserted = inserted_, .duplicates = duplicates_, .rejected = rejected_,
          .batches = batches_, .offset_commits = commits_, .pauses = pauses_, .rebalances = rebalances_, .lag = lag_};
}

}  // namespace crm::ingest
