// The spool: a bounded, append-only log of opaque records in segment files under one directory, the
// local write-ahead store between the collectors and the PostgreSQL writer. A collector acknowledges
// its sender only after append() returned ok, i.e. after the records are fdatasync'ed.
//
// Thread ownership:
// - The flusher thread (started by open(), joined by the destructor) owns the active segment's fd and
//   is the only thread that writes segment files. It takes every record queued so far, writes them
//   with pwritev and shares ONE fdatasync among them (group commit).
// - Appenders (any number of threads) never touch a file: append() checks the bound, reserves the
//   records' positions, queues views of them and blocks until the flusher reports them durable.
//   append_async() does the same without blocking: the flusher thread runs its completion once the
//   group holding the records is durable (or has failed), after releasing the log's mutex. Completions
//   must be short and must not call back into the log (the collector's posts the HTTP answer to the
//   connection's strand); while they run, the next group gathers.
//   While the flusher is busy in a write or fdatasync, new appends queue up and go into the next group
//   (which waits up to max_group_wait for the appenders just released, see durable_log_options).
//   When accepting the records would exceed max_bytes, append() returns log_full at once and queues
//   nothing: the collector answers 503 + Retry-After. After a failed write or fdatasync (a full disk) every
//   append is refused with io_error until the flusher thread, every retry_interval, has cut what the failed
//   write left after the durable end and written there successfully (see README.md, "I/O errors while running").
// - One drainer thread calls read(), wait_for_data() and checkpoint(); checkpoint() deletes the
//   sealed segments it frees, which is what makes room under the bound again.
// - stats(), above_high_water(), checkpointed() and durable_end() may be called from any thread.
//
// File format: sinks/spool/segment_format.h. Recovery rules and the rest: sinks/spool/README.md.
#pragma once

#include <atomic>
#include <chrono>
#include <array>
#include <compare>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "sinks/spool/spool_error.h"

namespace crm::sinks::spool {

struct durable_log_options {
  std::filesystem::path directory;
  // A segment is closed and a new one started when the next record would not fit.
  std::uint64_t segment_bytes = 64ull << 20;
  // Bound on the bytes of all segment files (headers and not-yet-checkpointed data included).
  std::uint64_t max_bytes = 4ull << 30;
  // above_high_water() turns true at this many bytes; 0 means 90% of max_bytes.
  std::uint64_t high_water_bytes = 0;
  // Before starting an fsync, the flusher may wait this long (and never more than half the recent
  // fsync time) for the appenders it just released to come back, so that they share the next fsync
  // instead of splitting into two alternating half-size groups. Zero disables the wait.
  std::chrono::microseconds max_group_wait{1000};
  // Asked before each segment open() checks (a large log takes a while): true ends open() with open_stopped
  // before recovery has changed anything on disk (a stop signal while the command starts). Empty = never.
  std::function<bool()> stop_requested;
  // After a failed write or fdatasync (a full disk) the log refuses appends; its flusher thread checks this often
  // whether it can take records again (cuts what the failed write left, then tries to write there).
  std::chrono::milliseconds retry_interval{1000};
};

// A place in the log: a byte offset inside a segment file. Record boundaries are the only positions
// the log hands out; "the position after a record" is the position of the next one.
struct log_position {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  friend auto operator<=>(const log_position&, const log_position&) = default;
};

std::string to_string(const log_position& p);  // "segment:offset"

struct [[nodiscard]] append_result {
  std::error_code error;
  log_position end;  // after the last appended record; meaningful only when ok()
  bool ok() const noexcept { return !error; }
};

struct log_record {
  log_position position;     // where the record starts
  log_position next;         // after it: checkpoint(next) once the record is in PostgreSQL
  std::string_view payload;  // valid until the next read() into the same read_batch
};

// Records returned by durable_log::read(). Reused across reads: its buffer keeps its capacity.
class read_batch {
 public:
  std::span<const log_record> records() const noexcept { return records_; }
  bool empty() const noexcept { return records_.empty(); }
  std::size_t size() const noexcept { return records_.size(); }
  std::size_t payload_bytes() const noexcept { return payload_bytes_; }
  // After the last record; the read's `from` when nothing was returned.
  log_position next() const noexcept { return next_; }

 private:
  friend class durable_log;
  std::unique_ptr<char[]> buffer_;
  std::size_t capacity_ = 0;
  std::vector<log_record> records_;
  std::size_t payload_bytes_ = 0;
  log_position next_;
};

struct durable_log_stats {
  std::uint64_t bytes_on_disk = 0;   // live segment files, headers included
  std::uint64_t bytes_reserved = 0;  // bytes_on_disk + accepted but not yet written (what max_bytes bounds)
  std::uint64_t segments = 0;
  std::uint64_t backlog_bytes = 0;  // durable frames after the checkpoint: not yet in PostgreSQL
  std::uint64_t appends = 0;  // append() calls that returned ok
  std::uint64_t records_appended = 0;
  std::uint64_t bytes_appended = 0;  // frames written, frame headers included
  std::uint64_t appends_refused_full = 0;
  std::uint64_t group_commits = 0;  // flusher rounds: one pwritev batch + one fdatasync
  std::uint64_t fsyncs = 0;         // every fdatasync/fsync of the flusher (group commits and segment rolls)
  std::uint64_t last_fsync_ns = 0;
  std::uint64_t total_fsync_ns = 0;
  std::uint64_t max_fsync_ns = 0;
  std::uint64_t torn_tails_cut = 0;  // at open: torn or CRC-failing tails cut from the last segment
  std::uint64_t torn_bytes_cut = 0;
  std::uint64_t records_recovered = 0;  // at open: intact records after the checkpoint
  std::uint64_t checkpoints = 0;
  std::uint64_t segments_deleted = 0;
  std::uint64_t checkpoints_in_place = 0;  // written over the checkpoint file itself: no space for its spare
  std::uint64_t write_failures = 0;   // failed writes or fdatasyncs that stopped the log (its appends got io_error)
  std::uint64_t write_recoveries = 0;  // times the log took records again after such a failure
  std::uint64_t failed_bytes_cut = 0;  // bytes the failed writes left after the durable end, cut before resuming
  bool failed = false;  // a write error stopped the log; the flusher retries every retry_interval
};

// Thrown by durable_log::open() only: bad options, an unusable directory, or damage that recovery
// must not paper over. The message names the file, the offset and what a person can do about it.
class open_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by durable_log::open() when options.stop_requested said so: the directory is as it was found (what
// recovery would repair is repaired by the next open). Not an open_error: nothing is wrong with the log.
class open_stopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class durable_log {
 public:
  // Creates the directory if needed, takes an exclusive lock on it, recovers (see README.md) and
  // starts the flusher thread.
  static std::unique_ptr<durable_log> open(durable_log_options options);

  // Writes and fsyncs whatever is queued, then stops the flusher. Appenders must have returned.
  ~durable_log();
  durable_log(const durable_log&) = delete;
  durable_log& operator=(const durable_log&) = delete;

  // Appends the records in order, contiguously, and returns once they are fdatasync'ed. All or
  // nothing: log_full or record_too_large queue none of them. io_error means the records may or may
  // not be on disk: treat them as not accepted (the sender retries; event ids make replays no-ops). While the
  // log is stopped by a write error, io_error at once.
  append_result append(std::span<const std::string_view> records);

  // The same without blocking the caller. When the records are refused at once (log_full,
  // record_too_large, closed, io_error), returns that error and never calls `done`. Otherwise returns
  // no error and the flusher thread calls `done` exactly once: ok when the records are fdatasync'ed,
  // io_error when the group failed (or `closed` when the log is destroyed first, which the destructor
  // avoids by writing everything queued). The records' memory must stay valid until `done` runs.
  using append_callback = std::function<void(const append_result&)>;
  [[nodiscard]] std::error_code append_async(std::span<const std::string_view> records, append_callback done);

  bool above_high_water() const noexcept { return above_high_water_.load(std::memory_order_relaxed); }

  // Drainer thread. Durable records starting at `from` (a position from checkpointed(), a
  // read_batch's next() or a record's next), at most `max_records` and about `max_bytes` of frames,
  // from one segment. Returns at least one record when any is durable, even one larger than
  // max_bytes. Empty with no error when there is nothing new yet. CRCs are checked again: a damaged record
  // ends the batch after the intact ones before it, and is corrupt_record when it is the first.
  [[nodiscard]] std::error_code read(log_position from, std::size_t max_records, std::size_t max_bytes,
                                     read_batch& out);

  // Drainer thread. Waits until a record at or after `from` is durable, the timeout passes or the log
  // stops. True when there is something to read.
  bool wait_for_data(log_position from, std::chrono::milliseconds timeout);

  // Drainer thread. Durably records that everything before `position` is in PostgreSQL (temp file,
  // fsync, rename, fsync of the directory), then deletes the segments wholly before it. `position`
  // must be a record boundary at or after the current checkpoint and not past the durable end.
  [[nodiscard]] std::error_code checkpoint(log_position position);

  // Where the drainer resumes after a restart: the last checkpoint, or the start of the oldest
  // segment when none was ever written.
  log_position checkpointed() const;
  // After the last fsynced record.
  log_position durable_end() const;

  durable_log_stats stats() const;
  const durable_log_options& options() const noexcept { return options_; }

 private:
  struct segment_state {
    std::uint64_t id;
    std::uint64_t durable_size;  // bytes readable by the drainer: header + fsynced frames
    bool sealed;                 // the flusher moved on to a later segment and closed this one
  };
  struct pending_record {
    log_position position;  // assigned by append(), so the flusher never decides placement
    char header[8];
    std::string_view payload;  // the appender's memory: it is blocked until the record is durable
  };
  // A synchronous append's outcome, set by the flusher under mutex_ (the appender waits on durable_cv_).
  struct sync_waiter {
    append_result result;
    bool finished = false;
  };
  struct completion {
    append_callback done;         // append_async: run by the flusher without the lock
    sync_waiter* waiter = nullptr;  // append: set under the lock instead
    log_position end;
    std::size_t records = 0;
  };
  struct roll {
    std::uint64_t sealed_id;
    std::uint64_t sealed_size;
    std::uint64_t new_id;
  };
  struct group_outcome {
    int error = 0;  // errno of the failed call, 0 when all went well
    const char* failed_call = nullptr;
    std::uint64_t bytes_written = 0;
    std::uint64_t fsyncs = 0;
    std::uint64_t fsync_ns = 0;
    std::uint64_t last_fsync_ns = 0;
    std::uint64_t max_fsync_ns = 0;
  };

  struct scan_result {
    int fd = -1;                // read-write for the last segment (it becomes the active one)
    std::uint64_t size = 0;       // end of the intact records
    std::uint64_t file_size = 0;  // larger than `size` when the last segment has a torn tail to cut
    std::string problem;          // what is wrong with the tail, when there is one
    bool boundary_found = false;  // `boundary` is where a frame starts or where the data ends
    std::uint64_t records_from_boundary = 0;
  };

  explicit durable_log(durable_log_options options);
  void recover();
  scan_result scan_segment(std::uint64_t id, bool is_last, std::uint64_t boundary);
  int create_segment(std::uint64_t id, group_outcome& timing);
  // Checks and places the records; mutex_ held. Sets `end` when accepted (the caller queues the completion).
  std::error_code enqueue(std::span<const std::string_view> records, const std::array<char, 8>* headers,
                          log_position& end);
  void flusher_main();
  // Flusher thread, mutex_ held: the outcome of the group that was just written (completed rolls and
  // failures included), and the completions' results.
  void settle_group(std::vector<roll>& rolls, const group_outcome& outcome, std::vector<completion>& completions);
  void apply_rolls(const std::vector<roll>& rolls);
  void count_fsyncs(const group_outcome& outcome);
  // Flusher thread, without the lock: cuts what a failed write left after `durable` and tries writing there.
  std::uint64_t repair(std::uint64_t durable, group_outcome& out);
  // Drainer thread: writes the checkpoint file (through its spare, see README.md); 0 or errno of the failed call.
  int write_checkpoint_file(log_position position, const char*& failed_call);
  void prepare_checkpoint_spare(log_position contents);  // the spare checkpoint file, best effort
  void write_group(std::vector<pending_record>& group, std::vector<roll>& rolls, group_outcome& out);
  bool readable_after(log_position from) const;  // mutex_ held
  [[nodiscard]] std::error_code open_reader(std::uint64_t segment);
  [[nodiscard]] std::error_code check_boundary(log_position position, std::uint64_t durable_size);
  void update_high_water() noexcept;  // mutex_ held
  std::filesystem::path segment_path(std::uint64_t id) const;

  const durable_log_options options_;
  const std::uint64_t high_water_bytes_;
  const std::uint64_t max_payload_bytes_;
  int dir_fd_ = -1;
  int lock_fd_ = -1;

  // Guarded by mutex_.
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;     // the flusher waits for queued records
  std::condition_variable durable_cv_;  // appenders and the drainer wait for durability
  std::vector<pending_record> pending_;
  std::vector<completion> pending_completions_;  // of the async appends among pending_
  std::deque<segment_state> segments_;  // oldest first; the last one is the active segment
  log_position tail_;                   // where the next accepted record goes (queued ones included)
  log_position checkpoint_;
  std::uint64_t pending_appends_ = 0;     // append() calls with records in pending_
  std::uint64_t gather_target_ = 0;       // appends worth waiting for before the next group starts
  using steady_time = std::chrono::steady_clock::time_point;
  steady_time gather_deadline_{};
  std::chrono::nanoseconds fsync_average_{0};  // moving average of group fdatasync times
  std::uint64_t reserved_bytes_ = 0;
  std::uint64_t disk_bytes_ = 0;
  bool stopping_ = false;
  bool failed_ = false;  // a write failed: appends are refused until the flusher's retry at retry_at_ succeeds
  steady_time retry_at_{};
  durable_log_stats counters_;
  std::atomic<bool> above_high_water_{false};

  // Owned by the flusher thread (by open() before it starts).
  int active_fd_ = -1;
  std::uint64_t active_segment_ = 0;
  std::uint64_t active_size_ = 0;

  // Owned by the drainer thread.
  int reader_fd_ = -1;
  std::uint64_t reader_segment_ = 0;
  std::vector<char> boundary_buffer_;

  std::thread flusher_;
};

}  // namespace crm::sinks::spool
