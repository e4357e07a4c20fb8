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

// fdatasync of the flusher, timed into `out` (a group_outcome); false with the error in `out` when it fails.
template <class Outcome>
bool timed_fdatasync_of(int fd, Outcome& out) {
  const auto start = steady::now();
  if (::fdatasync(fd) != 0) {
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
}
}  // namespace

std::error_code durable_log::enqueue(std::span<const std::string_view> records,
                                     const std::array<char, frame_header_size>* headers, log_position& end) {
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
  log_position end;
  if (auto e = enqueue(records, headers, end)) return {e, {}};
  // Nothing queued before an empty append: the end is durable already.
  if (records.empty() && pending_.empty() && pending_completions_.empty()) return {{}, end};
  // The flusher answers every queued append, the failed ones included (io_error), exactly once.
  sync_waiter waiter;
  pending_completions_.push_back(completion{{}, &waiter, end, records.size()});
  if (records.empty()) work_cv_.notify_one();
  durable_cv_.wait(lock, [&] { return waiter.finished; });
  return waiter.result;
}

std::error_code durable_log::append_async(std::span<const std::string_view> records, append_callback done) {
  bool too_large = false;
  const auto* headers = encode_headers(records, max_payload_bytes_, too_large);
  if (too_large) return log_errc::record_too_large;

  std::lock_guard lock(mutex_);
  log_position end;
  if (auto e = enqueue(records, headers, end)) return e;
  // An empty append is answered with the next group (it is durable once everything before it is).
  pending_completions_.push_back(completion{std::move(done), nullptr, end, records.size()});
  if (records.empty()) work_cv_.notify_one();
  return {};
}

void durable_log::flusher_main() {
  std::vector<pending_record> group;
  std::vector<completion> completions;
  std::vector<roll> rolls;
  std::unique_lock lock(mutex_);
  for (;;) {
    if (failed_) {
      // Stopped by a write error: nothing is queued (appends are refused). Retry now and then.
      work_cv_.wait_until(lock, retry_at_, [&] { return stopping_; });
      if (stopping_) return;
      if (steady::now() < retry_at_) continue;
      const std::uint64_t durable = segments_.back().durable_size;
      lock.unlock();
      group_outcome outcome;
      const std::uint64_t cut = repair(durable, outcome);
      lock.lock();
      count_fsyncs(outcome);
      counters_.failed_bytes_cut += cut;
      if (outcome.error != 0) {
        retry_at_ = steady::now() + options_.retry_interval;
        continue;
      }
      failed_ = false;
      counters_.failed = false;
      ++counters_.write_recoveries;
      spdlog::info("The spool takes records again after a write error. directory={} segment={} offset={} "
                   "failed_bytes_cut={}",
                   options_.directory.string(), active_segment_, durable, counters_.failed_bytes_cut);
      continue;
    }
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
    settle_group(rolls, outcome, completions);
    group.clear();
    if (outcome.error == 0) {
      // The next group waits for the appenders released now and those already queued, but at most half
      // an fsync: waiting longer than an fsync would cost more than it saves.
      fsync_average_ = (fsync_average_ * 7 + std::chrono::nanoseconds(outcome.last_fsync_ns)) / 8;
      const auto wait = std::min<std::chrono::nanoseconds>(options_.max_group_wait, fsync_average_ / 2);
      gather_target_ = wait.count() > 0 ? group_appends + pending_appends_ : 0;
      gather_deadline_ = steady::now() + wait;
    }
    // The async appends' callbacks, without the lock (the synchronous ones were answered in settle_group).
    if (!completions.empty()) {
      lock.unlock();
      for (auto& c : completions) {
        if (c.done) c.done(append_result{outcome.error != 0 ? log_errc::io_error : std::error_code{},
                                         outcome.error != 0 ? log_position{} : c.end});
      }
      completions.clear();
      lock.lock();
    }
  }
}

void durable_log::count_fsyncs(const group_outcome& outcome) {
  counters_.fsyncs += outcome.fsyncs;
  counters_.total_fsync_ns += outcome.fsync_ns;
  if (outcome.fsyncs > 0) counters_.last_fsync_ns = outcome.last_fsync_ns;
  counters_.max_fsync_ns = std::max(counters_.max_fsync_ns, outcome.max_fsync_ns);
}

void durable_log::apply_rolls(const std::vector<roll>& rolls) {
  for (const roll& r : rolls) {
    for (auto& s : segments_) {
      if (s.id == r.sealed_id) {
        s.durable_size = r.sealed_size;
        s.sealed = true;
      }
    }
    segments_.push_back(segment_state{r.new_id, segment_header_size, false});
  }
}

void durable_log::settle_group(std::vector<roll>& rolls, const group_outcome& outcome,
                               std::vector<completion>& completions) {
  count_fsyncs(outcome);
  const std::uint64_t headers_written = rolls.size() * segment_header_size;
  // Segments rolled in this group are durable whatever came after (each is fdatasync'ed before the next one
  // starts, and a new one's header before any record): their records are readable even when the group failed.
  apply_rolls(rolls);
  rolls.clear();
  if (outcome.error == 0) {
    segments_.back().durable_size = active_size_;
    disk_bytes_ += outcome.bytes_written;
    counters_.bytes_appended += outcome.bytes_written - headers_written;
    ++counters_.group_commits;
  } else {
    // After a failed write or fdatasync the bytes after the last durable end may be anything (and a retried
    // fdatasync can succeed without them): they are given up, cut by repair() before anything is written there.
    // Every queued append fails, so the next record goes at the durable end again.
    const bool first = !failed_;
    failed_ = true;
    counters_.failed = true;
    retry_at_ = steady::now() + options_.retry_interval;
    active_size_ = segments_.back().durable_size;
    disk_bytes_ = 0;
    for (const auto& s : segments_) disk_bytes_ += s.durable_size;
    reserved_bytes_ = disk_bytes_;
    tail_ = {segments_.back().id, segments_.back().durable_size};
    update_high_water();
    gather_target_ = 0;
    pending_appends_ = 0;
    pending_.clear();  // their appenders are answered io_error below and drop the views
    for (auto& c : pending_completions_) completions.push_back(std::move(c));
    pending_completions_.clear();
    if (first) {
      ++counters_.write_failures;
      spdlog::error("The spool stopped accepting records after a failed {}; it retries every {} ms. directory={} "
                    "segment={} error={}",
                    outcome.failed_call, options_.retry_interval.count(), options_.directory.string(),
                    active_segment_, errno_text(outcome.error));
    }
  }
  for (auto& c : completions) {
    if (outcome.error == 0) {
      if (c.records > 0) ++counters_.appends;
      counters_.records_appended += c.records;
    }
    if (c.waiter != nullptr) {
      c.waiter->result = append_result{outcome.error != 0 ? log_errc::io_error : std::error_code{},
                                       outcome.error != 0 ? log_position{} : c.end};
      c.waiter->finished = true;
    }
  }
  durable_cv_.notify_all();
}

// Flusher thread, without the lock: writes the group in order and fsyncs it. Every segment left
// behind is fdatasync'ed before the first byte goes into the next one, so after a crash only the last
// segment can have a torn tail.
void durable_log::write_group(std::vector<pending_record>& group, std::vector<roll>& rolls, group_outcome& out) {
  thread_local std::vector<iovec> iov;
  auto timed_fdatasync = [&] { return timed_fdatasync_of(active_fd_, out); };

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

// Flusher thread, without the lock, while the log is stopped by a write error. The failed write may have left
// anything after `durable` (the end of the last fdatasync'ed group) in the active segment, and a roll that failed
// half way a file for the next segment: both are cut, so that no half-written frame is ever read as a record and
// the next records go at `durable`. Then zeros are written where they will go (and cut again) to see whether
// there is room: only if that and an fdatasync succeed (no error in `out`) does the log take records again.
// Returns the bytes cut.
std::uint64_t durable_log::repair(std::uint64_t durable, group_outcome& out) {
  auto fail = [&](const char* call, int error) -> std::uint64_t {
    out.error = error;
    out.failed_call = call;
    return 0;
  };
  struct stat st {};
  if (::fstat(active_fd_, &st) != 0) return fail("fstat", errno);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (::unlinkat(dir_fd_, format::segment_file_name(active_segment_ + 1).c_str(), 0) != 0 && errno != ENOENT) {
    return fail("unlink of an unfinished segment", errno);
  }
  static constexpr std::size_t zeros_size = 64 << 10;
  static const std::array<char, zeros_size> zeros{};
  std::vector<iovec> probe;
  for (std::uint64_t left = std::min<std::uint64_t>(options_.segment_bytes, 1 << 20); left > 0;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, zeros_size));
    probe.push_back(iovec{const_cast<char*>(zeros.data()), n});
    left -= n;
  }
  const int probe_error = pwritev_full(active_fd_, probe.data(), probe.size(), durable);
  if (::ftruncate(active_fd_, static_cast<off_t>(durable)) != 0) return fail("ftruncate", errno);
  const std::uint64_t cut = size > durable ? size - durable : 0;  // cut now, whatever comes next
  if (probe_error != 0) fail("pwritev (room check)", probe_error);
  if (out.error == 0 && timed_fdatasync_of(active_fd_, out)) active_size_ = durable;
  return cut;
}

void durable_log::update_high_water() noexcept {
  above_high_water_.store(reserved_bytes_ >= high_water_bytes_, std::memory_order_relaxed);
}

}  // namespace crm::sinks::spool
