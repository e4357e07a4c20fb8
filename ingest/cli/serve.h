// `crm-ingest serve --config FILE`: the webhook collector, its durable log and the PostgreSQL drainer.
#pragma once

#include <functional>
#include <string>
#include <vector>
#include <string_view>

#include "ingest/collector/collector.h"
#include "ingest/config/settings.h"
#include "ingest/observability/metrics.h"
#include "ingest/runtime/signals.h"

namespace crm::ingest::cli {

struct serve_args {
  std::string config_file;
  std::string data_dir;  // embedded database, when postgres.dsn is empty
  std::string log = "local";  // "local": the durable local log; "kafka": append to kafka.log_topic
};

int run_serve(const serve_args& args);

// What serve builds from its settings before it listens, built once without listening: the callers'
// credentials ([auth]) and every webhook source's check. Throws config::config_error naming the mistake (what
// serve would refuse at start); returns the warnings serve logs at start (an open /v1/events, unsigned sources,
// source risks). `config check` runs it; so does serve, before anything else.
std::vector<std::string> check_serve_settings(const config::settings& cfg);

// The HTTP front both serve modes share (the local log and --log kafka): the collector with the callers'
// credentials, rate limits and webhook tenants, the provider endpoints with their secrets, the server (TLS
// when configured) and the signal thread, on which SIGHUP reloads secrets, keys, the TLS pair and the log
// format, and SIGTERM/SIGINT stop the server. `signals` must have been constructed (blocking them) before
// any other thread started. Returns once the server stopped and `wait_idle` returned (every answer waiting
// on `sink` given).
void run_http_front(const serve_args& args, const config::settings& cfg, runtime::signal_waiter& signals, batch_sink& sink,
                    metrics& m, std::function<bool()> ready, const std::function<void()>& wait_idle,
                    std::string_view after_stop, const std::string& detail);

}  // namespace crm::ingest::cli
