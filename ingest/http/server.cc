// The only translation unit that includes Beast (17-30 s to compile each).
#include <utility>  // Boost 1.74's asio/awaitable.hpp misses it under GCC 12

#include "ingest/http/server.h"

#include "transform/json_text.h"

#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <spdlog/spdlog.h>

namespace crm::ingest::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;
namespace ssl = boost::asio::ssl;

namespace {

class fields_view final : public webhooks::header_map {
 public:
  explicit fields_view(const bhttp::fields& f) : fields_(f) {}
  std::optional<std::string_view> find(std::string_view name) const noexcept override {
    auto it = fields_.find(beast::string_view(name.data(), name.size()));  // case-insensitive
    if (it == fields_.end()) return std::nullopt;
    auto v = it->value();
    return std::string_view(v.data(), v.size());
  }

 private:
  const bhttp::fields& fields_;
};

// A server context from PEM files: TLS 1.2 or later only, no compression, no renegotiation.
std::shared_ptr<ssl::context> load_tls_context(const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_compression |
                   ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION);
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

std::string json_error(std::string_view message) {
  std::string out = "{\"error\":";
  transform::append_json_string(out, message);
  return out + "}";
}

// The request parser: Beast's basic_parser with our own storage, so that nothing a client sends can make
// it throw, and a chunked body's trailer fields are never read as header fields. (Beast 1.74's
// request_parser merges trailers into the header and throws std::length_error for a field of 64 KiB or
// more, out of the read and out of io_context::run.) Trailer fields are counted against the header
// limit and discarded; a request with more is refused (431).
class request_reader final : public bhttp::basic_parser<true> {
 public:
  explicit request_reader(std::size_t header_limit) : field_limit_(header_limit) {}

  const bhttp::request_header<>& head() const noexcept { return head_; }
  const std::string& body() const noexcept { return body_; }
  bool trailer_too_large() const noexcept { return trailer_too_large_; }

 private:
  void on_request_impl(bhttp::verb method, beast::string_view method_str, beast::string_view target, int version,
                       beast::error_code& ec) override {
    try {
      if (method != bhttp::verb::unknown) head_.method(method);
      else head_.method_string(method_str);
      head_.target(target);
      head_.version(version);
    } catch (const std::exception&) {
      ec = bhttp::error::bad_target;
    }
  }

  void on_response_impl(int, beast::string_view, int, beast::error_code& ec) override { ec = bhttp::error::bad_version; }

  void on_field_impl(bhttp::field name, beast::string_view name_string, beast::string_view value,
                     beast::error_code& ec) override {
    if (in_trailer_) {
      // Never merged into the header: a trailer cannot authenticate, sign or re-type a request.
      trailer_bytes_ += name_string.size() + value.size() + 4;
      if (trailer_bytes_ > field_limit_) {
        trailer_too_large_ = true;
        ec = bhttp::error::header_limit;
      }
      return;
    }
    try {
      head_.insert(name, name_string, value);
    } catch (const std::exception&) {
      ec = bhttp::error::header_limit;  // Beast refuses field values of 64 KiB or more by throwing
    }
  }

  void on_header_impl(beast::error_code&) override { in_trailer_ = true; }

  void on_body_init_impl(const boost::optional<std::uint64_t>& length, beast::error_code& ec) override {
    if (length) {
      try {
        body_.reserve(static_cast<std::size_t>(*length));
      } catch (const std::exception&) {
        ec = bhttp::error::body_limit;
      }
    }
  }

  std::size_t on_body_impl(beast::string_view data, beast::error_code& ec) override { return append(data, ec); }

  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, beast::error_code& ec) override {
    return append(data, ec);
  }

  void on_finish_impl(beast::error_code&) override {}

  std::size_t append(beast::string_view data, beast::error_code& ec) {
    try {
      body_.append(data.data(), data.size());
    } catch (const std::exception&) {
      ec = bhttp::error::body_limit;
      return 0;
    }
    return data.size();
  }

  bhttp::request_header<> head_;
  std::string body_;
  std::size_t field_limit_;
  std::size_t trailer_bytes_ = 0;
  bool in_trailer_ = false;
  bool trailer_too_large_ = false;
};

// The most a request's header (and, separately, its trailer) may take; Beast's own fields cannot hold a
// value of 64 KiB anyway. The read buffer holds at most this plus a little: what a client sends beyond
// waits in the socket, so pipelined requests and chunk-size lines cannot grow memory either.
constexpr std::size_t header_limit_bytes = 64 * 1024;
constexpr std::size_t read_buffer_bytes = header_limit_bytes + 16 * 1024;

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

// What shutdown needs of a connection, plain or TLS.
class session_base {
 public:
  virtual ~session_base() = default;
  virtual void shutdown() = 0;
};

struct server::impl {
  impl(server_options o, handler& hd) : opt(std::move(o)), h(hd), acceptor(ioc), grace_timer(ioc) {}

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

  std::mutex sessions_mu;
  std::unordered_map<session_base*, std::weak_ptr<session_base>> sessions;
  // The TLS context new connections take (swapped by reload_tls); null = plain HTTP.
  std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls;
};

// One connection. Stream is beast::tcp_stream (plain HTTP) or beast::ssl_stream<beast::tcp_stream> (HTTPS,
// which first completes the TLS handshake within the header timeout).
template <class Stream>
class session final : public session_base, public std::enable_shared_from_this<session<Stream>> {
 public:
  session(tcp::socket&& socket, server::impl& srv)
      : stream_(std::move(socket)), buffer_(read_buffer_bytes), srv_(srv) {
    remember_peer();
  }
  session(tcp::socket&& socket, server::impl& srv, std::shared_ptr<ssl::context> tls)
      : tls_(std::move(tls)), stream_(std::move(socket), *tls_), buffer_(read_buffer_bytes), srv_(srv) {
    remember_peer();
  }

  ~session() {
    srv_.stats.connections_open--;
    bool last = false;
    {
      std::lock_guard lock(srv_.sessions_mu);
      srv_.sessions.erase(this);
      last = srv_.sessions.empty();
    }
    // The last connection gone during shutdown: nothing is left to wait for.
    if (last && srv_.stopping) net::post(srv_.ioc, [&srv = srv_] { srv.grace_timer.cancel(); });
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (is_tls) {
        beast::get_lowest_layer(self->stream_).expires_after(self->srv_.opt.header_timeout);
        self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) {
            self->srv_.stats.tls_handshake_failures++;
            return self->close();
          }
          self->read_header();
        });
      } else {
        self->read_header();
      }
    });
  }

  // Called on shutdown: an idle connection is closed now, a busy one after its response.
  void shutdown() override {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if (!self->busy_) self->close();
    });
  }

 private:
  // A completion handler of this connection: an exception thrown by its work ends this connection only.
  auto guarded(void (session::*fn)(beast::error_code, std::size_t)) {
    return [self = this->shared_from_this(), fn](beast::error_code ec, std::size_t n) {
      try {
        (self.get()->*fn)(ec, n);
      } catch (const std::exception& e) {
        self->srv_.stats.connection_errors++;
        spdlog::error("A connection failed with an exception; it was closed. error={}", e.what());
        self->close();
      }
    };
  }

  void read_header() {
    if (srv_.stopping) return close();
    parser_.emplace(header_limit_bytes);
    parser_->body_limit(srv_.opt.body_limit_bytes);
    parser_->header_limit(header_limit_bytes);
    // The first request must arrive within the header timeout; later ones may idle longer.
    lowest().expires_after(requests_ == 0 ? srv_.opt.header_timeout : srv_.opt.idle_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             guarded(&session<Stream>::on_header));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec) return on_error(ec);
    auto length = parser_->content_length();
    if (length && *length > srv_.opt.body_limit_bytes) {
      srv_.stats.body_too_large++;
      return reply_and_close(413, "request body of " + std::to_string(*length) + " bytes exceeds the limit of " +
                                      std::to_string(srv_.opt.body_limit_bytes));
    }
    lowest().expires_after(srv_.opt.request_timeout);
    bhttp::async_read(stream_, buffer_, *parser_, guarded(&session<Stream>::on_read));
  }

  void on_error(beast::error_code ec) {
    if (ec == beast::error::timeout) {
      srv_.stats.timeouts++;
      return close();  // the stream is already closed by its timer
    }
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
        ec == net::error::operation_aborted) {
      return close();
    }
    if (ec == bhttp::error::body_limit) {
      srv_.stats.body_too_large++;
      return reply_and_close(413, "request body exceeds the limit of " + std::to_string(srv_.opt.body_limit_bytes) +
                                      " bytes");
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      srv_.stats.bad_requests++;
      return reply_and_close(431, parser_ && parser_->trailer_too_large()
                                      ? "the chunked body's trailer exceeds " + std::to_string(header_limit_bytes) +
                                            " bytes"
                                      : "the request header exceeds " + std::to_string(header_limit_bytes) + " bytes");
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
      srv_.stats.bad_requests++;
      return reply_and_close(400, "malformed HTTP request: " + ec.message());
    }
    close();
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec) return on_error(ec);
    busy_ = true;
    ++requests_;
    srv_.stats.requests++;
    lowest().expires_never();  // the handler's time is not the client's fault

    const auto& msg = parser_->head();
    auto method = msg.method_string();
    auto target = msg.target();
    req_.method = std::string_view(method.data(), method.size());
    req_.target = std::string_view(target.data(), target.size());
    auto q = req_.target.find('?');
    req_.path = req_.target.substr(0, q);
    req_.query = q == std::string_view::npos ? std::string_view() : req_.target.substr(q + 1);
    req_.body = parser_->body();
    auto ct = msg[bhttp::field::content_type];
    req_.content_type = std::string_view(ct.data(), ct.size());
    req_.remote_address = remote_;
    headers_.emplace(msg);
    req_.headers = &*headers_;
    keep_alive_ = parser_->keep_alive();

    try {
      srv_.h.handle(req_, [self = this->shared_from_this()](response r) {
        net::post(self->stream_.get_executor(),
                  [self, r = std::move(r)]() mutable { self->write(std::move(r)); });
      });
    } catch (const std::exception& e) {
      // Handlers do not throw on bad input; this is a bug or resource exhaustion.
      spdlog::error("A request handler failed. path={} error={}", req_.path, e.what());
      write(response{500, "application/json", json_error("internal error"), {}});
    }
  }

  void write(response r) {
    res_ = {};
    res_.version(11);
    res_.result(r.status);
    res_.set(bhttp::field::server, "crm-ingest");
    res_.set(bhttp::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) res_.set(k, v);
    res_.body() = std::move(r.body);
    res_.keep_alive(keep_alive_ && !srv_.stopping && r.status != 413);
    res_.prepare_payload();
    lowest().expires_after(srv_.opt.request_timeout);
    bhttp::async_write(stream_, res_, guarded(&session<Stream>::on_write));
  }

  void on_write(beast::error_code ec, std::size_t) {
    busy_ = false;
    headers_.reset();
    if (ec || !res_.keep_alive()) return close();
    read_header();
  }

  void reply_and_close(unsigned status, const std::string& message) {
    keep_alive_ = false;
    busy_ = true;
    write(response{status, "application/json", json_error(message), {}});
  }

  void close() {
    // TLS: the TCP connection is closed without a close_notify; every response carries its length, so a
    // client cannot mistake a truncation for a complete answer.
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    lowest().close();
  }

  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
  void remember_peer() {
    beast::error_code ec;
    auto ep = lowest().socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
  }

  std::shared_ptr<ssl::context> tls_;  // kept alive while the connection uses it (before stream_)
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<request_reader> parser_;
  std::optional<fields_view> headers_;
  bhttp::response<bhttp::string_body> res_;
  request req_;
  server::impl& srv_;
  std::string remote_;
  std::uint64_t requests_ = 0;
  bool busy_ = false;
  bool keep_alive_ = true;
};

void server::impl::accept() {
  acceptor.async_accept(net::make_strand(ioc),
                        [this](beast::error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void server::impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec) {
    if (ec == net::error::operation_aborted || stopping) return;
    spdlog::warn("Accepting a connection failed. error={}", ec.message());
  } else if (stats.connections_open.load() >= opt.max_connections) {
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
    auto begin = [&](auto s) {
      {
        std::lock_guard lock(sessions_mu);
        sessions[s.get()] = s;
      }
      s->start();
    };
    if (ctx) {
      begin(std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(std::move(socket), *this, std::move(ctx)));
    } else {
      begin(std::make_shared<session<beast::tcp_stream>>(std::move(socket), *this));
    }
  }
  if (!stopping) accept();
}

void server::impl::begin_shutdown() {
  stopping = true;
  beast::error_code ec;
  acceptor.close(ec);
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
  for (int t = 1; t < std::max(1, i.opt.io_threads); ++t) threads.emplace_back([&] { run_io_context(i.ioc, i.stats); });
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
