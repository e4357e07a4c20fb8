// libFuzzer: arbitrary bytes through the record splitter (both framings) and the canonical normalizer.
// Nothing may crash, leak or read out of bounds, and every record must come out as exactly one event or
// one rejection.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "transform/normalize/normalize.h"
#include "transform/normalize/record_splitter.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static crm::transform::normalizer norm;
  static crm::transform::event_batch batch;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (auto format : {crm::transform::input_format::ndjson, crm::transform::input_format::json_array}) {
    batch.clear();
    crm::transform::record_splitter splitter(format, 4096);
    std::size_t records = 0;
    auto on_record = [&](const crm::transform::split_record& r) {
      ++records;
      if (!r.error.empty()) {
        norm.reject(r.text, {"fuzz", r.line}, 1'700'000'000'000'000, r.error, batch);
      } else {
        norm.normalize(r.text, {"fuzz", r.line}, 1'700'000'000'000'000, batch);
      }
    };
    // Feed in two pieces to exercise records that straddle chunks.
    auto cut = size / 3;
    splitter.feed(input.substr(0, cut), on_record);
    splitter.feed(input.substr(cut), on_record);
    splitter.finish(on_record);
    if (batch.record_count() != records) std::abort();
  }
  return 0;
}
