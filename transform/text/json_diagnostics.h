// Where a record's JSON breaks, for the errors simdjson reports without a position (stage-1 errors and an
// unbalanced root object). Only called on the rejection path; scalar code.
#pragma once

#include <cstddef>
#include <string_view>

namespace crm::transform::detail {

// Offset of the first control character inside a string, or of the opening quote of a string that is
// never closed; npos when there is neither.
std::size_t locate_string_error(std::string_view json) noexcept;

// Offset just past the '}' that closes the top-level object (json starts with optional whitespace and
// '{'); npos when the object is never closed.
std::size_t top_level_object_end(std::string_view json) noexcept;

// Offset of the first non-whitespace byte at or after `from`; npos when there is none.
std::size_t skip_json_whitespace(std::string_view json, std::size_t from) noexcept;

}  // namespace crm::transform::detail
