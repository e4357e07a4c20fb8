#include "ingest/spool_sink.h"

#include <spdlog/spdlog.h>

#include "sinks/spool/spool_error.h"

namespace crm::ingest {

spool_sink::spool_sink(sinks::spool::durable_log& log, int appender_threads, std::size_t max_queued)
    : log_(log), max_queued_(max_queued) {
  for (int i = 0; i < std::max(1, appender_threads); ++i) threads_.emplace_back([this] { work(); });
}

spool_sink::~spool_sink() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();  // queued jobs are appended first: they were promised an answer
}

void spool_sink::submit(std::shared_ptr<const std::string> payload, std::function<void(sink_status)> done) {
  {
    std::lock_guard lock(mu_);
    if (!closing_ && queue_.size() < max_queued_) {
      queue_.push_back(job{std::move(payload), std::move(done)});
      ++queued_;
      cv_.notify_one();
      return;
    }
  }
  done(sink_status::full);
}

void spool_sink::work() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return closing_ || !queue_.empty(); });
    if (queue_.empty()) return;
    job j = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    std::string_view record(*j.payload);
    auto r = log_.append(std::span<const std::string_view>(&record, 1));
    --queued_;
    if (r.ok()) {
      j.done(sink_status::durable);
    } else if (r.error == sinks::spool::log_errc::log_full) {
      j.done(sink_status::full);
    } else {
      spdlog::error("A request could not be stored in the local log; it was refused with 503. error={}",
                    r.error.message());
      j.done(sink_status::failed);
    }
    lock.lock();
  }
}

}  // namespace crm::ingest
