// The server's internals shared by its translation units (Boost.Beast on Asio; handlers never include
// this): the body budget, server::impl (the accept loop and shutdown in server.cc) and the start of one
// connection (session.cc).
#pragma once

#include <utility>  // Boost 1.74's asio/awaitable.hpp misses it under GCC 12

#include "ingest/http/server.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>

namespace crm::ingest::http {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;
namespace ssl = boost::asio::ssl;

// Request body bytes held by all connections together (server_options::body_budget_bytes). A request
// takes its share as its bytes arrive (its body buffer as it grows; a decoded body as it is inflated), never
// for bytes only announced (a Content-Length, a chunk-size line: a client that sends heads and no bodies
// holds nothing), and gives all of it back when its response is written. An announced size that does not
// fit what is free at that moment is refused at once, before its bytes are read.
class body_budget {
 public:
  body_budget(std::size_t limit, std::atomic<std::uint64_t>& gauge) : limit_(limit), used_(gauge) {}
  bool take(std::uint64_t n) noexcept {
    auto cur = used_.load(std::memory_order_relaxed);
    do {
      if (n > limit_ || cur > limit_ - n) return false;
    } while (!used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
    return true;
  }
  void give(std::uint64_t n) noexcept { used_.fetch_sub(n, std::memory_order_relaxed); }
  // Whether `n` more bytes would fit now (takes nothing).
  bool fits(std::uint64_t n) const noexcept { return n <= limit_ && used_.load(std::memory_order_relaxed) <= limit_ - n; }

 private:
  const std::uint64_t limit_;
  std::atomic<std::uint64_t>& used_;
};

// What shutdown needs of a connection, plain or TLS.
class session_base {
 public:
  virtual ~session_base() = default;
  virtual void shutdown() = 0;
};

struct server::impl {
  impl(server_options o, handler& hd)
      : opt(std::move(o)),
        h(hd),
        acceptor(ioc),
        grace_timer(ioc),
        accept_timer(ioc),
        budget(opt.body_budget_bytes, stats.body_bytes_in_flight) {}

  void accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  void begin_shutdown();

  server_options opt;
  handler& h;
  net::io_context ioc;
  tcp::acceptor acceptor;
  net::steady_timer grace_timer;
  server_stats stats;
  std::atomic<bool> stopping{false};
  std::atomic<bool> stop_requested{false};
  unsigned short bound_port = 0;

  // Accept errors (EMFILE: no descriptor left): the next accept waits, doubling up to a second, and the
  // log says so at most every 10 s. Touched only by the one accept in flight at a time.
  net::steady_timer accept_timer;
  std::chrono::milliseconds accept_backoff{0};
  std::chrono::steady_clock::time_point accept_error_logged{};
  std::uint64_t accept_errors_unlogged = 0;

  body_budget budget;

  std::mutex sessions_mu;
  std::unordered_map<session_base*, std::weak_ptr<session_base>> sessions;
  // The TLS context new connections take (swapped by reload_tls); null = plain HTTP.
  std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls;
};

// Registers a connection just accepted with the server and starts serving it: plain HTTP when `tls` is
// null, else HTTPS (the TLS handshake first, within the header timeout).
void start_session(tcp::socket socket, server::impl& srv, std::shared_ptr<ssl::context> tls);

}  // namespace crm::ingest::http
