#include "ingest/cli/kafka_commands.h"

#include <csignal>
#include <iostream>
#include <thread>

#include <fmt/format.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include "ingest/cli/serve.h"
#include "ingest/collector.h"
#include "ingest/config/settings.h"
#include "ingest/embedded_postgres.h"
#include "ingest/http/server.h"
#include "ingest/kafka/kafka_sink.h"
#include "ingest/kafka/kafka_source.h"
#include "ingest/logging.h"
#include "ingest/metrics.h"
#include "ingest/providers.h"
#include "ingest/writer_metrics.h"
#include "sinks/postgres/connection.h"
#include "sinks/postgres/migrations.h"

namespace crm::ingest::cli {

namespace pg = crm::sinks::postgres;

namespace {

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// The configured database (schema checked, partitions ensured), or the embedded one (started, migrated).
std::string prepare_database(const config::settings& cfg, const std::string& data_dir_arg) {
  std::string dsn = cfg.str("postgres", "dsn");
  pg::partition_window window{static_cast<int>(cfg.integer("postgres", "months_back")),
                              static_cast<int>(cfg.integer("postgres", "months_ahead"))};
  if (dsn.empty()) {
    std::string data_dir = data_dir_arg.empty() ? default_embedded_data_dir() : data_dir_arg;
    dsn = local_postgres("start", data_dir);
    pqxx::connection conn(dsn);
    pg::migrate(conn, pg::embedded_migrations(), window);
    spdlog::info("Using the embedded PostgreSQL. data_dir={} dsn={}", data_dir, dsn);
    return dsn;
  }
  try {
    pqxx::connection conn(dsn);
    pg::check_schema_current(conn, pg::embedded_migrations());
    pg::ensure_partitions(conn, window);
  } catch (const pg::migration_error&) {
    throw;
  } catch (const std::exception& e) {
    // Not reachable now: consume anyway; the writer retries and the partitions pause meanwhile.
    spdlog::warn("PostgreSQL is not reachable at start; the writer waits for it. dsn={} error={}", pg::redact_dsn(dsn),
                 e.what());
  }
  return dsn;
}

std::string require_brokers(const config::settings& cfg) {
  std::string brokers = cfg.str("kafka", "brokers");
  if (brokers.empty()) throw std::invalid_argument("kafka.brokers is not set (bootstrap servers, host:port,...)");
  return brokers;
}

int run_source(const kafka_args& args, bool log_topic) {
  sigset_t signals = block_stop_signals();
  auto cfg = config::settings::load(args.config_file);
  set_log_format(cfg.str("logging", "format"));
  kafka_source_options opt;
  opt.brokers = require_brokers(cfg);
  opt.properties = parse_kafka_properties(cfg.str("kafka", "properties"));
  opt.session_timeout_ms = static_cast<int>(cfg.integer("kafka", "session_timeout_ms"));
  if (log_topic) {
    opt.group = cfg.str("kafka", "log_group");
    opt.topics = {{cfg.str("kafka", "log_topic"), "normalized"}};
    opt.ledger_source = "kafka-log";
    opt.writer.application_name = "crm-ingest write";
  } else {
    opt.group = cfg.str("kafka", "group");
    opt.topics = parse_kafka_topics(cfg.str("kafka", "topics"));
    if (opt.topics.empty()) throw std::invalid_argument("kafka.topics is empty: name the topics to consume (topic=format)");
    opt.ledger_source = "kafka";
    opt.writer.application_name = "crm-ingest consume";
  }
  opt.normalize.default_region = cfg.str("normalize", "default_region");
  opt.normalize.max_record_bytes = static_cast<std::size_t>(cfg.integer("normalize", "max_record_bytes"));
  opt.batch_rows = static_cast<std::size_t>(cfg.integer("postgres", "batch_rows"));
  opt.batch_bytes = static_cast<std::size_t>(cfg.integer("postgres", "batch_bytes"));
  opt.linger = std::chrono::milliseconds(cfg.integer("postgres", "linger_ms"));
  opt.writer.retry_for = std::chrono::seconds(cfg.integer("postgres", "retry_for_s"));
  opt.writer.maintain_analytics = cfg.boolean("attribution", "maintain");
  opt.writer.dsn = prepare_database(cfg, args.data_dir);
  auto failover = std::make_shared<writer_failover_stats>();
  opt.writer.observer = failover;

  kafka_source source(opt);
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGTERM || sig == SIGINT) spdlog::info("Stopping: writing and committing what was consumed.");
    source.stop();
  });
  // Tools and tests read this line.
  std::cout << "consuming group " << opt.group << std::endl;
  try {
    source.run();
  } catch (...) {
    pthread_kill(signal_thread.native_handle(), SIGTERM);
    signal_thread.join();
    throw;
  }
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  auto s = source.stats();
  std::cout << "consumed " << s.messages << " messages: " << s.inserted << " inserted, " << s.duplicates
            << " duplicates, " << s.rejected << " rejected, " << s.batches << " batches, " << s.offset_commits
            << " offset commits\n";
  return 0;
}

}  // namespace

int run_consume(const kafka_args& args) { return run_source(args, false); }

int run_write(const kafka_args& args) { return run_source(args, true); }

int run_serve_kafka(const serve_args& args) {
  auto cfg = config::settings::load(args.config_file);
  set_log_format(cfg.str("logging", "format"));
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  kafka_sink_options kopt;
  kopt.brokers = require_brokers(cfg);
  kopt.topic = cfg.str("kafka", "log_topic");
  kopt.properties = parse_kafka_properties(cfg.str("kafka", "properties"));
  kopt.delivery_timeout_ms = static_cast<int>(cfg.integer("kafka", "delivery_timeout_ms"));
  metrics m;

  {
    kafka_sink sink(kopt);
    // Ready while deliveries succeed: the database is the writers' concern in this topology.
    run_http_front(args, cfg, signals, sink, m, [&sink] { return sink.healthy(); }, [&sink] { sink.wait_idle(); },
                   "their deliveries", fmt::format("brokers={} topic={}", kopt.brokers, kopt.topic));
  }
  spdlog::info("Stopped.");
  return 0;
}

}  // namespace crm::ingest::cli
