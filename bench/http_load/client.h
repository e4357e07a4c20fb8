// http_load's client: one worker (thread, io_context) owns its keep-alive connections and its share of
// the schedule (see main.cc for the tool).
#pragma once

#include <utility>  // Boost 1.74's asio/awaitable.hpp misses it under GCC 12

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "bodies.h"
#include "histogram.h"

namespace http_load {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;

struct run_options {
  std::string host;
  std::string port;
  std::string path;
  std::string content_type;
  double rate = 100;
  double duration_s = 10;
  unsigned connections = 64;
  unsigned threads = 1;
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds drain_timeout{10000};
};

struct run_stats {
  std::uint64_t scheduled = 0;  // due within the run
  std::uint64_t sent = 0;       // written to a connection
  std::uint64_t responses = 0;  // answered with any HTTP status
  std::uint64_t ok = 0;         // 2xx
  std::map<unsigned, std::uint64_t> non_2xx;
  std::uint64_t status_503_without_retry_after = 0;
  std::uint64_t io_errors = 0;     // sent, but the connection failed before a whole response
  std::uint64_t timeouts = 0;      // sent, not answered within --timeout of the intended time
  std::uint64_t expired = 0;       // waited for a connection longer than --timeout: never sent
  std::uint64_t unfinished = 0;    // still queued or in flight when --drain-timeout ran out
  std::uint64_t connect_failures = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t events_sent = 0;
  std::uint64_t events_acked = 0;       // events carried by 2xx requests
  std::uint64_t accepted_reported = 0;  // sum of "accepted" in 2xx bodies
  std::uint64_t rejected_reported = 0;  // sum of "rejected" in 2xx bodies
  std::uint64_t max_queued = 0;
  std::uint64_t max_release_lag_us = 0;  // how late the client itself released a due request
  // --mode mix: 2xx requests and their events per kind; repeats (duplicates) and invalid events among them
  std::array<std::uint64_t, mix_kinds.size()> kind_ok{};
  std::array<std::uint64_t, mix_kinds.size()> kind_events_acked{};
  std::uint64_t duplicate_ok = 0;
  std::uint64_t duplicate_events_acked = 0;
  std::uint64_t invalid_events_acked = 0;
  steady::time_point last_response{};
  latency_histogram latency;

  void merge(const run_stats& o) {
    scheduled += o.scheduled;
    sent += o.sent;
    responses += o.responses;
    ok += o.ok;
    for (auto& [k, v] : o.non_2xx) non_2xx[k] += v;
    status_503_without_retry_after += o.status_503_without_retry_after;
    io_errors += o.io_errors;
    timeouts += o.timeouts;
    expired += o.expired;
    unfinished += o.unfinished;
    connect_failures += o.connect_failures;
    reconnects += o.reconnects;
    events_sent += o.events_sent;
    events_acked += o.events_acked;
    accepted_reported += o.accepted_reported;
    rejected_reported += o.rejected_reported;
    max_queued = std::max(max_queued, o.max_queued);
    max_release_lag_us = std::max(max_release_lag_us, o.max_release_lag_us);
    for (std::size_t k = 0; k < kind_ok.size(); ++k) {
      kind_ok[k] += o.kind_ok[k];
      kind_events_acked[k] += o.kind_events_acked[k];
    }
    duplicate_ok += o.duplicate_ok;
    duplicate_events_acked += o.duplicate_events_acked;
    invalid_events_acked += o.invalid_events_acked;
    last_response = std::max(last_response, o.last_response);
    latency.merge(o.latency);
  }
};

inline std::uint64_t json_number_after(std::string_view body, std::string_view key) {
  auto p = body.find(key);
  if (p == std::string_view::npos) return 0;
  std::uint64_t v = 0;
  for (p += key.size(); p < body.size() && body[p] >= '0' && body[p] <= '9'; ++p) v = v * 10 + (body[p] - '0');
  return v;
}

class worker;

// One keep-alive connection. Owned by its worker's thread.
class connection {
 public:
  connection(worker& w, net::io_context& ioc) : worker_(w), socket_(ioc), timer_(ioc), retry_timer_(ioc) {}

  bool connect_now(const tcp::resolver::results_type& endpoints);
  void connect_later(std::chrono::milliseconds delay);
  void send(std::uint64_t n, steady::time_point intended);
  void close();
  bool busy() const { return busy_; }

 private:
  void watch_idle();
  void on_written(error_code ec);
  void on_read(error_code ec);
  void fail(error_code ec);
  void reconnect(bool after_failure);

  worker& worker_;
  tcp::socket socket_;
  net::steady_timer timer_;
  net::steady_timer retry_timer_;
  boost::beast::flat_buffer buffer_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  std::string header_, body_, ack_;
  const body_template* template_ = nullptr;
  bool duplicate_ = false;
  steady::time_point intended_{};
  std::uint64_t generation_ = 0;  // bumped on every request and close: stale completions are ignored
  std::chrono::milliseconds backoff_{0};
  bool busy_ = false;
  bool timed_out_ = false;
  bool closing_ = false;
};

class worker {
 public:
  worker(const run_options& opt, const body_factory& bodies, unsigned index, int ack_fd)
      : opt_(opt), bodies_(bodies), ack_fd_(ack_fd), tick_(ioc_) {
    tcp::resolver resolver(ioc_);
    endpoints_ = resolver.resolve(opt.host, opt.port);
    unsigned conns = opt.connections / opt.threads + (index < opt.connections % opt.threads ? 1 : 0);
    for (unsigned i = 0; i < std::max(1u, conns); ++i) {
      conns_.push_back(std::make_unique<connection>(*this, ioc_));
      if (conns_.back()->connect_now(endpoints_)) idle_.push_back(conns_.back().get());
    }
    total_ = static_cast<std::uint64_t>(std::floor(opt.rate * opt.duration_s));
    next_ = index;
  }

  void run(steady::time_point start) {
    start_ = start;
    end_of_schedule_ = intended(total_);
    for (auto& c : conns_) {
      if (!c->busy() && std::find(idle_.begin(), idle_.end(), c.get()) == idle_.end()) c->connect_later({});
    }
    tick_.expires_at(start_);
    tick_.async_wait([this](error_code ec) {
      if (!ec) on_tick();
    });
    ioc_.run();
  }

  const run_stats& stats() const { return stats_; }

  // Called by connections.
  void on_idle(connection* c) {
    idle_.push_back(c);
    dispatch(steady::now());
  }
  void remove_idle(connection* c) { std::erase(idle_, c); }
  void on_response(steady::time_point intended, steady::time_point now, unsigned status, bool retry_after,
                   const std::string& body, const std::string& ack_line, const body_template* t, bool duplicate) {
    --in_flight_;
    stats_.responses++;
    stats_.last_response = now;
    stats_.latency.record(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - intended).count()));
    if (status >= 200 && status < 300) {
      stats_.ok++;
      const unsigned events = t ? t->events : bodies_.events_per_request();
      stats_.events_acked += events;
      if (t && bodies_.mix()) {
        stats_.kind_ok[t->kind]++;
        stats_.kind_events_acked[t->kind] += events;
        stats_.invalid_events_acked += t->invalid;
        if (duplicate) {
          stats_.duplicate_ok++;
          stats_.duplicate_events_acked += events;
        }
      }
      stats_.accepted_reported += json_number_after(body, "\"accepted\":");
      stats_.rejected_reported += json_number_after(body, "\"rejected\":");
      if (ack_fd_ >= 0) {
        ack_buffer_ += ack_line;
        if (ack_buffer_.size() >= (1u << 20)) flush_acks();
      }
    } else {
      stats_.non_2xx[status]++;
      if (status == 503 && !retry_after) stats_.status_503_without_retry_after++;
    }
  }
  void on_request_failed(bool timed_out) {
    --in_flight_;
    (timed_out ? stats_.timeouts : stats_.io_errors)++;
  }
  void count_connect_failure() { stats_.connect_failures++; }
  void count_reconnect() { stats_.reconnects++; }
  bool finished() const { return finished_; }
  const run_options& options() const { return opt_; }
  const body_factory& bodies() const { return bodies_; }
  const tcp::resolver::results_type& endpoints() const { return endpoints_; }
  void count_sent(unsigned events) {
    stats_.sent++;
    stats_.events_sent += events;
  }

 private:
  steady::time_point intended(std::uint64_t g) const {
    return start_ + std::chrono::duration_cast<steady::duration>(
                        std::chrono::duration<double>(static_cast<double>(g) / opt_.rate));
  }

  void on_tick() {
    const auto now = steady::now();
    // Release everything due by now, stamped with its intended time.
    while (next_ < total_) {
      auto due = intended(next_);
      if (due > now) break;
      stats_.max_release_lag_us = std::max<std::uint64_t>(
          stats_.max_release_lag_us,
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - due).count()));
      queue_.push_back({next_, due});
      stats_.scheduled++;
      next_ += opt_.threads;
    }
    stats_.max_queued = std::max<std::uint64_t>(stats_.max_queued, queue_.size());
    dispatch(now);
    // Requests that waited past their timeout for a connection are given up unsent.
    while (!queue_.empty() && queue_.front().intended + opt_.timeout <= now) {
      queue_.pop_front();
      stats_.expired++;
    }
    const bool schedule_done = next_ >= total_;
    if (schedule_done && queue_.empty() && in_flight_ == 0) return finish();
    if (schedule_done && now >= end_of_schedule_ + opt_.drain_timeout) {
      stats_.unfinished += queue_.size() + in_flight_;
      queue_.clear();
      return finish();
    }
    // Wake at the next due time, but at most every 100 us (a late release is still measured from the
    // intended time), and every 10 ms while only stragglers remain.
    auto wake = schedule_done ? now + std::chrono::milliseconds(10)
                              : std::max(intended(next_), now + std::chrono::microseconds(100));
    tick_.expires_at(wake);
    tick_.async_wait([this](error_code ec) {
      if (!ec) on_tick();
    });
  }

  void dispatch(steady::time_point now) {
    while (!queue_.empty() && !idle_.empty()) {
      auto p = queue_.front();
      queue_.pop_front();
      if (p.intended + opt_.timeout <= now) {
        stats_.expired++;
        continue;
      }
      // Round robin (FIFO): every connection stays warm, so none meets the server's idle timeout just as
      // a request goes out on it.
      auto* c = idle_.front();
      idle_.pop_front();
      ++in_flight_;
      c->send(p.n, p.intended);
    }
  }

  // Whole lines in one O_APPEND write: safe beside other writers of the same file.
  void flush_acks() {
    std::size_t done = 0;
    while (done < ack_buffer_.size()) {
      auto n = ::write(ack_fd_, ack_buffer_.data() + done, ack_buffer_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("http_load: writing the ack log");
        std::exit(1);  // an incomplete ack log would make a loss check lie
      }
      done += static_cast<std::size_t>(n);
    }
    ack_buffer_.clear();
  }

  void finish() {
    if (ack_fd_ >= 0) flush_acks();
    finished_ = true;
    tick_.cancel();
    for (auto& c : conns_) c->close();
  }

  struct pending {
    std::uint64_t n;
    steady::time_point intended;
  };

  const run_options& opt_;
  const body_factory& bodies_;
  int ack_fd_;
  std::string ack_buffer_;
  net::io_context ioc_;
  net::steady_timer tick_;
  tcp::resolver::results_type endpoints_;
  std::vector<std::unique_ptr<connection>> conns_;
  std::deque<connection*> idle_;
  std::deque<pending> queue_;
  std::uint64_t total_ = 0;
  std::uint64_t next_ = 0;
  std::uint64_t in_flight_ = 0;
  steady::time_point start_{};
  steady::time_point end_of_schedule_{};
  bool finished_ = false;
  run_stats stats_;
};

}  // namespace http_load
