// durable_log recovery: kill -9 at random moments, torn and corrupted tails of the last segment (cut),
// damage anywhere else (refused with a clear message), damaged or impossible checkpoints.
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
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

durable_log_options options_for(const fs::path& dir, std::uint64_t segment = 4096) {
  return small_options(dir, segment, 64 << 20);
}

// Growing sizes: 12 records fill four 4 KiB segments.
std::string payload_for(int i) {
  return "record-" + std::to_string(i) + std::string(static_cast<std::size_t>(200 + 137 * i), static_cast<char>('a' + i % 26));
}

// Appends records 0 to `count` - 1 (payload_for), one per append; fails at the first refused one.
::testing::AssertionResult append_records(durable_log& log, int count) {
  for (int i = 0; i < count; ++i) {
    const std::string p = payload_for(i);
    const std::string_view one[] = {p};
    const auto r = log.append(one);
    if (!r.ok()) return ::testing::AssertionFailure() << "record " << i << ": " << r.error.message();
  }
  return ::testing::AssertionSuccess();
}

// Writes `count` records (append_records) and returns what read_all sees.
std::vector<stored> write_records(const fs::path& dir, int count, std::uint64_t segment = 4096) {
  auto log = durable_log::open(options_for(dir, segment));
  EXPECT_TRUE(append_records(*log, count));
  return read_all(*log, log->checkpointed());
}

// ---------------------------------------------------------------------------------------------------
// Damaged tails of the last segment are cut

struct tail_case {
  const char* name;
  // Damages the last segment; gets the records as written. Returns how many records survive.
  std::size_t (*damage)(const fs::path& last_segment, const std::vector<stored>& records);
};

class TornTail : public ::testing::TestWithParam<tail_case> {};

TEST_P(TornTail, IsCutAndCountedAndEverythingBeforeItIsKept) {
  temp_dir dir;
  const auto written = write_records(dir.path(), 12);
  const std::uint64_t last_id = written.back().position.segment;
  ASSERT_GT(last_id, 1u) << "the test wants several segments";
  const fs::path last = segment_file(dir.path(), last_id);
  const std::size_t survivors = GetParam().damage(last, written);
  const std::uint64_t older_bytes = fs::file_size(segment_file(dir.path(), 1));

  {
    auto log = durable_log::open(options_for(dir.path()));
    EXPECT_EQ(log->stats().torn_tails_cut, 1u);
    EXPECT_GT(log->stats().torn_bytes_cut, 0u);
    const auto got = read_all(*log, log->checkpointed());
    ASSERT_EQ(got.size(), survivors);
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].payload, written[i].payload) << i;
    // The cut leaves nothing after the last intact record, and older segments are untouched.
    EXPECT_EQ(fs::file_size(last), log->durable_end().offset);
    EXPECT_EQ(fs::file_size(segment_file(dir.path(), 1)), older_bytes);
    // And the log goes on from there.
    const std::string_view more[] = {"after the cut"};
    ASSERT_TRUE(log->append(more).ok());
  }
  auto log = durable_log::open(options_for(dir.path()));
  EXPECT_EQ(log->stats().torn_tails_cut, 0u) << "a clean reopen cuts nothing";
  const auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), survivors + 1);
  EXPECT_EQ(got.back().payload, "after the cut");
}

std::size_t records_before_last(const std::vector<stored>& r) { return r.size() - 1; }

INSTANTIATE_TEST_SUITE_P(
    Damage, TornTail,
    ::testing::Values(
        tail_case{"cut_inside_the_payload",
                  [](const fs::path& f, const std::vector<stored>& r) {
                    fs::resize_file(f, r.back().position.offset + frame_header_size + 5);
                    return records_before_last(r);
                  }},
        tail_case{"cut_inside_the_frame_header",
                  [](const fs::path& f, const std::vector<stored>& r) {
                    fs::resize_file(f, r.back().position.offset + 3);
                    return records_before_last(r);
                  }},
        tail_case{"payload_byte_flipped",
                  [](const fs::path& f, const std::vector<stored>& r) {
                    flip_byte(f, r.back().position.offset + frame_header_size + 10);
                    return records_before_last(r);
                  }},
        tail_case{"crc_field_damaged",
                  [](const fs::path& f, const std::vector<stored>& r) {
                    flip_byte(f, r.back().position.offset + 5);
                    return records_before_last(r);
                  }},
        tail_case{"length_points_past_the_end",
                  [](const fs::path& f, const std::vector<stored>& r) {
                    char big[4];
                    format::store_le32(big, 0x7fffffff);
                    overwrite(f, r.back().position.offset, {big, 4});
                    return records_before_last(r);
                  }},
        // Junk whose every byte reads as a frame length that fits (2 MiB): the search for an intact frame after
        // the damage is bounded (it checked each candidate in full: hours for a few MiB of such junk).
        tail_case{"junk_of_plausible_lengths_after_a_bad_frame",
                  [](const fs::path& f, const std::vector<stored>& r) {
                    flip_byte(f, r.back().position.offset + frame_header_size + 1);
                    std::string junk;
                    while (junk.size() < (4u << 20)) junk.append("\x00\x00\x20\x00", 4);
                    append_bytes(f, junk);
                    return records_before_last(r);
                  }},
        tail_case{"garbage_after_the_last_record",
                  [](const fs::path& f, const std::vector<stored>& r) {
                    append_bytes(f, std::string_view("\x13\x00\x00\x00garbage garbage garbage", 27));
                    return r.size();
                  }},
        tail_case{"zero_filled_block_after_the_last_record",  // what a power cut can leave
                  [](const fs::path& f, const std::vector<stored>& r) {
                    append_bytes(f, std::string(4096, '\0'));
                    return r.size();
                  }},
        tail_case{"a_middle_record_of_the_last_segment_damaged",  // cut from there: the last segment's rule
                  [](const fs::path& f, const std::vector<stored>& r) {
                    const std::uint64_t last = r.back().position.segment;
                    auto first_in_last = std::find_if(r.begin(), r.end(), [&](const stored& s) {
                      return s.position.segment == last;
                    });
                    flip_byte(f, first_in_last->position.offset + frame_header_size + 1);
                    return static_cast<std::size_t>(first_in_last - r.begin());
                  }}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Recovery, ASegmentWhoseHeaderWasCutShortByACrashIsRemoved) {
  temp_dir dir;
  const auto written = write_records(dir.path(), 5);
  const std::uint64_t next_id = written.back().position.segment + 1;
  char header[segment_header_size];
  format::encode_segment_header(next_id, header);
  append_bytes(segment_file(dir.path(), next_id), {header, 11});

  auto log = durable_log::open(options_for(dir.path()));
  EXPECT_EQ(log->stats().torn_tails_cut, 1u);
  EXPECT_FALSE(fs::exists(segment_file(dir.path(), next_id)));
  EXPECT_EQ(read_all(*log, log->checkpointed()).size(), written.size());
  // Rolling into that id again later works.
  const std::string big(3000, 'r');
  const std::string_view one[] = {big};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(log->append(one).ok());
  EXPECT_TRUE(fs::exists(segment_file(dir.path(), next_id)));
}

TEST(Recovery, AnOnlySegmentWithATornHeaderIsReplaced) {
  temp_dir dir;
  append_bytes(segment_file(dir.path(), 1), "TCGSP");
  auto log = durable_log::open(options_for(dir.path()));
  EXPECT_EQ(log->stats().torn_tails_cut, 1u);
  const std::string_view r[] = {"fresh"};
  ASSERT_TRUE(log->append(r).ok());
  EXPECT_EQ(read_all(*log, log->checkpointed()).size(), 1u);
}

// ---------------------------------------------------------------------------------------------------
// Damage elsewhere is refused

struct refusal_case {
  const char* name;
  void (*damage)(const fs::path& dir, const std::vector<stored>& records);
  const char* message_part;
};

class Refusal : public ::testing::TestWithParam<refusal_case> {};

TEST_P(Refusal, OpenThrowsAClearMessageAndChangesNothing) {
  temp_dir dir;
  const auto written = write_records(dir.path(), 12);
  ASSERT_GE(written.back().position.segment, 3u);
  GetParam().damage(dir.path(), written);
  std::map<fs::path, std::uintmax_t> sizes;
  for (const auto& e : fs::directory_iterator(dir.path())) sizes[e.path()] = fs::file_size(e.path());
  try {
    auto log = durable_log::open(options_for(dir.path()));
    FAIL() << "open succeeded on a damaged spool";
  } catch (const open_error& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam().message_part), std::string::npos) << e.what();
  }
  for (const auto& [path, size] : sizes) {
    if (path.extension() == ".seg") {
      EXPECT_EQ(fs::file_size(path), size) << path << " was modified";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Damage, Refusal,
    ::testing::Values(
        refusal_case{"payload_flipped_in_an_older_segment",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       flip_byte(segment_file(d, 1), r[1].position.offset + frame_header_size + 4);
                     },
                     "00000000000000000001.seg is corrupt at offset"},
        refusal_case{"older_segment_truncated",
                     [](const fs::path& d, const std::vector<stored>&) {
                       const auto f = segment_file(d, 2);
                       fs::resize_file(f, fs::file_size(f) - 10);
                     },
                     "00000000000000000002.seg is corrupt at offset"},
        refusal_case{"garbage_appended_to_an_older_segment",
                     [](const fs::path& d, const std::vector<stored>&) { append_bytes(segment_file(d, 1), "junk!!!!!!!"); },
                     "Only the last segment can have a torn tail"},
        refusal_case{"older_segment_header_damaged",
                     [](const fs::path& d, const std::vector<stored>&) { flip_byte(segment_file(d, 1), 2); },
                     "has a bad header"},
        refusal_case{"last_segment_header_damaged",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       flip_byte(segment_file(d, r.back().position.segment), 20);
                     },
                     "has a bad header"},
        refusal_case{"segment_renamed",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       const auto last = r.back().position.segment;
                       fs::rename(segment_file(d, last), segment_file(d, last + 1));
                       fs::copy_file(segment_file(d, last - 1), segment_file(d, last));
                     },
                     "names segment"},
        refusal_case{"middle_segment_missing",
                     [](const fs::path& d, const std::vector<stored>&) { fs::remove(segment_file(d, 2)); },
                     "00000000000000000002.seg is missing"},
        refusal_case{"checkpoint_file_damaged",
                     [](const fs::path& d, const std::vector<stored>&) {
                       append_bytes(d / format::checkpoint_file_name, "not a checkpoint");
                     },
                     "checkpoint file"},
        refusal_case{"checkpoint_inside_a_record",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       write_checkpoint(d, {r[2].position.segment, r[2].position.offset + 4});
                     },
                     "not at a record boundary"},
        refusal_case{"checkpoint_past_the_data",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       write_checkpoint(d, {r.back().next.segment, r.back().next.offset + 100});
                     },
                     "past the end"},
        // Damage in the last segment with intact records after it is not a torn tail: cut there, it dropped them.
        refusal_case{"payload_flipped_before_the_last_segments_last_record",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       const auto last = segment_file(d, r.back().position.segment);
                       char frame[frame_header_size];
                       format::encode_frame_header("one more", frame);
                       append_bytes(last, std::string(frame, sizeof frame) + "one more");
                       flip_byte(last, r.back().position.offset + frame_header_size + 4);
                     },
                     "an intact record follows"},
        // A checkpoint naming a segment after every one there: the segments were taken for consumed and deleted.
        refusal_case{"checkpoint_after_every_segment",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       write_checkpoint(d, {r.back().position.segment + 6, segment_header_size});
                     },
                     "no segment from it on"},
        refusal_case{"segment_after_the_checkpoint_missing",
                     [](const fs::path& d, const std::vector<stored>& r) {
                       write_checkpoint(d, {1, r[0].next.offset});
                       fs::remove(segment_file(d, 1));
                       fs::remove(segment_file(d, 2));
                     },
                     "00000000000000000002.seg is missing"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Recovery, ACheckpointThatATruncatedLastSegmentFallsShortOfIsRefused) {
  temp_dir dir;
  std::vector<stored> written;
  {
    auto log = durable_log::open(options_for(dir.path(), 64 << 10));
    ASSERT_TRUE(append_records(*log, 6));
    written = read_all(*log, log->checkpointed());
    ASSERT_FALSE(log->checkpoint(written[4].next));
  }
  // Damage to a record the drainer already consumed: cutting there would put the checkpoint past the end.
  const auto file = segment_file(dir.path(), 1);
  flip_byte(file, written[2].position.offset + frame_header_size + 1);
  const auto size = fs::file_size(file);
  EXPECT_THROW(durable_log::open(options_for(dir.path())), open_error);
  EXPECT_EQ(fs::file_size(file), size) << "the refusal must not cut anything";
}

TEST(Recovery, ConsumedSegmentsLeftByACrashAreDeletedAndAStaleTempCheckpointIsIgnored) {
  temp_dir dir;
  const auto written = write_records(dir.path(), 12);
  const auto first_in_third = std::find_if(written.begin(), written.end(), [](const stored& s) {
    return s.position.segment == 3;
  });
  ASSERT_NE(first_in_third, written.end());
  const log_position checkpoint = first_in_third->position;
  const auto expected = static_cast<std::size_t>(written.end() - first_in_third);
  write_checkpoint(dir.path(), checkpoint);
  append_bytes(dir.path() / format::checkpoint_temp_file_name, "half");

  auto log = durable_log::open(options_for(dir.path()));
  EXPECT_EQ(log->checkpointed(), checkpoint);
  EXPECT_FALSE(fs::exists(dir.path() / format::checkpoint_temp_file_name));
  for (std::uint64_t id = 1; id < checkpoint.segment; ++id) EXPECT_FALSE(fs::exists(segment_file(dir.path(), id)));
  EXPECT_EQ(log->stats().segments_deleted, checkpoint.segment - 1);
  const auto got = read_all(*log, log->checkpointed());
  ASSERT_EQ(got.size(), expected);
  EXPECT_EQ(got[0].payload, first_in_third->payload);
  EXPECT_EQ(log->stats().records_recovered, expected);
}

TEST(Recovery, ACrashAfterTheCheckpointRenameButBeforeSegmentDeletionLosesNothing) {
  temp_dir dir;
  log_position checkpoint;
  {
    auto log = durable_log::open(options_for(dir.path()));
    ASSERT_TRUE(append_records(*log, 12));
    const auto got = read_all(*log, log->checkpointed());
    checkpoint = got[7].next;
    ASSERT_FALSE(log->checkpoint(checkpoint));
  }
  // Pretend the unlinks never reached the disk: bring segment 1 back as it was.
  {
    temp_dir other;
    write_records(other.path(), 12);
    fs::copy_file(segment_file(other.path(), 1), segment_file(dir.path(), 1));
  }
  auto log = durable_log::open(options_for(dir.path()));
  EXPECT_FALSE(fs::exists(segment_file(dir.path(), 1)));
  EXPECT_EQ(log->checkpointed(), checkpoint);
  const auto got = read_all(*log, checkpoint);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].payload, payload_for(8));
}

// ---------------------------------------------------------------------------------------------------
// kill -9 at random moments

// Child -> parent messages, one write() each (smaller than PIPE_BUF, so never interleaved).
struct message {
  std::uint32_t kind;  // 1 acked, 2 about to checkpoint past this record, 3 checkpointed, 9 child error
  std::uint32_t unused;
  std::uint64_t id;
  std::uint64_t segment;
  std::uint64_t offset;
};
enum : std::uint32_t { acked = 1, consuming = 2, checkpointed = 3, child_error = 9 };

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The payload is a pure function of its id, so the parent can check every byte. Sizes reach dozens of
// pages so that a kill often lands in the middle of a write (the only way kill -9 tears a tail: what
// reached the page cache survives the process).
std::string crash_payload(std::uint64_t id) {
  const std::size_t n = 16 + mix(id) % 200000;
  std::string s(n, '\0');
  std::snprintf(s.data(), 17, "%016llx", static_cast<unsigned long long>(id));
  std::uint64_t x = mix(id ^ 0xabcdef);
  for (std::size_t i = 16; i < n; ++i) {
    if ((i & 7) == 0) x = mix(x);
    s[i] = static_cast<char>(x >> (8 * (i & 7)));
  }
  return s;
}

bool parse_crash_payload(std::string_view payload, std::uint64_t& id) {
  if (payload.size() < 16) return false;
  id = std::strtoull(std::string(payload.substr(0, 16)).c_str(), nullptr, 16);
  return payload == crash_payload(id);
}

void send(int fd, const message& m) {
  // A kill can land anywhere; a failed write only means the parent learns less.
  [[maybe_unused]] const auto n = ::write(fd, &m, sizeof m);
}

// Runs in the forked child until it is killed: appenders and a checkpointing drainer.
[[noreturn]] void crash_child(const fs::path& dir, int iteration, int out) {
  try {
    auto log = durable_log::open(small_options(dir, 1 << 20, 256 << 20));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::vector<std::string> payloads;
        std::vector<std::string_view> views;
        for (std::uint64_t seq = 0;; ++seq) {
          const std::uint64_t first = (static_cast<std::uint64_t>(iteration) << 40) |
                                      (static_cast<std::uint64_t>(t) << 32) | (seq << 2);
          const int count = 1 + static_cast<int>(mix(first) % 3);
          payloads.clear();
          for (int i = 0; i < count; ++i) payloads.push_back(crash_payload(first + static_cast<std::uint64_t>(i)));
          views.assign(payloads.begin(), payloads.end());
          const auto r = log->append(views);
          if (!r.ok()) {
            send(out, {child_error, 0, 0, 0, 0});
            ::_exit(3);
          }
          for (int i = 0; i < count; ++i) {
            send(out, {acked, 0, first + static_cast<std::uint64_t>(i), r.end.segment, r.end.offset});
          }
        }
      });
    }
    threads.emplace_back([&] {
      read_batch batch;
      log_position from = log->checkpointed();
      for (;;) {
        log->wait_for_data(from, std::chrono::milliseconds(5));
        if (log->read(from, 8, 256 << 10, batch)) {
          send(out, {child_error, 0, 0, 0, 0});
          ::_exit(4);
        }
        if (batch.empty()) continue;
        // Announce before checkpointing: a kill right after the rename must not look like a loss.
        for (const auto& r : batch.records()) {
          std::uint64_t id = 0;
          if (!parse_crash_payload(r.payload, id)) {
            send(out, {child_error, 1, 0, 0, 0});
            ::_exit(5);
          }
          send(out, {consuming, 0, id, batch.next().segment, batch.next().offset});
        }
        if (log->checkpoint(batch.next())) {
          send(out, {child_error, 2, 0, 0, 0});
          ::_exit(6);
        }
        send(out, {checkpointed, 0, 0, batch.next().segment, batch.next().offset});
        from = batch.next();
        std::this_thread::sleep_for(std::chrono::milliseconds(3));  // let a backlog build up
      }
    });
    for (auto& t : threads) t.join();
  } catch (...) {
    send(out, {child_error, 7, 0, 0, 0});
  }
  ::_exit(8);
}

TEST(Recovery, KillNineAtRandomMomentsLosesAndDuplicatesNothingAcknowledged) {
  temp_dir dir;
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::set<std::uint64_t> consumed_before;  // ids drained in earlier rounds: must never come back
  std::uint64_t total_acked = 0, total_torn = 0, total_checked = 0;

  for (int iteration = 1; iteration <= 20; ++iteration) {
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(fds[0]);
      crash_child(dir.path(), iteration, fds[1]);
    }
    ::close(fds[1]);

    // Collect messages while the child runs, then kill it without warning.
    std::vector<message> messages;
    std::string pending;
    auto drain = [&](int timeout_ms) -> bool {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return true;
      char buf[65536];
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) return false;
      pending.append(buf, static_cast<std::size_t>(n));
      std::size_t whole = pending.size() / sizeof(message) * sizeof(message);
      for (std::size_t at = 0; at < whole; at += sizeof(message)) {
        message m;
        std::memcpy(&m, pending.data() + at, sizeof m);
        messages.push_back(m);
      }
      pending.erase(0, whole);
      return true;
    };
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 150)(rng));
    while (std::chrono::steady_clock::now() < deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (!drain(static_cast<int>(std::max<std::int64_t>(left.count(), 0)))) break;
    }
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    while (drain(-1)) {
    }
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child stopped on its own, status " << status;

    std::map<std::uint64_t, log_position> acked_ids;
    std::map<std::uint64_t, log_position> consume_target;
    log_position last_checkpoint_reported{};
    for (const auto& m : messages) {
      ASSERT_NE(m.kind, child_error) << "the child failed, code " << m.unused;
      if (m.kind == acked) acked_ids[m.id] = {m.segment, m.offset};
      if (m.kind == consuming) consume_target[m.id] = {m.segment, m.offset};
      if (m.kind == checkpointed) last_checkpoint_reported = std::max(last_checkpoint_reported, {m.segment, m.offset});
    }
    total_acked += acked_ids.size();

    auto log = durable_log::open(options_for(dir.path(), 1 << 20));
    const auto stats = log->stats();
    total_torn += stats.torn_tails_cut;
    const log_position checkpoint = log->checkpointed();
    EXPECT_GE(checkpoint, last_checkpoint_reported) << "a checkpoint that returned ok was lost";

    std::set<std::uint64_t> present;
    log_position previous{};
    read_batch batch;
    log_position from = checkpoint;
    for (;;) {
      ASSERT_FALSE(log->read(from, 64, 4 << 20, batch));
      if (batch.empty()) break;
      for (const auto& r : batch.records()) {
        std::uint64_t id = 0;
        ASSERT_TRUE(parse_crash_payload(r.payload, id)) << "a damaged record at " << to_string(r.position);
        EXPECT_TRUE(present.insert(id).second) << "record " << id << " is in the log twice";
        EXPECT_FALSE(consumed_before.count(id)) << "record " << id << " came back after being drained";
        EXPECT_GT(r.position, previous);
        previous = r.position;
      }
      from = batch.next();
    }
    // The torn tail is gone: the last segment ends exactly after its last intact record.
    const log_position end = log->durable_end();
    EXPECT_EQ(fs::file_size(segment_file(dir.path(), end.segment)), end.offset);

    for (const auto& [id, end_of_append] : acked_ids) {
      const auto consumed = consume_target.find(id);
      const bool drained = consumed != consume_target.end() && consumed->second <= checkpoint;
      if (drained) {
        EXPECT_FALSE(present.count(id)) << "record " << id << " is both before the checkpoint and after it";
      } else {
        EXPECT_TRUE(present.count(id)) << "acknowledged record " << id << " (append ended at "
                                       << to_string(end_of_append) << ") is missing; checkpoint "
                                       << to_string(checkpoint);
      }
      ++total_checked;
    }
    // Drain what is left so the next round starts from a known point.
    ASSERT_FALSE(log->checkpoint(end));
    consumed_before.insert(present.begin(), present.end());
    for (const auto& [id, target] : consume_target) {
      if (target <= checkpoint) consumed_before.insert(id);
    }
    if (HasFailure()) break;
  }
  std::printf("[ info ] seed %u: %llu acknowledged records checked over 20 kills, %llu torn tails cut\n", seed,
              static_cast<unsigned long long>(total_checked), static_cast<unsigned long long>(total_torn));
  EXPECT_GT(total_acked, 0u);
}

}  // namespace
}  // namespace crm::sinks::spool
