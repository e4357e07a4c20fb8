#include "ingest/cli/kafka_commands.h"

#include <iostream>
#include <memory>
#include <mutex>

#include <fmt/format.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "ingest/cli/serve.h"
#include "ingest/collector/collector.h"
#include "ingest/config/options.h"
#include "ingest/config/settings.h"
#include "ingest/runtime/embedded_postgres.h"
#include "ingest/http/server.h"
#include "sinks/kafka/kafka_sink.h"
#include "ingest/kafka/kafka_source.h"
#include "ingest/observability/logging.h"
#include "ingest/observability/metrics.h"
#include "ingest/observability/kafka_metrics.h"
#include "ingest/observability/metrics_listener.h"
#include "ingest/runtime/signals.h"
#include "ingest/collector/webhook_endpoints.h"
#include "ingest/observability/writer_metrics.h"
#include "sinks/postgres/connection.h"
#include "sinks/postgres/migrations.h"
#include "sinks/postgres/startup.h"

namespace crm::ingest::cli {

namespace pg = crm::sinks::postgres;

namespace {

int run_source(const kafka_args& args, bool log_topic) {
  runtime::signal_waiter signals;
  auto cfg = config::settings::load(args.config_file);
  set_log_format(cfg.str("logging", "format"));
  const char* command = log_topic ? "write" : "consume";

  // The configured database (role and schema checked, partitions ensured), or the embedded one (started,
  // migrated). Not reachable now: consume anyway; the writers retry and the partitions pause meanwhile.
  std::string dsn = cfg.str("postgres", "dsn");
  const bool embedded = dsn.empty();
  if (embedded) {
    std::string data_dir = args.data_dir.empty() ? default_embedded_data_dir() : args.data_dir;
    dsn = local_postgres("start", data_dir);
    spdlog::info("Using the embedded PostgreSQL. data_dir={} dsn={}", data_dir, dsn);
  }
  auto registry = std::make_shared<prometheus::Registry>();
  auto observer = std::make_shared<writer_failover_stats>(registry.get());
  auto opt = config::kafka_source_options_from(cfg, log_topic, dsn, observer);
  pg::start_database(config::startup_options_from(cfg, dsn, embedded, command));

  kafka_source source(opt);
  // The same required metrics as serve's write path, plus the source's own (received, lag).
  std::unique_ptr<observability::metrics_listener> listener;
  observability::kafka_metrics kafka_series(*registry);
  std::mutex scrape_mu;
  if (const auto& listen = cfg.str("metrics", "listen"); !listen.empty()) {
    listener = std::make_unique<observability::metrics_listener>(
        listen, registry, [observer] { return observer->database_up() != 0; },
        [&] {
          std::lock_guard lock(scrape_mu);
          kafka_series.update(source.stats(), source.assigned_partitions());
        });
    // Tools and tests read this line.
    std::cout << "metrics on port " << listener->port() << std::endl;
  }
  signals.start([&](int sig) {
    spdlog::info("Stopping: writing and committing what was consumed. signal={}", runtime::signal_name(sig));
    source.stop();
  });
  // Tools and tests read this line.
  std::cout << "consuming group " << opt.group << std::endl;
  source.run();  // throws kafka_error (exit 5) or write_error (exit 3); the waiter's destructor ends its thread
  signals.close();
  listener.reset();
  auto s = source.stats();
  std::cout << "consumed " << s.messages << " messages: " << s.inserted << " inserted, " << s.duplicates
            << " duplicates, " << s.rejected << " rejected, " << s.batches << " batches, " << s.offset_commits
            << " offset commits\n";
  if (observer->retries() > 0) spdlog::warn("The writers rode out database failures. {}", observer->summary());
  return 0;
}

}  // namespace

int run_consume(const kafka_args& args) { return run_source(args, false); }

int run_write(const kafka_args& args) { return run_source(args, true); }

int run_serve_kafka(const serve_args& args) {
  auto cfg = config::settings::load(args.config_file);
  set_log_format(cfg.str("logging", "format"));
  (void)check_serve_settings(cfg);  // a mistake in [auth] or a webhook source: exit 2 before anything starts
  runtime::signal_waiter signals(/*reload=*/true);
  const auto kopt = config::kafka_sink_options_from(cfg);
  metrics m;  // no writers here: no crm_ingest_writer_* series (the database is the writers' concern)

  {
    sinks::kafka::kafka_sink sink(kopt);
    // Ready while deliveries succeed: the database is the writers' concern in this topology.
    run_http_front(args, cfg, signals, sink, m, [&sink] { return sink.healthy(); }, [&sink] { sink.wait_idle(); },
                   "their deliveries", fmt::format("brokers={} topic={}", kopt.brokers, kopt.topic));
  }
  spdlog::info("Stopped.");
  return 0;
}

}  // namespace crm::ingest::cli
