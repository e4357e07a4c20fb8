#include "sinks/spool/spool_sink.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "sinks/spool/spool_error.h"
#include "transform/canonical/event_codec.h"

namespace crm::sinks::spool {

spool_sink::spool_sink(durable_log& log, std::size_t max_in_flight)
    : log_(log), max_in_flight_(max_in_flight) {}

void spool_sink::wait_idle() const {
  while (in_flight_.load(std::memory_order_acquire) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

namespace {
void report_failure(const std::error_code& error) {
  spdlog::error("A request could not be stored in the local log; it was refused with 503. error={}", error.message());
}
}  // namespace

void spool_sink::submit(const transform::event_batch& batch, std::function<void(sink_status)> done) {
  if (in_flight_.fetch_add(1, std::memory_order_relaxed) >= max_in_flight_) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    return done(sink_status::full);
  }
  auto payload = std::make_shared<std::string>();
  transform::encode_event_batch(batch, *payload);
  const std::string_view record(*payload);
  // The completion owns the payload: the log writes from it until the group is durable.
  auto error = log_.append_async(
      std::span<const std::string_view>(&record, 1),
      [this, payload, done](const append_result& r) {
        if (r.ok()) {
          done(sink_status::durable);
        } else {
          report_failure(r.error);
          done(sink_status::failed);
        }
        in_flight_.fetch_sub(1, std::memory_order_release);  // last: wait_idle() may return now
      });
  if (!error) return;
  in_flight_.fetch_sub(1, std::memory_order_relaxed);
  if (error == log_errc::log_full) return done(sink_status::full);
  report_failure(error);
  done(sink_status::failed);
}

}  // namespace crm::sinks::spool
