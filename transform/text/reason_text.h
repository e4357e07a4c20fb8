// Pieces of rejection reasons: offending values are quoted, made printable and cut short, so that a
// reason is always one readable line of valid UTF-8 whatever the input was.
#pragma once

#include <charconv>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

namespace crm::transform::detail {

inline constexpr std::size_t max_quoted_bytes = 64;

// Appends `"value"`: '"' and '\' backslash-escaped, control characters, DEL and bytes that are not UTF-8
// as \xNN; cut after ~max_quoted_bytes on a character boundary with "..." before the closing quote.
void append_quoted(std::string& out, std::string_view value);

// Like append_quoted but without the quotes (for number tokens).
void append_printable(std::string& out, std::string_view value);

// Appends the decimal digits of an integer.
template <typename Int>
  requires std::is_integral_v<Int>
void append_number(std::string& out, Int value) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, r.ptr);
}

}  // namespace crm::transform::detail
