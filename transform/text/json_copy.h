// Validating copy of JSON values with simdjson On-Demand: every value is walked and re-emitted as its
// raw text (strings through get_string() first, numbers checked against the JSON grammar), so the output
// is JSON that PostgreSQL's jsonb accepts. Used for `metadata` and for unknown fields.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace crm::transform::detail {

enum class copy_error : std::uint8_t {
  none,
  malformed,            // simdjson reported an error (see json_error()) or a literal is broken
  nul_character,        // "\u0000" in a string or key: jsonb rejects it
  too_deep,             // nesting beyond max_depth
  number_out_of_range,  // grammatical, but beyond what PostgreSQL's numeric stores
};

class json_copier {
 public:
  static constexpr int max_depth = 32;

  // Appends `v` to `out`. `depth` counts the objects/arrays already open around it.
  [[nodiscard]] copy_error copy_value(simdjson::ondemand::value v, std::string& out, int depth);

  // Appends the members of `object` as `"key":value`, comma-separated. With `leading_comma` every member,
  // the first included, is preceded by a comma, so that members of several objects can be concatenated
  // and the very first comma dropped.
  [[nodiscard]] copy_error copy_members(simdjson::ondemand::object object, std::string& out, int depth,
                                        bool leading_comma);

  // The simdjson error behind the last copy_error::malformed, or a description of a broken literal.
  std::string_view malformed_detail() const noexcept { return detail_; }

 private:
  copy_error malformed(simdjson::error_code e) noexcept;
  std::string_view detail_;
};

// The token of a JSON key, from its opening to its closing quote, given the key's unescaped text.
std::string_view raw_key_token(simdjson::ondemand::raw_json_string key, std::string_view unescaped) noexcept;

// Whether a decoded string (or key) holds a NUL character, given its raw token with the quotes. A raw NUL
// byte cannot be inside a string (stage 1 rejects unescaped control characters), so only a string with
// escapes, i.e. one longer raw than decoded, needs the scan.
inline bool string_has_nul(std::string_view raw_token, std::string_view decoded) noexcept {
  return decoded.size() + 2 != raw_token.size() && std::memchr(decoded.data(), 0, decoded.size()) != nullptr;
}

// raw_json_token() includes trailing whitespace; this drops it.
std::string_view trim_token(std::string_view token) noexcept;

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (else not_a_number) that PostgreSQL's numeric accepts (else
// out_of_range): an exponent within +-1000, at most 16383 digits after the point and 131072 before it once
// the exponent is applied.
enum class number_check : std::uint8_t { ok, not_a_number, out_of_range };
number_check check_json_number(std::string_view token) noexcept;

}  // namespace crm::transform::detail
