// Encodes canonical records as PostgreSQL binary COPY tuples for the session's staging tables (and for
// communications and customer_touchpoints themselves).
// Binary COPY spares the server from parsing UUIDs, timestamps and numbers, and needs no escaping.
// Pure and allocation-free per row apart from growing the output buffer, which callers reuse.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "transform/canonical/canonical_event.h"

namespace crm::sinks::postgres {

// Column lists of the target tables, in the order the encoder writes them. The communications staging
// table has one more column at the end, occurred_at_is_receipt_time, used by the insert only.
extern const char* const communication_columns;
extern const char* const touchpoint_columns;
extern const char* const rejection_columns;
// The staging tables' definitions (column names and the binary types the encoder writes).
extern const char* const communication_stage_definition;
extern const char* const touchpoint_stage_definition;
extern const char* const rejection_stage_definition;

// A communication row for the staging table (with occurred_at_is_receipt_time) or for the table itself
// (communication_columns only: the writer's direct COPY, sinks/postgres/direct_copy.h).
enum class communication_layout { staging, table };
// A touchpoint row for the staging table (conversion_value as float8, which the insert casts) or for the table
// itself (conversion_value as numeric, the value the cast would make: numeric_from_float8 below).
enum class touchpoint_layout { staging, table };

class copy_encoder {
 public:
  void append(const transform::communication& c, communication_layout layout = communication_layout::staging);
  void append(const transform::touchpoint& t, touchpoint_layout layout = touchpoint_layout::staging);
  void append(const transform::rejection& r);

  // The complete COPY stream (header, tuples, trailer) or empty when no row was appended.
  const std::string& finish();
  bool empty() const noexcept { return rows_ == 0; }
  std::size_t rows() const noexcept { return rows_; }
  void clear() noexcept {
    out_.clear();
    rows_ = 0;
    finished_ = false;
  }

  // Field encoders, public for tests.
  void begin_row(std::int16_t fields);
  void null();
  void text(std::string_view s);  // empty -> NULL
  void jsonb(std::string_view s);  // empty -> NULL
  void bytea(std::string_view s);
  void int8(std::int64_t v);
  void id(std::int64_t v) { v == 0 ? null() : int8(v); }  // 0 -> NULL
  void float8(double v);
  // A float8 as the numeric PostgreSQL's float8-to-numeric cast makes of it (the shortest of %.15g's digits);
  // a numeric(p,s) column rounds and range-checks it on receipt exactly as it does the cast's result.
  void numeric_from_float8(double v);
  void boolean(bool v);
  void timestamp(transform::timestamp_us us);
  void uuid(const transform::uuid& u);
  // The header of a one-dimensional array without NULLs in PostgreSQL's binary format (array_recv): `count`
  // elements of type `element_oid` follow, each written by the field encoders above (length, then bytes), so the
  // buffer is a binary query parameter (the writer's probe, communication_insert.cc).
  void array_header(std::uint32_t element_oid, std::uint32_t count);
  const std::string& buffer() const noexcept { return out_; }

 private:
  void put16(std::uint16_t v);
  void put32(std::uint32_t v);
  void put64(std::uint64_t v);

  std::string out_;
  std::size_t rows_ = 0;
  bool finished_ = false;
};

// Re-encodes `s` as valid UTF-8 without NUL bytes, replacing each offending byte with U+FFFD.
// Returns true when something had to be replaced.
bool to_valid_utf8(std::string_view s, std::string& out);

// "YYYY-MM-DD HH:MM:SS.ffffff+00" (a year past 9999 with all its digits); `out` must hold 40 bytes; returns the
// length written.
std::size_t format_timestamp(transform::timestamp_us us, char* out) noexcept;

// Month index (year * 12 + month - 1) of a timestamp, UTC.
std::int32_t month_index(transform::timestamp_us us) noexcept;

}  // namespace crm::sinks::postgres
