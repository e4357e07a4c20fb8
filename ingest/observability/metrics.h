// The process's Prometheus metrics (prometheus-cpp): every family is registered once at start-up; a
// labelled child is created the first time its label set is seen and then found in a small cache (one
// short lock, never the registry's; a hit allocates nothing: per request on the HTTP path). Batch-path
// metrics are plain members. Names follow crm_ingest_<component>_<what>_<unit>; no label carries a
// per-event value (endpoints, providers, reasons and status codes are small fixed sets).
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "ingest/http/server.h"

namespace crm::ingest {

class metrics {
  // First: every member below registers into it.
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  metrics();
  ~metrics();

  prometheus::Registry& registry() noexcept { return *registry_; }
  std::string serialize() const;  // the text exposition format for GET /metrics

  // HTTP
  prometheus::Counter& http_request(std::string_view endpoint, unsigned code);
  prometheus::Histogram& http_duration(std::string_view endpoint);
  // Events
  prometheus::Counter& events_accepted(std::string_view source);
  prometheus::Counter& events_rejected(std::string_view reason_field);
  prometheus::Counter& signature_failure(std::string_view provider, std::string_view reason);

  // Durable log
  prometheus::Gauge& log_bytes;
  prometheus::Gauge& log_segments;
  prometheus::Gauge& log_backlog_bytes;
  prometheus::Gauge& log_append_queue;
  prometheus::Counter& log_appends_refused;
  prometheus::Counter& log_fsyncs;
  prometheus::Counter& log_fsync_seconds_total;
  prometheus::Gauge& log_fsync_max_seconds;
  prometheus::Counter& log_group_commits;
  prometheus::Counter& log_torn_tails_cut;
  prometheus::Gauge& log_failed;  // 1 while a write error stops the log (it retries)
  prometheus::Counter& log_write_failures;
  prometheus::Counter& log_write_recoveries;
  prometheus::Counter& log_checkpoints_in_place;

  // The PostgreSQL writers' series are the write path observer's (writer_metrics.h), registered
  // into registry() by the commands that write.

  // Partition catalog (read by serve every catalog.check_interval_s)
  prometheus::Gauge& partition_next_month_present;  // 1 when both tables have next month's partition
  prometheus::Gauge& partition_default_rows;        // rows in the DEFAULT partitions (should be 0)
  prometheus::Gauge& partition_catalog_checked_timestamp;

  // Configuration reloads (SIGHUP)
  prometheus::Counter& config_reloads;
  prometheus::Counter& config_reload_failures;

  // Durable log capacity (log.max_bytes), for fill ratios
  prometheus::Gauge& log_max_bytes;

  // The HTTP server's own counters (refused connections, timeouts, early 413s, TLS handshake failures,
  // accept errors, ...), copied into crm_ingest_http_* at every scrape; null stops the copying. The
  // families exist (at 0) before a server is attached.
  void export_http_server(const http::server_stats* stats);

 private:
  // Found by a string_view key without building a string.
  struct key_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view k) const noexcept { return std::hash<std::string_view>{}(k); }
  };
  template <typename T>
  using cache_map = std::unordered_map<std::string, T*, key_hash, std::equal_to<>>;
  // The child of `family` cached under `key`; `labels()` makes its label set, called on a miss only.
  template <typename T, typename MakeLabels>
  T& cached(prometheus::Family<T>& family, cache_map<T>& cache, std::string_view key, MakeLabels&& labels);

  prometheus::Family<prometheus::Counter>& http_requests_;
  prometheus::Family<prometheus::Histogram>& http_duration_;
  prometheus::Family<prometheus::Counter>& events_accepted_;
  prometheus::Family<prometheus::Counter>& events_rejected_;
  prometheus::Family<prometheus::Counter>& signature_failures_;
  struct http_server_export;
  std::unique_ptr<http_server_export> http_server_;
  std::mutex mu_;  // guards the caches
  cache_map<prometheus::Counter> counter_cache_;
  cache_map<prometheus::Histogram> histogram_cache_;
};

}  // namespace crm::ingest
