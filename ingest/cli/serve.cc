#include "ingest/cli/serve.h"

#include <pthread.h>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>
#include <stop_token>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <sys/resource.h>
#include <spdlog/spdlog.h>

#include "ingest/auth/auth_settings.h"
#include "ingest/cli/exit_codes.h"
#include "ingest/cli/kafka_commands.h"
#include "ingest/collector/collector.h"
#include "ingest/config/options.h"
#include "ingest/config/settings.h"
#include "ingest/pipeline/drainer.h"
#include "ingest/runtime/embedded_postgres.h"
#include "ingest/http/server.h"
#include "ingest/observability/logging.h"
#include "ingest/observability/metrics.h"
#include "ingest/collector/webhook_endpoints.h"
#include "sinks/spool/spool_sink.h"
#include "ingest/observability/writer_metrics.h"
#include "sinks/postgres/connection.h"
#include "sinks/postgres/migrations.h"
#include "sinks/postgres/queries.h"
#include "sinks/postgres/startup.h"
#include "transform/providers/registry.h"

namespace crm::ingest::cli {

namespace pg = crm::sinks::postgres;

namespace {

// Reads the partition catalog into the crm_ingest_partition_* gauges. Runs on its own thread (owned by
// run_serve), one short connection per check, so a slow or unreachable database never holds up the
// request path; a failed check leaves the gauges as they were (the checked timestamp then goes stale).
void check_partition_catalog(const std::string& dsn, metrics& m) {
  try {
    pqxx::connection conn(dsn);
    const auto c = pg::read_partition_catalog(conn);
    m.partition_next_month_present.Set(c.next_month_present ? 1 : 0);
    m.partition_default_rows.Set(static_cast<double>(c.default_rows));
    m.partition_catalog_checked_timestamp.SetToCurrentTime();
  } catch (const std::exception& e) {
    spdlog::warn("Could not read the partition catalog. dsn={} error={}", pg::redact_dsn(dsn), e.what());
  }
}

// Every connection is a file descriptor. When RLIMIT_NOFILE cannot hold http.max_connections plus what serve
// needs besides (the listener, the local log, PostgreSQL connections, the catalog check, stdio, ...), the
// soft limit is raised toward the hard one; if that is not enough, the effective max_connections is lowered
// so that connections are refused at accept instead of accept failing with EMFILE.
std::size_t file_descriptor_bound(std::size_t max_connections, std::size_t writers) {
  const std::size_t reserve = 64 + 2 * writers;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return max_connections;
  const rlim_t wanted = static_cast<rlim_t>(max_connections + reserve);
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < wanted) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, lim.rlim_max);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= wanted) return max_connections;
  const std::size_t effective = lim.rlim_cur > reserve + 1 ? static_cast<std::size_t>(lim.rlim_cur) - reserve : 1;
  spdlog::warn("RLIMIT_NOFILE ({}) is below http.max_connections ({}) plus the {} descriptors serve needs "
               "besides; connections beyond {} are refused. Raise the limit (LimitNOFILE= in the systemd unit, "
               "ulimit -n) or lower http.max_connections.",
               static_cast<unsigned long long>(lim.rlim_cur), max_connections, reserve, effective);
  return effective;
}

// What serve warns about at start and on every reload: an open /v1/events; a provider endpoint without its secret
// (which refuses every request unless the operator opted in); sources that risk one another's events.
std::vector<std::string> serve_warnings(const config::settings& cfg, bool events_open) {
  std::vector<std::string> out;
  if (events_open) {
    out.push_back("POST /v1/events is OPEN: anyone who reaches the listener can write events. Configure [auth] "
                  "jwt_secret, jwt_public_key_file, jwks_file or api_keys (or auth.required = true).");
  }
  for (const auto& p : unsigned_webhooks(cfg)) {
    out.push_back("POST /v1/webhooks/" + p + " accepts UNSIGNED requests (allow_unsigned = true, no secret): anyone "
                  "who reaches the listener can write its events. Configure its secret instead.");
  }
  for (const auto& risk : source_risks(cfg)) out.push_back("Webhook source risk: " + risk + ".");
  return out;
}

void log_warnings(const config::settings& cfg, bool events_open) {
  for (const auto& w : serve_warnings(cfg, events_open)) spdlog::warn("{}", w);
}

// A stop signal while serve starts (README "The collector"): nothing was acknowledged yet, so serve ends with 0,
// as a stopped serve does. While it holds nothing (the embedded database's start, a connection attempt that may wait
// for a TCP timeout) the process ends at once; from the local log's open on, the start-up steps look at requested()
// and return in order (the log's recovery stops before it changes anything), and once serve runs, the server's
// stop handler takes the signal (signal_waiter::start gives it a stop that came before).
class startup_stop {
 public:
  explicit startup_stop(runtime::signal_waiter& signals) : signals_(signals) {
    signals.start_early([this](int sig) {
      std::lock_guard lock(mu_);
      if (!holds_nothing_) return;  // the start-up steps see it
      spdlog::info("Stopped during start-up, before the local log was opened: nothing was acknowledged. signal={}",
                   runtime::signal_name(sig));
      spdlog::default_logger()->flush();
      std::_Exit(exit_ok);
    });
  }
  // From here on serve holds something (the local log): a stop is left to the steps that look.
  void holding() {
    std::lock_guard lock(mu_);
    holds_nothing_ = false;
  }
  bool requested() const noexcept { return signals_.received() != 0; }
  int stopped(std::string_view where) const {
    spdlog::info("Stopped during start-up ({}): nothing was acknowledged. signal={}", where,
                 runtime::signal_name(signals_.received()));
    return exit_ok;
  }

 private:
  runtime::signal_waiter& signals_;
  std::mutex mu_;
  bool holds_nothing_ = true;
};

}  // namespace

std::vector<std::string> check_serve_settings(const config::settings& cfg) {
  try {
    const auth::authenticator callers(auth::options_from_settings(cfg));
    (void)build_sources(cfg);
    return serve_warnings(cfg, !callers.enabled());
  } catch (const config::config_error&) {
    throw;
  } catch (const std::exception& e) {
    // Keys that cannot be read or used, a secret that is not what its scheme takes: a configuration mistake.
    throw config::config_error({e.what()});
  }
}

void run_http_front(const serve_args& args, const config::settings& cfg, runtime::signal_waiter& signals, batch_sink& sink,
                    metrics& m, std::function<bool()> ready, const std::function<void()>& wait_idle,
                    std::string_view after_stop, const std::string& detail) {
  // Callers' credentials first: a mistake there stops the start before anything else happens.
  collector_options copt;
  copt.normalize = config::normalize_options_from(cfg);
  copt.max_rejections_per_request = static_cast<std::size_t>(cfg.integer("http", "max_rejections_per_request"));
  copt.auth = std::make_shared<const auth::authenticator>(auth::options_from_settings(cfg));
  copt.protect_metrics = cfg.boolean("auth", "protect_metrics");
  copt.address_limit = auth::address_limiter(cfg);
  copt.credential_limit = auth::credential_limiter(cfg);
  collector coll(copt, sink, m, std::move(ready));
  coll.set_sources(build_sources(cfg));
  log_warnings(cfg, !copt.auth->enabled());
  spdlog::info("Webhook sources. sources={}", changed_sources(nullptr, *coll.sources()));

  http::server_options sopt;
  sopt.listen = cfg.str("http", "listen");
  sopt.io_threads = static_cast<int>(cfg.integer("http", "io_threads"));
  sopt.body_limit_bytes = static_cast<std::size_t>(cfg.integer("http", "body_limit_bytes"));
  sopt.header_timeout = std::chrono::milliseconds(cfg.integer("http", "header_timeout_ms"));
  sopt.request_timeout = std::chrono::milliseconds(cfg.integer("http", "request_timeout_ms"));
  sopt.idle_timeout = std::chrono::milliseconds(cfg.integer("http", "idle_timeout_ms"));
  sopt.max_connections = file_descriptor_bound(static_cast<std::size_t>(cfg.integer("http", "max_connections")),
                                                static_cast<std::size_t>(cfg.integer("postgres", "writers")));
  sopt.body_budget_bytes = static_cast<std::size_t>(cfg.integer("http", "body_budget_bytes"));
  if (sopt.body_budget_bytes < sopt.body_limit_bytes) {
    throw std::runtime_error("http.body_budget_bytes (" + std::to_string(sopt.body_budget_bytes) +
                             ") must be at least http.body_limit_bytes (" + std::to_string(sopt.body_limit_bytes) +
                             "): a body of the allowed size could never be read");
  }
  sopt.tls_cert_file = cfg.str("http", "tls_cert_file");
  sopt.tls_key_file = cfg.str("http", "tls_key_file");
  http::server srv(sopt, coll);
  srv.listen();
  m.export_http_server(&srv.stats());
  struct detach {
    metrics& m;
    ~detach() { m.export_http_server(nullptr); }
  } detach_stats{m};
  spdlog::info("Listening. address={} port={} io_threads={} tls={} {}", sopt.listen, srv.port(), sopt.io_threads,
               srv.tls() ? "on" : "off", detail);
  // Tools and tests read this line to learn the port.
  std::cout << "listening on port " << srv.port() << std::endl;

  // The signal thread: SIGHUP reloads the webhook secrets, the callers' keys, the TLS pair and the log
  // format from the same file and environment, swapping them in under live connections; SIGTERM/SIGINT
  // stop the server.
  signals.start(
      [&](int sig) {
        spdlog::info("Shutting down: finishing in-flight requests, then {}. signal={}", after_stop,
                     runtime::signal_name(sig));
        srv.stop();
      },
      [&] {
        try {
          auto fresh = config::settings::load(args.config_file);
          // Everything is read before anything is swapped: a bad file leaves all of it as it was.
          auto fresh_auth = std::make_shared<const auth::authenticator>(auth::options_from_settings(fresh));
          srv.reload_tls();  // the same certificate/key paths, re-read; throws (old pair kept) when unusable
          // The whole source set is rebuilt (unchanged sources keep their verifiers) and swapped at once.
          auto before = coll.sources();
          auto fresh_sources = build_sources(fresh, before.get());
          const auto changed = changed_sources(before.get(), *fresh_sources);
          coll.set_sources(std::move(fresh_sources));
          log_warnings(fresh, !fresh_auth->enabled());
          coll.set_authenticator(std::move(fresh_auth));
          set_log_format(fresh.str("logging", "format"));
          m.config_reloads.Increment();
          spdlog::info("Reloaded the webhook sources and secrets on SIGHUP. config={} changed={}",
                       args.config_file.empty() ? "(environment only)" : args.config_file,
                       changed.empty() ? "none" : changed);
        } catch (const std::exception& e) {
          m.config_reload_failures.Increment();
          spdlog::error("Refused the SIGHUP reload; the previous webhook sources and secrets stay in force. error={}",
                        e.what());
        }
      });
  srv.run();
  // Answers still waiting for their sink post to the server's executor and use the collector.
  wait_idle();
  // run() returned: either a signal stopped it, or it failed; end the signal thread either way.
  signals.close();
}

int run_serve(const serve_args& args) {
  if (args.log == "kafka") return run_serve_kafka(args);
  auto cfg = config::settings::load(args.config_file);
  set_log_format(cfg.str("logging", "format"));
  // Callers' credentials and the webhook sources' checks first: a mistake there stops the start (exit 2) before
  // anything else happens.
  (void)check_serve_settings(cfg);

  // Signals are taken by one thread with sigwait; every other thread inherits the blocked mask. The thread takes
  // them from now on: a stop during start-up ends serve (startup_stop).
  runtime::signal_waiter signals(/*reload=*/true);
  startup_stop starting(signals);

  // The database: configured, or the embedded private one (started and migrated here). Not reachable now:
  // serve anyway; the log keeps what arrives and the writers wait for it.
  std::string dsn = cfg.str("postgres", "dsn");
  std::string data_dir = args.data_dir.empty() ? default_embedded_data_dir() : args.data_dir;
  const bool embedded = dsn.empty();
  if (embedded) {
    dsn = local_postgres("start", data_dir);
    spdlog::info("Using the embedded PostgreSQL. data_dir={} dsn={}", data_dir, dsn);
  }
  pg::start_database(config::startup_options_from(cfg, dsn, embedded, "serve"));
  starting.holding();
  if (starting.requested()) return starting.stopped("the database reached");

  // The durable local log; its recovery stops (changing nothing) on a stop signal.
  auto log_opt = config::log_options_from(cfg, data_dir);
  log_opt.stop_requested = [&starting] { return starting.requested(); };
  std::unique_ptr<sinks::spool::durable_log> log;
  try {
    log = sinks::spool::durable_log::open(log_opt);  // throws open_error: exit code 4
  } catch (const sinks::spool::open_stopped& e) {
    return starting.stopped(e.what());
  }
  if (starting.requested()) return starting.stopped("the local log opened");
  metrics m;
  m.log_max_bytes.Set(static_cast<double>(log_opt.max_bytes));
  {
    auto st = log->stats();
    if (st.torn_tails_cut) m.log_torn_tails_cut.Increment(static_cast<double>(st.torn_tails_cut));
    spdlog::info("Opened the local log. dir={} records_to_replay={} torn_tails_cut={}", log_opt.directory.string(),
                 st.records_recovered, st.torn_tails_cut);
  }

  drainer_options dopt;
  // One batch in the writers' hands by default (postgres.batches_in_flight = 0): the HTTP edge shares the box's
  // CPUs with PostgreSQL, and more batches in flight drain a little faster but multiply the edge's p99 (http_bench:
  // 66-70 ms with 1, 235-340 ms with 4, drain 0.32 vs 0.34-0.37 of \copy).
  dopt.pool = config::pool_options_from(cfg, dsn, std::make_shared<writer_failover_stats>(&m.registry()), 1);
  // As many of the writers as write faster (postgres.adaptive_writers): on a machine shared with PostgreSQL a
  // second writer often adds no speed and only takes the CPU and disk the edge's latency needs.
  dopt.pool.adaptive = cfg.boolean("postgres", "adaptive_writers");
  dopt.drain_on_stop = std::chrono::seconds(cfg.integer("log", "drain_on_stop_s"));
  drainer drain(dopt, *log, m);
  drain.start();

  // The partition catalog watch: its own thread, woken early only to stop.
  std::jthread catalog_watch;
  if (auto every = std::chrono::seconds(cfg.integer("catalog", "check_interval_s")); every.count() > 0) {
    catalog_watch = std::jthread([dsn, every, &m](std::stop_token stop) {
      pthread_setname_np(pthread_self(), "crm-catalog");
      std::mutex mu;
      std::condition_variable_any cv;
      while (!stop.stop_requested()) {
        check_partition_catalog(dsn, m);
        std::unique_lock lock(mu);
        cv.wait_for(lock, stop, every, [] { return false; });
      }
    });
  }

  const int exit_code = 0;
  {
    sinks::spool::spool_sink sink(*log);
    run_http_front(args, cfg, signals, sink, m, [&drain] { return drain.database_ready(); }, [&sink] { sink.wait_idle(); },
                   "writing the log to PostgreSQL",
                   fmt::format("writers={}{}", dopt.pool.writers,
                               dopt.pool.adaptive ? " (adaptive: as many as write faster)" : ""));
  }
  catalog_watch = {};
  drain.stop();
  spdlog::info("Stopped. batches_committed={}", drain.batches_committed());
  return exit_code;
}

}  // namespace crm::ingest::cli
