#include "transform/text/json_diagnostics.h"

#include "transform/text/ascii.h"

namespace crm::transform::detail {

std::size_t locate_string_error(std::string_view json) noexcept {
  bool in_string = false;
  std::size_t opened = 0;
  for (std::size_t i = 0; i < json.size(); ++i) {
    const auto c = static_cast<unsigned char>(json[i]);
    if (!in_string) {
      if (c == '"') {
        in_string = true;
        opened = i;
      }
    } else if (c == '\\') {
      ++i;
    } else if (c == '"') {
      in_string = false;
    } else if (c < 0x20) {
      return i;
    }
  }
  return in_string ? opened : std::string_view::npos;
}

std::size_t top_level_object_end(std::string_view json) noexcept {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '{':
      case '[': ++depth; break;
      case '}':
      case ']':
        if (--depth == 0) return i + 1;
        break;
      default: break;
    }
  }
  return std::string_view::npos;
}

std::size_t skip_json_whitespace(std::string_view json, std::size_t from) noexcept {
  for (std::size_t i = from; i < json.size(); ++i) {
    if (!is_json_whitespace(json[i])) return i;
  }
  return std::string_view::npos;
}

}  // namespace crm::transform::detail
