#include "ingest/config/options.h"

#include <stdexcept>

namespace crm::ingest::config {

namespace pg = crm::sinks::postgres;

namespace {

std::string require_brokers(const settings& cfg) {
  std::string brokers = cfg.str("kafka", "brokers");
  if (brokers.empty()) throw std::invalid_argument("kafka.brokers is not set (bootstrap servers, host:port,...)");
  return brokers;
}

}  // namespace

transform::normalize_options normalize_options_from(const settings& cfg) {
  transform::normalize_options o;
  o.default_region = cfg.str("normalize", "default_region");
  o.max_record_bytes = static_cast<std::size_t>(cfg.integer("normalize", "max_record_bytes"));
  return o;
}

pg::pool_options pool_options_from(const settings& cfg, const std::string& dsn,
                                   std::shared_ptr<pg::writer_observer> observer, std::size_t automatic_in_flight) {
  pg::pool_options o;
  o.writer.dsn = dsn;
  o.writer.observer = std::move(observer);
  o.writer.maintain_analytics = cfg.boolean("attribution", "maintain");
  o.writer.retry = pg::retry_policy::from_seconds(cfg.integer("postgres", "retry_for_s"));
  o.writers = static_cast<int>(cfg.integer("postgres", "writers"));
  const auto in_flight = static_cast<std::size_t>(cfg.integer("postgres", "batches_in_flight"));
  o.max_in_flight = in_flight == 0 ? automatic_in_flight : in_flight;
  o.batch.rows = static_cast<std::size_t>(cfg.integer("postgres", "batch_rows"));
  o.batch.bytes = static_cast<std::size_t>(cfg.integer("postgres", "batch_bytes"));
  o.batch.linger = std::chrono::milliseconds(cfg.integer("postgres", "linger_ms"));
  o.confirm = confirm_policy_from(cfg);
  o.max_unconfirmed_bytes = static_cast<std::size_t>(cfg.integer("postgres", "max_unconfirmed_mb")) << 20;
  return o;
}

pg::confirm_policy confirm_policy_from(const settings& cfg) {
  const std::string confirm = cfg.str("postgres", "confirm");
  if (confirm != "standbys" && confirm != "commit") {
    throw std::invalid_argument("postgres.confirm must be standbys or commit (got \"" + confirm + "\")");
  }
  return pg::confirm_policy{confirm == "standbys", static_cast<int>(cfg.integer("postgres", "confirm_min_standbys"))};
}

pg::startup_options startup_options_from(const settings& cfg, const std::string& dsn, bool embedded,
                                         const std::string& command) {
  pg::startup_options o;
  o.dsn = dsn;
  o.command = command;
  o.embedded = embedded;
  o.allow_superuser = cfg.boolean("postgres", "allow_superuser");
  o.window = {static_cast<int>(cfg.integer("postgres", "months_back")),
              static_cast<int>(cfg.integer("postgres", "months_ahead"))};
  o.wait_until_reachable = false;
  return o;
}

sinks::spool::durable_log_options log_options_from(const settings& cfg, const std::string& data_dir) {
  sinks::spool::durable_log_options o;
  const std::string dir = cfg.str("log", "dir");
  o.directory = dir.empty() ? std::filesystem::path(data_dir).parent_path() / "log" : std::filesystem::path(dir);
  o.segment_bytes = static_cast<std::uint64_t>(cfg.integer("log", "segment_bytes"));
  o.max_bytes = static_cast<std::uint64_t>(cfg.integer("log", "max_bytes"));
  o.high_water_bytes = o.max_bytes / 100 * static_cast<std::uint64_t>(cfg.integer("log", "high_water_percent"));
  return o;
}

kafka_source_options kafka_source_options_from(const settings& cfg, bool log_topic, const std::string& dsn,
                                               std::shared_ptr<pg::writer_observer> observer) {
  kafka_source_options o;
  o.brokers = require_brokers(cfg);
  o.properties = parse_kafka_properties(cfg.str("kafka", "properties"));
  o.session_timeout_ms = static_cast<int>(cfg.integer("kafka", "session_timeout_ms"));
  if (log_topic) {
    o.group = cfg.str("kafka", "log_group");
    o.topics = {{cfg.str("kafka", "log_topic"), "normalized"}};
    o.ledger_source = "kafka-log";
  } else {
    o.group = cfg.str("kafka", "group");
    o.topics = parse_kafka_topics(cfg.str("kafka", "topics"));
    if (o.topics.empty()) throw std::invalid_argument("kafka.topics is empty: name the topics to consume (topic=format)");
    o.ledger_source = "kafka";
  }
  o.normalize = normalize_options_from(cfg);
  o.write = pool_options_from(cfg, dsn, std::move(observer));
  o.write.writer.application_name = log_topic ? "crm-ingest write" : "crm-ingest consume";
  return o;
}

sinks::kafka::kafka_sink_options kafka_sink_options_from(const settings& cfg) {
  sinks::kafka::kafka_sink_options o;
  o.brokers = require_brokers(cfg);
  o.topic = cfg.str("kafka", "log_topic");
  o.properties = parse_kafka_properties(cfg.str("kafka", "properties"));
  o.delivery_timeout_ms = static_cast<int>(cfg.integer("kafka", "delivery_timeout_ms"));
  return o;
}

}  // namespace crm::ingest::config
