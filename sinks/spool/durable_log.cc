// durable_log, the opening side: the directory lock, recovery (scan, torn-tail cut) and segment creation.
// See durable_log.h for the thread ownership.
#include <pthread.h>

#include "sinks/spool/durable_log_internal.h"

namespace crm::sinks::spool {

using namespace internal;

namespace {

[[noreturn]] void throw_open_error(const std::string& what) { throw open_error(what); }

[[noreturn]] void throw_io(const std::string& action, const std::filesystem::path& path, int error) {
  throw open_error("Could not " + action + " " + path.string() + ": " + errno_text(error));
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
  log->flusher_ = std::thread([p = log.get()] {
    pthread_setname_np(pthread_self(), "crm-log-flush");
    p->flusher_main();
  });
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

  // Two writers on one directory would interleave frames; the locks die with the process. The directory itself is
  // locked: a lock file alone can be deleted (by hand, a cleanup job) and a second process then locked a new one
  // and appended beside the first. The lock file is still taken, for a process of an earlier version.
  lock_fd_ = ::openat(dir_fd_, format::lock_file_name.data(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw_io("create the lock file in", dir, errno);
  for (const int fd : {dir_fd_, lock_fd_}) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) continue;
    if (errno == EWOULDBLOCK) {
      throw_open_error("The spool directory " + dir.string() + " is already open in another durable_log "
                       "(this process or another one); only one may own it.");
    }
    throw_io("lock", fd == dir_fd_ ? dir : dir / format::lock_file_name, errno);
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
    // The log always keeps the segment it appends to, which is never before the checkpoint's: none from the
    // checkpoint's on means they were deleted, or the checkpoint is not this log's. Every segment would be taken
    // for consumed and deleted.
    if (ids.empty() && !consumed.empty()) {
      throw_open_error("The spool checkpoint (" + to_string(checkpoint) + ") names segment " +
                       std::to_string(checkpoint.segment) + " but there is no segment from it on (the newest is " +
                       segment_path(consumed.back()).string() + "): the checkpoint is not this directory's or its "
                       "segments were removed. Refusing to delete the older ones as consumed.");
    }
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
    if (options_.stop_requested && options_.stop_requested()) {
      throw open_stopped("Stopped while checking the spool " + dir.string() + " (segment " +
                         std::to_string(ids[i]) + "); nothing on disk was changed.");
    }
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
  prepare_checkpoint_spare(checkpoint_);
  tail_ = {active_segment_, active_size_};
  for (const auto& s : segments_) disk_bytes_ += s.durable_size;
  reserved_bytes_ = disk_bytes_;
  update_high_water();
  spdlog::info("The spool is open. directory={} segments={} bytes={} checkpoint={} records_after_checkpoint={} "
               "torn_tails_cut={}",
               dir.string(), segments_.size(), disk_bytes_, to_string(checkpoint_), counters_.records_recovered,
               counters_.torn_tails_cut);
}

// The checkpoint's spare file (see write_checkpoint_file), made while there is room so that a disk the log fills
// later cannot stop checkpoints (which free it). Best effort: without it a checkpoint makes one, or writes in place.
void durable_log::prepare_checkpoint_spare(log_position contents) {
  const char* name = format::checkpoint_spare_file_name.data();
  struct stat st {};
  if (::fstatat(dir_fd_, name, &st, 0) == 0 && static_cast<std::uint64_t>(st.st_size) == format::checkpoint_size) {
    return;
  }
  char bytes[format::checkpoint_size];
  format::encode_checkpoint(contents.segment, contents.offset, bytes);
  const int fd = ::openat(dir_fd_, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int error = fd < 0 ? errno : pwrite_full(fd, bytes, sizeof bytes, 0);
  if (error == 0 && ::fdatasync(fd) != 0) error = errno;
  if (fd >= 0) ::close(fd);
  if (error == 0) return;
  ::unlinkat(dir_fd_, name, 0);
  spdlog::warn("The spool could not prepare its spare checkpoint file; checkpoints make one when there is room. "
               "directory={} error={}",
               options_.directory.string(), errno_text(error));
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
  if (!problem.empty()) {
    // A crash tears only the end of the last group commit, whose appends were never acknowledged. Intact records
    // after the bad frame say it is damage (a flipped byte, a file cut or edited by hand), and cutting there would
    // drop acknowledged records after it. The search is bounded: every byte after the bad frame is a candidate
    // start, and junk (random blocks after a power loss) reads as lengths that would each be checked in full, so
    // at most four times the rest of the file is checked; beyond that the tail is cut as before, with a warning.
    const std::uint64_t rest = file_size - offset;
    std::uint64_t budget = 4 * rest + (1u << 20);
    for (std::uint64_t at = offset + 1; at + frame_header_size <= file_size; ++at) {
      const auto header = format::decode_frame_header(view(at, frame_header_size));
      if (header.length == 0 || header.length > file_size - at - frame_header_size) continue;
      if (header.length > budget) {
        spdlog::warn("The spool could not tell a torn tail from damage within its bound; cutting it as a torn tail. "
                     "path={} offset={} bytes_after={}",
                     path.string(), offset, rest);
        break;
      }
      budget -= header.length;
      const char* p = view(at, frame_header_size + header.length);
      if (format::frame_crc({p + frame_header_size, header.length}) != header.crc) continue;
      close_fd(fd);
      throw_open_error("The spool segment " + path.string() + " is damaged at offset " + std::to_string(offset) +
                       " (" + problem + ") but an intact record follows at offset " + std::to_string(at) +
                       ": not a torn tail (a crash tears only the end). Refusing to cut records that were "
                       "acknowledged; inspect the file. Only if the machine lost power while writing its last "
                       "records (never acknowledged) cut them by hand: truncate -s " + std::to_string(offset) + " " +
                       path.string());
    }
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
    // It never held a record; if the unlink fails too, the flusher's retry (or the next open) removes it.
    ::unlinkat(dir_fd_, name.c_str(), 0);
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

}  // namespace crm::sinks::spool
