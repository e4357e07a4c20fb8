// The batch-file import: files -> split + normalize -> bounded queue -> N PostgreSQL writers.
//
// Threads: one reader thread owns the file sources, the record splitter and the normalizer and fills
// event_batches; each writer thread owns one sinks::postgres::writer (one connection). Batches, not
// events, cross the queue. When the queue is full the reader blocks (and stops reading the file), so
// memory is bounded by (queue capacity + writers + 1) batches whatever the input size. When a writer
// cannot reach the database it retries with backoff (up to retry_for) while the queue fills and the
// reader waits; a writer that gives up stops the import, which then exits non-zero.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sinks/postgres/writer.h"
#include "transform/normalize/normalize.h"
#include "transform/normalize/record_splitter.h"

namespace crm::ingest {

struct import_options {
  std::vector<std::string> files;  // "-" is standard input
  transform::input_format format = transform::input_format::auto_detect;
  transform::normalize_options normalize;
  sinks::postgres::writer_options writer;
  int writers = 2;
  std::size_t batch_rows = 20000;
  std::size_t batch_bytes = 16 << 20;
  std::chrono::milliseconds linger{200};
  std::size_t queue_batches = 4;
  std::size_t read_chunk_bytes = 1 << 20;
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
  double seconds = 0;
  std::vector<std::string> errors;  // one sentence per failure
  sinks::postgres::batch_result totals;

  bool ok() const noexcept { return files_failed == 0 && !database_failed; }
};

// Runs the import to completion. `on_progress` (optional) is called from the calling thread about
// every `progress_interval`.
import_summary run_import(const import_options& options,
                          const std::function<void(const import_progress&)>& on_progress = {},
                          std::chrono::milliseconds progress_interval = std::chrono::milliseconds(500));

}  // namespace crm::ingest
