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

// Normalizes one provider's webhook body into `out` (events and rejections). Returns false with a
// reason when the body as a whole is unusable (400).
using provider_normalizer = std::function<bool(std::string_view body, const http::request& req,
                                               transform::normalizer& norm, transform::timestamp_us received_at,
                                               transform::event_batch& out, std::string& error)>;

// Checks a provider's signature; empty result = accepted.
using signature_check = std::function<webhooks::verify_result(const http::request& req)>;

struct provider_endpoint {
  provider_normalizer normalize;
  signature_check verify;       // on the whole request; empty = verification off
  signature_check verify_head;  // what can be refused from the head alone, before the body is read; may be empty
};

struct collector_options {
  transform::normalize_options normalize;
  std::size_t max_records_per_request = 100000;
  // More rejected records than this in one request: the request is refused whole (400, nothing stored),
  // so that one body cannot write an unbounded number of dead letters.
  std::size_t max_rejections_per_request = 1000;
  int retry_after_seconds = 5;
  std::string whatsapp_verify_token;  // for GET /v1/webhooks/whatsapp
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
  // Tenant stamped on every row of a provider's webhook (webhooks.<name>.tenant_id); absent = none.
  std::map<std::string, std::string, std::less<>> webhook_tenants;
};

class collector final : public http::handler {
 public:
  collector(collector_options options, batch_sink& sink, metrics& m, std::function<bool()> database_ready);
  ~collector() override;

  // Registers POST /v1/webhooks/<name>.
  void add_provider(const std::string& name, provider_endpoint endpoint);

  // Route, method, rate limits and credentials, from the head alone (before the body is read).
  std::optional<http::response> screen(const http::request& head, http::admission& admitted) override;
  void handle(const http::request& req, http::respond_fn respond) override;

  // Swaps the authenticator under live traffic (SIGHUP); requests in flight keep the one they started with.
  void set_authenticator(std::shared_ptr<const auth::authenticator> a);

 private:
  std::optional<http::response> admit(const http::request& req, http::admission& admitted);
  std::string endpoint_of(std::string_view path) const;
  void handle_events(const http::request& req, http::respond_fn& respond, const std::string& endpoint,
                     std::string_view tenant = {});
  void handle_webhook(const http::request& req, http::respond_fn& respond, const std::string& name);
  // 400 when the batch holds more rejections than max_rejections_per_request (then nothing is stored).
  std::optional<http::response> too_many_rejections(const transform::event_batch& batch) const;
  // Stamps `tenant` on every event and rejection of the batch that has none (the JWT's tenant claim, or the
  // webhook's).
  static void stamp_tenant(transform::event_batch& batch, std::string_view tenant);
  void handle_whatsapp_handshake(const http::request& req, http::respond_fn& respond);
  void submit(const http::request& req, transform::event_batch& batch, http::respond_fn& respond,
              const std::string& endpoint, int status_on_success);
  transform::normalizer& thread_normalizer();

  collector_options options_;
  batch_sink& sink_;
  metrics& metrics_;
  std::function<bool()> database_ready_;
  std::map<std::string, provider_endpoint, std::less<>> providers_;
  std::atomic<std::shared_ptr<const auth::authenticator>> auth_;
  prometheus::Family<prometheus::Counter>& auth_results_;
  prometheus::Family<prometheus::Counter>& rate_limited_;
};

// JSON string escaping for response bodies.
std::string json_quote(std::string_view s);

}  // namespace crm::ingest
