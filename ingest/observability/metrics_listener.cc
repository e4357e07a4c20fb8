#include "ingest/observability/metrics_listener.h"

#include <pthread.h>
#include <sstream>

#include <prometheus/text_serializer.h>

namespace crm::ingest::observability {

metrics_listener::metrics_listener(const std::string& listen, std::shared_ptr<prometheus::Registry> registry,
                                   std::function<bool()> ready, std::function<void()> before_scrape)
    : registry_(std::move(registry)), ready_(std::move(ready)), before_scrape_(std::move(before_scrape)) {
  http::server_options o;
  o.listen = listen;
  o.io_threads = 1;
  o.body_limit_bytes = 4096;
  o.max_connections = 64;
  o.shutdown_grace = std::chrono::milliseconds(1000);
  server_ = std::make_unique<http::server>(o, *this);
  server_->listen();  // throws with the reason (address in use...): a start-up error
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "crm-metrics");
    server_->run();
  });
}

metrics_listener::~metrics_listener() {
  server_->stop();
  thread_.join();
}

void metrics_listener::handle(const http::request& req, http::respond_fn respond) {
  http::response r;
  r.content_type = "text/plain; charset=utf-8";
  if (req.method != "GET") {
    r.status = 405;
    r.body = "GET only\n";
  } else if (req.path == "/metrics") {
    if (before_scrape_) before_scrape_();
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, registry_->Collect());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = out.str();
  } else if (req.path == "/healthz") {
    r.body = "ok\n";
  } else if (req.path == "/readyz") {
    const bool ok = !ready_ || ready_();
    r.status = ok ? 200 : 503;
    r.body = ok ? "ready\n" : "not ready: the writers do not reach the primary\n";
  } else {
    r.status = 404;
    r.body = "not found\n";
  }
  respond(std::move(r));
}

}  // namespace crm::ingest::observability
