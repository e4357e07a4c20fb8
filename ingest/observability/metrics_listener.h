// The /metrics listener of the commands without an HTTP front of their own (`consume`, `write`), on
// metrics.listen: GET /metrics (the text exposition of `registry`), /healthz (200 while the process
// runs) and /readyz (200 while `ready` says so: the writers reach the primary). Bind it to a private
// address: it takes no credentials.
//
// Threads: one I/O thread of its own (an http::server), started by the constructor and stopped by the
// destructor; `before_scrape` runs on it before each /metrics answer (to copy a source's counters into
// the registry), so it must be thread-safe with respect to the source.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <prometheus/registry.h>

#include "ingest/http/server.h"

namespace crm::ingest::observability {

class metrics_listener final : public http::handler {
 public:
  metrics_listener(const std::string& listen, std::shared_ptr<prometheus::Registry> registry,
                   std::function<bool()> ready, std::function<void()> before_scrape = {});
  ~metrics_listener() override;

  unsigned short port() const noexcept { return server_->port(); }
  void handle(const http::request& req, http::respond_fn respond) override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::function<bool()> ready_;
  std::function<void()> before_scrape_;
  std::unique_ptr<http::server> server_;
  std::thread thread_;
};

}  // namespace crm::ingest::observability
