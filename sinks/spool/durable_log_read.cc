// durable_log, the drainer side: read, wait for data, checkpoint (the drainer's thread), and the
// stats any thread may read. See durable_log.h for the thread ownership.
#include "sinks/spool/durable_log_internal.h"

namespace crm::sinks::spool {

using namespace internal;

bool durable_log::readable_after(log_position from) const {
  for (const auto& s : segments_) {
    if (s.id < from.segment) continue;
    const std::uint64_t start = s.id == from.segment ? from.offset : segment_header_size;
    if (start < s.durable_size) return true;
  }
  return false;
}

bool durable_log::wait_for_data(log_position from, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  // Not woken by a write error: the log goes on serving what is durable, and a drainer that waited for data
  // while the log is stopped would only spin.
  durable_cv_.wait_for(lock, timeout, [&] { return readable_after(from) || stopping_; });
  return readable_after(from);
}

std::error_code durable_log::open_reader(std::uint64_t segment) {
  if (reader_fd_ >= 0 && reader_segment_ == segment) return {};
  close_fd(reader_fd_);
  reader_fd_ = ::openat(dir_fd_, format::segment_file_name(segment).c_str(), O_RDONLY | O_CLOEXEC);
  if (reader_fd_ < 0) {
    spdlog::error("The spool could not open a segment for reading. path={} error={}",
                  segment_path(segment).string(), errno_text(errno));
    return log_errc::io_error;
  }
  reader_segment_ = segment;
  return {};
}

std::error_code durable_log::read(log_position from, std::size_t max_records, std::size_t max_bytes,
                                  read_batch& out) {
  out.records_.clear();
  out.payload_bytes_ = 0;
  out.next_ = from;
  if (max_records == 0) return {};

  std::uint64_t segment = 0;
  std::uint64_t start = 0;
  std::uint64_t limit = 0;
  {
    std::lock_guard lock(mutex_);
    if (from < checkpoint_) return log_errc::invalid_position;
    auto it = std::find_if(segments_.begin(), segments_.end(), [&](const segment_state& s) { return s.id >= from.segment; });
    if (it == segments_.end()) return log_errc::invalid_position;
    if (it->id == from.segment) {
      if (from.offset < segment_header_size || from.offset > it->durable_size) return log_errc::invalid_position;
      start = from.offset;
      if (start == it->durable_size) {
        if (!it->sealed || ++it == segments_.end()) return {};  // nothing new yet
        start = segment_header_size;
      }
    } else {
      // `from`'s segment is gone: only the checkpoint at its very end may still point there.
      if (from != checkpoint_) return log_errc::invalid_position;
      start = segment_header_size;
    }
    segment = it->id;
    limit = it->durable_size;
  }
  if (start >= limit) return {};
  if (limit - start < frame_header_size) return log_errc::corrupt_record;
  if (auto ec = open_reader(segment)) return ec;

  auto ensure_capacity = [&](std::size_t n) {
    if (out.capacity_ < n) {
      out.buffer_ = std::make_unique_for_overwrite<char[]>(n);
      out.capacity_ = n;
    }
  };
  auto fill = [&](std::size_t at, std::size_t n, std::uint64_t offset) -> std::error_code {
    const ssize_t r = pread_full(reader_fd_, out.buffer_.get() + at, n, offset);
    if (r < 0 || static_cast<std::size_t>(r) != n) {
      spdlog::error("The spool could not read durable data. path={} offset={} error={}",
                    segment_path(segment).string(), offset, r < 0 ? errno_text(static_cast<int>(-r)) : "short read");
      return log_errc::io_error;
    }
    return {};
  };

  std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(
      limit - start, std::max<std::size_t>(max_bytes, frame_header_size)));
  ensure_capacity(want);
  if (auto ec = fill(0, want, start)) return ec;

  std::size_t off = 0;
  while (out.records_.size() < max_records && want - off >= frame_header_size) {
    const auto header = format::decode_frame_header(out.buffer_.get() + off);
    const std::uint64_t frame = frame_header_size + header.length;
    // Durable data always ends on a frame boundary. Damage after intact records: those are returned first (the
    // caller writes them and its next read, from the damage, fails), so that a bad record stops the reader there
    // rather than holding back everything read before it.
    if (start + off + frame > limit) {
      if (!out.records_.empty()) break;
      return log_errc::corrupt_record;
    }
    if (off + frame > want) {
      if (!out.records_.empty()) break;
      // A single record larger than max_bytes: read it whole (nothing points into the buffer yet).
      auto bigger = std::make_unique_for_overwrite<char[]>(frame);
      std::memcpy(bigger.get(), out.buffer_.get(), want);
      out.buffer_ = std::move(bigger);
      out.capacity_ = frame;
      if (auto ec = fill(want, frame - want, start + want)) return ec;
      want = frame;
    }
    const std::string_view payload(out.buffer_.get() + off + frame_header_size, header.length);
    if (format::frame_crc(payload) != header.crc) {
      if (!out.records_.empty()) break;
      spdlog::error("A spool record failed its CRC check on read. path={} offset={}", segment_path(segment).string(),
                    start + off);
      return log_errc::corrupt_record;
    }
    log_record& r = out.records_.emplace_back();
    r.position = {segment, start + off};
    r.next = {segment, start + off + frame};
    r.payload = payload;
    out.payload_bytes_ += payload.size();
    off += frame;
  }
  if (!out.records_.empty()) out.next_ = out.records_.back().next;
  return {};
}

// A checkpoint in the middle of a record would make every later open refuse the directory; reading
// the frame that should start there costs one pread per checkpoint, which is per PostgreSQL batch.
std::error_code durable_log::check_boundary(log_position position, std::uint64_t durable_size) {
  if (position.offset == segment_header_size || position.offset == durable_size) return {};
  if (durable_size - position.offset < frame_header_size) return log_errc::invalid_position;
  if (auto ec = open_reader(position.segment)) return ec;
  char header_bytes[frame_header_size];
  const ssize_t r = pread_full(reader_fd_, header_bytes, frame_header_size, position.offset);
  if (r != static_cast<ssize_t>(frame_header_size)) return log_errc::io_error;
  const auto header = format::decode_frame_header(header_bytes);
  if (header.length > durable_size - position.offset - frame_header_size) return log_errc::invalid_position;
  boundary_buffer_.resize(header.length);
  if (header.length > 0 &&
      pread_full(reader_fd_, boundary_buffer_.data(), header.length, position.offset + frame_header_size) !=
          static_cast<ssize_t>(header.length)) {
    return log_errc::io_error;
  }
  if (format::frame_crc({boundary_buffer_.data(), header.length}) != header.crc) return log_errc::invalid_position;
  return {};
}

std::error_code durable_log::checkpoint(log_position position) {
  std::uint64_t durable_size = 0;
  {
    std::lock_guard lock(mutex_);
    if (position < checkpoint_) return log_errc::invalid_position;
    if (position == checkpoint_) return {};
    auto it = std::find_if(segments_.begin(), segments_.end(),
                           [&](const segment_state& s) { return s.id == position.segment; });
    if (it == segments_.end() || position.offset < segment_header_size || position.offset > it->durable_size) {
      return log_errc::invalid_position;
    }
    durable_size = it->durable_size;
  }
  if (auto ec = check_boundary(position, durable_size)) return ec;

  const char* failed_call = nullptr;
  if (const int e = write_checkpoint_file(position, failed_call); e != 0) {
    spdlog::error("The spool could not write its checkpoint; the previous one stays. step={} directory={} error={}",
                  failed_call, options_.directory.string(), errno_text(e));
    return log_errc::io_error;
  }

  // Durable now. Sealed segments wholly before the checkpoint are no longer needed.
  std::vector<std::uint64_t> doomed;
  {
    std::lock_guard lock(mutex_);
    checkpoint_ = position;
    ++counters_.checkpoints;
    while (segments_.size() > 1) {
      const segment_state& s = segments_.front();
      const bool consumed = s.id < position.segment || (s.id == position.segment && position.offset >= s.durable_size);
      if (!s.sealed || !consumed) break;
      doomed.push_back(s.id);
      disk_bytes_ -= s.durable_size;
      reserved_bytes_ -= s.durable_size;
      segments_.pop_front();
    }
    counters_.segments_deleted += doomed.size();
    update_high_water();
  }
  for (const std::uint64_t id : doomed) {
    if (reader_fd_ >= 0 && reader_segment_ == id) close_fd(reader_fd_);
    // A deletion lost in a crash is redone at open (segments before the checkpoint are removed).
    if (::unlinkat(dir_fd_, format::segment_file_name(id).c_str(), 0) != 0) {
      spdlog::warn("The spool could not delete a consumed segment; the next open retries. path={} error={}",
                   segment_path(id).string(), errno_text(errno));
    }
  }
  return {};
}

namespace {
bool out_of_space(int error) { return error == ENOSPC || error == EDQUOT || error == EFBIG; }
}  // namespace

// The checkpoint goes into the spare file (`checkpoint.spare`, allocated beforehand: rewriting its 32 bytes needs
// no free block), which is fdatasync'ed and then swapped with `checkpoint` in one rename (RENAME_EXCHANGE): the old
// checkpoint becomes the next spare. So a full disk never stops the drainer from checkpointing, which is what
// frees it. Without a spare (a log of an earlier version, or none could be made), one is created; where that
// needs room that is not there, the 32 bytes are written over `checkpoint` itself and fdatasync'ed (a write
// within one sector; a torn one fails its CRC and open() refuses it, see README.md).
int durable_log::write_checkpoint_file(log_position position, const char*& failed_call) {
  char bytes[format::checkpoint_size];
  format::encode_checkpoint(position.segment, position.offset, bytes);
  const char* spare = format::checkpoint_spare_file_name.data();
  const char* live = format::checkpoint_file_name.data();
  int error = 0;
  auto step = [&](const char* call, bool ok) {
    if (!ok && error == 0) {
      error = errno;
      failed_call = call;
    }
    return ok && error == 0;
  };
  int fd = ::openat(dir_fd_, spare, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (step("open the spare", fd >= 0)) {
    const int e = pwrite_full(fd, bytes, sizeof bytes, 0);
    errno = e;
    if (step("write the spare", e == 0) && step("size the spare", ::ftruncate(fd, sizeof bytes) == 0) &&
        step("fdatasync the spare", ::fdatasync(fd) == 0)) {
      if (::renameat2(dir_fd_, spare, dir_fd_, live, RENAME_EXCHANGE) != 0) {
        // No checkpoint yet, or a file system without exchange: the spare becomes the checkpoint.
        step("rename the spare", (errno == ENOENT || errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) &&
                                     ::renameat(dir_fd_, spare, dir_fd_, live) == 0);
        if (error == 0) prepare_checkpoint_spare(position);  // while there is room
      }
      if (step("fsync the directory", ::fsync(dir_fd_) == 0)) {
        ::close(fd);
        return 0;
      }
    }
    ::close(fd);
  }
  if (!out_of_space(error)) return error;
  // No room for a spare: it never became the checkpoint, and a half-written one is only a spare.
  ::unlinkat(dir_fd_, spare, 0);
  error = 0;
  fd = ::openat(dir_fd_, live, O_WRONLY | O_CLOEXEC);
  if (!step("open the checkpoint to write it in place", fd >= 0)) return error;
  const int e = pwrite_full(fd, bytes, sizeof bytes, 0);
  errno = e;
  const bool ok = step("write the checkpoint in place", e == 0) && step("fdatasync the checkpoint", ::fdatasync(fd) == 0);
  ::close(fd);
  if (!ok) return error;
  spdlog::warn("The spool wrote its checkpoint in place: no room for its spare file. directory={} checkpoint={}",
               options_.directory.string(), to_string(position));
  std::lock_guard lock(mutex_);
  ++counters_.checkpoints_in_place;
  return 0;
}

log_position durable_log::checkpointed() const {
  std::lock_guard lock(mutex_);
  return checkpoint_;
}

log_position durable_log::durable_end() const {
  std::lock_guard lock(mutex_);
  return {segments_.back().id, segments_.back().durable_size};
}

durable_log_stats durable_log::stats() const {
  std::lock_guard lock(mutex_);
  durable_log_stats s = counters_;
  s.bytes_on_disk = disk_bytes_;
  s.bytes_reserved = reserved_bytes_;
  s.segments = segments_.size();
  for (const auto& seg : segments_) {
    if (seg.id < checkpoint_.segment) continue;
    const std::uint64_t start = seg.id == checkpoint_.segment ? checkpoint_.offset : segment_header_size;
    if (seg.durable_size > start) s.backlog_bytes += seg.durable_size - start;
  }
  return s;
}
}  // namespace crm::sinks::spool
