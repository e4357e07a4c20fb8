// What the durable-log tests share: a log's records read back across segments, the options of a small log.
#pragma once

#include <cstdint>
#include <filesystem>
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

}  // namespace crm::sinks::spool::test
