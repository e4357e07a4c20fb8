// The batch ids and the split of a batch among writers (declared in writer.h).
#include "sinks/postgres/writer.h"

#include "sinks/postgres/mix64.h"

#include <algorithm>
#include <cstring>

namespace crm::sinks::postgres {

transform::uuid derived_batch_id(const transform::uuid& parent, std::uint8_t branch) noexcept {
  std::uint64_t a, b;
  std::memcpy(&a, parent.data(), 8);
  std::memcpy(&b, parent.data() + 8, 8);
  const std::uint64_t x = mix64(a ^ mix64(b + branch * 0x9E3779B97F4A7C15ULL));
  const std::uint64_t y = mix64(b ^ mix64(x + branch));
  transform::uuid id;
  std::memcpy(id.data(), &x, 8);
  std::memcpy(id.data() + 8, &y, 8);
  id[6] = static_cast<std::uint8_t>((id[6] & 0x0F) | 0x40);
  id[8] = static_cast<std::uint8_t>((id[8] & 0x3F) | 0x80);
  return id;
}

std::size_t writer_for(const transform::uuid& id, std::size_t writers) noexcept {
  if (writers <= 1) return 0;
  std::uint64_t a, b;
  std::memcpy(&a, id.data(), 8);
  std::memcpy(&b, id.data() + 8, 8);
  // Every bit of the id must reach the result: client-supplied UUIDs (v1, v7) have low-entropy leading
  // bytes, and sequential ones differ only in their last bytes. A multiplication alone carries bits only
  // upwards (ids differing in their last bytes all went to one writer of two), so the halves are combined
  // and then finished with splitmix64's mixer, whose shifts carry them down again.
  return static_cast<std::size_t>(mix64(a ^ (b * 0x9E3779B97F4A7C15ULL) ^ (b >> 32)) % writers);
}

namespace {

// Stable counting sort of `records` by writer; returns the start offset of each writer's run.
template <typename Record, typename KeyOf>
std::vector<std::size_t> group_by_writer(std::vector<Record>& records, std::size_t writers, KeyOf key_of) {
  std::vector<std::size_t> start(writers + 1, 0);
  if (writers <= 1 || records.empty()) {
    std::fill(start.begin() + 1, start.end(), records.size());
    return start;
  }
  std::vector<std::uint32_t> bucket(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    bucket[i] = static_cast<std::uint32_t>(writer_for(key_of(records[i]), writers));
    ++start[bucket[i] + 1];
  }
  for (std::size_t w = 0; w < writers; ++w) start[w + 1] += start[w];
  // The grouped copy goes into a buffer this thread keeps (the source thread's, one per pool), and the batch's
  // old buffer becomes the next call's: a fresh multi-megabyte vector per batch cost a page fault per 4 kB.
  thread_local std::vector<Record> sorted;
  sorted.resize(records.size());
  std::vector<std::size_t> next(start.begin(), start.end() - 1);
  for (std::size_t i = 0; i < records.size(); ++i) sorted[next[bucket[i]]++] = records[i];
  records.swap(sorted);
  return start;
}

}  // namespace

std::vector<batch_view> partition_by_key(transform::event_batch& batch, std::size_t writers, std::size_t rejections_to) {
  writers = std::max<std::size_t>(1, writers);
  auto cs = group_by_writer(batch.communications, writers, [](const transform::communication& c) -> const auto& {
    return c.event_id;
  });
  auto ts = group_by_writer(batch.touchpoints, writers, [](const transform::touchpoint& t) -> const auto& {
    return t.touchpoint_id;
  });
  std::vector<batch_view> out(writers);
  for (std::size_t w = 0; w < writers; ++w) {
    out[w].communications = std::span<const transform::communication>(batch.communications).subspan(cs[w], cs[w + 1] - cs[w]);
    out[w].touchpoints = std::span<const transform::touchpoint>(batch.touchpoints).subspan(ts[w], ts[w + 1] - ts[w]);
  }
  out[rejections_to % writers].rejections = batch.rejections;
  return out;
}

}  // namespace crm::sinks::postgres
