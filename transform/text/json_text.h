// JSON string literal writing, shared by every place that renders text into JSON (metadata, responses,
// dead-letter records).
#pragma once

#include <string>
#include <string_view>

namespace crm::transform {

// Appends `text` as a quoted JSON string: '"' and '\' escaped, control characters as \u00XX. Bytes >= 0x80
// are copied as they are, so `text` must already be valid UTF-8 for the result to be valid JSON.
void append_json_string(std::string& out, std::string_view text);

}  // namespace crm::transform
