#include "transform/text/json_input.h"

#include <cstring>

#include "transform/text/json_diagnostics.h"
#include "transform/text/reason_text.h"
#include "transform/text/utf8.h"

namespace crm::transform::detail {

namespace od = simdjson::ondemand;

std::string_view padded_buffer::load(std::string_view text) {
  const std::size_t needed = text.size() + simdjson::SIMDJSON_PADDING;
  if (needed > capacity_) {
    std::size_t capacity = capacity_ == 0 ? 4096 : capacity_;
    while (capacity < needed) capacity *= 2;
    data_.reset(new char[capacity]);
    capacity_ = capacity;
  }
  if (!text.empty()) std::memcpy(data_.get(), text.data(), text.size());
  std::memset(data_.get() + text.size(), 0, simdjson::SIMDJSON_PADDING);
  return {data_.get(), text.size()};
}

std::string_view type_name(od::json_type t) noexcept {
  switch (t) {
    case od::json_type::array: return "array";
    case od::json_type::object: return "object";
    case od::json_type::number: return "number";
    case od::json_type::string: return "string";
    case od::json_type::boolean: return "boolean";
    case od::json_type::null: return "null";
  }
  return "value";
}

bool describe_stage1_error(simdjson::error_code e, std::string_view text, std::string& out) {
  switch (e) {
    case simdjson::UTF8_ERROR: {
      const std::size_t at = invalid_utf8_offset(text);
      out.assign("invalid UTF-8 at byte ");
      append_number(out, at == std::string_view::npos ? 0 : at);
      return true;
    }
    case simdjson::UNESCAPED_CHARS:
    case simdjson::UNCLOSED_STRING: {
      const std::size_t at = locate_string_error(text);
      out.assign("malformed JSON at byte ");
      append_number(out, at == std::string_view::npos ? 0 : at);
      out.append(e == simdjson::UNESCAPED_CHARS ? ": control character inside a string (must be escaped)"
                                                : ": a string is opened but never closed");
      return true;
    }
    default: return false;
  }
}

void append_copy_rule(std::string& reason, copy_error e) {
  switch (e) {
    case copy_error::none:
    case copy_error::malformed: return;
    case copy_error::nul_character: reason.append("contains \\u0000, which PostgreSQL does not accept"); return;
    case copy_error::too_deep:
      reason.append("nested deeper than ");
      append_number(reason, json_copier::max_depth);
      reason.append(" levels");
      return;
    case copy_error::number_out_of_range: reason.append("contains a number out of PostgreSQL's numeric range"); return;
  }
}

}  // namespace crm::transform::detail
