// durable_log, the append side: appenders (any thread) queue records; the flusher thread writes and
// fdatasyncs each group and completes its appends. See durable_log.h for the thread ownership.
#include "sinks/spool/durable_log_internal.h"

namespace crm::sinks::spool {

using namespace internal;

namespace {
// Frame headers (and their CRCs) are computed before taking the lock, in parallel across appenders.
const std::array<char, frame_header_size>* encode_headers(std::span<const std::string_view> records,
                                                          std::uint64_t max_payload, bool& too_large) {
  thread_local std::vector<std::array<char, frame_header_size>> headers;
  headers.resize(records.size());
  too_large = false;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (records[i].size() > max_payload) {
      too_large = true;
      return nullptr;
    }
    format::encode_frame_header(records[i], headers[i].data());
  }
  return headers.data();
}
}  // namespace

std::error_code durable_log::enqueue(std::span<const std::string_view> records,
                                     const std::array<char, frame_header_size>* headers, std::uint64_t& ticket,
                                     log_position& end) {
  if (failed_) return log_errc::io_error;
  if (stopping_) return log_errc::closed;

  // Place the records exactly where the flusher will write them, so the bound counts the real
  // bytes, the headers of segments started on the way included.
  log_position tail = tail_;
  std::uint64_t added = 0;
  for (const auto& r : records) {
    const std::uint64_t frame = frame_header_size + r.size();
    if (tail.offset + frame > options_.segment_bytes && tail.offset > segment_header_size) {
      ++tail.segment;
      tail.offset = segment_header_size;
      added += segment_header_size;
    }
    tail.offset += frame;
    added += frame;
  }
  if (reserved_bytes_ + added > options_.max_bytes) {
    ++counters_.appends_refused_full;
    return log_errc::log_full;
  }

  const bool flusher_idle = pending_.empty();
  tail = tail_;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const std::uint64_t frame = frame_header_size + records[i].size();
    if (tail.offset + frame > options_.segment_bytes && tail.offset > segment_header_size) {
      ++tail.segment;
      tail.offset = segment_header_size;
    }
    pending_record& p = pending_.emplace_back();
    p.position = tail;
    std::memcpy(p.header, headers[i].data(), frame_header_size);
    p.payload = records[i];
    tail.offset += frame;
  }
  tail_ = tail;
  reserved_bytes_ += added;
  update_high_water();
  accepted_records_ += records.size();
  ticket = accepted_records_;
  end = tail;
  if (!records.empty()) {
    ++pending_appends_;
    // The flusher sleeps on an empty queue, or gathers until enough appends are queued.
    if (flusher_idle || pending_appends_ >= gather_target_) work_cv_.notify_one();
  }
  return {};
}

append_result durable_log::append(std::span<const std::string_view> records) {
  bool too_large = false;
  const auto* headers = encode_headers(records, max_payload_bytes_, too_large);
  if (too_large) return {log_errc::record_too_large, {}};

  std::unique_lock lock(mutex_);
  std::uint64_t ticket = 0;
  log_position end;
  if (auto e = enqueue(records, headers, ticket, end)) return {e, {}};
  durable_cv_.wait(lock, [&] { return durable_records_ >= ticket || failed_; });
  if (durable_records_ < ticket) return {log_errc::io_error, {}};
  ++counters_.appends;
  counters_.records_appended += records.size();
  return {{}, end};
}

std::error_code durable_log::append_async(std::span<const std::string_view> records, append_callback done) {
  bool too_large = false;
  const auto* headers = encode_headers(records, max_payload_bytes_, too_large);
  if (too_large) return log_errc::record_too_large;

  std::lock_guard lock(mutex_);
  std::uint64_t ticket = 0;
  log_position end;
  if (auto e = enqueue(records, headers, ticket, end)) return e;
  // An empty append is answered with the next group (it is durable once everything before it is).
  pending_completions_.push_back(completion{std::move(done), end, records.size()});
  if (records.empty()) work_cv_.notify_one();
  return {};
}

void durable_log::flusher_main() {
  std::vector<pending_record> group;
  std::vector<completion> completions;
  std::vector<roll> rolls;
  // Runs the async appends' callbacks of the group just finished, without the lock.
  auto complete = [&](std::unique_lock<std::mutex>& lock, std::error_code error) {
    if (completions.empty()) return;
    lock.unlock();
    for (auto& c : completions) c.done(append_result{error, error ? log_position{} : c.end});
    completions.clear();
    lock.lock();
  };
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [&] { return !pending_.empty() || !pending_completions_.empty() || stopping_; });
    if (pending_.empty() && pending_completions_.empty()) return;  // stopping, and everything queued is written
    // Closed-loop appenders released by the last group come straight back; starting the fsync a few
    // microseconds before they do would cost them a whole extra fsync.
    if (pending_appends_ < gather_target_ && !stopping_) {
      work_cv_.wait_until(lock, gather_deadline_,
                          [&] { return pending_appends_ >= gather_target_ || stopping_; });
    }
    group.swap(pending_);  // pending_ takes the emptied vector back, capacity kept
    completions.swap(pending_completions_);
    const std::uint64_t group_appends = pending_appends_;
    pending_appends_ = 0;
    lock.unlock();

    rolls.clear();
    group_outcome outcome;
    write_group(group, rolls, outcome);

    lock.lock();
    counters_.fsyncs += outcome.fsyncs;
    counters_.total_fsync_ns += outcome.fsync_ns;
    if (outcome.fsyncs > 0) counters_.last_fsync_ns = outcome.last_fsync_ns;
    counters_.max_fsync_ns = std::max(counters_.max_fsync_ns, outcome.max_fsync_ns);
    if (outcome.error != 0) {
      // After a failed fsync the page cache may say one thing and the disk another (and a retried
      // fsync can succeed without the data): stop, and let a reopen find out what is really there.
      failed_ = true;
      counters_.failed = true;
      pending_.clear();  // their appenders wake up to io_error and drop the views
      for (auto& c : pending_completions_) completions.push_back(std::move(c));
      pending_completions_.clear();
      spdlog::error("The spool stopped accepting records after a failed {}. directory={} segment={} error={}",
                    outcome.failed_call, options_.directory.string(), active_segment_, errno_text(outcome.error));
      durable_cv_.notify_all();
      complete(lock, log_errc::io_error);
      return;
    }
    for (const roll& r : rolls) {
      for (auto& s : segments_) {
        if (s.id == r.sealed_id) {
          s.durable_size = r.sealed_size;
          s.sealed = true;
        }
      }
      segments_.push_back(segment_state{r.new_id, segment_header_size, false});
    }
    segments_.back().durable_size = active_size_;
    disk_bytes_ += outcome.bytes_written;
    counters_.bytes_appended += outcome.bytes_written - rolls.size() * segment_header_size;
    ++counters_.group_commits;
    durable_records_ += group.size();
    group.clear();
    // The next group waits for the appenders released now and those already queued, but at most half
    // an fsync: waiting longer than an fsync would cost more than it saves.
    fsync_average_ = (fsync_average_ * 7 + std::chrono::nanoseconds(outcome.last_fsync_ns)) / 8;
    const auto wait = std::min<std::chrono::nanoseconds>(options_.max_group_wait, fsync_average_ / 2);
    gather_target_ = wait.count() > 0 ? group_appends + pending_appends_ : 0;
    gather_deadline_ = steady::now() + wait;
    for (const auto& c : completions) {
      if (c.records > 0) ++counters_.appends;
      counters_.records_appended += c.records;
    }
    durable_cv_.notify_all();
    complete(lock, {});
  }
}

// Flusher thread, without the lock: writes the group in order and fsyncs it. Every segment left
// behind is fdatasync'ed before the first byte goes into the next one, so after a crash only the last
// segment can have a torn tail.
void durable_log::write_group(std::vector<pending_record>& group, std::vector<roll>& rolls, group_outcome& out) {
  thread_local std::vector<iovec> iov;
  auto timed_fdatasync = [&]() -> bool {
    const auto start = steady::now();
    if (::fdatasync(active_fd_) != 0) {
      out.error = errno;
      out.failed_call = "fdatasync";
      return false;
    }
    const auto ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(steady::now() - start).count());
    ++out.fsyncs;
    out.fsync_ns += ns;
    out.last_fsync_ns = ns;
    out.max_fsync_ns = std::max(out.max_fsync_ns, ns);
    return true;
  };

  bool dirty = false;  // the active segment has bytes written since its last fdatasync
  std::size_t i = 0;
  while (i < group.size()) {
    const log_position first = group[i].position;
    if (first.segment != active_segment_) {
      if (first.segment != active_segment_ + 1 || first.offset != segment_header_size) {
        out.error = EINVAL;
        out.failed_call = "placement check (a record was placed outside the next segment)";
        return;
      }
      if (dirty && !timed_fdatasync()) return;
      const int fd = create_segment(first.segment, out);
      if (fd < 0) return;
      rolls.push_back(roll{active_segment_, active_size_, first.segment});
      close_fd(active_fd_);
      active_fd_ = fd;
      active_segment_ = first.segment;
      active_size_ = segment_header_size;
    }
    if (first.offset != active_size_) {
      out.error = EINVAL;
      out.failed_call = "placement check (a record was placed away from the end of the segment)";
      return;
    }
    iov.clear();
    std::uint64_t bytes = 0;
    std::size_t j = i;
    for (; j < group.size() && group[j].position.segment == active_segment_; ++j) {
      iov.push_back(iovec{group[j].header, frame_header_size});
      if (!group[j].payload.empty()) {
        iov.push_back(iovec{const_cast<char*>(group[j].payload.data()), group[j].payload.size()});
      }
      bytes += frame_header_size + group[j].payload.size();
    }
    if (const int e = pwritev_full(active_fd_, iov.data(), iov.size(), active_size_); e != 0) {
      out.error = e;
      out.failed_call = "pwritev";
      return;
    }
    active_size_ += bytes;
    out.bytes_written += bytes;
    dirty = true;
    i = j;
  }
  if (dirty) timed_fdatasync();
}

void durable_log::update_high_water() noexcept {
  above_high_water_.store(reserved_bytes_ >= high_water_bytes_, std::memory_order_relaxed);
}

}  // namespace crm::sinks::spool
