// durable_log on a full disk: a failed write stops the log until its flusher finds room again (the write's
// partial bytes cut, nothing acknowledged lost), and a log that filled its own disk still opens, drains and
// checkpoints, which frees it. A file size limit (RLIMIT_FSIZE) fails writes as a full disk does; a small tmpfs
// in a private mount namespace is a real full disk.
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "log_test_support.h"
#include "sinks/spool/durable_log.h"

namespace crm::sinks::spool {
namespace {

using namespace test;  // stored, read_all, small_options, temp_dir, fs, the format sizes

std::string record(int i) {
  std::string s = "record-" + std::to_string(i) + "-";
  s.resize(1000, static_cast<char>('a' + i % 26));
  return s;
}

// Writes past `bytes` fail with EFBIG (SIGXFSZ ignored) until the guard is gone or lift() is called.
class file_size_limit {
 public:
  explicit file_size_limit(rlim_t bytes) {
    previous_signal_ = std::signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &previous_);
    const rlimit limit{bytes, previous_.rlim_max};
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  }
  void lift() { setrlimit(RLIMIT_FSIZE, &previous_); }
  ~file_size_limit() {
    lift();
    std::signal(SIGXFSZ, previous_signal_);
  }

 private:
  rlimit previous_{};
  void (*previous_signal_)(int) = nullptr;
};

durable_log_options retrying_options(const fs::path& dir, std::uint64_t segment, std::uint64_t max) {
  auto o = small_options(dir, segment, max);
  o.retry_interval = std::chrono::milliseconds(20);
  return o;
}

bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::vector<std::string> payloads(const std::vector<stored>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.payload);
  return out;
}

// From a review: after one failed write the log refused everything until serve was restarted.
TEST(DurableLogFullDisk, AFailedWriteIsCutAndTheLogTakesRecordsAgainOnceThereIsRoom) {
  temp_dir dir;
  auto log = durable_log::open(retrying_options(dir.path(), 64 << 10, 1 << 20));
  std::vector<std::string> acknowledged;
  append_result failed{};
  {
    file_size_limit limit(20000);  // inside the first segment: the failing write is cut short
    for (int i = 0; i < 100 && failed.ok(); ++i) {
      const std::string r = record(i);
      const std::string_view one[] = {r};
      failed = log->append(one);
      if (failed.ok()) acknowledged.push_back(r);
    }
    ASSERT_EQ(failed.error, log_errc::io_error) << "no write failed";
    const log_position durable = log->durable_end();
    EXPECT_GT(fs::file_size(segment_file(dir.path(), 1)), durable.offset) << "the failed write left no bytes";
    // Still no room: the retries fail, the log keeps refusing at once, and what was acknowledged stays readable.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::string more = record(1000);
    const std::string_view one[] = {more};
    EXPECT_EQ(log->append(one).error, log_errc::io_error);
    auto s = log->stats();
    EXPECT_TRUE(s.failed);
    EXPECT_EQ(s.write_failures, 1u);
    EXPECT_EQ(s.write_recoveries, 0u);
    EXPECT_EQ(payloads(read_all(*log, log->checkpointed())), acknowledged);
    EXPECT_EQ(log->durable_end(), durable);
    limit.lift();
    ASSERT_TRUE(wait_until([&] { return !log->stats().failed; })) << "the log never took records again";
    s = log->stats();
    EXPECT_EQ(s.write_recoveries, 1u);
    EXPECT_EQ(s.failed_bytes_cut, 20000u - durable.offset);
    EXPECT_EQ(fs::file_size(segment_file(dir.path(), 1)), durable.offset) << "the failed write's bytes stay";
  }
  for (int i = 100; i < 200; ++i) {  // into later segments
    const std::string r = record(i);
    const std::string_view one[] = {r};
    ASSERT_TRUE(log->append(one).ok()) << i;
    acknowledged.push_back(r);
  }
  EXPECT_EQ(payloads(read_all(*log, log->checkpointed())), acknowledged);
  EXPECT_EQ(log->stats().bytes_on_disk, log->stats().bytes_reserved);
  log.reset();
  // Nothing half written was left for recovery to cut.
  log = durable_log::open(retrying_options(dir.path(), 64 << 10, 1 << 20));
  EXPECT_EQ(log->stats().torn_tails_cut, 0u);
  EXPECT_EQ(payloads(read_all(*log, log->checkpointed())), acknowledged);
}

// Many appenders while a write fails: each gets one answer, and exactly the acknowledged records are read back, once.
TEST(DurableLogFullDisk, ConcurrentAppendersAcrossAFailureLoseAndDuplicateNothingAcknowledged) {
  temp_dir dir;
  auto log = durable_log::open(retrying_options(dir.path(), 256 << 10, 4 << 20));
  std::mutex mu;
  std::vector<std::string> acknowledged;
  std::atomic<int> refused{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  {
    file_size_limit limit(100000);
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; !stop; ++i) {
          const std::string r = record(t * 100000 + i);
          const std::string_view one[] = {r};
          const auto result = log->append(one);
          std::lock_guard lock(mu);
          if (result.ok()) {
            acknowledged.push_back(r);
          } else {
            ++refused;
          }
        }
      });
    }
    const bool failed = wait_until([&] { return log->stats().failed; });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    limit.lift();
    const bool resumed = wait_until([&] {
      std::lock_guard lock(mu);
      return !log->stats().failed && acknowledged.size() > 200;
    });
    stop = true;
    for (auto& t : threads) t.join();
    ASSERT_TRUE(failed) << "no write failed";
    ASSERT_TRUE(resumed) << "the log never took records again";
  }
  EXPECT_GT(refused.load(), 0);
  EXPECT_GE(log->stats().write_recoveries, 1u);
  auto got = payloads(read_all(*log, log->checkpointed()));
  std::sort(got.begin(), got.end());
  std::sort(acknowledged.begin(), acknowledged.end());
  EXPECT_EQ(got, acknowledged);
}

// Runs `scenario` in a child process on a tmpfs of `bytes` mounted in a private mount namespace (as root, or in a
// user namespace). Skips when no such mount can be made here.
void on_small_tmpfs(std::size_t bytes, const std::function<void(const fs::path&)>& scenario) {
  temp_dir dir;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    bool isolated = unshare(CLONE_NEWNS) == 0;
    if (!isolated) {
      const uid_t uid = getuid();
      const gid_t gid = getgid();
      isolated = unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0;
      if (isolated) {
        std::ofstream("/proc/self/setgroups") << "deny";
        std::ofstream("/proc/self/uid_map") << "0 " << uid << " 1";
        std::ofstream("/proc/self/gid_map") << "0 " << gid << " 1";
      }
    }
    const std::string size = "size=" + std::to_string(bytes);
    if (!isolated || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", dir.path().c_str(), "tmpfs", 0, size.c_str()) != 0) {
      _exit(77);
    }
    scenario(dir.path() / "log");
    _exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "no tmpfs can be mounted here";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the scenario failed (status " << status << ")";
}

// Takes the rest of the file system's space.
void fill(const fs::path& file) {
  std::ofstream out(file, std::ios::binary);
  const std::string block(4096, 'x');
  while (out.write(block.data(), static_cast<std::streamsize>(block.size())) && out.flush()) {
  }
}

struct full_disk_case {
  const char* name;
  bool spare_lost;  // the log of an earlier version: no spare checkpoint file
};

class FullDiskAtStart : public ::testing::TestWithParam<full_disk_case> {};

// From a review: a log that filled its own disk could not checkpoint after a restart (the checkpoint file needed a
// free block), so it could never drain and free its segments.
TEST_P(FullDiskAtStart, TheLogOpensDrainsCheckpointsAndThenTakesRecordsAgain) {
  on_small_tmpfs(1 << 20, [](const fs::path& dir) {
    const auto options = retrying_options(dir, 32 << 10, 16 << 20);  // bounded by the disk, not max_bytes
    std::vector<std::string> acknowledged;
    {
      auto log = durable_log::open(options);
      for (int i = 0;; ++i) {
        const std::string r = record(i);
        const std::string_view one[] = {r};
        const auto result = log->append(one);
        if (!result.ok()) {
          ASSERT_EQ(result.error, log_errc::io_error);
          break;
        }
        acknowledged.push_back(r);
        if (i == 0) {
          ASSERT_FALSE(log->checkpoint(result.end));  // the drainer saved a checkpoint once
        }
      }
      ASSERT_GT(acknowledged.size(), 100u);
      acknowledged.erase(acknowledged.begin());
    }
    if (GetParam().spare_lost) fs::remove(dir / format::checkpoint_spare_file_name);
    fill(dir / "other-files");  // nothing left at all

    auto log = durable_log::open(options);
    const auto got = read_all(*log, log->checkpointed());
    ASSERT_EQ(payloads(got), acknowledged);
    const auto segments = log->stats().segments;
    ASSERT_FALSE(log->checkpoint(got.back().next)) << "the drainer cannot checkpoint on the full disk";
    EXPECT_LT(log->stats().segments, segments) << "the checkpoint freed no segment";
    EXPECT_EQ(log->stats().checkpoints_in_place, GetParam().spare_lost ? 1u : 0u);
    // Room again: appends resume (after failing while there was none, or at once).
    const std::string r = record(-1);
    const std::string_view one[] = {r};
    ASSERT_TRUE(wait_until([&] { return log->append(one).ok(); })) << "appends never resumed";
    EXPECT_EQ(payloads(read_all(*log, got.back().next)).back(), r);
    log.reset();
    log = durable_log::open(options);
    EXPECT_EQ(log->checkpointed(), got.back().next);
    EXPECT_EQ(payloads(read_all(*log, log->checkpointed())).back(), r);
  });
}

INSTANTIATE_TEST_SUITE_P(Spare, FullDiskAtStart,
                         ::testing::Values(full_disk_case{"preallocated", false},
                                           full_disk_case{"lost_as_in_an_earlier_version", true}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace crm::sinks::spool
