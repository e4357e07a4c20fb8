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

// Appends the words of a list separated by `separator` ("queued|sent|delivered" for a rule's choices).
template <typename Words>
void append_joined(std::string& out, const Words& words, char separator) {
  bool first = true;
  for (const std::string_view w : words) {
    if (!first) out.push_back(separator);
    out.append(w);
    first = false;
  }
}

}  // namespace crm::transform::detail
