// UTF-8 checks where simdjson's yes/no answer is not enough: the offset of the first bad byte (for the
// rejection reason) and the length of a well-formed sequence (to cut text on a character boundary).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace crm::transform::detail {

// Length (1-4) of the well-formed UTF-8 sequence at the start of `s`, or 0 when it is not well-formed
// (overlong forms, surrogates and code points above U+10FFFF are not).
std::size_t utf8_sequence_length(std::string_view s) noexcept;

// Offset of the first byte that does not start a well-formed sequence; npos when `s` is valid UTF-8.
std::size_t invalid_utf8_offset(std::string_view s) noexcept;

// `s` with each byte that does not start a well-formed sequence written as \xNN: valid UTF-8 for a name that
// PostgreSQL stores as text (a file name in the ledger and the dead letters). For people, not a reversible
// encoding: a name holding the text \xFF reads the same as one holding the byte.
std::string escape_invalid_utf8(std::string_view s);

}  // namespace crm::transform::detail
