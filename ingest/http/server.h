// The HTTP/1.1 listener (Boost.Beast on Asio). Boost stays inside ingest/http: handlers see only the
// small request/response types below, so they compile fast and test without sockets.
//
// Threads: `io_threads` threads run one io_context; each connection is a session on its own strand.
// A session reads one request at a time (HTTP/1.1 keep-alive; pipelined requests wait in the socket):
// first the head (request line and header, within the header timeout, also for every later request on a
// kept-alive connection), which the handler screens before any body byte is read (a refusal is answered
// at once and the connection closed), then the body (within the request timeout; 413 over the body
// limit), which it hands to the handler; it reads nothing more until the handler has responded, so a slow
// stage behind the handler pauses reading (backpressure) instead of queueing requests. Body bytes of all
// connections together are bounded by body_budget_bytes (503 with Retry-After beyond). Framing follows
// RFC 9112 (a Transfer-Encoding not ending in chunked, or a missing Host, is 400 and closes).
// Connections beyond max_connections are closed at accept; accept errors (no file descriptor left) back
// off instead of spinning. stop() stops accepting, lets in-flight requests finish and answer (with
// Connection: close), then ends run().
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
  // Request body bytes held by all connections together (declared Content-Length, chunks as they come,
  // decoded Content-Encoding); a request that would exceed it gets 503 with Retry-After.
  std::size_t body_budget_bytes = std::size_t{256} << 20;
  std::chrono::milliseconds shutdown_grace{30000};
  // Both set = the listener speaks only HTTPS (TLS 1.2 or later; a plain HTTP request fails the handshake
  // and the connection is closed). PEM files; the chain file may hold intermediates after the certificate.
  std::string tls_cert_file;
  std::string tls_key_file;
};

// What a handler's screen() learned from a request's head, handed to its handle() with the same request.
struct admission {
  std::string tenant;      // the credential's tenant; empty = none
  std::string credential;  // who, for rate limits ("key:<name>", "jwt:<iss>/<sub>"); empty = not authenticated
  std::shared_ptr<const void> route;  // what the handler resolved the path to (kept for handle()); may be null
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
  const admission* admitted = nullptr;  // what screen() stored (handle() only)
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
  // Called once a request's head has arrived, before any body byte is read (req.body is empty). A
  // response refuses the request there: it is sent at once and the connection closed, the body unread.
  // nullopt admits it; `admitted` is then handed to handle(). Called from any I/O thread.
  virtual std::optional<response> screen(const request& head, admission& admitted) {
    (void)head;
    (void)admitted;
    return std::nullopt;
  }
  virtual void handle(const request& req, respond_fn respond) = 0;
};

// The server's own counters (exported as crm_ingest_http_* by serve).
struct server_stats {
  std::atomic<std::uint64_t> connections_accepted{0};
  std::atomic<std::uint64_t> connections_refused{0};  // over max_connections, closed at accept
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> timeouts{0};              // header, request or idle timeout
  std::atomic<std::uint64_t> body_too_large{0};        // 413 (from Content-Length, or while reading)
  std::atomic<std::uint64_t> bad_requests{0};          // 400/417/431/501: malformed or refused framing
  std::atomic<std::uint64_t> unsupported_encoding{0};  // 415: a Content-Encoding other than gzip/deflate
  std::atomic<std::uint64_t> refused_before_body{0};   // screen() refused the head
  std::atomic<std::uint64_t> body_budget_refusals{0};  // 503: body_budget_bytes exhausted
  std::atomic<std::uint64_t> body_bytes_in_flight{0};  // gauge: held against body_budget_bytes
  std::atomic<std::uint64_t> tls_handshake_failures{0};
  std::atomic<std::uint64_t> accept_errors{0};
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

 struct impl;  // public so that the connection sessions (session.cc) can reach it

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace crm::ingest::http
