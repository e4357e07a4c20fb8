// durable_log: appending, reading, group commit under many threads, the bound, checkpoints.
// Crash recovery and damaged files: spool_recovery_test.cc.
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "log_test_support.h"
#include "sinks/spool/durable_log.h"
#include "sinks/spool/segment_format.h"
#include "support/scratch.h"

namespace crm::sinks::spool {
namespace {

using namespace test;  // stored, read_all, small_options, temp_dir, fs, the format sizes

std::string make_payload(std::size_t n, char seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

std::uint64_t bytes_in_segment_files(const fs::path& dir) {
  std::uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".seg") total += fs::file_size(e.path());
  }
  return total;
}

TEST(DurableLog, AppendedRecordsReadBackInOrderWithTheirPositions) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 64 << 10));
  const std::vector<std::string> payloads = {"first", "", make_payload(3000, 'a'), "last"};
  const std::vector<std::string_view> one = {payloads[0]};
  const std::vector<std::string_view> rest = {payloads[1], payloads[2], payloads[3]};

  const auto a = log->append(one);
  ASSERT_TRUE(a.ok()) << a.error.message();
  EXPECT_EQ(a.end, (log_position{1, segment_header_size + frame_header_size + 5}));
  const auto b = log->append(rest);
  ASSERT_TRUE(b.ok()) << b.error.message();
  EXPECT_EQ(b.end, log->durable_end());

  const auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), payloads.size());
  log_position expected{1, segment_header_size};
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].payload, payloads[i]) << i;
    EXPECT_EQ(got[i].position, expected) << i;
    expected.offset += frame_header_size + payloads[i].size();
    EXPECT_EQ(got[i].next, expected) << i;
  }
  EXPECT_EQ(got[0].next, a.end);
  EXPECT_EQ(got.back().next, b.end);
}

TEST(DurableLog, EmptyAppendReturnsTheCurrentEnd) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path()));
  const auto r = log->append({});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.end, (log_position{1, segment_header_size}));
  EXPECT_TRUE(read_all(*log, log->checkpointed()).empty());
}

struct read_limit_case {
  const char* name;
  std::size_t max_records;
  std::size_t max_bytes;
  std::size_t expected_first_batch;
};

class DurableLogReadLimits : public ::testing::TestWithParam<read_limit_case> {};

TEST_P(DurableLogReadLimits, BatchesRespectTheLimitsAndStillCoverEverything) {
  const auto& c = GetParam();
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 1 << 20, 4 << 20));
  std::vector<std::string> payloads;
  for (int i = 0; i < 10; ++i) payloads.push_back(make_payload(100, static_cast<char>('a' + i)));
  const std::vector<std::string_view> views(payloads.begin(), payloads.end());
  ASSERT_TRUE(log->append(views).ok());

  read_batch batch;
  ASSERT_FALSE(log->read(log->checkpointed(), c.max_records, c.max_bytes, batch));
  EXPECT_EQ(batch.size(), c.expected_first_batch);
  const auto all = read_all(*log, log->checkpointed(), c.max_records, c.max_bytes);
  ASSERT_EQ(all.size(), payloads.size());
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].payload, payloads[i]);
}

INSTANTIATE_TEST_SUITE_P(
    Limits, DurableLogReadLimits,
    ::testing::Values(read_limit_case{"all", 100, 1 << 20, 10}, read_limit_case{"three_records", 3, 1 << 20, 3},
                      read_limit_case{"two_frames_of_bytes", 100, 2 * 108, 2},
                      read_limit_case{"less_than_one_frame_still_returns_one", 100, 50, 1},
                      read_limit_case{"one_byte", 100, 1, 1}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DurableLog, ZeroMaxRecordsReadsNothing) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path()));
  const std::string_view r[] = {"x"};
  ASSERT_TRUE(log->append(r).ok());
  read_batch batch;
  ASSERT_FALSE(log->read(log->checkpointed(), 0, 1 << 20, batch));
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.next(), log->checkpointed());
}

TEST(DurableLog, RecordLargerThanASegmentIsRefusedAndNothingOfTheAppendIsKept) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 4096));
  const std::string fits = make_payload(4096 - segment_header_size - frame_header_size, 'f');
  const std::string too_big = make_payload(fits.size() + 1, 'b');
  const std::string_view both[] = {"small", too_big};
  const auto r = log->append(both);
  EXPECT_EQ(r.error, log_errc::record_too_large);
  EXPECT_TRUE(read_all(*log, log->checkpointed()).empty());
  const std::string_view largest[] = {fits};
  ASSERT_TRUE(log->append(largest).ok());
  const auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, fits);
}

TEST(DurableLog, SegmentsRollAndReadsCrossThem) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 4096));
  std::vector<std::string> payloads;
  for (int i = 0; i < 40; ++i) payloads.push_back(make_payload(300 + i * 13, static_cast<char>(i)));
  for (std::size_t i = 0; i < payloads.size(); i += 3) {
    std::vector<std::string_view> views;
    for (std::size_t j = i; j < std::min(payloads.size(), i + 3); ++j) views.push_back(payloads[j]);
    ASSERT_TRUE(log->append(views).ok());
  }
  const auto s = log->stats();
  EXPECT_GT(s.segments, 3u);
  EXPECT_EQ(s.bytes_on_disk, bytes_in_segment_files(dir.path()));
  for (const auto& e : fs::directory_iterator(dir.path())) {
    if (e.path().extension() == ".seg") {
      EXPECT_LE(fs::file_size(e.path()), 4096u) << e.path();
    }
  }
  const auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), payloads.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].payload, payloads[i]);
    if (i > 0) {
      EXPECT_LT(got[i - 1].position, got[i].position);
    }
  }
  EXPECT_EQ(got.back().next, log->durable_end());
}

// Many threads append at once: every ok append is readable, each thread's records appear in the
// order it appended them, one append's records are contiguous, and they share fsyncs.
TEST(DurableLog, GroupCommitWithManyThreads) {
  constexpr int threads = 16;
  constexpr int appends_per_thread = 150;
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 256 << 10, 64 << 20));

  struct ack {
    int thread;
    int seq;
    int count;
    log_position end;
  };
  std::vector<std::vector<ack>> acks(threads);
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<std::string> payloads;
      std::vector<std::string_view> views;
      for (int seq = 0; seq < appends_per_thread; ++seq) {
        const int count = 1 + (seq + t) % 3;
        payloads.clear();
        for (int i = 0; i < count; ++i) {
          payloads.push_back("t" + std::to_string(t) + ":" + std::to_string(seq) + ":" + std::to_string(i) + ":" +
                             std::string(static_cast<std::size_t>((seq * 31 + t * 7 + i) % 900), 'x'));
        }
        views.assign(payloads.begin(), payloads.end());
        const auto r = log->append(views);
        if (!r.ok()) {
          ++failures;
          continue;
        }
        acks[t].push_back({t, seq, count, r.end});
      }
    });
  }
  for (auto& w : workers) w.join();
  ASSERT_EQ(failures.load(), 0);

  const auto got = read_all(*log, log->checkpointed());
  std::size_t expected_records = 0;
  for (const auto& per_thread : acks) {
    ASSERT_EQ(per_thread.size(), static_cast<std::size_t>(appends_per_thread));
    for (std::size_t i = 1; i < per_thread.size(); ++i) EXPECT_LT(per_thread[i - 1].end, per_thread[i].end);
    for (const auto& a : per_thread) expected_records += static_cast<std::size_t>(a.count);
  }
  ASSERT_EQ(got.size(), expected_records);

  // Where each record ended, by its (thread, seq, index) label.
  std::map<std::string, std::size_t> index_of;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const auto label = got[i].payload.substr(0, got[i].payload.rfind(':'));
    EXPECT_TRUE(index_of.emplace(label, i).second) << "duplicate " << label;
    if (i > 0) {
      EXPECT_LT(got[i - 1].position, got[i].position);
    }
  }
  for (const auto& per_thread : acks) {
    std::size_t previous_last = 0;
    bool first = true;
    for (const auto& a : per_thread) {
      const std::string prefix = "t" + std::to_string(a.thread) + ":" + std::to_string(a.seq) + ":";
      const auto it0 = index_of.find(prefix + "0");
      ASSERT_NE(it0, index_of.end()) << prefix;
      for (int i = 1; i < a.count; ++i) {
        const auto it = index_of.find(prefix + std::to_string(i));
        ASSERT_NE(it, index_of.end());
        EXPECT_EQ(it->second, it0->second + static_cast<std::size_t>(i)) << "append not contiguous: " << prefix;
      }
      const std::size_t last = it0->second + static_cast<std::size_t>(a.count) - 1;
      EXPECT_EQ(got[last].next, a.end) << prefix;
      if (!first) {
        EXPECT_GT(it0->second, previous_last) << "thread order broken at " << prefix;
      }
      previous_last = last;
      first = false;
    }
  }

  const auto s = log->stats();
  EXPECT_EQ(s.appends, static_cast<std::uint64_t>(threads * appends_per_thread));
  EXPECT_EQ(s.records_appended, expected_records);
  EXPECT_GT(s.fsyncs, 0u);
  EXPECT_GT(s.total_fsync_ns, 0u);
  EXPECT_GT(s.last_fsync_ns, 0u);
  // Sixteen threads waiting on fsyncs cannot each get one of their own.
  EXPECT_LT(s.group_commits, s.appends);
  std::printf("[ info ] %llu appends shared %llu group commits (%.1f appends per fdatasync)\n",
              static_cast<unsigned long long>(s.appends), static_cast<unsigned long long>(s.group_commits),
              static_cast<double>(s.appends) / static_cast<double>(s.group_commits));
}

// The collector's path: appends that do not block, completed by the flusher thread.
TEST(DurableLog, AsyncAppendsCompleteOnceDurableInSubmissionOrder) {
  constexpr int appends = 2000;
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 64 << 10, 64 << 20));
  std::vector<std::string> payloads;
  for (int i = 0; i < appends; ++i) payloads.push_back("r" + std::to_string(i) + std::string(i % 300, 'y'));

  std::mutex mu;
  std::vector<std::pair<int, log_position>> completed;
  std::atomic<int> failures{0};
  std::set<std::thread::id> completion_threads;
  for (int i = 0; i < appends; ++i) {
    const std::string_view one[] = {payloads[static_cast<std::size_t>(i)]};
    const auto e = log->append_async(one, [&, i](const append_result& r) {
      if (!r.ok()) ++failures;
      // Everything up to this record is durable when its completion runs.
      if (log->durable_end() < r.end) ++failures;
      std::lock_guard lock(mu);
      completed.emplace_back(i, r.end);
      completion_threads.insert(std::this_thread::get_id());
    });
    ASSERT_FALSE(e) << e.message();
  }
  const std::string_view none[] = {""};
  std::atomic<bool> empty_done{false};
  ASSERT_FALSE(log->append_async(std::span<const std::string_view>(none, 0),
                                 [&](const append_result& r) { empty_done = r.ok(); }));
  for (int spin = 0; spin < 5000; ++spin) {
    {
      std::lock_guard lock(mu);
      if (completed.size() == static_cast<std::size_t>(appends) && empty_done) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::lock_guard lock(mu);
  ASSERT_EQ(completed.size(), static_cast<std::size_t>(appends));
  EXPECT_TRUE(empty_done.load());
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(completion_threads.size(), 1u) << "completions run on the flusher thread only";
  EXPECT_FALSE(completion_threads.count(std::this_thread::get_id()));
  const auto got = read_all(*log, log->checkpointed(), 4096, 64 << 20);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(appends));
  for (int i = 0; i < appends; ++i) {
    EXPECT_EQ(completed[static_cast<std::size_t>(i)].first, i);
    EXPECT_EQ(got[static_cast<std::size_t>(i)].payload, payloads[static_cast<std::size_t>(i)]);
    EXPECT_EQ(got[static_cast<std::size_t>(i)].next, completed[static_cast<std::size_t>(i)].second);
  }
  const auto s = log->stats();
  EXPECT_EQ(s.appends, static_cast<std::uint64_t>(appends));
  EXPECT_EQ(s.records_appended, static_cast<std::uint64_t>(appends));
  EXPECT_LT(s.group_commits, static_cast<std::uint64_t>(appends)) << "async appends share fsyncs";
}

TEST(DurableLog, AsyncAppendRefusedAtOnceNeverCompletes) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 4096, 2 * 4096));
  const std::string big(5000, 'b');
  const std::string_view too_large[] = {big};
  std::atomic<int> calls{0};
  EXPECT_EQ(log->append_async(too_large, [&](const append_result&) { ++calls; }), log_errc::record_too_large);
  const std::string payload = make_payload(1000, 'q');
  const std::string_view one[] = {payload};
  std::error_code e;
  int accepted = 0;
  while (!(e = log->append_async(one, [&](const append_result& r) { calls += r.ok() ? 1 : 1000; }))) ++accepted;
  EXPECT_EQ(e, log_errc::log_full);
  EXPECT_GT(accepted, 2);
  log.reset();  // the destructor writes what is queued and runs its completions
  EXPECT_EQ(calls.load(), accepted);
  auto reopened = durable_log::open(small_options(dir.path(), 4096, 2 * 4096));
  EXPECT_EQ(read_all(*reopened, reopened->checkpointed()).size(), static_cast<std::size_t>(accepted));
}

TEST(DurableLog, BoundRefusesWithLogFullUntilACheckpointFreesSegments) {
  temp_dir dir;
  auto options = small_options(dir.path(), 4096, 4 * 4096);
  auto log = durable_log::open(options);
  const std::string payload = make_payload(1000, 'p');
  const std::string_view one[] = {payload};

  int accepted = 0;
  for (int i = 0; i < 100; ++i) {
    const auto r = log->append(one);
    if (r.error == log_errc::log_full) break;
    ASSERT_TRUE(r.ok()) << r.error.message();
    ++accepted;
  }
  ASSERT_GT(accepted, 4);
  ASSERT_LT(accepted, 100);
  EXPECT_EQ(log->append(one).error, log_errc::log_full);  // stays full
  EXPECT_TRUE(log->above_high_water());
  auto s = log->stats();
  EXPECT_LE(s.bytes_reserved, options.max_bytes);
  EXPECT_LE(bytes_in_segment_files(dir.path()), options.max_bytes);
  EXPECT_EQ(s.appends_refused_full, 2u);
  // Refused appends left nothing behind.
  const auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), static_cast<std::size_t>(accepted));

  // Checkpointing half frees the segments wholly before it, and appends fit again.
  const auto segments_before = s.segments;
  ASSERT_FALSE(log->checkpoint(got[got.size() / 2].next));
  s = log->stats();
  EXPECT_LT(s.segments, segments_before);
  EXPECT_GT(s.segments_deleted, 0u);
  EXPECT_EQ(s.bytes_on_disk, bytes_in_segment_files(dir.path()));
  EXPECT_TRUE(log->append(one).ok());

  // Draining everything makes room for a bound's worth again.
  ASSERT_FALSE(log->checkpoint(log->durable_end()));
  EXPECT_FALSE(log->above_high_water());
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(log->append(one).ok()) << i;
}

TEST(DurableLog, HighWaterMarkFollowsReservedBytes) {
  temp_dir dir;
  auto options = small_options(dir.path(), 4096, 64 << 10);
  options.high_water_bytes = 8192;
  auto log = durable_log::open(options);
  EXPECT_FALSE(log->above_high_water());
  const std::string payload = make_payload(2000, 'h');
  const std::string_view one[] = {payload};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log->append(one).ok());
  EXPECT_TRUE(log->above_high_water());
  ASSERT_FALSE(log->checkpoint(log->durable_end()));
  EXPECT_FALSE(log->above_high_water());
}

TEST(DurableLog, DefaultHighWaterIsNinetyPercentOfTheBound) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path(), 4096, 10 * 4096));
  const std::string payload = make_payload(4096 - segment_header_size - frame_header_size, 'd');
  const std::string_view one[] = {payload};
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(log->append(one).ok());
  EXPECT_FALSE(log->above_high_water());  // 8 segments = 80%
  ASSERT_TRUE(log->append(one).ok());
  EXPECT_TRUE(log->above_high_water());  // 9 segments = 90%
}

TEST(DurableLog, CheckpointSurvivesReopenAndPositionsContinue) {
  temp_dir dir;
  std::vector<std::string> payloads;
  for (int i = 0; i < 30; ++i) payloads.push_back(make_payload(500, static_cast<char>('A' + i)));
  log_position checkpoint;
  {
    auto log = durable_log::open(small_options(dir.path(), 4096));
    for (const auto& p : payloads) {
      const std::string_view one[] = {p};
      ASSERT_TRUE(log->append(one).ok());
    }
    const auto got = read_all(*log, log->checkpointed());
    ASSERT_EQ(got.size(), payloads.size());
    checkpoint = got[17].next;
    ASSERT_FALSE(log->checkpoint(checkpoint));
    EXPECT_EQ(log->checkpointed(), checkpoint);
  }
  auto log = durable_log::open(small_options(dir.path(), 4096));
  EXPECT_EQ(log->checkpointed(), checkpoint);
  EXPECT_EQ(log->stats().records_recovered, 12u);
  auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), 12u);
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].payload, payloads[18 + i]);

  const std::string_view more[] = {"after reopen"};
  const auto r = log->append(more);
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r.end, got.back().next);
  got = read_all(*log, got.back().next);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "after reopen");
}

TEST(DurableLog, CheckpointAtTheEndOfADeletedSegmentStillResumes) {
  temp_dir dir;
  log_position checkpoint;
  {
    auto log = durable_log::open(small_options(dir.path(), 4096));
    const std::string payload = make_payload(1500, 'z');
    const std::string_view one[] = {payload};
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(log->append(one).ok());
    const auto got = read_all(*log, log->checkpointed());
    // The last record of the first segment: checkpointing its end frees that segment.
    auto it = std::find_if(got.begin(), got.end(), [](const stored& s) { return s.position.segment == 2; });
    ASSERT_NE(it, got.end());
    checkpoint = std::prev(it)->next;
    ASSERT_EQ(checkpoint.segment, 1u);
    ASSERT_FALSE(log->checkpoint(checkpoint));
    EXPECT_FALSE(fs::exists(dir.path() / format::segment_file_name(1)));
  }
  auto log = durable_log::open(small_options(dir.path(), 4096));
  EXPECT_EQ(log->checkpointed(), checkpoint);
  const auto got = read_all(*log, log->checkpointed());
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front().position, (log_position{2, segment_header_size}));
}

TEST(DurableLog, WithoutACheckpointFileReadingStartsAtTheOldestSegment) {
  temp_dir dir;
  {
    auto log = durable_log::open(small_options(dir.path()));
    const std::string_view r[] = {"a", "b"};
    ASSERT_TRUE(log->append(r).ok());
  }
  EXPECT_FALSE(fs::exists(dir.path() / format::checkpoint_file_name));
  auto log = durable_log::open(small_options(dir.path()));
  EXPECT_EQ(log->checkpointed(), (log_position{1, segment_header_size}));
  EXPECT_EQ(read_all(*log, log->checkpointed()).size(), 2u);
}

struct bad_position_case {
  const char* name;
  // Given the positions of the 3 records appended and the checkpoint (after record 0).
  log_position (*make)(const std::vector<stored>& records);
};

class DurableLogBadPositions : public ::testing::TestWithParam<bad_position_case> {};

TEST_P(DurableLogBadPositions, CheckpointAndReadRefuseThem) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path()));
  const std::string_view r[] = {"zero", "one-one", "two-two-two"};
  ASSERT_TRUE(log->append(r).ok());
  const auto records = read_all(*log, log->checkpointed());
  ASSERT_EQ(records.size(), 3u);
  ASSERT_FALSE(log->checkpoint(records[1].position));
  const log_position bad = GetParam().make(records);
  EXPECT_EQ(log->checkpoint(bad), log_errc::invalid_position);
  EXPECT_EQ(log->checkpointed(), records[1].position);
  // A read may start mid-record only by mistake too, but that is caught by the CRC; positions out of
  // range are refused outright.
  if (bad < records[1].position || bad > log->durable_end() || bad.segment != 1) {
    read_batch batch;
    EXPECT_EQ(log->read(bad, 10, 1 << 20, batch), log_errc::invalid_position);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Positions, DurableLogBadPositions,
    ::testing::Values(
        bad_position_case{"before_the_checkpoint", [](const auto& r) { return r[0].position; }},
        bad_position_case{"inside_a_record", [](const auto& r) { return log_position{1, r[1].position.offset + 3}; }},
        bad_position_case{"past_the_durable_end",
                          [](const auto& r) { return log_position{1, r[2].next.offset + 8}; }},
        bad_position_case{"unknown_segment", [](const auto&) { return log_position{7, segment_header_size}; }},
        bad_position_case{"inside_the_segment_header", [](const auto&) { return log_position{2, 3}; }}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DurableLog, ReadingBeforeTheCheckpointIsRefused) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path()));
  const std::string_view r[] = {"a", "b"};
  ASSERT_TRUE(log->append(r).ok());
  const auto records = read_all(*log, log->checkpointed());
  ASSERT_FALSE(log->checkpoint(records[1].position));
  read_batch batch;
  EXPECT_EQ(log->read(records[0].position, 10, 1 << 20, batch), log_errc::invalid_position);
  ASSERT_FALSE(log->read(records[1].position, 10, 1 << 20, batch));
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch.records()[0].payload, "b");
}

TEST(DurableLog, OnlyOneLogMayOwnADirectory) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path()));
  try {
    auto second = durable_log::open(small_options(dir.path()));
    FAIL() << "a second open succeeded";
  } catch (const open_error& e) {
    EXPECT_NE(std::string(e.what()).find("already open"), std::string::npos) << e.what();
  }
  log.reset();
  EXPECT_NO_THROW(durable_log::open(small_options(dir.path())));
}

TEST(DurableLog, WaitForDataWakesWhenARecordBecomesDurable) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path()));
  const auto from = log->checkpointed();
  EXPECT_FALSE(log->wait_for_data(from, std::chrono::milliseconds(20)));
  std::thread appender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::string_view r[] = {"wake up"};
    EXPECT_TRUE(log->append(r).ok());
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(log->wait_for_data(from, std::chrono::seconds(10)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  appender.join();
  EXPECT_FALSE(log->wait_for_data(log->durable_end(), std::chrono::milliseconds(1)));
}

TEST(DurableLog, StatsCountWhatHappened) {
  temp_dir dir;
  auto log = durable_log::open(small_options(dir.path()));
  const std::string_view r[] = {"abc", "defg"};
  ASSERT_TRUE(log->append(r).ok());
  ASSERT_TRUE(log->append(r).ok());
  const auto s = log->stats();
  EXPECT_EQ(s.appends, 2u);
  EXPECT_EQ(s.records_appended, 4u);
  EXPECT_EQ(s.bytes_appended, 2 * (2 * frame_header_size + 7));
  EXPECT_EQ(s.bytes_on_disk, segment_header_size + s.bytes_appended);
  EXPECT_EQ(s.bytes_on_disk, bytes_in_segment_files(dir.path()));
  EXPECT_EQ(s.segments, 1u);
  EXPECT_GE(s.fsyncs, 2u);
  EXPECT_EQ(s.group_commits, 2u);
  EXPECT_GE(s.total_fsync_ns, s.last_fsync_ns);
  EXPECT_GE(s.max_fsync_ns, s.last_fsync_ns);
  EXPECT_EQ(s.torn_tails_cut, 0u);
  EXPECT_FALSE(s.failed);
  // The backlog is what the drainer has not checkpointed: all of it, then half, then nothing.
  EXPECT_EQ(s.backlog_bytes, s.bytes_appended);
  const auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), 4u);
  ASSERT_FALSE(log->checkpoint(got[1].next));
  EXPECT_EQ(log->stats().backlog_bytes, s.bytes_appended / 2);
  ASSERT_FALSE(log->checkpoint(log->durable_end()));
  EXPECT_EQ(log->stats().backlog_bytes, 0u);
  EXPECT_GT(log->stats().bytes_reserved, 0u) << "the bound still counts the undeleted active segment";
}

struct bad_options_case {
  const char* name;
  std::uint64_t segment_bytes;
  std::uint64_t max_bytes;
  std::uint64_t high_water_bytes;
};

class DurableLogBadOptions : public ::testing::TestWithParam<bad_options_case> {};

TEST_P(DurableLogBadOptions, OpenRefusesThemWithAMessage) {
  temp_dir dir;
  durable_log_options o;
  o.directory = dir.path();
  o.segment_bytes = GetParam().segment_bytes;
  o.max_bytes = GetParam().max_bytes;
  o.high_water_bytes = GetParam().high_water_bytes;
  EXPECT_THROW(durable_log::open(o), open_error);
}

INSTANTIATE_TEST_SUITE_P(Options, DurableLogBadOptions,
                         ::testing::Values(bad_options_case{"tiny_segment", 100, 1 << 20, 0},
                                           bad_options_case{"huge_segment", 2ull << 30, 8ull << 30, 0},
                                           bad_options_case{"bound_below_two_segments", 4096, 8000, 0},
                                           bad_options_case{"high_water_above_bound", 4096, 1 << 20, 2 << 20}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace crm::sinks::spool
