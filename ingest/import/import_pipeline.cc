#include "ingest/import/import_pipeline.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include "ingest/bounded_queue.h"
#include "ingest/import/file_source.h"

namespace crm::ingest {

namespace {

// One writer's part of a batch. The batch goes back to the pool when the last part is written.
struct work_item {
  std::shared_ptr<transform::event_batch> batch;
  sinks::postgres::batch_view view;
  sinks::postgres::batch_info info;
};

class shared_state {
 public:
  shared_state(std::size_t writers, std::size_t queue_batches) : free_batches(queue_batches + 2) {
    for (std::size_t i = 0; i < writers; ++i) queues.push_back(std::make_unique<bounded_queue<work_item>>(queue_batches));
    for (std::size_t i = 0; i < queue_batches + 2; ++i) {
      auto b = std::make_unique<transform::event_batch>();
      free_batches.push(b);
    }
  }

  // Hands out a pooled batch whose deleter returns it to the pool (or frees it once the pool is closed).
  std::shared_ptr<transform::event_batch> acquire() {
    std::unique_ptr<transform::event_batch> b;
    if (!free_batches.pop(b)) return nullptr;
    b->clear();
    return std::shared_ptr<transform::event_batch>(b.release(), [this](transform::event_batch* p) {
      std::unique_ptr<transform::event_batch> owned(p);
      free_batches.push(owned);  // leaves `owned` set (and frees it) if the pool is closed
    });
  }

  void close_queues() {
    for (auto& q : queues) q->close();
  }

  std::vector<std::unique_ptr<bounded_queue<work_item>>> queues;     // reader -> writer k
  bounded_queue<std::unique_ptr<transform::event_batch>> free_batches;  // the batch pool: bounds memory
  std::atomic<bool> abort{false};
  std::atomic<std::uint64_t> records_read{0}, records_written{0}, bytes_done{0};
  std::atomic<std::uint64_t> current_file_consumed{0};

  std::mutex mu;  // guards everything below
  import_summary summary;
};

void reader_main(const import_options& opt, shared_state& st) {
  transform::normalizer norm(opt.normalize);
  std::string chunk(opt.read_chunk_bytes, '\0');
  std::shared_ptr<transform::event_batch> batch;
  std::uint64_t first_line = 0, last_line = 0, batch_number = 0;
  auto batch_started = std::chrono::steady_clock::now();
  const std::size_t writers = st.queues.size();

  auto take_batch = [&]() -> bool {
    if (batch) return true;
    batch = st.acquire();
    if (!batch) return false;
    first_line = last_line = 0;
    batch_started = std::chrono::steady_clock::now();
    return true;
  };
  // Splits the batch by event id among the writers and queues the parts (blocking while queues are full).
  auto flush = [&](const std::string& path) -> bool {
    if (!batch || batch->record_count() == 0) return true;
    st.records_read += batch->record_count();
    auto parts = sinks::postgres::partition_by_key(*batch, writers, batch_number++ % writers);
    const std::string position = "lines " + std::to_string(first_line) + "-" + std::to_string(last_line);
    bool ok = true;
    for (std::size_t w = 0; w < writers && ok; ++w) {
      if (parts[w].record_count() == 0) continue;
      work_item item{batch, parts[w],
                     {"import:" + path, writers > 1 ? position + " part " + std::to_string(w + 1) + "/" +
                                                          std::to_string(writers)
                                                    : position}};
      ok = st.queues[w]->push(item);
    }
    batch.reset();
    return ok;
  };

  for (const auto& path : opt.files) {
    if (st.abort) break;
    std::unique_ptr<file_source> src;
    try {
      src = std::make_unique<file_source>(path);
    } catch (const std::exception& e) {
      spdlog::error("A file cannot be read; skipping it. file={} error={}", path, e.what());
      std::lock_guard lock(st.mu);
      ++st.summary.files_failed;
      st.summary.errors.push_back(e.what());
      continue;
    }
    transform::record_splitter splitter(opt.format, opt.normalize.max_record_bytes);
    const std::string_view name = path == "-" ? std::string_view("stdin") : std::string_view(path);
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
      if (batch->record_count() >= opt.batch_rows || batch->text.bytes_used() >= opt.batch_bytes) {
        if (!flush(path)) stopped = true;
      }
    };
    try {
      for (;;) {
        std::size_t n = src->read(chunk.data(), chunk.size());
        st.current_file_consumed = src->consumed();
        if (n == 0) break;
        splitter.feed(std::string_view(chunk.data(), n), on_record);
        if (stopped || st.abort) break;
        // A slow pipe must not hold events back for long.
        if (batch && batch->record_count() > 0 &&
            std::chrono::steady_clock::now() - batch_started >= opt.linger) {
          if (!flush(path)) stopped = true;
        }
      }
      if (!stopped && !st.abort) splitter.finish(on_record);
    } catch (const std::exception& e) {
      spdlog::error("A file could not be read to its end; the records before the error are imported. file={} "
                    "error={}",
                    path, e.what());
      std::lock_guard lock(st.mu);
      ++st.summary.files_failed;
      st.summary.errors.push_back(e.what());
    }
    // Batches never span files: the ledger's position names one file.
    if (!stopped && !flush(path)) stopped = true;
    st.bytes_done += src->size() ? src->size() : src->consumed();
    st.current_file_consumed = 0;
    if (stopped) break;
  }
  batch.reset();
  st.close_queues();
}

void writer_main(const import_options& opt, shared_state& st, std::size_t index) {
  sinks::postgres::writer w(opt.writer);
  work_item item;
  auto& queue = *st.queues[index];
  while (queue.pop(item)) {
    if (st.abort) {
      item.batch.reset();
      continue;  // drain without writing: the import has failed
    }
    try {
      auto r = w.write(item.view, item.info);
      st.records_written += item.view.record_count();
      std::lock_guard lock(st.mu);
      st.summary.totals += r;
      ++st.summary.batches;
    } catch (const std::exception& e) {
      spdlog::error("The database refused a batch; stopping the import. source={} position={} error={}",
                    item.info.source, item.info.position, e.what());
      {
        std::lock_guard lock(st.mu);
        if (!st.summary.database_failed) st.summary.errors.push_back(e.what());
        st.summary.database_failed = true;
      }
      st.abort = true;
      st.free_batches.close();  // unblocks the reader if it waits for a batch
      st.close_queues();        // and if it waits on a full queue
    }
    item.batch.reset();
  }
}

}  // namespace

import_summary run_import(const import_options& opt,
                          const std::function<void(const import_progress&)>& on_progress,
                          std::chrono::milliseconds progress_interval) {
  const auto started = std::chrono::steady_clock::now();
  const int writers = std::max(1, opt.writers);
  shared_state st(static_cast<std::size_t>(writers), opt.queue_batches);

  std::uint64_t total_bytes = 0;
  for (const auto& f : opt.files) {
    struct stat sb {};
    if (f != "-" && ::stat(f.c_str(), &sb) == 0 && S_ISREG(sb.st_mode)) total_bytes += sb.st_size;
  }

  std::thread reader([&] { reader_main(opt, st); });
  std::vector<std::thread> pool;
  for (int i = 0; i < writers; ++i) {
    pool.emplace_back([&, i] { writer_main(opt, st, static_cast<std::size_t>(i)); });
  }

  if (on_progress) {
    // Poll until the reader and writers are done.
    std::atomic<bool> done{false};
    std::thread waiter([&] {
      reader.join();
      for (auto& t : pool) t.join();
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
    for (auto& t : pool) t.join();
  }

  import_summary s;
  {
    std::lock_guard lock(st.mu);
    s = st.summary;
  }
  const auto& t = s.totals;
  s.records_read = st.records_read;
  s.inserted = t.events_inserted();
  s.rejected = t.rejected_in + t.refused_by_database;
  s.duplicates = t.events_in() - t.events_inserted() - t.refused_by_database;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return s;
}

}  // namespace crm::ingest
