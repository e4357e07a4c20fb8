#include "sinks/spool/durable_log.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>

#include "sinks/spool/segment_format.h"

namespace crm::sinks::spool {
namespace {

using format::frame_header_size;
using format::segment_header_size;
using steady = std::chrono::steady_clock;

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

[[noreturn]] void throw_open_error(const std::string& what) { throw open_error(what); }

[[noreturn]] void throw_io(const std::string& action, const std::filesystem::path& path, int error) {
  throw open_error("Could not " + action + " " + path.string() + ": " + errno_text(error));
}

// pread until `n` bytes are in or the file ends; returns bytes read or -errno.
ssize_t pread_full(int fd, char* out, std::size_t n, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

// Writes every iovec at `offset`, resuming after short writes. Returns 0 or errno.
int pwritev_full(int fd, iovec* iov, std::size_t count, std::uint64_t offset) {
  while (count > 0) {
    const int batch = static_cast<int>(std::min<std::size_t>(count, IOV_MAX));
    const ssize_t n = ::pwritev(fd, iov, batch, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    offset += static_cast<std::uint64_t>(n);
    auto left = static_cast<std::size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

int write_full(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return 0;
}

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

std::string to_string(const log_position& p) { return std::to_string(p.segment) + ":" + std::to_string(p.offset); }

// ---------------------------------------------------------------------------------------------------
// Opening and recovery

durable_log::durable_log(durable_log_options options)
    : options_(std::move(options)),
      high_water_bytes_(options_.high_water_bytes != 0 ? options_.high_water_bytes
                                                       : options_.max_bytes / 10 * 9),
      max_payload_bytes_(options_.segment_bytes - segment_header_size - frame_header_size) {}

std::unique_ptr<durable_log> durable_log::open(durable_log_options options) {
  if (options.directory.empty()) throw_open_error("The spool directory is not set.");
  if (options.segment_bytes < 4096 || options.segment_bytes > (1ull << 30)) {
    throw_open_error("The spool segment size must be between 4 KiB and 1 GiB; got " +
                     std::to_string(options.segment_bytes) + " bytes.");
  }
  // Two segments at least: the active segment is never deleted, so a bound of one segment could
  // leave the log full with everything already checkpointed.
  if (options.max_bytes < 2 * options.segment_bytes) {
    throw_open_error("The spool bound (max_bytes " + std::to_string(options.max_bytes) +
                     ") must be at least two segments (" + std::to_string(2 * options.segment_bytes) + ").");
  }
  if (options.max_group_wait < std::chrono::microseconds(0) || options.max_group_wait > std::chrono::seconds(1)) {
    throw_open_error("The spool's max_group_wait must be between 0 and 1 s.");
  }
  if (options.high_water_bytes > options.max_bytes) {
    throw_open_error("The spool high-water mark must not exceed max_bytes.");
  }
  std::unique_ptr<durable_log> log(new durable_log(std::move(options)));
  log->recover();
  log->flusher_ = std::thread([p = log.get()] { p->flusher_main(); });
  return log;
}

std::filesystem::path durable_log::segment_path(std::uint64_t id) const {
  return options_.directory / format::segment_file_name(id);
}

void durable_log::recover() {
  namespace fs = std::filesystem;
  const fs::path& dir = options_.directory;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw_open_error("Could not create the spool directory " + dir.string() + ": " + ec.message());
  dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) throw_io("open the spool directory", dir, errno);

  // Two writers on one directory would interleave frames; the lock dies with the process.
  lock_fd_ = ::openat(dir_fd_, format::lock_file_name.data(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw_io("create the lock file in", dir, errno);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      throw_open_error("The spool directory " + dir.string() + " is already open in another durable_log "
                       "(this process or another one); only one may own it.");
    }
    throw_io("lock", dir / format::lock_file_name, errno);
  }

  bool has_checkpoint = false;
  log_position checkpoint;
  {
    const int fd = ::openat(dir_fd_, format::checkpoint_file_name.data(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) throw_io("open", dir / format::checkpoint_file_name, errno);
    if (fd >= 0) {
      std::array<char, 64> bytes{};
      const ssize_t n = pread_full(fd, bytes.data(), bytes.size(), 0);
      const int read_error = n < 0 ? static_cast<int>(-n) : 0;
      ::close(fd);
      if (read_error != 0) throw_io("read", dir / format::checkpoint_file_name, read_error);
      if (!format::decode_checkpoint({bytes.data(), static_cast<std::size_t>(n)}, checkpoint.segment,
                                     checkpoint.offset)) {
        throw_open_error("The spool checkpoint file " + (dir / format::checkpoint_file_name).string() +
                         " is damaged, so where PostgreSQL stands is unknown. Refusing to guess. Remove it to "
                         "replay the spool from its oldest segment (replays are idempotent), or restore it.");
      }
      has_checkpoint = true;
    }
  }

  std::vector<std::uint64_t> ids;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::uint64_t id = 0;
    if (format::parse_segment_file_name(entry.path().filename().string(), id)) ids.push_back(id);
  }
  if (ec) throw_open_error("Could not list the spool directory " + dir.string() + ": " + ec.message());
  std::sort(ids.begin(), ids.end());

  // Everything is checked before anything on disk changes, so a refusal leaves the directory as found.
  std::vector<std::uint64_t> consumed;  // wholly before the checkpoint; their deletion was not yet durable
  if (has_checkpoint) {
    const auto first_live = std::lower_bound(ids.begin(), ids.end(), checkpoint.segment);
    consumed.assign(ids.begin(), first_live);
    ids.erase(ids.begin(), first_live);
    // The checkpoint's own segment may be gone only if the checkpoint was at its very end.
    if (!ids.empty() && ids.front() > checkpoint.segment + 1) {
      throw_open_error("The spool segment " + segment_path(checkpoint.segment + 1).string() +
                       " is missing, but the checkpoint (" + to_string(checkpoint) +
                       ") says its records were not all consumed. Refusing to skip them.");
    }
  }
  for (std::size_t i = 1; i < ids.size(); ++i) {
    if (ids[i] != ids[i - 1] + 1) {
      throw_open_error("The spool segment " + segment_path(ids[i - 1] + 1).string() + " is missing (found " +
                       format::segment_file_name(ids[i - 1]) + " and " + format::segment_file_name(ids[i]) +
                       "). Refusing to skip its records.");
    }
  }

  // A last segment shorter than its header: a crash while it was being created. It never held a
  // record (its header is fsynced before any record goes in), so it is dropped.
  std::optional<std::pair<std::uint64_t, std::uint64_t>> torn_new_segment;  // id, bytes
  if (!ids.empty()) {
    struct stat st {};
    if (::fstatat(dir_fd_, format::segment_file_name(ids.back()).c_str(), &st, 0) != 0) {
      throw_io("stat", segment_path(ids.back()), errno);
    }
    if (static_cast<std::uint64_t>(st.st_size) < segment_header_size) {
      torn_new_segment.emplace(ids.back(), static_cast<std::uint64_t>(st.st_size));
      ids.pop_back();
    }
  }

  scan_result last_scan;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const bool is_last = i + 1 == ids.size();
    const bool holds_checkpoint = has_checkpoint && ids[i] == checkpoint.segment;
    // Records before the checkpoint are checked too: they tell where the frames are.
    scan_result scan = scan_segment(ids[i], is_last, holds_checkpoint ? checkpoint.offset : segment_header_size);
    if (holds_checkpoint && !scan.boundary_found) {
      ::close(scan.fd);
      throw_open_error("The spool checkpoint (" + to_string(checkpoint) + ") is " +
                       (checkpoint.offset > scan.size ? "past the end" : "not at a record boundary") +
                       " of segment " + segment_path(ids[i]).string() + " (" + std::to_string(scan.size) +
                       " bytes of intact records). Records it claims were read are missing or the checkpoint "
                       "is damaged. Refusing to open.");
    }
    counters_.records_recovered += scan.records_from_boundary;
    segments_.push_back(segment_state{ids[i], scan.size, !is_last});
    if (is_last) {
      active_fd_ = scan.fd;  // from here on the destructor closes it, whatever throws
      last_scan = std::move(scan);
    } else {
      ::close(scan.fd);
    }
  }

  // Checks passed: now repair.
  bool directory_changed = false;
  // A temp checkpoint is a checkpoint that was never renamed into place: it never happened.
  if (::unlinkat(dir_fd_, format::checkpoint_temp_file_name.data(), 0) != 0 && errno != ENOENT) {
    throw_io("remove", dir / format::checkpoint_temp_file_name, errno);
  }
  for (const std::uint64_t id : consumed) {
    if (::unlinkat(dir_fd_, format::segment_file_name(id).c_str(), 0) != 0 && errno != ENOENT) {
      throw_io("delete the consumed segment", segment_path(id), errno);
    }
    spdlog::info("The spool deleted a segment that its checkpoint had already consumed. segment={} checkpoint={}",
                 id, to_string(checkpoint));
    ++counters_.segments_deleted;
    directory_changed = true;
  }
  if (torn_new_segment) {
    const auto [id, bytes] = *torn_new_segment;
    if (::unlinkat(dir_fd_, format::segment_file_name(id).c_str(), 0) != 0) throw_io("delete", segment_path(id), errno);
    spdlog::warn("The spool deleted a segment whose header was cut short by a crash. path={} bytes={}",
                 segment_path(id).string(), bytes);
    ++counters_.torn_tails_cut;
    counters_.torn_bytes_cut += bytes;
    directory_changed = true;
  }
  if (!last_scan.problem.empty()) {
    // Only the last group commit can be torn, and none of its appends returned ok.
    if (::ftruncate(active_fd_, static_cast<off_t>(last_scan.size)) != 0 || ::fdatasync(active_fd_) != 0) {
      throw_io("cut the torn tail of", segment_path(ids.back()), errno);
    }
    spdlog::warn("The spool cut a torn tail from its last segment. path={} offset={} bytes_cut={} reason={}",
                 segment_path(ids.back()).string(), last_scan.size, last_scan.file_size - last_scan.size,
                 last_scan.problem);
    ++counters_.torn_tails_cut;
    counters_.torn_bytes_cut += last_scan.file_size - last_scan.size;
  }
  if (!segments_.empty()) {
    active_segment_ = segments_.back().id;
    active_size_ = segments_.back().durable_size;
  }

  if (segments_.empty()) {
    std::uint64_t id = has_checkpoint ? checkpoint.segment + 1 : 1;
    if (torn_new_segment) id = std::max(id, torn_new_segment->first);
    group_outcome ignored;
    active_fd_ = create_segment(id, ignored);
    if (active_fd_ < 0) throw_io("create the spool segment", segment_path(id), ignored.error);
    active_segment_ = id;
    active_size_ = segment_header_size;
    segments_.push_back(segment_state{id, segment_header_size, false});
    directory_changed = false;  // create_segment fsynced the directory
  }
  if (directory_changed && ::fsync(dir_fd_) != 0) throw_io("fsync", dir, errno);

  checkpoint_ = has_checkpoint ? checkpoint : log_position{segments_.front().id, segment_header_size};
  tail_ = {active_segment_, active_size_};
  for (const auto& s : segments_) disk_bytes_ += s.durable_size;
  reserved_bytes_ = disk_bytes_;
  update_high_water();
  spdlog::info("The spool is open. directory={} segments={} bytes={} checkpoint={} records_after_checkpoint={} "
               "torn_tails_cut={}",
               dir.string(), segments_.size(), disk_bytes_, to_string(checkpoint_), counters_.records_recovered,
               counters_.torn_tails_cut);
}

// Checks every frame of a segment. A bad frame in the last segment is a torn tail, reported for
// recover() to cut. Anywhere else it is damage to acknowledged data: open() refuses.
durable_log::scan_result durable_log::scan_segment(std::uint64_t id, bool is_last, std::uint64_t boundary) {
  const auto path = segment_path(id);
  scan_result result;
  int& fd = result.fd;
  fd = ::openat(dir_fd_, format::segment_file_name(id).c_str(), (is_last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw_io("open the spool segment", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    close_fd(fd);
    throw_io("stat", path, e);
  }
  const auto file_size = static_cast<std::uint64_t>(st.st_size);

  if (file_size < segment_header_size) {
    close_fd(fd);
    // recover() already set aside a last segment this short (a crash while creating it).
    throw_open_error("The spool segment " + path.string() + " is shorter than its header (" +
                     std::to_string(file_size) + " bytes) but is not the last segment. Refusing to open.");
  }

  // A sliding window over the file, refilled from the frame being checked.
  std::vector<char> window(std::min<std::uint64_t>(file_size, 1u << 20));
  std::uint64_t window_start = 0;
  std::uint64_t window_end = 0;
  auto view = [&](std::uint64_t offset, std::uint64_t n) -> const char* {
    if (offset < window_start || offset + n > window_end) {
      if (n > window.size()) window.resize(n);
      const std::uint64_t want = std::min<std::uint64_t>(window.size(), file_size - offset);
      const ssize_t r = pread_full(fd, window.data(), want, offset);
      if (r < 0 || static_cast<std::uint64_t>(r) < n) {
        const int e = r < 0 ? static_cast<int>(-r) : EIO;
        close_fd(fd);
        throw_io("read", path, e);
      }
      window_start = offset;
      window_end = offset + static_cast<std::uint64_t>(r);
    }
    return window.data() + (offset - window_start);
  };

  if (auto bad = format::check_segment_header({view(0, segment_header_size), segment_header_size}, id)) {
    close_fd(fd);
    // The header is fsynced before any record goes in, so a crash cannot leave it half written.
    throw_open_error("The spool segment " + path.string() + " has a bad header: " + *bad +
                     ". A crash does not cause this; check the file and move it aside. Refusing to open.");
  }

  std::uint64_t offset = segment_header_size;
  std::string problem;
  while (offset < file_size) {
    if (offset == boundary) result.boundary_found = true;
    if (file_size - offset < frame_header_size) {
      problem = "the last frame header is cut short";
      break;
    }
    const auto header = format::decode_frame_header(view(offset, frame_header_size));
    if (header.length > file_size - offset - frame_header_size) {
      problem = "the frame runs past the end of the file";
      break;
    }
    const std::uint64_t frame = frame_header_size + header.length;
    const char* p = view(offset, frame);
    if (format::frame_crc({p + frame_header_size, header.length}) != header.crc) {
      problem = "the frame CRC does not match";
      break;
    }
    if (offset >= boundary) ++result.records_from_boundary;
    offset += frame;
  }
  if (offset == boundary) result.boundary_found = true;

  if (!problem.empty() && !is_last) {
    close_fd(fd);
    throw_open_error("The spool segment " + path.string() + " is corrupt at offset " + std::to_string(offset) +
                     " (" + problem + "). Only the last segment can have a torn tail, so this damages records "
                     "that were acknowledged. Refusing to skip them; inspect the file before moving it aside.");
  }
  // The caller cuts a torn tail once it knows it will not refuse to open for another reason.
  result.size = offset;
  result.file_size = file_size;
  result.problem = std::move(problem);
  return result;
}

// Creates a segment file with its header, durable (file and directory entry) before it is used. Owner-only:
// it holds callers' raw bodies.
int durable_log::create_segment(std::uint64_t id, group_outcome& timing) {
  const std::string name = format::segment_file_name(id);
  const int fd = ::openat(dir_fd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    timing.error = errno;
    timing.failed_call = "create segment";
    return -1;
  }
  char header[segment_header_size];
  format::encode_segment_header(id, header);
  auto fail = [&](const char* call, int error) {
    timing.error = error;
    timing.failed_call = call;
    ::close(fd);
    return -1;
  };
  if (const int e = write_full(fd, header, sizeof header); e != 0) return fail("write segment header", e);
  const auto start = steady::now();
  if (::fdatasync(fd) != 0) return fail("fdatasync new segment", errno);
  if (::fsync(dir_fd_) != 0) return fail("fsync directory", errno);
  const auto ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(steady::now() - start).count());
  timing.fsyncs += 2;
  timing.fsync_ns += ns;
  timing.last_fsync_ns = ns;
  timing.max_fsync_ns = std::max(timing.max_fsync_ns, ns);
  timing.bytes_written += segment_header_size;
  return fd;
}

durable_log::~durable_log() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  durable_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  close_fd(active_fd_);
  close_fd(reader_fd_);
  close_fd(lock_fd_);  // releases the flock
  close_fd(dir_fd_);
}

// ---------------------------------------------------------------------------------------------------
// Appending (any thread) and the flusher

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

// ---------------------------------------------------------------------------------------------------
// The drainer side

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
  durable_cv_.wait_for(lock, timeout, [&] { return readable_after(from) || failed_ || stopping_; });
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
    // Durable data always ends on a frame boundary.
    if (start + off + frame > limit) {
      out.records_.clear();
      out.payload_bytes_ = 0;
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
      spdlog::error("A spool record failed its CRC check on read. path={} offset={}", segment_path(segment).string(),
                    start + off);
      out.records_.clear();
      out.payload_bytes_ = 0;
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

  char bytes[format::checkpoint_size];
  format::encode_checkpoint(position.segment, position.offset, bytes);
  const char* tmp = format::checkpoint_temp_file_name.data();
  auto failed = [&](const char* what, int error) -> std::error_code {
    spdlog::error("The spool could not write its checkpoint; the previous one stays. step={} directory={} error={}",
                  what, options_.directory.string(), errno_text(error));
    return log_errc::io_error;
  };
  const int fd = ::openat(dir_fd_, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return failed("create", errno);
  if (const int e = write_full(fd, bytes, sizeof bytes); e != 0) {
    ::close(fd);
    return failed("write", e);
  }
  if (::fdatasync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    return failed("fdatasync", e);
  }
  ::close(fd);
  if (::renameat(dir_fd_, tmp, dir_fd_, format::checkpoint_file_name.data()) != 0) return failed("rename", errno);
  if (::fsync(dir_fd_) != 0) return failed("fsync directory", errno);

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
