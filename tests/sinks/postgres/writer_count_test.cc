// How many writers a batch is split among when the pool adapts it (sinks/postgres/writer_count.h): fed
// batch timings of a database on which more writers are (or are not) faster, the count settles where the
// rate is best, and moves again when the database changes. And how a batch's records are spread over
// the writers it is split among (writer_for).
#include "sinks/postgres/writer_count.h"
#include "sinks/postgres/writer.h"

#include <functional>

#include <gtest/gtest.h>

namespace pg = crm::sinks::postgres;

namespace {

// Feeds `batches` full batches of 20,000 records written at `rate(k)` records per second with k writers
// (the time the batch took with its parts in parallel, as the pool measures it); returns how many were
// split among each count.
std::vector<int> run(pg::writer_count& wc, int batches, const std::function<double(int)>& rate, int max) {
  std::vector<int> split(static_cast<std::size_t>(max) + 1, 0);
  for (int i = 0; i < batches; ++i) {
    const int k = wc.next();
    EXPECT_GE(k, 1);
    EXPECT_LE(k, max);
    ++split[static_cast<std::size_t>(k)];
    const double batch_seconds = 20000.0 / rate(k);
    wc.written(k, 20000, batch_seconds);
  }
  return split;
}

}  // namespace

TEST(WriterCount, StaysWithOneWriterWhenASecondAddsNoSpeed) {
  // PostgreSQL on the same two cores as the edge: two writers write 5 % faster, which is not worth the CPU.
  pg::writer_count wc({.max = 2});
  const auto split = run(wc, 200, [](int k) { return k == 1 ? 50000.0 : 52500.0; }, 2);
  EXPECT_EQ(wc.settled(), 1);
  // Only the trials used two: 5 batches every 20.
  EXPECT_LE(split[2], 200 / 20 * 5 + 5);
  EXPECT_GE(split[2], 5) << "it did try a second writer";
}

TEST(WriterCount, AddsWritersWhileEachRaisesTheRateEnough) {
  // A database of its own: 2 writers 1.8 x, 3 writers 2.4 x, 4 writers 2.5 x (not 30 % over 3).
  const double gains[] = {0, 1.0, 1.8, 2.4, 2.5};
  pg::writer_count wc({.max = 4});
  const auto split = run(wc, 80, [&](int k) { return 40000.0 * gains[k]; }, 4);
  EXPECT_EQ(wc.settled(), 3);
  EXPECT_GT(split[3], 40) << "it gets there within a few trials";
}

TEST(WriterCount, ComesBackDownWhenTheExtraWriterStopsPaying) {
  // Two writers pay while the machine is otherwise idle; then a load arrives that leaves them no faster
  // than one.
  pg::writer_count wc({.max = 2});
  bool loaded = false;
  auto rate = [&](int k) { return loaded ? 30000.0 : (k == 1 ? 30000.0 : 55000.0); };
  run(wc, 30, rate, 2);
  ASSERT_EQ(wc.settled(), 2);
  loaded = true;
  run(wc, 60, rate, 2);
  EXPECT_EQ(wc.settled(), 1);
  loaded = false;
  run(wc, 60, rate, 2);
  EXPECT_EQ(wc.settled(), 2) << "and up again when the load is gone";
}

TEST(WriterCount, SlowBatchesInATrialDoNotDecide) {
  // The median of five: two trial batches that hit something slow (ten times slower: a lock, a checkpoint)
  // do not make the pool give up a writer that pays. A mean (35,200/s), the minimum or the last batch would.
  pg::writer_count wc({.max = 2, .window = 5, .probe_every = 5});
  for (int i = 0; i < 5; ++i) wc.written(1, 30000, 1.0);  // 30,000/s with one writer
  ASSERT_EQ(wc.next(), 2) << "the trial begins";
  for (double rate : {55000.0, 55000.0, 55000.0, 5500.0, 5500.0}) wc.written(2, 55000, 55000.0 / rate);
  EXPECT_EQ(wc.settled(), 2);
}

TEST(WriterCount, ABatchThatIsNoMeasureEndsATrialWithoutAVerdict) {
  // The load dropped in the middle of a trial (a batch cut short by linger): the trial ends, and the next
  // comparison waits for five consecutive measures again instead of setting today's trial against the
  // rates of the last busy hour.
  pg::writer_count wc({.max = 2, .window = 5, .probe_every = 20});
  for (int i = 0; i < 5; ++i) wc.written(1, 20000, 1.0);
  ASSERT_EQ(wc.next(), 2);
  wc.written(2, 20000, 0.5);
  wc.interrupted();
  EXPECT_EQ(wc.next(), 1) << "back to the settled count";
  EXPECT_EQ(wc.settled(), 1);
  for (int i = 0; i < 4; ++i) {
    wc.written(1, 20000, 1.0);
    EXPECT_EQ(wc.next(), 1) << "four measures are not a window";
  }
  wc.written(1, 20000, 1.0);
  EXPECT_EQ(wc.next(), 2) << "five are: the trial runs again";
}

TEST(WriterCount, IgnoresBatchesOfAnotherCountAndEmptyMeasures) {
  pg::writer_count wc({.max = 2, .window = 1, .probe_every = 1});
  EXPECT_EQ(wc.next(), 1);
  wc.written(1, 0, 1.0);    // nothing measured
  wc.written(1, 100, 0.0);  // no time: not a measure
  EXPECT_EQ(wc.next(), 1);
  wc.written(1, 1000, 1.0);  // 1,000/s with one: the first trial begins
  ASSERT_EQ(wc.next(), 2);
  wc.written(1, 1000, 0.001);  // a batch submitted before the trial: not the trial's measure
  ASSERT_EQ(wc.next(), 2);
  wc.written(2, 1000, 1.0);  // 1,000/s with two: no gain
  EXPECT_EQ(wc.settled(), 1);
  ASSERT_EQ(wc.next(), 1);
  wc.written(2, 1000, 0.001);  // a trial batch completing after the trial ended: not a measure of one writer
  EXPECT_EQ(wc.next(), 1) << "it did not count as a measure (which would have started the next trial)";
  wc.written(1, 1000, 1.0);
  EXPECT_EQ(wc.next(), 2);
}

TEST(WriterCount, OneWriterPoolNeverTries) {
  pg::writer_count wc({.max = 1, .window = 1, .probe_every = 1});
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(wc.next(), 1);
    wc.written(1, 1000, 1.0);
  }
}

TEST(WriterFor, IdsThatDifferOnlyInTheirLastBytesSpreadOverEveryWriter) {
  // Sequential ids (a client's counter in the last bytes of a version-4-shaped UUID) all went to one
  // writer of two before the hash carried the last bytes down to the bits that choose the writer.
  for (std::size_t writers : {2, 3, 4}) {
    std::vector<int> per(writers, 0);
    for (std::uint64_t n = 0; n < 4000; ++n) {
      crm::transform::uuid u{};
      for (int i = 0; i < 8; ++i) u[static_cast<std::size_t>(15 - i)] = static_cast<std::uint8_t>(n >> (8 * i));
      u[6] = 0x40;
      u[8] = 0x80;
      ++per[pg::writer_for(u, writers)];
    }
    for (std::size_t w = 0; w < writers; ++w) {
      EXPECT_GT(per[w], 4000 / static_cast<int>(writers) * 8 / 10) << "writer " << w << " of " << writers;
    }
  }
}
