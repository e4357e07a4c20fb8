// Reading one JSON text with simdjson On-Demand, the pieces every reader of untrusted JSON shares (the
// canonical reader, the provider adapters): a reusable padded copy of the input, the words of a rejection
// reason for what stage 1 refuses and for a value the validating copier refuses, and the name of a JSON type.
// Internal to transform/ (crm::transform::detail).
#pragma once

#include <simdjson.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "transform/text/json_copy.h"

namespace crm::transform::detail {

// A padded copy of a text for simdjson, grown on demand (doubling from 4 KiB) and reused.
class padded_buffer {
 public:
  std::string_view load(std::string_view text);
  const char* data() const noexcept { return data_.get(); }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
};

// "array", "object", "number", "string", "boolean", "null".
std::string_view type_name(simdjson::ondemand::json_type t) noexcept;

// What stage 1 (parser.iterate()) refused, where it can say where: "invalid UTF-8 at byte N", "malformed JSON
// at byte N: control character inside a string (must be escaped)" or "...: a string is opened but never
// closed". False, and `out` untouched, for any other error (the caller words those).
bool describe_stage1_error(simdjson::error_code e, std::string_view text, std::string& out);

// The rule a copy_error other than none/malformed breaks, appended to a reason that names the field:
// "contains \u0000, which PostgreSQL does not accept", "nested deeper than 32 levels", "contains a number out
// of PostgreSQL's numeric range".
void append_copy_rule(std::string& reason, copy_error e);

// Starts the first-broken-rule reason of a record: "field: ". False when a reason is already recorded (the
// first broken rule wins).
inline bool begin_reason(std::string& reason, std::string_view field) {
  if (!reason.empty()) return false;
  reason.assign(field).append(": ");
  return true;
}

}  // namespace crm::transform::detail
