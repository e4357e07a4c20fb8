// One connection of the server, plain HTTP or HTTPS: reads a request at a time (head, screen, body),
// hands it to the handler and writes its answer; every limit and timeout of a connection is kept here.
#include "ingest/http/server_impl.h"

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <spdlog/spdlog.h>

#include "ingest/http/framing.h"
#include "ingest/http/request_reader.h"

namespace crm::ingest::http {

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
    parser_.reset();  // gives the body budget back
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
    release_request();  // the previous request's budget back before the next takes any
    parser_.emplace(header_limit_bytes, srv_.opt.body_limit_bytes, srv_.budget);
    parser_->header_limit(header_limit_bytes);
    if (requests_ > 0 && buffer_.size() == 0) {
      // A kept-alive connection may idle between requests; once the next request's first byte is in, its
      // head must be complete within the header timeout, like the first request's.
      lowest().expires_after(srv_.opt.idle_timeout);
      stream_.async_read_some(buffer_.prepare(beast::read_size(buffer_, read_buffer_bytes)),
                              guarded(&session<Stream>::on_first_byte));
      return;
    }
    read_head();
  }

  void on_first_byte(beast::error_code ec, std::size_t n) {
    if (ec) return on_error(ec);
    buffer_.commit(n);
    read_head();
  }

  // The head, or the rest of the request (whole), is parsed from the bytes the buffer holds already, at
  // once; only what has not arrived yet is read from the socket, under its timeout. (Beast's read
  // operations would complete through the I/O service even when the buffer holds the whole request.)
  void read_request(bool whole) {
    beast::error_code ec;
    if (parse_buffered(whole, ec)) return whole ? on_read(ec, 0) : on_header(ec, 0);
    if (ec) return on_error(ec);
    lowest().expires_after(whole ? srv_.opt.request_timeout : srv_.opt.header_timeout);
    if (whole) {
      bhttp::async_read(stream_, buffer_, *parser_, guarded(&session<Stream>::on_read));
    } else {
      bhttp::async_read_header(stream_, buffer_, *parser_, guarded(&session<Stream>::on_header));
    }
  }
  void read_head() { read_request(false); }
  void read_body() { read_request(true); }

  // Feeds the buffered bytes to the parser as Beast's read operations do: true once the head (whole: the
  // whole request) is parsed; false with `ec` clear when more bytes are needed, or with the parse error.
  bool parse_buffered(bool whole, beast::error_code& ec) {
    parser_->eager(whole);
    auto done = [&] { return whole ? parser_->is_done() : parser_->is_header_done(); };
    while (!done() && buffer_.size() > 0) {
      const auto used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == bhttp::error::need_more) {
        ec = {};
        return false;
      }
      if (ec || used == 0) return false;
    }
    return done();
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec) return on_error(ec);
    const auto& head = parser_->head();
    if (auto r = framing_refusal(head)) {
      srv_.stats.bad_requests++;
      return reply_and_close(r->status, r->message);
    }
    // The parser frames the body: where it did not read the Transfer-Encoding as chunked (a list it parses
    // differently, e.g. ";a, chunked"), the rest of the bytes would be read as the next request.
    if (head.count(bhttp::field::transfer_encoding) != 0 && !parser_->chunked()) {
      srv_.stats.bad_requests++;
      return reply_and_close(400, "Transfer-Encoding is not a valid list ending with chunked");
    }
    auto length = parser_->content_length();
    if (length && *length > srv_.opt.body_limit_bytes) {
      srv_.stats.body_too_large++;
      return reply_and_close(413, "request body of " + std::to_string(*length) + " bytes exceeds the limit of " +
                                      std::to_string(srv_.opt.body_limit_bytes));
    }
    std::string unsupported;
    auto coding = coding_of(head, unsupported);
    if (!coding) {
      srv_.stats.unsupported_encoding++;
      return reply_and_close(415, unsupported);
    }
    coding_ = *coding;
    bool expect_continue = false;
    if (auto it = head.find(bhttp::field::expect); it != head.end()) {
      if (head.count(bhttp::field::expect) != 1 || !iequals(trim({it->value().data(), it->value().size()}), "100-continue")) {
        srv_.stats.bad_requests++;
        return reply_and_close(417, "the only expectation understood is 100-continue");
      }
      expect_continue = head.version() >= 11;
    }

    // The handler screens the head (route, method, credentials, rate limits) before any body byte is read.
    describe_head();
    admission_ = {};
    std::optional<response> refused;
    try {
      refused = srv_.h.screen(req_, admission_);
    } catch (const std::exception& e) {
      spdlog::error("A request handler failed. path={} error={}", quoted(req_.path), e.what());
      refused = response{500, "application/json", json_error("internal error"), {}};
    }
    if (refused) {
      srv_.stats.refused_before_body++;
      return refuse(std::move(*refused));
    }
    // The body takes the budget as its bytes arrive (request_reader); one that could not fit now is refused
    // before it is read.
    if (length && *length > 0 && !srv_.budget.fits(*length)) return over_budget();

    const bool body_follows = parser_->chunked() || (length && *length > 0);
    if (expect_continue && body_follows && !parser_->is_done()) {
      // The client waits for this before sending the body (curl: ~1 s without it).
      static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
      lowest().expires_after(srv_.opt.request_timeout);
      net::async_write(stream_, net::buffer(go_on.data(), go_on.size()), guarded(&session<Stream>::on_continue_sent));
      return;
    }
    read_body();
  }

  void on_continue_sent(beast::error_code ec, std::size_t) {
    if (ec) return close();
    read_body();
  }

  void over_budget() {
    srv_.stats.body_budget_refusals++;
    response r{503, "application/json", json_error("the server holds too many request bodies right now; retry later"),
               {}};
    r.headers.emplace_back("Retry-After", "1");
    refuse(std::move(r));
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
      if (parser_ && parser_->over_budget()) return over_budget();
      srv_.stats.body_too_large++;
      return reply_and_close(413, "request body exceeds the limit of " + std::to_string(srv_.opt.body_limit_bytes) +
                                      " bytes");
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      srv_.stats.bad_requests++;
      std::string why = "the request header exceeds " + std::to_string(header_limit_bytes) + " bytes";
      if (parser_ && parser_->trailer_too_large()) {
        why = "the chunked body's trailer exceeds " + std::to_string(header_limit_bytes) + " bytes";
      } else if (parser_ && parser_->too_many_fields()) {
        why = "the request header has more than " + std::to_string(header_field_limit) + " fields";
      }
      return reply_and_close(431, why);
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
      srv_.stats.bad_requests++;
      return reply_and_close(400, "malformed HTTP request: " + ec.message());
    }
    close();
  }

  // The request line and header, as the handler sees them (the body is set once read).
  void describe_head() {
    const auto& msg = parser_->head();
    auto method = msg.method_string();
    auto target = msg.target();
    req_ = {};
    req_.method = std::string_view(method.data(), method.size());
    req_.target = std::string_view(target.data(), target.size());
    auto q = req_.target.find('?');
    req_.path = req_.target.substr(0, q);
    req_.query = q == std::string_view::npos ? std::string_view() : req_.target.substr(q + 1);
    auto ct = msg[bhttp::field::content_type];
    req_.content_type = std::string_view(ct.data(), ct.size());
    req_.remote_address = remote_;
    headers_.emplace(msg);
    req_.headers = &*headers_;
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec) return on_error(ec);
    busy_ = true;
    ++requests_;
    srv_.stats.requests++;
    lowest().expires_never();  // the handler's time is not the client's fault
    keep_alive_ = parser_->keep_alive();

    req_.body = parser_->body();
    if (coding_ != content_coding::identity) {
      auto reserve = [this](std::size_t n) { return parser_->reserve(n); };
      switch (inflate_body(parser_->body(), coding_, srv_.opt.body_limit_bytes, decoded_, reserve)) {
        case inflate_result::ok:
          req_.body = decoded_;
          break;
        case inflate_result::too_large:
          if (parser_->over_budget()) return over_budget();
          srv_.stats.body_too_large++;
          return reply_and_close(413, "the decoded request body exceeds the limit of " +
                                          std::to_string(srv_.opt.body_limit_bytes) + " bytes");
        case inflate_result::corrupt:
          srv_.stats.bad_requests++;
          return reply_and_close(400, coding_ == content_coding::gzip ? "the body is not valid gzip data"
                                                                      : "the body is not valid deflate data");
      }
    }
    req_.admitted = &admission_;

    try {
      srv_.h.handle(req_, [self = this->shared_from_this()](response r) {
        net::post(self->stream_.get_executor(),
                  [self, r = std::move(r)]() mutable { self->write(std::move(r)); });
      });
    } catch (const std::exception& e) {
      // Handlers do not throw on bad input; this is a bug or resource exhaustion.
      spdlog::error("A request handler failed. path={} error={}", quoted(req_.path), e.what());
      write(response{500, "application/json", json_error("internal error"), {}});
    }
  }

  // The request, its (decoded) body and, with the parser, its share of the body budget.
  void release_request() {
    decoded_.clear();
    decoded_.shrink_to_fit();
    req_ = {};
    headers_.reset();
    parser_.reset();
  }

  void write(response r) {
    // respond() was called, so a request whose body was read is done with: its body and its share of the
    // budget go now, before the answer can reach the client (whose next request, on any connection, must
    // find it free).
    if (!body_unread_) release_request();
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
    if (ec) return close();
    if (body_unread_) return linger();
    if (!res_.keep_alive()) return close();
    read_header();
  }

  // An answer to a request whose body is not (all) read: sent, then the connection is closed.
  void reply_and_close(unsigned status, const std::string& message) {
    refuse(response{status, "application/json", json_error(message), {}});
  }
  void refuse(response r) {
    keep_alive_ = false;
    body_unread_ = true;
    busy_ = true;
    write(std::move(r));
  }

  // After answering a request whose body was not read: stop sending, then read and drop what the client
  // still sends for a moment before closing. Closing at once with unread bytes in the socket makes the
  // kernel reset the connection, which can destroy the answer before the client reads it.
  void linger() {
    release_request();  // the budget back now, with a refused decoded body
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().expires_after(std::min<std::chrono::milliseconds>(srv_.opt.header_timeout, std::chrono::seconds(2)));
    drain();
  }
  void drain() {
    lowest().async_read_some(net::buffer(drain_, sizeof drain_), guarded(&session<Stream>::on_drained));
  }
  void on_drained(beast::error_code ec, std::size_t n) {
    drained_ += n;
    if (ec || drained_ > srv_.opt.body_limit_bytes) return close();
    drain();
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
  admission admission_;
  content_coding coding_ = content_coding::identity;
  std::string decoded_;
  server::impl& srv_;
  std::string remote_;
  std::uint64_t requests_ = 0;
  std::uint64_t drained_ = 0;
  char drain_[4096];
  bool busy_ = false;
  bool keep_alive_ = true;
  bool body_unread_ = false;
};

}  // namespace

void start_session(tcp::socket socket, server::impl& srv, std::shared_ptr<ssl::context> tls) {
  auto begin = [&](auto s) {
    {
      std::lock_guard lock(srv.sessions_mu);
      srv.sessions[s.get()] = s;
    }
    s->start();
  };
  if (tls) {
    begin(std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(std::move(socket), srv, std::move(tls)));
  } else {
    begin(std::make_shared<session<beast::tcp_stream>>(std::move(socket), srv));
  }
}

}  // namespace crm::ingest::http
