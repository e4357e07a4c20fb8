// How many of a pool's writers the next batch is split among, when the pool adapts it (pool_options::
// adaptive): the fewest writers that are not clearly slower. More writers are not always faster: where
// PostgreSQL shares the machine with the process that feeds it (serve's HTTP edge, on the embedded or a
// co-located database), a second writer can leave the rows per second where they were and only take the
// CPU and disk the edge needs for its own latency; on a database of its own, more writers usually are
// faster. So the pool measures instead of guessing.
//
// The measure is a full batch's rate: its records over the time its parts took (the sum of the parts'
// write times, divided by the number of parts written: the time the batch took with its parts in
// parallel). Only batches that reached their size limit count (a batch cut short by linger says how fast
// records arrive, not how fast they are written), and only batches written at the first attempt. Every
// `probe_every` full batches after the last trial the count tries one more writer (or one fewer,
// alternately) for `window` batches and keeps the new count only when it is better, comparing the median
// rate of the trial with that of the `window` batches just before it: neighbours in time, so a batch that
// is not a measure (cut short by linger, retried) ends a trial without a verdict and starts the
// comparison afresh — the load may have changed. One more writer must raise the rate by
// `gain`; one fewer is kept unless it lowers the rate by as much. After a trial that added a writer, the
// next one comes after `window` batches (find the best count quickly on a fast database).
//
// Why 30 % and medians of 5: on the 2-core box of bench/http_bench.sh (edge, load generator and PostgreSQL
// together) a second writer drains only ~10 % faster while the edge's latency triples; with 15 % and medians
// of 3 the noise of such a box let the count settle on 2 in half the runs (README, "Performance").
//
// Not thread-safe: the pool calls it under its mutex.
#pragma once

#include <cstddef>
#include <vector>

namespace crm::sinks::postgres {

struct writer_count_options {
  int max = 2;                   // the pool's writers (postgres.writers)
  int start = 1;                 // the count before anything was measured
  std::size_t window = 5;        // batches per comparison (median)
  std::size_t probe_every = 20;  // full batches between trials
  double gain = 1.3;             // the rate one more writer must add to be kept
};

class writer_count {
 public:
  explicit writer_count(writer_count_options o);

  // Writers the next batch is split among (1..max).
  int next() const noexcept { return trial_ != 0 ? trial_ : current_; }
  // The count the pool settled on (a trial aside).
  int settled() const noexcept { return current_; }
  // A batch that reached its size limit was split among `writers` writers and written at the first
  // attempt: `records` records in `seconds` (its parts' write times summed, over the parts written).
  void written(int writers, std::size_t records, double seconds);
  // A batch that is no measure (not full, retried, rewritten): the next comparison needs `window`
  // consecutive measures again, and a running trial ends without a verdict.
  void interrupted();

 private:
  static double median(std::vector<double> v);

  writer_count_options o_;
  int current_;
  int trial_ = 0;                // 0: no trial running
  bool next_trial_up_ = true;    // alternates when both directions are possible
  std::size_t since_trial_ = 0;  // full batches at current_ since the last trial
  std::size_t wait_ = 0;         // full batches to wait before the next trial
  std::vector<double> recent_;   // the last `window` rates at current_
  std::vector<double> trial_rates_;
};

}  // namespace crm::sinks::postgres
