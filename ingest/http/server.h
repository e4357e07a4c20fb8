// The HTTP/1.1 listener (Boost.Beast on Asio). Boost stays inside server.cc: handlers see only the
// small request/response types below, so they compile fast and test without sockets.
//
// Threads: `io_threads` threads run one io_context; each connection is a session on its own strand.
// A session reads one request at a time (HTTP/1.1 keep-alive, no pipelining), with a header timeout, a
// whole-request timeout and a body limit (413); it hands the request to the handler and reads nothing
// more until the handler has responded, so a slow stage behind the handler pauses reading (backpressure)
// instead of queueing requests. Connections beyond max_connections are closed at accept. stop() stops
// accepting, lets in-flight requests finish and answer (with Connection: close), then ends run().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ingest/webhooks/signatures.h"

namespace crm::ingest::http {

struct server_options {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free one (see port())
  int io_threads = 2;
  std::size_t body_limit_bytes = 4 << 20;
  std::chrono::milliseconds header_timeout{5000};
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds idle_timeout{60000};
  std::size_t max_connections = 10000;
  std::chrono::milliseconds shutdown_grace{30000};
  // Both set = the listener speaks only HTTPS (TLS 1.2 or later; a plain HTTP request fails the handshake
  // and the connection is closed). PEM files; the chain file may hold intermediates after the certificate.
  std::string tls_cert_file;
  std::string tls_key_file;
};

// One request, valid until the handler's respond() has been called.
struct request {
  std::string_view method;
  std::string_view target;  // path and query, as sent
  std::string_view path;
  std::string_view query;   // without '?'
  std::string_view body;
  std::string_view content_type;
  std::string_view remote_address;
  const webhooks::header_map* headers = nullptr;
};

struct response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, e.g. Retry-After
};

// Called exactly once per request, from any thread.
using respond_fn = std::function<void(response)>;

// Must not block: anything slow (waiting for the durable log) completes later through respond.
class handler {
 public:
  virtual ~handler() = default;
  virtual void handle(const request& req, respond_fn respond) = 0;
};

struct server_stats {
  std::atomic<std::uint64_t> connections_accepted{0};
  std::atomic<std::uint64_t> connections_refused{0};
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> body_too_large{0};
  std::atomic<std::uint64_t> bad_requests{0};
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  std::atomic<std::uint64_t> connection_errors{0};  // connections closed by an exception in their handling
};

class server {
 public:
  server(server_options options, handler& h);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds and listens (throws std::runtime_error with the reason); after this port() is known.
  void listen();
  unsigned short port() const noexcept;
  // Runs the I/O threads until stop() has drained; call listen() first.
  void run();
  // Thread-safe, idempotent: graceful shutdown.
  void stop();
  const server_stats& stats() const noexcept;
  // Re-reads the certificate and key files (SIGHUP); new connections use them, open ones keep theirs.
  // Throws std::runtime_error (the old pair stays in force) when they cannot be loaded. No-op without TLS.
  void reload_tls();
  bool tls() const noexcept;

 struct impl;  // public so that the connection sessions in server.cc can reach it

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace crm::ingest::http
