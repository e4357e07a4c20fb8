#include "sinks/postgres/writer_pool.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace crm::sinks::postgres {

writer_pool::writer_pool(pool_options options)
    : options_(std::move(options)), max_in_flight_(std::max<std::size_t>(1, options_.max_in_flight)) {
  writer_options wo = options_.writer;
  wo.cancel = &stop_retrying_;
  const int n = std::max(1, options_.writers);
  for (int i = 0; i < n; ++i) slots_.push_back(std::make_unique<slot>(wo));
  for (auto& s : slots_) s->thread = std::thread([this, sp = s.get()] { work(*sp); });
}

writer_pool::~writer_pool() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  work_cv_.notify_all();
  for (auto& s : slots_) s->thread.join();
}

void writer_pool::submit(std::shared_ptr<transform::event_batch> batch, batch_info info, std::uint64_t token) {
  const std::size_t n = slots_.size();
  std::lock_guard lock(mu_);
  const std::uint64_t seq = next_sequence_++;
  if (pending_.empty()) front_sequence_ = seq;
  auto parts = partition_by_key(*batch, n, seq % n);
  pending p{token, batch, 0, batch->record_count(), batch_status::written, {}, {}, std::chrono::steady_clock::now(), 0};
  for (std::size_t k = 0; k < n; ++k) {
    if (parts[k].record_count() == 0) continue;
    ++p.parts_left;
    batch_info part_info{info.source, n > 1 ? info.position + " part " + std::to_string(k + 1) + "/" + std::to_string(n)
                                            : info.position};
    slots_[k]->queue.push_back(part{seq, parts[k], std::move(part_info)});
  }
  pending_.push_back(std::move(p));
  work_cv_.notify_all();
  if (pending_.back().parts_left == 0) done_cv_.notify_all();  // an empty batch is complete at once
}

std::optional<batch_completion> writer_pool::take_front_locked() {
  if (pending_.empty() || pending_.front().parts_left > 0) return std::nullopt;
  pending& f = pending_.front();
  batch_completion c{f.token, std::move(f.batch), f.status, f.result, std::move(f.error), f.seconds};
  pending_.pop_front();
  ++front_sequence_;
  return c;
}

std::optional<batch_completion> writer_pool::poll() {
  std::lock_guard lock(mu_);
  return take_front_locked();
}

std::optional<batch_completion> writer_pool::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  done_cv_.wait_for(lock, timeout, [&] { return pending_.empty() || pending_.front().parts_left == 0; });
  return take_front_locked();
}

std::optional<batch_completion> writer_pool::next() {
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return pending_.empty() || pending_.front().parts_left == 0; });
  return take_front_locked();
}

std::size_t writer_pool::in_flight() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

void writer_pool::stop_retrying() noexcept { stop_retrying_.store(true); }

void writer_pool::abandon() noexcept {
  abandoned_.store(true);
  stop_retrying_.store(true);
}

bool writer_pool::reachable() const noexcept {
  for (const auto& s : slots_) {
    if (!s->w.reachable()) return false;
  }
  return true;
}

batch_status writer_pool::write_part(slot& s, const part& p, batch_result& r, std::string& error) {
  writer_observer* obs = options_.writer.observer.get();
  for (;;) {
    if (abandoned_.load()) {
      error = "abandoned before it was written";
      return batch_status::abandoned;
    }
    try {
      r = s.w.write(p.view, p.info);
      return batch_status::written;
    } catch (const write_cancelled& e) {
      error = e.what();
      return batch_status::abandoned;
    } catch (const std::exception& e) {
      // A refusal no retry inside the writer could fix (schema, permissions...), or the policy ran out.
      const bool again = options_.writer.retry.retries_refusals() && !stop_retrying_.load();
      if (obs) obs->batch_refused(e.what(), again);
      if (!again) {
        error = e.what();
        spdlog::error("The database refused a batch for good. source={} position={} error={}", p.info.source,
                      p.info.position, e.what());
        return stop_retrying_.load() && options_.writer.retry.retries_refusals() ? batch_status::abandoned
                                                                                 : batch_status::failed;
      }
      // The source keeps the data (local log, Kafka): say so loudly and try again later; never skip past
      // unwritten records.
      spdlog::error("A batch could not be written; its source keeps it and it is retried in {} ms. source={} "
                    "position={} error={}",
                    options_.refusal_pause.count(), p.info.source, p.info.position, e.what());
      const auto until = std::chrono::steady_clock::now() + options_.refusal_pause;
      while (std::chrono::steady_clock::now() < until && !stop_retrying_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
}

// Owns one writer (one connection): connects up front, so that readiness and database_up reflect the
// database before the first batch, then writes the parts of its queue in submission order.
void writer_pool::work(slot& s) {
  writer_observer* obs = options_.writer.observer.get();
  try {
    s.w.connect();
    if (obs) obs->connected();
  } catch (const std::exception& e) {
    if (obs) obs->connect_failed(classify(e).reason);
    spdlog::warn("PostgreSQL is not reachable yet; batches wait at their source. error={}", e.what());
  }
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return closing_ || !s.queue.empty(); });
    if (s.queue.empty()) return;
    part p = std::move(s.queue.front());
    s.queue.pop_front();
    lock.unlock();
    batch_result r;
    std::string error;
    const batch_status st = write_part(s, p, r, error);
    lock.lock();
    pending& b = pending_[static_cast<std::size_t>(p.sequence - front_sequence_)];
    b.result += r;
    if (st != batch_status::written && b.status == batch_status::written) {
      b.status = st;
      b.error = std::move(error);
    }
    if (--b.parts_left == 0) {
      b.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - b.submitted).count();
      if (b.status == batch_status::written && obs) obs->batch_written(b.result, b.records, b.seconds);
      done_cv_.notify_all();
    }
  }
}

}  // namespace crm::sinks::postgres
