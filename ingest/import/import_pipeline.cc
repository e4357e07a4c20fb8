#include "ingest/import/import_pipeline.h"

#include <pthread.h>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include "ingest/import/file_source.h"
#include "transform/text/utf8.h"

namespace crm::ingest {

namespace {

namespace pg = crm::sinks::postgres;

// Shared between the reader thread and the calling thread (progress).
struct shared_state {
  std::atomic<std::uint64_t> records_read{0}, records_written{0}, bytes_done{0};
  std::atomic<std::uint64_t> current_file_consumed{0};
  import_summary summary;  // the reader's until it is joined
};

void reader_main(const import_options& opt, shared_state& st) {
  pg::writer_pool pool(opt.write);
  transform::normalizer norm(opt.normalize);
  std::string chunk(opt.read_chunk_bytes, '\0');
  std::vector<std::shared_ptr<transform::event_batch>> free;
  std::shared_ptr<transform::event_batch> batch;
  std::uint64_t first_line = 0, last_line = 0;
  auto batch_started = std::chrono::steady_clock::now();
  bool failed = false;

  // A completion: count it, or stop the import on the first batch the database refused for good.
  auto settle = [&](std::optional<pg::batch_completion> c) {
    if (!c) return;
    st.summary.totals += c->result;
    if (c->confirm_seconds > 0) {
      ++st.summary.batches_confirm_waited;
      st.summary.confirm_wait_max_seconds = std::max(st.summary.confirm_wait_max_seconds, c->confirm_seconds);
    }
    if (c->status == pg::batch_status::written) {
      st.summary.batches += c->result.transactions;  // the summary's "batches": transactions, one per writer's part
      st.records_written += c->batch->record_count();
    } else if (!failed) {
      failed = true;
      spdlog::error("The database refused a batch; stopping the import. error={}", c->error);
      st.summary.errors.push_back(c->error);
      st.summary.database_failed = true;
      pool.abandon();
    }
    free.push_back(std::move(c->batch));
  };
  // Takes the next completion, waiting a little; a written batch still unconfirmed after --confirm-timeout
  // stops the import (the standbys do not get it: nothing is released that the cluster may not keep).
  auto settle_next = [&] {
    settle(pool.next(std::chrono::milliseconds(100)));
    if (failed || opt.confirm_timeout.count() == 0) return;
    if (pool.unconfirmed().oldest_seconds > static_cast<double>(opt.confirm_timeout.count())) {
      failed = true;
      st.summary.confirm_timed_out = true;
      for (const auto& info : pool.outstanding()) st.summary.unconfirmed.push_back(info.source + " " + info.position);
      spdlog::error("Written batches were not confirmed by the standbys within --confirm-timeout; stopping the "
                    "import. timeout_s={} unconfirmed_batches={}",
                    opt.confirm_timeout.count(), st.summary.unconfirmed.size());
      pool.abandon();
    }
  };
  auto take_batch = [&]() -> bool {
    if (batch) return true;
    while (auto c = pool.poll()) settle(std::move(c));
    while (!failed && free.empty() && pool.full()) settle_next();
    if (failed) return false;
    if (free.empty()) free.push_back(std::make_shared<transform::event_batch>());
    batch = std::move(free.back());
    free.pop_back();
    batch->clear();
    first_line = last_line = 0;
    batch_started = std::chrono::steady_clock::now();
    return true;
  };
  // Hands the batch to the pool (waiting while it is full).
  auto flush = [&](const std::string& path) -> bool {
    if (!batch || batch->record_count() == 0) return !failed;
    st.records_read += batch->record_count();
    while (!failed && pool.full()) settle_next();
    if (failed) return false;
    pool.submit(std::move(batch),
                {"import:" + transform::detail::escape_invalid_utf8(path),
                 "lines " + std::to_string(first_line) + "-" + std::to_string(last_line)},
                0);
    batch.reset();
    return true;
  };

  // A stop (options.stop): noted in the summary the first time it is seen.
  auto interrupted = [&] {
    if (opt.stop != nullptr && opt.stop->load(std::memory_order_relaxed)) st.summary.interrupted = true;
    return st.summary.interrupted;
  };
  for (const auto& path : opt.files) {
    if (failed || interrupted()) break;
    std::unique_ptr<file_source> src;
    try {
      src = std::make_unique<file_source>(path, opt.stop_fd);
    } catch (const std::exception& e) {
      spdlog::error("A file cannot be read; skipping it. file={} error={}", path, e.what());
      ++st.summary.files_failed;
      st.summary.errors.push_back(e.what());
      continue;
    }
    transform::record_splitter splitter(opt.format, opt.normalize.max_record_bytes);
    // The name the dead letters carry (text in PostgreSQL: a name that is not UTF-8 is escaped): the file's
    // absolute path, so that a dead letter's id (of its source and text) is the same however the file is named
    // (`in/f.ndjson`, `./in/f.ndjson`): imported again, its dead letters are not stored twice.
    std::string shown = "stdin";
    if (path != "-") {
      std::error_code no_path;
      const std::filesystem::path absolute = std::filesystem::weakly_canonical(path, no_path);
      shown = transform::detail::escape_invalid_utf8(no_path ? path : absolute.string());
    }
    const std::string_view name = shown;
    // The progress line's total holds the regular files named on the command line: only they count towards it.
    const std::uint64_t counted_size = path == "-" ? 0 : src->size();
    bool stopped = false;
    auto on_record = [&](const transform::split_record& rec) {
      if (stopped || !take_batch()) {
        stopped = true;
        return;
      }
      const auto now = transform::now_us();
      if (!rec.error.empty()) {
        norm.reject(rec.text, {name, rec.line}, now, rec.error, *batch);
      } else {
        norm.normalize(rec.text, {name, rec.line}, now, *batch);
      }
      if (first_line == 0) first_line = rec.line;
      last_line = rec.line;
      st.summary.resume_after.assign(name).append(":").append(std::to_string(rec.line));
      if (opt.write.batch.reached(*batch)) {
        if (!flush(path)) stopped = true;
      }
    };
    try {
      for (;;) {
        // A quiet pipe must not hold the batch's records back either: its read ends with the linger (read_idle).
        auto until = file_source::clock::time_point::max();
        if (batch && batch->record_count() > 0) until = batch_started + opt.write.batch.linger;
        std::size_t n = 0;
        try {
          n = src->read(chunk.data(), chunk.size(), until);
        } catch (const read_idle&) {
          if (interrupted()) break;
          if (!flush(path)) {
            stopped = true;
            break;
          }
          continue;
        }
        st.current_file_consumed = counted_size ? src->consumed() : 0;
        // A stop: what was read before it is written; a chunk that came after it (a pipe's read may wait long) and
        // the splitter's partial record stay unread (finish() would take a partial record for a whole one).
        if (interrupted() || n == 0) break;
        splitter.feed(std::string_view(chunk.data(), n), on_record);
        if (stopped || failed) break;
        // A slow pipe must not hold events back for long. (A regular file never keeps the reader waiting: its
        // batches fill up, however slowly the box runs.)
        if (src->size() == 0 && batch && batch->record_count() > 0 &&
            std::chrono::steady_clock::now() - batch_started >= opt.write.batch.linger) {
          if (!flush(path)) stopped = true;
        }
      }
      if (!stopped && !failed && !st.summary.interrupted) splitter.finish(on_record);
    } catch (const read_stopped&) {
      // The stop came while a pipe delivered nothing: as a stop seen after a read (the partial record stays unread).
      st.summary.interrupted = true;
    } catch (const std::exception& e) {
      if (dynamic_cast<const refused_input*>(&e) != nullptr) {
        spdlog::error("A file is in a format import does not read; skipping it. file={} error={}", path, e.what());
      } else {
        spdlog::error("A file could not be read to its end; the records before the error are imported. file={} "
                      "error={}",
                      path, e.what());
      }
      ++st.summary.files_failed;
      st.summary.errors.push_back(e.what());
      // What was read of the record the error cut short is kept as a dead letter saying so, not dropped with the
      // read buffer (nor normalized: whether more of it followed is unknown).
      if (!stopped && !failed) {
        try {
          const std::string why = std::string("cut short by an error reading the file (") + e.what() + ")";
          splitter.finish([&](const transform::split_record& rec) {
            std::string reason = why;
            if (!rec.error.empty()) reason.append(": ").append(rec.error);
            on_record(transform::split_record{rec.text, rec.line, reason});
          });
        } catch (const std::exception& e2) {
          spdlog::error("The last record read of a file could not be kept. file={} error={}", path, e2.what());
        }
      }
    }
    // Batches never span files: the ledger's position names one file.
    if (!stopped && !flush(path)) stopped = true;
    st.bytes_done += counted_size;
    st.current_file_consumed = 0;
    if (stopped || st.summary.interrupted) break;
  }
  batch.reset();
  // The end: every batch written and confirmed (or --confirm-timeout), and how long the cluster took.
  std::optional<std::chrono::steady_clock::time_point> all_committed;
  while (!failed && pool.in_flight() > 0) {
    settle_next();
    if (!all_committed && pool.in_flight() > 0 && pool.unconfirmed().batches == pool.in_flight()) {
      all_committed = std::chrono::steady_clock::now();
    }
  }
  if (all_committed) {
    st.summary.final_confirm_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - *all_committed).count();
  }
  // The attribution and A/B tables include the imported events when the import returns.
  if (!failed && pool.analytics() && st.summary.batches > 0) {
    const auto t0 = std::chrono::steady_clock::now();
    st.summary.analytics_current = pool.catch_up_analytics(std::chrono::hours(24));
    st.summary.analytics_wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!st.summary.analytics_current) {
      spdlog::warn("The events are imported, but the attribution and A/B tables do not include all of them yet: the "
                   "analytics stage kept failing. They catch up when a stage runs again (any crm-ingest command that "
                   "writes) or with `crm-ingest report attribution --recompute`. error={}",
                   pool.analytics()->last_error());
    }
  }
  if (failed && !st.summary.confirm_timed_out) {
    // A refused batch stopped the import: the queued ones are abandoned; take what completes (a committed
    // batch still waiting for the standbys is given up after a while: the import failed anyway).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (pool.in_flight() > 0 && std::chrono::steady_clock::now() < until) {
      settle(pool.next(std::chrono::milliseconds(100)));
    }
  }
}

}  // namespace

import_summary run_import(const import_options& opt,
                          const std::function<void(const import_progress&)>& on_progress,
                          std::chrono::milliseconds progress_interval) {
  const auto started = std::chrono::steady_clock::now();
  shared_state st;

  std::uint64_t total_bytes = 0;
  for (const auto& f : opt.files) {
    struct stat sb {};
    if (f != "-" && ::stat(f.c_str(), &sb) == 0 && S_ISREG(sb.st_mode)) total_bytes += sb.st_size;
  }

  std::thread reader([&] {
    pthread_setname_np(pthread_self(), "crm-import-read");
    reader_main(opt, st);
  });

  if (on_progress) {
    // Poll until the reader (and with it the writer pool) is done.
    std::atomic<bool> done{false};
    std::thread waiter([&] {
      reader.join();
      done = true;
    });
    auto last = std::chrono::steady_clock::now();
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (std::chrono::steady_clock::now() - last < progress_interval) continue;
      last = std::chrono::steady_clock::now();
      import_progress p;
      p.records_read = st.records_read;
      p.records_written = st.records_written;
      p.bytes_consumed = st.bytes_done + st.current_file_consumed;
      p.bytes_total = total_bytes;
      on_progress(p);
    }
    waiter.join();
  } else {
    reader.join();
  }

  import_summary s = st.summary;
  const auto& t = s.totals;
  s.records_read = st.records_read;
  s.inserted = t.inserted();
  s.rejected = t.rejected();
  s.duplicates = t.duplicates();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return s;
}

}  // namespace crm::ingest
