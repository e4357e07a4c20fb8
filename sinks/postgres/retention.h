// Partition retention: detaches the monthly partitions of communications and customer_touchpoints that
// lie wholly before the kept window, optionally archives each with pg_dump (verified by reading the dump
// back with pg_restore and counting its rows), then drops it.
//
// Safe under cron and systemd timers:
// - one run at a time: a session advisory lock (released by the server if the process dies); a second
//   run finds it taken and does nothing;
// - restartable: every step is recorded in the catalog itself. A detached partition carries the comment
//   "crm-ingest retain: detached from <parent> ..." (set in the detach's own transaction), so a run that
//   died after the detach finds it and finishes it (archive, verify, drop); an archive is written to
//   NAME.dump.partial and renamed only once verified, so a half-written file is never taken for a good
//   one; a detach left pending by DETACH ... CONCURRENTLY is finalized.
// - the run's cutoff is recorded (retention_cutoff, schemas/0017) in the same transaction as each detach, and once
//   more when nothing was detached; it is raised, never lowered. The writers refuse (dead-letter) every event older
//   than it, so a month dropped is never stored again;
// - the DEFAULT partitions are never modified: rows they hold before the cutoff are counted and
//   reported (they need an operator's decision), not deleted.
// Runs on the calling thread; takes each lock with a short lock_timeout and retries, so the writers
// wait at most that long for the parent's lock.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace crm::sinks::postgres {

struct retention_options {
  std::string dsn;
  int keep_months = 13;      // the current month and the keep_months - 1 before it are kept
  std::string archive_dir;   // empty = drop without archiving
  bool dry_run = false;      // report what would be done, change nothing
  std::chrono::milliseconds lock_timeout{5000};
  int lock_attempts = 5;
  std::string pg_dump = "pg_dump";        // found on PATH unless a path is given
  std::string pg_restore = "pg_restore";
};

struct retention_result {
  bool lock_busy = false;       // another run holds the lock; nothing was done
  std::string cutoff;           // YYYY-MM-DD: partitions ending on or before it go
  // YYYY-MM-DD: the cutoff in force once the run is over (retention_cutoff, recorded by this run or an earlier one
  // with a longer --keep); the writers refuse events older than it. Empty: none (a dry run records nothing).
  std::string recorded_cutoff;
  std::vector<std::string> detached;   // by this run
  std::vector<std::string> archived;   // file paths, verified
  std::vector<std::string> dropped;
  std::vector<std::string> would_drop; // dry run
  long long rows_dropped = 0;
  long long default_rows_before_cutoff = 0;  // left in place, reported
};

class retention_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses "13mo" (months) or "2y" (years) into months; throws std::invalid_argument.
int parse_keep(const std::string& text);

// Throws retention_error (archive or verification failed; the partition is then kept detached and the
// next run retries) or libpqxx errors.
retention_result retain_partitions(const retention_options& options);

}  // namespace crm::sinks::postgres
