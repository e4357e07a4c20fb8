#include "transform/text/json_copy.h"

#include "transform/text/ascii.h"

namespace crm::transform::detail {
namespace {

namespace od = simdjson::ondemand;

// What PostgreSQL's numeric_in (jsonb's numbers) accepts: an exponent within +-1000 (NUMERIC_MAX_PRECISION;
// beyond it is a syntax error), at most 16383 digits after the point once the exponent is applied
// (NUMERIC_DSCALE_MAX) and at most 131072 before it (NUMERIC_WEIGHT_MAX: 32767 base-10000 digits); beyond
// either, "value overflows numeric format".
constexpr long max_exponent = 1000;
constexpr long max_scale = 16383;
constexpr long max_integer_digits = 131072;

}  // namespace

std::string_view trim_token(std::string_view token) noexcept {
  while (!token.empty() && is_json_whitespace(token.back())) token.remove_suffix(1);
  return token;
}

std::string_view raw_key_token(od::raw_json_string key, std::string_view unescaped) noexcept {
  const char* begin = key.raw();  // just after the opening quote; the closing one exists (stage 1 checked)
  const std::size_t n = unescaped.size();
  // Without escapes the raw key is as long as the unescaped one. An unescaped quote at raw[n] ends the key,
  // so this holds unless that quote is itself escaped (then raw[n - 1] is a backslash).
  if (begin[n] == '"' && (n == 0 || begin[n - 1] != '\\')) return {begin - 1, n + 2};
  const char* p = begin;
  while (*p != '"') p += *p == '\\' ? 2 : 1;
  return {begin - 1, static_cast<std::size_t>(p - begin) + 2};
}

number_check check_json_number(std::string_view s) noexcept {
  std::size_t i = 0;
  auto digit = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  if (i < s.size() && s[i] == '-') ++i;
  if (!digit(i)) return number_check::not_a_number;
  long integer_digits = 0;  // significant: none for "0"
  if (s[i] == '0') {
    ++i;
  } else {
    const std::size_t from = i;
    while (digit(i)) ++i;
    integer_digits = static_cast<long>(i - from);
  }
  long fraction_digits = 0;
  long fraction_zeros = -1;  // zeros before the first non-zero digit after the point; -1: all zeros
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digit(i)) return number_check::not_a_number;
    const std::size_t from = i;
    while (digit(i)) {
      if (fraction_zeros < 0 && s[i] != '0') fraction_zeros = static_cast<long>(i - from);
      ++i;
    }
    fraction_digits = static_cast<long>(i - from);
  }
  long exponent = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
    if (!digit(i)) return number_check::not_a_number;
    while (digit(i)) {
      if (exponent <= max_exponent) exponent = exponent * 10 + (s[i] - '0');
      ++i;
    }
    if (negative) exponent = -exponent;
  }
  if (i != s.size()) return number_check::not_a_number;
  if (exponent > max_exponent || exponent < -max_exponent) return number_check::out_of_range;
  if (fraction_digits - exponent > max_scale) return number_check::out_of_range;
  // The position of the first significant digit (0: units), as numeric's weight counts it.
  const long weight = integer_digits > 0 ? integer_digits - 1 + exponent
                      : fraction_zeros >= 0 ? exponent - fraction_zeros - 1
                                            : 0;
  return weight >= max_integer_digits ? number_check::out_of_range : number_check::ok;
}

copy_error json_copier::malformed(simdjson::error_code e) noexcept {
  detail_ = simdjson::error_message(e);
  return copy_error::malformed;
}

copy_error json_copier::copy_members(od::object object, std::string& out, int depth, bool leading_comma) {
  bool comma = leading_comma;
  for (auto member : object) {
    od::field field;
    if (const auto e = std::move(member).get(field)) return malformed(e);
    const od::raw_json_string raw = field.key();
    std::string_view key;
    if (const auto e = field.unescaped_key().get(key)) return malformed(e);
    const std::string_view raw_key = raw_key_token(raw, key);
    if (string_has_nul(raw_key, key)) return copy_error::nul_character;
    if (comma) out.push_back(',');
    comma = true;
    out.append(raw_key);
    out.push_back(':');
    if (const copy_error e = copy_value(field.value(), out, depth); e != copy_error::none) return e;
  }
  return copy_error::none;
}

copy_error json_copier::copy_value(od::value v, std::string& out, int depth) {
  od::json_type type;
  if (const auto e = v.type().get(type)) return malformed(e);
  switch (type) {
    case od::json_type::object: {
      if (depth >= max_depth) return copy_error::too_deep;
      od::object object;
      if (const auto e = v.get_object().get(object)) return malformed(e);
      out.push_back('{');
      if (const copy_error e = copy_members(object, out, depth + 1, false); e != copy_error::none) return e;
      out.push_back('}');
      return copy_error::none;
    }
    case od::json_type::array: {
      if (depth >= max_depth) return copy_error::too_deep;
      od::array array;
      if (const auto e = v.get_array().get(array)) return malformed(e);
      out.push_back('[');
      bool first = true;
      for (auto element : array) {
        od::value item;
        if (const auto e = std::move(element).get(item)) return malformed(e);
        if (!first) out.push_back(',');
        first = false;
        if (const copy_error e = copy_value(item, out, depth + 1); e != copy_error::none) return e;
      }
      out.push_back(']');
      return copy_error::none;
    }
    case od::json_type::string: {
      const std::string_view raw = trim_token(v.raw_json_token());
      std::string_view text;
      if (const auto e = v.get_string().get(text)) return malformed(e);
      if (string_has_nul(raw, text)) return copy_error::nul_character;
      out.append(raw);
      return copy_error::none;
    }
    case od::json_type::number: {
      const std::string_view raw = trim_token(v.raw_json_token());
      switch (check_json_number(raw)) {
        case number_check::ok: break;
        case number_check::not_a_number: return malformed(simdjson::NUMBER_ERROR);
        case number_check::out_of_range: return copy_error::number_out_of_range;
      }
      out.append(raw);
      return copy_error::none;
    }
    case od::json_type::boolean: {
      bool b = false;
      if (v.get_bool().get(b)) {
        detail_ = "invalid literal (expected true or false)";
        return copy_error::malformed;
      }
      out.append(b ? "true" : "false");
      return copy_error::none;
    }
    case od::json_type::null: {
      bool is_null = false;
      if (v.is_null().get(is_null) || !is_null) {
        detail_ = "invalid literal (expected null)";
        return copy_error::malformed;
      }
      out.append("null");
      return copy_error::none;
    }
  }
  return malformed(simdjson::TAPE_ERROR);
}

}  // namespace crm::transform::detail
