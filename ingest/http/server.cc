// The only translation unit that includes Beast (17-30 s to compile each).
#include <utility>  // Boost 1.74's asio/awaitable.hpp misses it under GCC 12

#include "ingest/http/server.h"

#include "transform/text/json_text.h"

#include <algorithm>
#include <cctype>
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
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <spdlog/spdlog.h>
#include <zlib.h>

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

std::string json_error(std::string_view message) {
  std::string out = "{\"error\":";
  transform::append_json_string(out, message);
  return out + "}";
}

// Request body bytes held by all connections together (server_options::body_budget_bytes). A request
// takes its share when its size becomes known (the Content-Length at once; a chunk as its size line
// arrives; a decoded body as it is inflated) and gives all of it back when its response is written.
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

 private:
  const std::uint64_t limit_;
  std::atomic<std::uint64_t>& used_;
};

// One request's share of the budget, returned when the request is done.
class budget_lease {
 public:
  explicit budget_lease(body_budget& b) : budget_(b) {}
  ~budget_lease() { budget_.give(held_); }
  budget_lease(const budget_lease&) = delete;
  budget_lease& operator=(const budget_lease&) = delete;
  bool grow(std::uint64_t n) noexcept {
    if (!budget_.take(n)) return false;
    held_ += n;
    return true;
  }

 private:
  body_budget& budget_;
  std::uint64_t held_ = 0;
};

// The request parser: Beast's basic_parser with our own storage, so that nothing a client sends can make
// it throw, and a chunked body's trailer fields are never read as header fields. (Beast 1.74's
// request_parser merges trailers into the header and throws std::length_error for a field of 64 KiB or
// more, out of the read and out of io_context::run.) Trailer fields are counted against the header
// limit and discarded; a request with more is refused (431). Chunked bodies take their budget chunk by
// chunk (a declared Content-Length is taken by the session before the body is read).
class request_reader final : public bhttp::basic_parser<true> {
 public:
  request_reader(std::size_t header_limit, body_budget& budget) : field_limit_(header_limit), lease_(budget) {}

  const bhttp::request_header<>& head() const noexcept { return head_; }
  const std::string& body() const noexcept { return body_; }
  bool trailer_too_large() const noexcept { return trailer_too_large_; }
  bool over_budget() const noexcept { return over_budget_; }
  // Takes `n` more bytes of the budget for this request; false (nothing taken) when it is exhausted.
  bool reserve(std::uint64_t n) noexcept {
    if (lease_.grow(n)) return true;
    over_budget_ = true;
    return false;
  }

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
        body_.reserve(static_cast<std::size_t>(*length));  // within the body limit and the budget taken
      } catch (const std::exception&) {
        ec = bhttp::error::body_limit;
      }
    }
  }

  std::size_t on_body_impl(beast::string_view data, beast::error_code& ec) override { return append(data, ec); }

  void on_chunk_header_impl(std::uint64_t size, beast::string_view, beast::error_code& ec) override {
    if (size > 0 && !reserve(size)) ec = bhttp::error::body_limit;
  }

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
  budget_lease lease_;
  std::size_t trailer_bytes_ = 0;
  bool in_trailer_ = false;
  bool trailer_too_large_ = false;
  bool over_budget_ = false;
};

// The most a request's header (and, separately, its trailer) may take; Beast's own fields cannot hold a
// value of 64 KiB anyway. The read buffer holds at most this plus a little: what a client sends beyond
// waits in the socket, so pipelined requests and chunk-size lines cannot grow memory either.
constexpr std::size_t header_limit_bytes = 64 * 1024;
constexpr std::size_t read_buffer_bytes = header_limit_bytes + 16 * 1024;
// What an error body may quote of the client's input.
constexpr std::size_t quote_bytes = 64;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// A short, printable prefix of client input for an error body.
std::string quoted(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, quote_bytes)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  if (s.size() > quote_bytes) out += "...";
  return out;
}

// Every element of the comma-separated lists in all fields `f` (parameters after ';' cut off, trimmed).
std::vector<std::string_view> list_elements(const bhttp::request_header<>& head, bhttp::field f) {
  std::vector<std::string_view> out;
  auto range = head.equal_range(f);
  for (auto it = range.first; it != range.second; ++it) {
    std::string_view v(it->value().data(), it->value().size());
    while (!v.empty()) {
      auto comma = v.find(',');
      auto item = trim(v.substr(0, comma));
      // An empty element is allowed (RFC 9110 section 5.6.1); parameters without a token (";a") are an
      // element too, an empty and so unsupported one, never skipped.
      if (!item.empty()) out.push_back(trim(item.substr(0, item.find(';'))));
      v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    }
  }
  return out;
}

struct refusal {
  unsigned status;
  std::string message;
};

// RFC 9112 framing of a request head: a Transfer-Encoding must end with chunked (section 6.3: otherwise
// the body length cannot be determined, and the request could smuggle another one), chunked alone is all
// we decode (501 for other transfer codings), an HTTP/1.0 request has none (section 6.1), and an HTTP/1.1
// request has exactly one Host (section 3.2).
std::optional<refusal> framing_refusal(const bhttp::request_header<>& head) {
  const auto hosts = head.count(bhttp::field::host);
  if (hosts > 1) return refusal{400, "more than one Host header"};
  if (hosts == 0 && head.version() >= 11) return refusal{400, "an HTTP/1.1 request needs a Host header"};
  if (head.count(bhttp::field::transfer_encoding) == 0) return std::nullopt;
  if (head.version() < 11) return refusal{400, "Transfer-Encoding in an HTTP/1.0 request"};
  const auto codings = list_elements(head, bhttp::field::transfer_encoding);
  for (auto c : codings) {
    if (c.empty()) return refusal{400, "Transfer-Encoding is not a valid list (a parameter without a coding)"};
  }
  if (codings.empty() || !iequals(codings.back(), "chunked")) {
    return refusal{400, "Transfer-Encoding must end with chunked"};
  }
  for (std::size_t i = 0; i + 1 < codings.size(); ++i) {
    if (iequals(codings[i], "chunked")) return refusal{400, "chunked is applied more than once"};
    return refusal{501, "transfer coding \"" + quoted(codings[i]) + "\" is not supported (only chunked)"};
  }
  return std::nullopt;
}

enum class content_coding { identity, gzip, deflate };

// The request's Content-Encoding: none, identity, gzip (x-gzip) or deflate, one coding at most.
std::optional<content_coding> coding_of(const bhttp::request_header<>& head, std::string& unsupported) {
  const auto codings = list_elements(head, bhttp::field::content_encoding);
  content_coding out = content_coding::identity;
  std::size_t applied = 0;
  for (auto c : codings) {
    if (iequals(c, "identity")) continue;
    ++applied;
    if (iequals(c, "gzip") || iequals(c, "x-gzip")) out = content_coding::gzip;
    else if (iequals(c, "deflate")) out = content_coding::deflate;
    else {
      unsupported = "Content-Encoding \"" + quoted(c) + "\" is not supported (gzip or deflate)";
      return std::nullopt;
    }
  }
  if (applied > 1) {
    unsupported = "more than one Content-Encoding is not supported";
    return std::nullopt;
  }
  return out;
}

enum class inflate_result { ok, too_large, corrupt };

// Decodes a gzip or deflate (zlib, or raw deflate as some clients send) body into `out`, at most `limit`
// bytes; `reserve` takes budget for the bytes before they are produced.
template <class Reserve>
inflate_result inflate_body(std::string_view in, content_coding coding, std::size_t limit, std::string& out,
                            Reserve reserve) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    z_stream zs{};
    // gzip: 16 + 15 (gzip wrapper only); deflate: the zlib format first, then raw deflate.
    const int window = coding == content_coding::gzip ? 16 + MAX_WBITS : (attempt == 0 ? MAX_WBITS : -MAX_WBITS);
    if (inflateInit2(&zs, window) != Z_OK) return inflate_result::corrupt;
    out.clear();
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    int rc = Z_OK;
    char chunk[16384];
    while (rc == Z_OK) {
      zs.next_out = reinterpret_cast<Bytef*>(chunk);
      zs.avail_out = sizeof chunk;
      rc = inflate(&zs, Z_NO_FLUSH);
      const std::size_t produced = sizeof chunk - zs.avail_out;
      if (rc != Z_OK && rc != Z_STREAM_END) break;
      if (out.size() + produced > limit) {
        inflateEnd(&zs);
        return inflate_result::too_large;
      }
      if (produced > 0 && !reserve(produced)) {
        inflateEnd(&zs);
        return inflate_result::too_large;
      }
      out.append(chunk, produced);
      if (rc == Z_OK && zs.avail_in == 0 && produced == 0) break;  // truncated input
    }
    const bool whole = rc == Z_STREAM_END && zs.avail_in == 0;
    inflateEnd(&zs);
    if (whole) return inflate_result::ok;
    if (coding == content_coding::gzip || attempt == 1) break;
  }
  out.clear();
  return inflate_result::corrupt;
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
    decoded_.clear();
    decoded_.shrink_to_fit();
    parser_.reset();  // the previous request's budget back before the next takes any
    parser_.emplace(header_limit_bytes, srv_.budget);
    parser_->body_limit(srv_.opt.body_limit_bytes);
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

  void read_head() {
    lowest().expires_after(srv_.opt.header_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_, guarded(&session<Stream>::on_header));
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
    if (length && *length > 0 && !parser_->reserve(*length)) return over_budget();

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

  void read_body() {
    lowest().expires_after(srv_.opt.request_timeout);
    bhttp::async_read(stream_, buffer_, *parser_, guarded(&session<Stream>::on_read));
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
    parser_.reset();  // the budget back now
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
