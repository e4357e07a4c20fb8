// The batch-file import: files -> split + normalize -> the write path (sinks::postgres::writer_pool).
//
// Threads: one reader thread owns the file sources, the record splitter, the normalizer and the source
// side of the writer pool: it fills event_batches, submits them and takes their completions; the pool's
// writer threads own one connection each. Batches, not events, cross threads. When max_in_flight batches
// are in flight the pool is full and the reader waits for a completion (and stops reading the file), so
// memory is bounded by max_in_flight + 1 batches whatever the input size. When a writer cannot reach the
// database it retries under the retry policy (write.writer.retry) while the reader waits; a batch that fails
// stops the import (abandoning what is queued), which then exits non-zero.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sinks/postgres/writer_pool.h"
#include "transform/normalize/normalize.h"
#include "transform/normalize/record_splitter.h"

namespace crm::ingest {

struct import_options {
  std::vector<std::string> files;  // "-" is standard input
  transform::input_format format = transform::input_format::auto_detect;
  transform::normalize_options normalize;
  // The write path. A file is read far faster than a pipe fills a batch: the linger only bounds how long
  // records from a slow pipe wait, and is longer than serve's so that batches from files fill up. Five
  // batches in flight (four queued while one is filled).
  sinks::postgres::pool_options write = [] {
    sinks::postgres::pool_options o;
    o.batch.linger = std::chrono::milliseconds(200);
    o.max_in_flight = 5;
    return o;
  }();
  std::size_t read_chunk_bytes = 1 << 20;
  // How long the import waits for the cluster to confirm a written batch (the standbys have it; see
  // sinks/postgres/confirmation.md) before it stops and names the batches that may need a re-run;
  // 0 = for ever.
  std::chrono::seconds confirm_timeout{300};
  // Set by the caller (a stop signal) to end the import early: no more records are read (the record being read
  // is left to a re-run), what was read is written and waited for as at the end. Null = never.
  const std::atomic<bool>* stop = nullptr;
  // A descriptor that turns readable with that stop (runtime::stop_event), so that a read from a pipe that delivers
  // nothing ends with it instead of waiting for the pipe's next bytes. -1 = none.
  int stop_fd = -1;
};

struct import_progress {
  std::uint64_t records_read = 0;
  std::uint64_t records_written = 0;
  std::uint64_t bytes_consumed = 0;  // of the input files (compressed bytes for .gz)
  std::uint64_t bytes_total = 0;     // 0 when unknown
};

struct import_summary {
  std::uint64_t records_read = 0;  // objects read (events + rejected)
  std::uint64_t inserted = 0;      // events newly stored
  std::uint64_t duplicates = 0;    // events already stored or repeated in the input
  std::uint64_t rejected = 0;      // records dead-lettered to rejected_events
  std::uint64_t batches = 0;
  std::uint64_t files_failed = 0;
  bool database_failed = false;
  // Confirmation: batches that waited for the standbys after their COMMIT, the longest such wait, and the
  // wait at the end (after the last commit). confirm_timed_out: --confirm-timeout ran out; `unconfirmed`
  // names the batches (ledger source and position) that were written but may need a re-run.
  std::uint64_t batches_confirm_waited = 0;
  double confirm_wait_max_seconds = 0;
  double final_confirm_seconds = 0;
  bool confirm_timed_out = false;
  std::vector<std::string> unconfirmed;
  // With attribution maintained: whether the analytics tables include every imported batch when the import
  // returns (it waits for the analytics stage after its last commit), and how long it waited.
  bool analytics_current = true;
  double analytics_wait_seconds = 0;
  double seconds = 0;
  // options.stop ended the import: `resume_after` names the last record read ("file:line"; empty when none was),
  // everything before it is stored; a re-run of the same files continues (what is stored counts as duplicates).
  bool interrupted = false;
  std::string resume_after;
  std::vector<std::string> errors;  // one sentence per failure
  sinks::postgres::batch_result totals;

  bool ok() const noexcept { return files_failed == 0 && !database_failed && !confirm_timed_out; }
};

// Runs the import to completion. `on_progress` (optional) is called from the calling thread about
// every `progress_interval`.
import_summary run_import(const import_options& options,
                          const std::function<void(const import_progress&)>& on_progress = {},
                          std::chrono::milliseconds progress_interval = std::chrono::milliseconds(500));

}  // namespace crm::ingest
