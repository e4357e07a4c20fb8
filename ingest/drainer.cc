#include "ingest/drainer.h"

#include <spdlog/spdlog.h>

#include "sinks/spool/event_codec.h"
#include "transform/normalize.h"

namespace crm::ingest {

namespace pg = crm::sinks::postgres;
namespace spool = crm::sinks::spool;


// W threads, each owning one writer (one connection). run() hands part k to thread k and waits for all.
class drainer::writer_pool {
 public:
  writer_pool(const drainer_options& opt, metrics& m) : metrics_(m) {
    for (int i = 0; i < std::max(1, opt.writers); ++i) {
      slots_.push_back(std::make_unique<slot>(opt.writer));
    }
    for (auto& s : slots_) s->thread = std::thread([this, sp = s.get()] { work(*sp); });
  }

  ~writer_pool() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    for (auto& s : slots_) s->thread.join();
  }

  std::size_t size() const noexcept { return slots_.size(); }

  bool reachable() const noexcept {
    for (const auto& s : slots_) {
      if (!s->w.reachable()) return false;
    }
    return true;
  }

  // Hands part k to writer k and returns at once; wait() blocks until every part has committed. The
  // parts' memory (the drain thread's batch) must stay untouched until then. Never gives up: writers
  // retry (their retry_for is 0) and a refused part is retried here after a pause.
  void start(const std::vector<pg::batch_view>& parts, const std::string& position) {
    std::lock_guard lock(mu_);
    pending_ = 0;
    for (std::size_t k = 0; k < slots_.size(); ++k) {
      slots_[k]->job = parts[k];
      slots_[k]->info = pg::batch_info{"log", position + (slots_.size() > 1 ? " part " + std::to_string(k + 1) : "")};
      slots_[k]->has_job = parts[k].record_count() > 0;
      pending_ += slots_[k]->has_job ? 1 : 0;
    }
    cv_.notify_all();
  }

  pg::batch_result wait() {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    pg::batch_result total;
    for (auto& s : slots_) total += s->result;
    return total;
  }

 private:
  struct slot {
    explicit slot(const pg::writer_options& o) : w(o) {}
    pg::writer w;
    std::thread thread;
    pg::batch_view job;
    pg::batch_info info;
    pg::batch_result result;
    bool has_job = false;
  };

  void work(slot& s) {
    // Connect up front, so that readiness reflects the database before the first batch.
    try {
      s.w.connect();
    } catch (const std::exception& e) {
      spdlog::warn("PostgreSQL is not reachable yet; batches will wait in the local log. error={}", e.what());
    }
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return closing_ || s.has_job; });
      if (!s.has_job) return;
      lock.unlock();
      s.result = {};
      for (;;) {
        try {
          s.result = s.w.write(s.job, s.info);
          break;
        } catch (const std::exception& e) {
          // A refusal no retry inside the writer could fix (schema, permissions...): keep the log,
          // say so loudly, and try again later; never skip past unwritten records.
          metrics_.writer_failures.Increment();
          metrics_.writer_database_up.Set(0);
          spdlog::error("A batch from the local log could not be written; it stays in the log and is retried in 5 s. "
                        "position={} error={}",
                        s.info.position, e.what());
          std::this_thread::sleep_for(std::chrono::seconds(5));
        }
      }
      lock.lock();
      s.has_job = false;
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  metrics& metrics_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::size_t pending_ = 0;
  bool closing_ = false;
};

bool drainer::database_ready() const noexcept {
  return !pool_ || pool_->reachable();
}

drainer::drainer(drainer_options options, spool::durable_log& log, metrics& m)
    : options_(std::move(options)), log_(log), metrics_(m) {
  options_.writer.retry_for = std::chrono::seconds(0);  // the log holds the data: never give up
  options_.writer.application_name = "crm-ingest serve";
}

drainer::~drainer() { stop(); }

void drainer::start() {
  pool_ = std::make_unique<writer_pool>(options_, metrics_);
  thread_ = std::thread([this] { drain_main(); });
}

void drainer::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  thread_.join();
  pool_.reset();
}

bool drainer::fill(transform::event_batch& batch, spool::log_position& pos, std::string& first, bool draining,
                   bool writing) {
  spool::read_batch rb;
  transform::event_batch decoded;
  const auto started = std::chrono::steady_clock::now();
  while (batch.record_count() < options_.batch_rows && batch.text.bytes_used() < options_.batch_bytes) {
    if (auto ec = log_.read(pos, 256, 4 << 20, rb)) {
      spdlog::error("The local log could not be read; retrying. position={} error={}", spool::to_string(pos),
                    ec.message());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      return false;
    }
    if (rb.empty()) {
      if (draining) break;  // everything durable is in the batch
      auto waited = std::chrono::steady_clock::now() - started;
      if (batch.record_count() > 0 && waited >= options_.linger) break;
      auto left = batch.record_count() > 0 ? options_.linger - std::chrono::duration_cast<std::chrono::milliseconds>(waited)
                                           : std::chrono::milliseconds(200);
      // With a batch being written, an empty log must not hold back its checkpoint for long.
      if (writing && batch.record_count() == 0 && waited >= options_.linger) return false;
      if (writing && batch.record_count() == 0) left = options_.linger - std::chrono::duration_cast<std::chrono::milliseconds>(waited);
      log_.wait_for_data(pos, std::max(left, std::chrono::milliseconds(1)));
      if (stopping_ && batch.record_count() == 0) return false;
      continue;
    }
    if (first.empty()) first = spool::to_string(rb.records().front().position);
    for (const auto& rec : rb.records()) {
      if (auto ec = spool::decode_event_batch(rec.payload, decoded)) {
        // The CRC matched, so these are our own bytes from another version or a bug: keep them visible.
        const std::string source = "log " + spool::to_string(rec.position);
        const std::string reason = "the local log holds a record this version cannot decode: " + ec.message();
        batch.rejections.push_back(transform::rejection{transform::now_us(), batch.text.copy(source),
                                                        batch.text.copy(reason), batch.text.copy(rec.payload), {}});
        continue;
      }
      batch.append_copy(decoded);
    }
    pos = rb.next();
  }
  return batch.record_count() > 0;
}

void drainer::begin_write(transform::event_batch& batch, const std::string& position) {
  write_started_ = std::chrono::steady_clock::now();
  write_rows_ = batch.record_count();
  parts_ = pg::partition_by_key(batch, pool_->size(), batches_ % pool_->size());
  pool_->start(parts_, position);
}

void drainer::finish_write() {
  auto r = pool_->wait();
  metrics_.writer_batch_rows.Observe(static_cast<double>(write_rows_));
  metrics_.writer_batch_seconds.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - write_started_).count());
  metrics_.writer_rows_communications.Increment(static_cast<double>(r.communications_inserted));
  metrics_.writer_rows_touchpoints.Increment(static_cast<double>(r.touchpoints_inserted));
  metrics_.writer_rows_rejected.Increment(static_cast<double>(r.rejected_inserted));
  metrics_.writer_duplicates.Increment(static_cast<double>(r.events_in() - r.events_inserted() - r.refused_by_database));
  metrics_.writer_batches.Increment();
  metrics_.writer_database_up.Set(1);
  metrics_.writer_last_commit_timestamp.Set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  ++batches_;
}

void drainer::publish_log_stats() {
  auto st = log_.stats();
  metrics_.log_bytes.Set(static_cast<double>(st.bytes_on_disk));
  metrics_.log_segments.Set(static_cast<double>(st.segments));
  metrics_.log_backlog_bytes.Set(static_cast<double>(st.backlog_bytes));
  // The log counts for itself; counters only move forward, so publish the increase.
  // rate(crm_ingest_log_fsync_seconds_total) / rate(crm_ingest_log_fsyncs_total) is the mean fsync time.
  metrics_.log_fsyncs.Increment(static_cast<double>(st.fsyncs - last_fsyncs_));
  metrics_.log_fsync_seconds_total.Increment(static_cast<double>(st.total_fsync_ns - last_fsync_ns_) / 1e9);
  metrics_.log_fsync_max_seconds.Set(static_cast<double>(st.max_fsync_ns) / 1e9);
  metrics_.log_group_commits.Increment(static_cast<double>(st.group_commits - last_group_commits_));
  last_group_commits_ = st.group_commits;
  last_fsyncs_ = st.fsyncs;
  last_fsync_ns_ = st.total_fsync_ns;
}

// Double buffering: while the writers commit batch k (from one buffer), this thread reads and decodes
// batch k+1 into the other; the checkpoint moves past batch k only once it has committed, and batches
// are written one after the other, so the order of commits and checkpoints is that of the log.
void drainer::drain_main() {
  spool::log_position pos = log_.checkpointed();
  transform::event_batch buffers[2];
  int current = 0;
  bool in_flight = false;          // buffers[current ^ 1] is being written
  spool::log_position written_to;  // the end of the batch in flight
  auto complete_in_flight = [&] {
    finish_write();
    in_flight = false;
    if (auto ec = log_.checkpoint(written_to)) {
      spdlog::error("The local log's checkpoint could not be saved; the batch will be replayed (harmlessly) after a "
                    "restart. position={} error={}",
                    spool::to_string(written_to), ec.message());
    }
    publish_log_stats();
  };
  for (;;) {
    const bool draining = stopping_.load();
    transform::event_batch& batch = buffers[current];
    batch.clear();
    spool::log_position start = pos;
    std::string first;
    const bool filled = fill(batch, pos, first, draining, in_flight);
    if (in_flight) complete_in_flight();
    if (!filled) {
      pos = start;  // nothing taken
      if (draining || stopping_) break;
      continue;
    }
    begin_write(batch, first + "-" + spool::to_string(pos));
    written_to = pos;
    in_flight = true;
    current ^= 1;
  }
  if (in_flight) complete_in_flight();
}

}  // namespace crm::ingest
