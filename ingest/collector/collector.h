// The collector: the HTTP handler behind `crm-ingest serve`. It routes a request, verifies the
// provider's signature on the raw bytes, normalizes the body into one event_batch (valid events and
// rejections alike), and acknowledges only once the batch is durable in the local log: a 2xx means "we
// have it". When the log is full the answer is 503 with Retry-After; nothing is acknowledged that
// cannot be kept.
//
// Threads: handle() runs on the HTTP I/O threads and never blocks; each I/O thread has its own
// normalizer. The response is sent from whichever thread completes the durable append.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "ingest/auth/credentials.h"
#include "ingest/http/server.h"
#include "ingest/observability/metrics.h"
#include "ingest/webhooks/signatures.h"
#include "sinks/sink.h"
#include "transform/canonical/canonical_event.h"
#include "transform/normalize/normalize.h"

namespace crm::ingest {

using sinks::batch_sink;
using sinks::sink_status;

// Checks a source's signature; empty result = accepted.
using signature_check = std::function<webhooks::verify_result(const http::request& req)>;

// Where a source finds the idempotency key of a request (README.md, "Webhook sources").
enum class idempotency_from : std::uint8_t {
  provider,    // the provider's own event id
  header,      // a request header
  body,        // a JSON pointer into the body
  webhook_id,  // standard: the webhook-id header (else svix-id), for the records without an id of their own
};

// One webhook source: POST /v1/webhooks/<name>, a provider with its secrets, tenant and options. Immutable once
// built; a set of them is swapped whole (set_sources()).
struct webhook_source {
  std::string name;
  std::string endpoint;      // "/v1/webhooks/<name>": the label of the per-endpoint metrics
  std::size_t provider = 0;  // index in transform/providers/registry.h
  std::string input_source;  // "POST /v1/webhooks/<provider>": dead letters' source (replay finds the provider)
  std::string tenant;        // stamped on every row and dead letter; empty = none
  signature_check verify;    // empty = verification off (unsigned requests allowed)
  bool head_only = false;    // verify reads only the head: run before the body is read
  std::string verify_token;  // whatsapp: the GET hub.challenge handshake's token
  idempotency_from key_from = idempotency_from::provider;
  std::string key_name;      // the header, or the JSON pointer
  std::string fingerprint;   // what its verifier was built from (compared on reload, never logged)
};

// The sources by name.
using webhook_source_set = std::map<std::string, std::shared_ptr<const webhook_source>, std::less<>>;

struct collector_options {
  transform::normalize_options normalize;
  std::size_t max_records_per_request = 100000;
  // More rejected records than this in one request: the request is refused whole (400, nothing stored),
  // so that one body cannot write an unbounded number of dead letters.
  std::size_t max_rejections_per_request = 1000;
  int retry_after_seconds = 5;
  // Caller authentication of POST /v1/events: null or !enabled() = open (serve warns). Checked before the
  // body is looked at, so an unauthenticated body is never normalized or stored.
  std::shared_ptr<const auth::authenticator> auth;
  // With authentication on, GET /metrics takes the same credentials (any valid one, whatever its role).
  // /healthz and /readyz stay open: they say only up/ready, and load balancers probe them.
  bool protect_metrics = true;
  // Request-rate limits (429 with Retry-After); null = unlimited. Per client address: every POST.
  // Per credential: authenticated /v1/events requests.
  std::shared_ptr<auth::rate_limiter> address_limit;
  std::shared_ptr<auth::rate_limiter> credential_limit;
};

class collector final : public http::handler {
 public:
  collector(collector_options options, batch_sink& sink, metrics& m, std::function<bool()> database_ready);
  ~collector() override;

  // Swaps the webhook sources (routes, secrets, tenants) at once under live traffic (start, SIGHUP); a
  // request keeps the set it looked its source up in. Null = none.
  void set_sources(std::shared_ptr<const webhook_source_set> sources);
  std::shared_ptr<const webhook_source_set> sources() const { return sources_.load(); }

  // Route, method, rate limits and credentials, from the head alone (before the body is read).
  std::optional<http::response> screen(const http::request& head, http::admission& admitted) override;
  void handle(const http::request& req, http::respond_fn respond) override;

  // Swaps the authenticator under live traffic (SIGHUP); requests in flight keep the one they started with.
  void set_authenticator(std::shared_ptr<const auth::authenticator> a);

 private:
  std::optional<http::response> admit(const http::request& req, http::admission& admitted);
  std::string endpoint_of(std::string_view path) const;
  void handle_events(const http::request& req, http::respond_fn& respond, std::string_view endpoint,
                     std::string_view tenant = {});
  void handle_webhook(const http::request& req, http::respond_fn& respond, const webhook_source& source);
  // The request's idempotency key as `source` declares it (into `storage`); empty when it has none.
  std::string_view idempotency_key(const http::request& req, const webhook_source& source, std::string& storage);
  // 400 when the batch holds more rejections than max_rejections_per_request (then nothing is stored).
  std::optional<http::response> too_many_rejections(const transform::event_batch& batch) const;
  // Stamps `tenant` on every event and rejection of the batch that has none (the JWT's tenant claim, or the
  // webhook's).
  static void stamp_tenant(transform::event_batch& batch, std::string_view tenant);
  void handle_whatsapp_handshake(const http::request& req, http::respond_fn& respond, const webhook_source& source);
  // `on_unavailable`: called when the answer is a 503 (the log full or failing), before it is sent.
  void submit(const http::request& req, transform::event_batch& batch, http::respond_fn& respond,
              std::string_view endpoint, int status_on_success, std::function<void()> on_unavailable = {});
  transform::normalizer& thread_normalizer();

  collector_options options_;
  batch_sink& sink_;
  metrics& metrics_;
  std::function<bool()> database_ready_;
  std::atomic<std::shared_ptr<const webhook_source_set>> sources_;
  std::atomic<std::shared_ptr<const auth::authenticator>> auth_;
  prometheus::Family<prometheus::Counter>& auth_results_;
  prometheus::Family<prometheus::Counter>& rate_limited_;
  prometheus::Family<prometheus::Counter>& key_missing_;
};

// JSON string escaping for response bodies.
std::string json_quote(std::string_view s);

}  // namespace crm::ingest
