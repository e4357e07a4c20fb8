// The listener: TLS contexts, the accept loop (connection limit, back-off on accept errors), the I/O
// threads and graceful shutdown. One connection's reading and writing is in session.cc.
#include "ingest/http/server_impl.h"

#include <pthread.h>
#include <cstdio>
#include <algorithm>
#include <stdexcept>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <spdlog/spdlog.h>

namespace crm::ingest::http {

namespace {

// A server context from PEM files: TLS 1.2 or later only, no compression, no renegotiation.
std::shared_ptr<ssl::context> load_tls_context(const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_compression |
                   ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2: ephemeral ECDHE key exchange with AEAD ciphers only (forward secrecy; no static RSA, no CBC).
  // TLS 1.3's suites are all forward-secret.
  if (SSL_CTX_set_cipher_list(ctx->native_handle(),
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
    throw std::runtime_error("the TLS library offers none of the forward-secret cipher suites");
  }
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) throw std::runtime_error("cannot load the TLS certificate chain " + cert_file + ": " + ec.message());
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) throw std::runtime_error("cannot load the TLS private key " + key_file + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw std::runtime_error("the TLS private key " + key_file + " does not match the certificate " + cert_file);
  }
  return ctx;
}

// Runs an io_context until it has no more work. An exception escaping a completion handler (a bug, or an
// allocation failure) unwinds that handler, which owns its connection: the connection is closed and the
// I/O thread goes back to serving the others.
void run_io_context(net::io_context& ioc, server_stats& stats) {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      stats.connection_errors++;
      spdlog::error("A connection failed with an exception; it was closed. error={}", e.what());
    } catch (...) {
      stats.connection_errors++;
      spdlog::error("A connection failed with an unknown exception; it was closed.");
    }
  }
}

}  // namespace

void server::impl::accept() {
  acceptor.async_accept(net::make_strand(ioc),
                        [this](beast::error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void server::impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec) {
    if (ec == net::error::operation_aborted || stopping) return;
    // Typically EMFILE/ENFILE: the pending connection stays in the backlog and accepting again at once
    // fails again at once. Wait (10 ms, doubling to 1 s), count every failure, log a line at most every 10 s.
    stats.accept_errors++;
    ++accept_errors_unlogged;
    accept_backoff = std::clamp(accept_backoff * 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    const auto now = std::chrono::steady_clock::now();
    if (now - accept_error_logged >= std::chrono::seconds(10)) {
      spdlog::warn("Accepting connections failed; retrying with back-off. error={} failures={} retry_in_ms={}",
                   ec.message(), accept_errors_unlogged, accept_backoff.count());
      accept_error_logged = now;
      accept_errors_unlogged = 0;
    }
    accept_timer.expires_after(accept_backoff);
    accept_timer.async_wait([this](beast::error_code e) {
      if (!e && !stopping) accept();
    });
    return;
  }
  accept_backoff = std::chrono::milliseconds(0);
  if (stats.connections_open.load() >= opt.max_connections) {
    stats.connections_refused++;
    beast::error_code ignored;
    socket.close(ignored);
  } else {
    stats.connections_accepted++;
    stats.connections_open++;
    // Each answer goes out in one write; Nagle's algorithm would hold it back behind the client's delayed
    // ACK of the previous one on a kept-alive connection.
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::shared_ptr<ssl::context> ctx;
    {
      std::lock_guard lock(tls_mu);
      ctx = tls;
    }
    start_session(std::move(socket), *this, std::move(ctx));
  }
  if (!stopping) accept();
}

void server::impl::begin_shutdown() {
  stopping = true;
  beast::error_code ec;
  acceptor.close(ec);
  accept_timer.cancel();
  std::vector<std::shared_ptr<session_base>> live;
  {
    std::lock_guard lock(sessions_mu);
    for (auto& [p, w] : sessions) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->shutdown();
  if (live.empty()) return;  // the io_context runs out of work and run() returns
  // In-flight requests get the grace period to answer; then everything is cut.
  grace_timer.expires_after(opt.shutdown_grace);
  grace_timer.async_wait([this](beast::error_code e) {
    if (!e) {
      spdlog::warn("Shutdown grace period over; closing the remaining connections.");
      ioc.stop();
    }
  });
}

server::server(server_options options, handler& h) : impl_(std::make_unique<impl>(std::move(options), h)) {
  if (impl_->opt.tls_cert_file.empty() != impl_->opt.tls_key_file.empty()) {
    throw std::runtime_error("TLS needs both a certificate file and a key file");
  }
  if (!impl_->opt.tls_cert_file.empty()) impl_->tls = load_tls_context(impl_->opt.tls_cert_file, impl_->opt.tls_key_file);
}

void server::reload_tls() {
  if (!tls()) return;
  auto fresh = load_tls_context(impl_->opt.tls_cert_file, impl_->opt.tls_key_file);
  std::lock_guard lock(impl_->tls_mu);
  impl_->tls = std::move(fresh);
}

bool server::tls() const noexcept { return !impl_->opt.tls_cert_file.empty(); }

server::~server() = default;

void server::listen() {
  auto& i = *impl_;
  auto colon = i.opt.listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("listen address must be host:port: " + i.opt.listen);
  std::string host = i.opt.listen.substr(0, colon);
  std::string port = i.opt.listen.substr(colon + 1);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  tcp::resolver resolver(i.ioc);
  beast::error_code ec;
  auto results = resolver.resolve(host, port, tcp::resolver::passive, ec);
  if (ec || results.empty()) throw std::runtime_error("cannot resolve " + i.opt.listen + ": " + ec.message());
  tcp::endpoint ep = results.begin()->endpoint();
  i.acceptor.open(ep.protocol(), ec);
  if (!ec) i.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) i.acceptor.bind(ep, ec);
  if (!ec) i.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + i.opt.listen + ": " + ec.message());
  i.bound_port = i.acceptor.local_endpoint().port();
}

unsigned short server::port() const noexcept { return impl_->bound_port; }

void server::run() {
  auto& i = *impl_;
  i.accept();
  std::vector<std::thread> threads;
  for (int t = 1; t < std::max(1, i.opt.io_threads); ++t) {
    threads.emplace_back([&i, t] {
      char name[16];  // the calling thread keeps its own name
      std::snprintf(name, sizeof name, "crm-http-%d", t);
      pthread_setname_np(pthread_self(), name);
      run_io_context(i.ioc, i.stats);
    });
  }
  run_io_context(i.ioc, i.stats);
  for (auto& t : threads) t.join();
}

void server::stop() {
  auto& i = *impl_;
  if (i.stop_requested.exchange(true)) return;
  net::post(i.ioc, [&i] { i.begin_shutdown(); });
}

const server_stats& server::stats() const noexcept { return impl_->stats; }

}  // namespace crm::ingest::http
