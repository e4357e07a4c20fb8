#include "ingest/observability/metrics.h"

#include <charconv>
#include <sstream>
#include <vector>

#include <prometheus/text_serializer.h>

namespace crm::ingest {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const prometheus::Histogram::BucketBoundaries latency_buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                 0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};

}  // namespace

metrics::metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      log_bytes(BuildGauge().Name("crm_ingest_log_bytes").Help("Bytes of the durable local log on disk").Register(*registry_).Add({})),
      log_segments(BuildGauge().Name("crm_ingest_log_segments").Help("Segment files of the durable local log").Register(*registry_).Add({})),
      log_backlog_bytes(BuildGauge().Name("crm_ingest_log_backlog_bytes").Help("Durable bytes not yet written to PostgreSQL").Register(*registry_).Add({})),
      log_append_queue(BuildGauge().Name("crm_ingest_log_append_queue_depth").Help("Requests waiting for the local log's group commit").Register(*registry_).Add({})),
      log_appends_refused(BuildCounter().Name("crm_ingest_log_appends_refused_total").Help("Requests refused with 503 because the local log was full").Register(*registry_).Add({})),
      log_fsyncs(BuildCounter().Name("crm_ingest_log_fsyncs_total").Help("fdatasync calls of the local log").Register(*registry_).Add({})),
      log_fsync_seconds_total(BuildCounter().Name("crm_ingest_log_fsync_seconds_total").Help("Time spent in fdatasync by the local log").Register(*registry_).Add({})),
      log_fsync_max_seconds(BuildGauge().Name("crm_ingest_log_fsync_max_seconds").Help("Longest fdatasync of the local log since start").Register(*registry_).Add({})),
      log_group_commits(BuildCounter().Name("crm_ingest_log_group_commits_total").Help("Group commits (one write + one fdatasync shared by concurrent requests)").Register(*registry_).Add({})),
      log_torn_tails_cut(BuildCounter().Name("crm_ingest_log_torn_tails_cut_total").Help("Torn records cut from the log's tail at start-up").Register(*registry_).Add({})),
      log_failed(BuildGauge().Name("crm_ingest_log_failed").Help("1 while a failed write (a full disk) stops the local log from taking requests; it retries every second").Register(*registry_).Add({})),
      log_write_failures(BuildCounter().Name("crm_ingest_log_write_failures_total").Help("Failed writes or fdatasyncs that stopped the local log (the requests in them were answered 503)").Register(*registry_).Add({})),
      log_write_recoveries(BuildCounter().Name("crm_ingest_log_write_recoveries_total").Help("Times the local log took requests again after a failed write").Register(*registry_).Add({})),
      log_checkpoints_in_place(BuildCounter().Name("crm_ingest_log_checkpoints_in_place_total").Help("Checkpoints written over the checkpoint file itself: no room on the log's disk for its spare").Register(*registry_).Add({})),
      partition_next_month_present(BuildGauge().Name("crm_ingest_partition_next_month_present").Help("1 when communications and customer_touchpoints both have next month's partition, 0 when one is missing").Register(*registry_).Add({})),
      partition_default_rows(BuildGauge().Name("crm_ingest_partition_default_rows").Help("Rows in the DEFAULT partitions (events outside every monthly partition; should be 0; counted up to 1e6 per table)").Register(*registry_).Add({})),
      partition_catalog_checked_timestamp(BuildGauge().Name("crm_ingest_partition_catalog_checked_timestamp_seconds").Help("Unix time the partition catalog was last read successfully").Register(*registry_).Add({})),
      config_reloads(BuildCounter().Name("crm_ingest_config_reloads_total").Help("Webhook secrets reloaded on SIGHUP").Register(*registry_).Add({})),
      config_reload_failures(BuildCounter().Name("crm_ingest_config_reload_failures_total").Help("SIGHUP reloads refused (invalid configuration; the previous webhook sources and secrets stay in force)").Register(*registry_).Add({})),
      log_max_bytes(BuildGauge().Name("crm_ingest_log_max_bytes").Help("Bound of the durable local log on disk (log.max_bytes)").Register(*registry_).Add({})),
      http_requests_(BuildCounter().Name("crm_ingest_http_requests_total").Help("HTTP requests by endpoint and status code").Register(*registry_)),
      http_duration_(BuildHistogram().Name("crm_ingest_http_request_duration_seconds").Help("Time from a request's last byte to its response, by endpoint").Register(*registry_)),
      events_accepted_(BuildCounter().Name("crm_ingest_events_accepted_total").Help("Events made durable, by source").Register(*registry_)),
      events_rejected_(BuildCounter().Name("crm_ingest_events_rejected_total").Help("Records dead-lettered, by the canonical field whose rule they broke (malformed_json; other: any other reason)").Register(*registry_)),
      signature_failures_(BuildCounter().Name("crm_ingest_webhook_signature_failures_total").Help("Webhook requests refused with 401, by provider and reason").Register(*registry_)),
      http_server_(std::make_unique<http_server_export>(*registry_)) {}

// server_stats -> crm_ingest_http_*: counters advance by what the server counted since the last scrape.
struct metrics::http_server_export {
  struct counter {
    const std::atomic<std::uint64_t> http::server_stats::*field;
    prometheus::Counter* exported;
    std::uint64_t seen = 0;
  };
  std::mutex mu;  // scrapes run on any I/O thread
  const http::server_stats* stats = nullptr;
  std::vector<counter> counters;
  prometheus::Gauge* connections_open = nullptr;
  prometheus::Gauge* body_bytes_in_flight = nullptr;

  explicit http_server_export(prometheus::Registry& r) {
    using s = http::server_stats;
    auto add = [&](const char* name, const char* help, const std::atomic<std::uint64_t> s::*field) {
      counters.push_back({field, &BuildCounter().Name(name).Help(help).Register(r).Add({})});
    };
    add("crm_ingest_http_connections_accepted_total", "TCP connections accepted", &s::connections_accepted);
    add("crm_ingest_http_connections_refused_total",
        "Connections closed at accept because http.max_connections were open", &s::connections_refused);
    add("crm_ingest_http_timeouts_total", "Connections cut off by the header, request or idle timeout", &s::timeouts);
    add("crm_ingest_http_body_too_large_total",
        "Requests refused with 413: declared, received or decoded body over http.body_limit_bytes", &s::body_too_large);
    add("crm_ingest_http_bad_requests_total",
        "Requests refused for their framing or syntax (400, 417, 431, 501); the connection is closed", &s::bad_requests);
    add("crm_ingest_http_unsupported_encoding_total", "Requests refused with 415 for a Content-Encoding other than "
        "gzip or deflate", &s::unsupported_encoding);
    add("crm_ingest_http_refused_before_body_total",
        "Requests refused from their head, before any body byte was read (401, 403, 404, 405, 429)",
        &s::refused_before_body);
    add("crm_ingest_http_body_budget_refusals_total",
        "Requests refused with 503 because http.body_budget_bytes of request bodies were in flight",
        &s::body_budget_refusals);
    add("crm_ingest_http_tls_handshake_failures_total", "TLS handshakes that failed or timed out",
        &s::tls_handshake_failures);
    add("crm_ingest_http_accept_errors_total",
        "accept() failures (e.g. no file descriptor left), each followed by a back-off", &s::accept_errors);
    add("crm_ingest_http_connection_errors_total", "Connections closed by an exception in their handling",
        &s::connection_errors);
    connections_open = &BuildGauge().Name("crm_ingest_http_connections_open").Help("Open client connections")
                            .Register(r).Add({});
    body_bytes_in_flight = &BuildGauge().Name("crm_ingest_http_body_bytes_in_flight")
                                .Help("Request body bytes held against http.body_budget_bytes").Register(r).Add({});
  }

  void refresh() {
    std::lock_guard lock(mu);
    if (!stats) return;
    for (auto& c : counters) {
      const auto now = (stats->*c.field).load(std::memory_order_relaxed);
      if (now > c.seen) c.exported->Increment(static_cast<double>(now - c.seen));
      c.seen = now;
    }
    connections_open->Set(static_cast<double>(stats->connections_open.load(std::memory_order_relaxed)));
    body_bytes_in_flight->Set(static_cast<double>(stats->body_bytes_in_flight.load(std::memory_order_relaxed)));
  }
};

metrics::~metrics() = default;

void metrics::export_http_server(const http::server_stats* stats) {
  std::lock_guard lock(http_server_->mu);
  http_server_->stats = stats;
  for (auto& c : http_server_->counters) c.seen = stats ? (stats->*c.field).load() : 0;
}

template <typename T, typename MakeLabels>
T& metrics::cached(prometheus::Family<T>& family, cache_map<T>& cache, std::string_view key, MakeLabels&& labels) {
  std::lock_guard lock(mu_);
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  T* m;
  if constexpr (std::is_same_v<T, prometheus::Histogram>) {
    m = &family.Add(labels(), latency_buckets);
  } else {
    m = &family.Add(labels());
  }
  cache.emplace(std::string(key), m);
  return *m;
}

namespace {
// A cache key: a family tag and the label values joined by a separator no value contains, built in the
// calling thread's buffer (no allocation once it has grown).
template <typename... Parts>
std::string_view cache_key(char tag, const Parts&... parts) {
  thread_local std::string key;
  key.assign(1, tag);
  ((key.push_back('\x1f'), key.append(parts)), ...);
  return key;
}
std::string_view code_text(unsigned code, char (&buf)[16]) {
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, code);
  (void)ec;
  return {buf, static_cast<std::size_t>(end - buf)};
}
}  // namespace

prometheus::Counter& metrics::http_request(std::string_view endpoint, unsigned code) {
  char buf[16];
  const auto status = code_text(code, buf);
  return cached(http_requests_, counter_cache_, cache_key('h', endpoint, status), [&] {
    return prometheus::Labels{{"endpoint", std::string(endpoint)}, {"code", std::string(status)}};
  });
}

prometheus::Histogram& metrics::http_duration(std::string_view endpoint) {
  return cached(http_duration_, histogram_cache_, cache_key('d', endpoint),
                [&] { return prometheus::Labels{{"endpoint", std::string(endpoint)}}; });
}

prometheus::Counter& metrics::events_accepted(std::string_view source) {
  return cached(events_accepted_, counter_cache_, cache_key('a', source),
                [&] { return prometheus::Labels{{"source", std::string(source)}}; });
}

prometheus::Counter& metrics::events_rejected(std::string_view reason_field) {
  return cached(events_rejected_, counter_cache_, cache_key('r', reason_field),
                [&] { return prometheus::Labels{{"reason", std::string(reason_field)}}; });
}

prometheus::Counter& metrics::signature_failure(std::string_view provider, std::string_view reason) {
  return cached(signature_failures_, counter_cache_, cache_key('s', provider, reason), [&] {
    return prometheus::Labels{{"provider", std::string(provider)}, {"reason", std::string(reason)}};
  });
}

std::string metrics::serialize() const {
  http_server_->refresh();
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace crm::ingest
