#include "sinks/postgres/writer_pool.h"

#include <pthread.h>
#include <cstdio>
#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

namespace crm::sinks::postgres {

writer_pool::writer_pool(pool_options options)
    : options_(std::move(options)), max_in_flight_(std::max<std::size_t>(1, options_.max_in_flight)) {
  // With writer.maintain_analytics the pool runs the analytics stage on a connection of its own (the writers'
  // DSN and observer), woken by every committed part that inserted touchpoints.
  if (options_.writer.maintain_analytics) {
    analytics_stage_options ao;
    ao.dsn = options_.writer.dsn;
    ao.observer = options_.writer.observer;
    ao.application_name = options_.writer.application_name + " analytics";
    stage_ = std::make_unique<analytics_stage>(std::move(ao));
  }
  writer_options wo = options_.writer;
  wo.cancel = &stop_retrying_;
  wo.read_status_after_commit = options_.confirm.wait_for_standbys;
  if (options_.confirm.wait_for_standbys) {
    confirmer_options co;
    co.dsn = options_.writer.dsn;
    co.application_name = options_.writer.application_name + " (confirm)";
    co.policy = options_.confirm;
    co.interval = options_.confirm_interval;
    co.on_confirmed = [this](std::uint64_t key) { on_confirmed(key); };
    co.on_missing = [this](std::uint64_t key) { on_missing(key); };
    co.after_round = [this] {
      if (auto* obs = options_.writer.observer.get()) {
        const auto st = unconfirmed();
        obs->unconfirmed(st.batches, st.bytes, st.oldest_seconds);
      }
    };
    confirmer_ = std::make_unique<confirmer>(std::move(co));
  }
  const int n = std::max(1, options_.writers);
  if (options_.adaptive) {
    writer_count_options wc = options_.adaptive_options;
    wc.max = n;
    count_.emplace(wc);
  }
  if (auto* obs = options_.writer.observer.get()) obs->writers_in_use(count_ ? count_->settled() : n);
  for (int i = 0; i < n; ++i) slots_.push_back(std::make_unique<slot>(wo));
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    slots_[i]->thread = std::thread([this, sp = slots_[i].get(), i] {
      char name[16];  // a thread's name (top -H, ps -L, perf) holds 15 bytes
      std::snprintf(name, sizeof name, "crm-writer-%zu", i);
      pthread_setname_np(pthread_self(), name);
      work(*sp);
    });
  }
}

writer_pool::~writer_pool() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  work_cv_.notify_all();
  for (auto& s : slots_) s->thread.join();
}

int writer_pool::writers_in_use() const {
  std::lock_guard lock(mu_);
  return count_ ? count_->next() : static_cast<int>(slots_.size());
}

void writer_pool::submit(std::shared_ptr<transform::event_batch> batch, batch_info info, std::uint64_t token) {
  std::lock_guard lock(mu_);
  const std::size_t n = count_ ? static_cast<std::size_t>(count_->next()) : slots_.size();
  const std::uint64_t seq = next_sequence_++;
  if (pending_.empty()) front_sequence_ = seq;
  auto parts = partition_by_key(*batch, n, seq % n);
  pending p{token, batch, 0, 0, batch->record_count(), 0, info, {}, std::vector<batch_result>(n), batch_status::written,
            {}, {}, std::chrono::steady_clock::now(), 0};
  p.split = n;
  p.measure = options_.batch.reached(*batch);
  // What the batch holds in memory while it waits for its confirmation: its records and their text.
  p.bytes = batch->text.bytes_used() + batch->communications.size() * sizeof(transform::communication) +
            batch->touchpoints.size() * sizeof(transform::touchpoint) +
            batch->rejections.size() * sizeof(transform::rejection);
  for (std::size_t k = 0; k < n; ++k) {
    if (parts[k].record_count() == 0) continue;
    ++p.parts_left;
    batch_info part_info{info.source, n > 1 ? info.position + " part " + std::to_string(k + 1) + "/" + std::to_string(n)
                                            : info.position};
    transform::uuid id;
    const std::uint64_t a = rng_(), b = rng_();
    std::memcpy(id.data(), &a, 8);
    std::memcpy(id.data() + 8, &b, 8);
    id[6] = static_cast<std::uint8_t>((id[6] & 0x0F) | 0x40);
    id[8] = static_cast<std::uint8_t>((id[8] & 0x3F) | 0x80);
    part pt{seq, k, parts[k], std::move(part_info), id, false};
    p.parts.push_back(pt);
    slots_[k]->queue.push_back(std::move(pt));
  }
  if (p.parts_left > 0) ++committing_;
  pending_.push_back(std::move(p));
  work_cv_.notify_all();
  if (pending_.back().parts_left == 0) done_cv_.notify_all();  // an empty batch is complete at once
}

bool writer_pool::front_complete_locked() const {
  return !pending_.empty() && pending_.front().parts_left == 0 && pending_.front().unconfirmed == 0;
}

std::optional<batch_completion> writer_pool::take_front_locked() {
  if (!front_complete_locked()) return std::nullopt;
  pending& f = pending_.front();
  batch_result total;
  for (const auto& r : f.part_results) total += r;
  batch_completion c{f.token, std::move(f.batch), f.status, total, std::move(f.error), f.seconds, f.confirm_seconds};
  pending_.pop_front();
  ++front_sequence_;
  return c;
}

bool writer_pool::full() const {
  std::lock_guard lock(mu_);
  if (confirmer_ == nullptr) return pending_.size() >= max_in_flight_;
  return committing_ >= max_in_flight_ || unconfirmed_bytes_ >= options_.max_unconfirmed_bytes;
}

std::size_t writer_pool::committing() const {
  std::lock_guard lock(mu_);
  return committing_;
}

confirmation_stats writer_pool::unconfirmed() const {
  confirmation_stats out;
  if (!confirmer_) return out;
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  for (const auto& p : pending_) {
    if (p.parts_left > 0 || p.unconfirmed == 0) continue;
    ++out.batches;
    out.bytes += p.bytes;
    out.oldest_seconds = std::max(out.oldest_seconds, std::chrono::duration<double>(now - p.submitted).count() - p.seconds);
  }
  return out;
}

std::vector<batch_info> writer_pool::outstanding() const {
  std::lock_guard lock(mu_);
  std::vector<batch_info> out;
  for (const auto& p : pending_) out.push_back(p.info);
  return out;
}

// The confirmer's thread: a part is safe on the cluster.
void writer_pool::on_confirmed(std::uint64_t key) {
  std::lock_guard lock(mu_);
  const std::uint64_t seq = key / 64;
  if (seq < front_sequence_ || seq - front_sequence_ >= pending_.size()) return;
  pending& b = pending_[static_cast<std::size_t>(seq - front_sequence_)];
  if (b.unconfirmed == 0) return;
  if (--b.unconfirmed == 0 && b.parts_left == 0) {
    unconfirmed_bytes_ -= std::min(unconfirmed_bytes_, b.bytes);
    b.confirm_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - b.submitted).count() - b.seconds;
    if (auto* obs = options_.writer.observer.get()) obs->batch_confirmed(b.confirm_seconds);
    done_cv_.notify_all();
  }
}

// The confirmer's thread: the current primary's ledger lacks (some of) a part after a failover. It goes to
// the front of its writer's queue, to be written again with the same ledger ids.
void writer_pool::on_missing(std::uint64_t key) {
  std::lock_guard lock(mu_);
  const std::uint64_t seq = key / 64;
  const std::size_t k = static_cast<std::size_t>(key % 64);
  if (seq < front_sequence_ || seq - front_sequence_ >= pending_.size()) return;
  pending& b = pending_[static_cast<std::size_t>(seq - front_sequence_)];
  auto it = std::find_if(b.parts.begin(), b.parts.end(), [&](const part& p) { return p.writer == k; });
  if (it == b.parts.end() || b.unconfirmed == 0) return;
  if (b.parts_left == 0) {
    ++committing_;
    unconfirmed_bytes_ -= std::min(unconfirmed_bytes_, b.bytes);
  }
  --b.unconfirmed;
  ++b.parts_left;
  part again = *it;
  again.rewrite = true;
  b.measure = false;
  spdlog::warn("A committed batch is missing from the new primary's ledger; writing it again. source={} position={} "
               "batch_id={}",
               again.info.source, again.info.position, transform::to_string(again.id));
  if (auto* obs = options_.writer.observer.get()) obs->batch_rewritten();
  slots_[k]->queue.push_front(std::move(again));
  work_cv_.notify_all();
}

std::optional<batch_completion> writer_pool::poll() {
  std::lock_guard lock(mu_);
  return take_front_locked();
}

std::optional<batch_completion> writer_pool::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  done_cv_.wait_for(lock, timeout, [&] { return pending_.empty() || front_complete_locked(); });
  return take_front_locked();
}

std::optional<batch_completion> writer_pool::next() {
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return pending_.empty() || front_complete_locked(); });
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

bool writer_pool::catch_up_analytics(std::chrono::milliseconds timeout) {
  if (!stage_) return true;
  // Give up on a stage that keeps failing as long as the writers would on a batch.
  const auto& retry = options_.writer.retry;
  const auto give_up = retry.forever() ? timeout : std::chrono::milliseconds(retry.limit());
  return stage_->catch_up(timeout, give_up);
}

// Only the writers batches go to: with an adapted count the others may have had no part since a failed
// first connection, and would keep readiness down for good.
bool writer_pool::reachable() const noexcept {
  const auto in_use = static_cast<std::size_t>(writers_in_use());
  for (std::size_t i = 0; i < in_use; ++i) {
    if (!slots_[i]->w.reachable()) return false;
  }
  return true;
}

batch_status writer_pool::write_part(slot& s, const part& p, batch_result& r, std::string& error, commit_point& cp,
                                     bool& refused_before) {
  writer_observer* obs = options_.writer.observer.get();
  refused_before = false;
  for (;; refused_before = true) {
    if (abandoned_.load()) {
      error = "abandoned before it was written";
      return batch_status::abandoned;
    }
    try {
      // After a refusal, parts of the batch's split may have committed: the next attempt looks each
      // transaction's ledger id up first (a committed part is not written, nor refused as a duplicate, again).
      r = s.w.write(p.view, p.info, p.id, p.rewrite || refused_before, cp);
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
    commit_point cp;
    const auto began = std::chrono::steady_clock::now();
    bool refused_before = false;
    const batch_status st = write_part(s, p, r, error, cp, refused_before);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    if (stage_ && r.touchpoints_inserted > 0) stage_->wake();
    lock.lock();
    pending& b = pending_[static_cast<std::size_t>(p.sequence - front_sequence_)];
    b.part_seconds += took;
    if (refused_before || r.attempts > 1) b.measure = false;
    b.part_results[p.writer] = r;
    if (st != batch_status::written && b.status == batch_status::written) {
      b.status = st;
      b.error = std::move(error);
    }
    // A committed part is safe at once (synchronous standby, single PostgreSQL) or waits for the
    // confirmer (under the pool's lock: the confirmer's callbacks take it too, so none can come first).
    if (cp.status && !cp.status->in_recovery) {
      // The replication mode, logged at the first commit and whenever it changes (a failover: a new primary;
      // Patroni dropping to asynchronous replication, or back).
      // (A status is read only for the confirmer.)
      const confirm_policy policy = confirmer_ ? confirmer_->policy_for(*cp.status) : options_.confirm;
      const auto mode = mode_of(*cp.status, policy);
      if (cp.status->identity() != seen_primary_ || mode != seen_mode_) {
        spdlog::info("Replication of the primary the batches commit on: {}", describe(*cp.status, policy));
        seen_primary_ = cp.status->identity();
        seen_mode_ = mode;
        if (obs) obs->replication_mode(to_string(mode));
      }
    }
    if (st == batch_status::written && confirmer_ && !abandoned_.load()) {
      const verdict v = cp.status ? confirmer_->committed(part_key(p), cp.batch_ids, b.bytes, *cp.status, cp.waited)
                                  : (confirmer_->committed_blind(part_key(p), cp.batch_ids, b.bytes), verdict::waiting);
      if (v != verdict::confirmed) ++b.unconfirmed;
    }
    if (--b.parts_left == 0) {
      --committing_;
      b.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - b.submitted).count();
      if (b.unconfirmed > 0) unconfirmed_bytes_ += b.bytes;
      if (count_) {
        const int before = count_->settled();
        if (b.measure && b.status == batch_status::written && !b.parts.empty()) {
          count_->written(static_cast<int>(b.split), b.records, b.part_seconds / static_cast<double>(b.parts.size()));
        } else {
          count_->interrupted();
        }
        if (count_->settled() != before) {
          spdlog::info("The write path now splits its batches among {} of its {} writers: {}.", count_->settled(),
                       slots_.size(), count_->settled() > before ? "one more wrote them faster"
                                                                 : "the last one added did not write them faster");
          if (obs) obs->writers_in_use(count_->settled());
        }
      }
      if (b.status == batch_status::written && obs) {
        batch_result total;
        for (const auto& pr : b.part_results) total += pr;
        obs->batch_written(total, b.records, b.seconds);
        if (b.unconfirmed == 0) obs->batch_confirmed(0);
      }
      done_cv_.notify_all();
    }
  }
}

}  // namespace crm::sinks::postgres
