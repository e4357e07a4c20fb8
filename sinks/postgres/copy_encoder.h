// Encodes canonical records as PostgreSQL COPY text-format rows (tab-separated, \N for NULL).
// Pure and allocation-free per row apart from growing the output buffer, which callers reuse.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "transform/canonical_event.h"

namespace crm::sinks::postgres {

// Column lists, in the order the encoder writes them. They are the staging tables' columns too.
extern const char* const communication_columns;
extern const char* const touchpoint_columns;
extern const char* const rejection_columns;

class copy_encoder {
 public:
  void append(const transform::communication& c);
  void append(const transform::touchpoint& t);
  void append(const transform::rejection& r);

  std::string& buffer() noexcept { return out_; }
  void clear() noexcept { out_.clear(); }

  // Field encoders, public for tests.
  void text(std::string_view s);           // escaped; empty -> \N
  void text_or_null(std::string_view s) { text(s); }
  void utf8_lossy(std::string_view s, bool& was_lossy);  // invalid UTF-8 and NUL -> U+FFFD
  void bytea_hex(std::string_view s);
  void id(std::int64_t v);                 // 0 -> \N
  void timestamp(transform::timestamp_us us);
  void uuid(const transform::uuid& u);
  void null() { out_.append("\\N"); }
  void tab() { out_.push_back('\t'); }
  void end_row() { out_.push_back('\n'); }

 private:
  std::string out_;
};

// "YYYY-MM-DD HH:MM:SS.ffffff+00"; `out` must hold 32 bytes; returns the length written.
std::size_t format_timestamp(transform::timestamp_us us, char* out) noexcept;

// Month index (year * 12 + month - 1) of a timestamp, UTC.
std::int32_t month_index(transform::timestamp_us us) noexcept;

}  // namespace crm::sinks::postgres
