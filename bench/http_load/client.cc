// http_load's connections: connect, send a due request, read its response, reconnect after failures.
#include "client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

namespace http_load {

bool connection::connect_now(const tcp::resolver::results_type& endpoints) {
  error_code ec;
  net::connect(socket_, endpoints, ec);
  if (ec) {
    worker_.count_connect_failure();
    return false;
  }
  socket_.set_option(tcp::no_delay(true), ec);
  backoff_ = {};
  watch_idle();
  return true;
}

void connection::connect_later(std::chrono::milliseconds delay) {
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([this](error_code ec) {
    if (ec || closing_ || worker_.finished()) return;
    net::async_connect(socket_, worker_.endpoints(), [this](error_code ec2, const tcp::endpoint&) {
      if (closing_ || worker_.finished()) return;
      if (ec2) {
        worker_.count_connect_failure();
        error_code ignored;
        socket_.close(ignored);
        backoff_ = std::min(std::max(backoff_ * 2, std::chrono::milliseconds(20)), std::chrono::milliseconds(500));
        return connect_later(backoff_);
      }
      error_code ignored;
      socket_.set_option(tcp::no_delay(true), ignored);
          backoff_ = {};
      buffer_.clear();
      watch_idle();
      worker_.on_idle(this);
    });
  });
}

// While idle, notice the server closing the connection (idle timeout, shutdown) and reconnect, so that
// the next request does not fail on a dead socket.
void connection::watch_idle() {
  socket_.async_wait(tcp::socket::wait_read, [this, gen = generation_](error_code ec) {
    if (ec || busy_ || gen != generation_ || closing_ || worker_.finished()) return;
    // epoll may report readiness that an earlier read already consumed: only EOF, an error or bytes
    // the server sent unasked (e.g. a 408 before closing) end the connection.
    char c;
    auto n = ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return watch_idle();
    reconnect(false);
  });
}

void connection::reconnect(bool after_failure) {
  ++generation_;
  error_code ignored;
  socket_.close(ignored);
  if (!busy_) worker_.remove_idle(this);
  busy_ = false;
  worker_.count_reconnect();
  connect_later(after_failure ? std::max(backoff_, std::chrono::milliseconds(1)) : std::chrono::milliseconds(0));
}

void connection::send(std::uint64_t n, steady::time_point intended) {
  busy_ = true;
  timed_out_ = false;
  ++generation_;
  intended_ = intended;
  template_ = &worker_.bodies().build(n, body_);
  duplicate_ = worker_.bodies().duplicate(n);
  const auto& o = worker_.options();
  const bool mix = worker_.bodies().mix();
  header_.clear();
  header_ += "POST ";
  header_ += mix ? mix_kinds[template_->kind].path : std::string_view(o.path);
  header_ += " HTTP/1.1\r\nHost: ";
  header_ += o.host;
  header_ += ':';
  header_ += o.port;
  header_ += "\r\nUser-Agent: crm-http-load\r\nContent-Type: ";
  header_ += mix ? mix_kinds[template_->kind].content_type : std::string_view(o.content_type);
  header_ += "\r\nContent-Length: ";
  header_ += std::to_string(body_.size());
  header_ += "\r\n\r\n";
  worker_.count_sent(template_->events);

  timer_.expires_at(intended + o.timeout);
  timer_.async_wait([this, gen = generation_](error_code ec) {
    if (ec || gen != generation_ || !busy_) return;
    timed_out_ = true;
    error_code ignored;
    socket_.close(ignored);  // the pending write/read completes with operation_aborted
  });
  std::array<net::const_buffer, 2> bufs{net::buffer(header_), net::buffer(body_)};
  net::async_write(socket_, bufs, [this](error_code ec, std::size_t) { on_written(ec); });
}

void connection::on_written(error_code ec) {
  if (closing_ || worker_.finished()) return;
  if (ec) return fail(ec);
  parser_.emplace();
  parser_->body_limit(16 << 20);
  bhttp::async_read(socket_, buffer_, *parser_, [this](error_code e, std::size_t) { on_read(e); });
}

void connection::on_read(error_code ec) {
  if (closing_ || worker_.finished()) return;  // already counted as unfinished
  if (ec) return fail(ec);
  const auto now = steady::now();
  timer_.cancel();
  auto& res = parser_->get();
  const bool retry_after = res.find(bhttp::field::retry_after) != res.end();
  const unsigned status = res.result_int();
  if (status >= 200 && status < 300 && template_) body_factory::ack_line(*template_, body_, ack_);
  busy_ = false;
  ++generation_;
  worker_.on_response(intended_, now, status, retry_after, res.body(), ack_, template_, duplicate_);
  if (worker_.finished()) return;
  if (!res.keep_alive()) return reconnect(false);
  watch_idle();
  worker_.on_idle(this);
}

void connection::fail(error_code) {
  if (closing_ || worker_.finished()) return;  // already counted as unfinished
  timer_.cancel();
  const bool timed_out = timed_out_;
  busy_ = false;
  worker_.on_request_failed(timed_out);
  reconnect(true);
}

void connection::close() {
  closing_ = true;
  ++generation_;
  error_code ignored;
  timer_.cancel();
  retry_timer_.cancel();
  socket_.close(ignored);
}

}  // namespace http_load
