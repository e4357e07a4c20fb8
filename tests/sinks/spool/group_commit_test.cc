// durable_log with many appenders at once: group commit under 16 threads, asynchronous appends completed
// by the flusher thread, a reader waiting for data. One appender at a time: durable_log_test.cc.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "log_test_support.h"
#include "sinks/spool/durable_log.h"

namespace crm::sinks::spool {
namespace {

using namespace test;  // stored, read_all, small_options, temp_dir

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

}  // namespace
}  // namespace crm::sinks::spool
