// Reading one request off a connection: the parser (head, body, chunks, trailers) and the limits of what
// a client can make the server hold.
#pragma once

#include "ingest/http/server_impl.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include <boost/beast/http.hpp>

namespace crm::ingest::http {

namespace bhttp = boost::beast::http;

// The most a request's header (and, separately, its trailer) may take; Beast's own fields cannot hold a
// value of 64 KiB anyway. The read buffer holds at most this plus a little: what a client sends beyond
// waits in the socket, so pipelined requests and chunk-size lines cannot grow memory either.
constexpr std::size_t header_limit_bytes = 64 * 1024;
constexpr std::size_t read_buffer_bytes = header_limit_bytes + 16 * 1024;
// The most header fields a request may have (431 beyond; Apache's LimitRequestFields is 100). Each field is an
// allocation of its own: 16,000 empty fields fit in 64 KiB and held ~1.3 MB per connection, outside every budget.
constexpr std::size_t header_field_limit = 128;

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
  bool fits(std::uint64_t n) const noexcept { return budget_.fits(n); }

 private:
  body_budget& budget_;
  std::uint64_t held_ = 0;
};

// The request parser: Beast's basic_parser with our own storage, so that nothing a client sends can make
// it throw, and a chunked body's trailer fields are never read as header fields. (Beast 1.74's
// request_parser merges trailers into the header and throws std::length_error for a field of 64 KiB or
// more, out of the read and out of io_context::run.) Trailer fields are counted against the header
// limit and discarded; a request with more is refused (431). The body buffer takes the budget for its
// capacity as it grows with the bytes that arrive (doubling from 4 KiB, up to the declared length or the body
// limit; while it grows, the old buffer is freed only after the copy);
// a chunk-size line takes nothing, and one larger than what the budget has free is refused at once.
class request_reader final : public bhttp::basic_parser<true> {
 public:
  request_reader(std::size_t header_limit, std::uint64_t body_limit, body_budget& budget)
      : field_limit_(header_limit), body_limit_(body_limit), lease_(budget) {
    this->body_limit(body_limit);
  }

  const bhttp::request_header<>& head() const noexcept { return head_; }
  const std::string& body() const noexcept { return body_; }
  bool trailer_too_large() const noexcept { return trailer_too_large_; }
  bool too_many_fields() const noexcept { return too_many_fields_; }
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
    if (++fields_ > header_field_limit) {
      too_many_fields_ = true;
      ec = bhttp::error::header_limit;
      return;
    }
    try {
      head_.insert(name, name_string, value);
    } catch (const std::exception&) {
      ec = bhttp::error::header_limit;  // Beast refuses field values of 64 KiB or more by throwing
    }
  }

  void on_header_impl(beast::error_code&) override { in_trailer_ = true; }

  void on_body_init_impl(const boost::optional<std::uint64_t>& length, beast::error_code&) override {
    if (length) body_limit_ = std::min(body_limit_, *length);  // the buffer never grows past the declared length
  }

  std::size_t on_body_impl(beast::string_view data, beast::error_code& ec) override { return append(data, ec); }

  void on_chunk_header_impl(std::uint64_t size, beast::string_view, beast::error_code& ec) override {
    if (size > 0 && body_.size() + size > buffer_taken_ && !lease_.fits(body_.size() + size - buffer_taken_)) {
      over_budget_ = true;
      ec = bhttp::error::body_limit;
    }
  }

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, beast::error_code& ec) override {
    return append(data, ec);
  }

  void on_finish_impl(beast::error_code&) override {}

  // The buffer's capacity is what the budget holds for it: grown (doubling, at least 4 KiB, at most the
  // declared length or the body limit) before the bytes are copied in, with the budget taken first. It grows
  // into a new string reserved exactly (libstdc++ rounds a reserve() of an allocated string below twice its
  // capacity up to twice: a body capped at its declared length would hold up to twice that).
  std::size_t append(beast::string_view data, beast::error_code& ec) {
    const std::uint64_t need = body_.size() + data.size();
    if (need > buffer_taken_) {
      const std::uint64_t want = std::max({need, 2 * buffer_taken_, std::uint64_t{4} << 10});
      const std::uint64_t capacity = std::max(need, std::min(want, body_limit_));
      if (!reserve(capacity - buffer_taken_)) {
        ec = bhttp::error::body_limit;
        return 0;
      }
      buffer_taken_ = capacity;
      try {
        std::string grown;
        grown.reserve(static_cast<std::size_t>(capacity));
        grown.append(body_);
        body_.swap(grown);
      } catch (const std::exception&) {
        ec = bhttp::error::body_limit;
        return 0;
      }
      if (body_.capacity() > buffer_taken_) {  // never above what was asked, but if the library rounds: it counts
        if (!reserve(body_.capacity() - buffer_taken_)) {
          ec = bhttp::error::body_limit;
          return 0;
        }
        buffer_taken_ = body_.capacity();
      }
    }
    body_.append(data.data(), data.size());  // within the capacity reserved: does not allocate
    return data.size();
  }

  bhttp::request_header<> head_;
  std::string body_;
  std::size_t field_limit_;
  std::uint64_t body_limit_;        // the most the body buffer may hold: the body limit, or the declared length
  std::uint64_t buffer_taken_ = 0;  // the budget taken for the body buffer (its capacity)
  budget_lease lease_;
  std::size_t trailer_bytes_ = 0;
  std::size_t fields_ = 0;  // the header's fields so far
  bool in_trailer_ = false;
  bool too_many_fields_ = false;
  bool trailer_too_large_ = false;
  bool over_budget_ = false;
};

}  // namespace crm::ingest::http
