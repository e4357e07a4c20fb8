// What the durable-log tests share: a log's records read back across segments, the options of a small log.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sinks/spool/durable_log.h"
#include "sinks/spool/segment_format.h"
#include "support/scratch.h"

namespace crm::sinks::spool::test {

// The names both log tests speak in (`using namespace test;` brings them in).
namespace fs = std::filesystem;
using crm_test::temp_dir;
using format::frame_header_size;
using format::segment_header_size;

struct stored {
  log_position position;
  log_position next;
  std::string payload;
};

// Everything readable from `from`, across segments, in batches of at most `max_records` / `max_bytes`.
inline std::vector<stored> read_all(durable_log& log, log_position from, std::size_t max_records = 64,
                                    std::size_t max_bytes = 1 << 20) {
  std::vector<stored> out;
  read_batch batch;
  for (;;) {
    const auto ec = log.read(from, max_records, max_bytes, batch);
    EXPECT_FALSE(ec) << ec.message();
    if (ec || batch.empty()) break;
    for (const auto& r : batch.records()) out.push_back({r.position, r.next, std::string(r.payload)});
    from = batch.next();
  }
  return out;
}

// A log in `dir` of `segment`-byte segments bounded to `max` bytes.
inline durable_log_options small_options(const std::filesystem::path& dir, std::uint64_t segment = 4096,
                                         std::uint64_t max = 1 << 20) {
  durable_log_options o;
  o.directory = dir;
  o.segment_bytes = segment;
  o.max_bytes = max;
  return o;
}

// Files of a log made by hand: damage, checkpoints.
inline fs::path segment_file(const fs::path& dir, std::uint64_t id) { return dir / format::segment_file_name(id); }

inline void overwrite(const fs::path& file, std::uint64_t offset, std::string_view bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f) << file;
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void append_bytes(const fs::path& file, std::string_view bytes) {
  std::ofstream f(file, std::ios::app | std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void flip_byte(const fs::path& file, std::uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// A checkpoint file at `at`, as the log writes one.
inline void write_checkpoint(const fs::path& dir, log_position at) {
  char bytes[format::checkpoint_size];
  format::encode_checkpoint(at.segment, at.offset, bytes);
  append_bytes(dir / format::checkpoint_file_name, {bytes, sizeof bytes});
}

}  // namespace crm::sinks::spool::test
