#include "transform/text/timestamp.h"

#include <cstdio>

namespace crm::transform::detail {
namespace {

constexpr std::int64_t us_per_second = 1'000'000;

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Reads exactly `n` digits at `pos`.
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) noexcept {
  if (pos + n > s.size()) return false;
  unsigned v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[pos + i];
    if (!is_digit(c)) return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  out = v;
  return true;
}

// Floor division for a negative-capable numerator.
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

}  // namespace

const char* parse_rfc3339(std::string_view s, timestamp_us& out) noexcept {
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!read_digits(s, 0, 4, year) || s.size() < 5 || s[4] != '-' || !read_digits(s, 5, 2, month) ||
      s.size() < 8 || s[7] != '-' || !read_digits(s, 8, 2, day)) {
    return "expected YYYY-MM-DD at the start";
  }
  if (s.size() < 11 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ')) return "expected 'T' after the date";
  if (!read_digits(s, 11, 2, hour) || s.size() < 14 || s[13] != ':' || !read_digits(s, 14, 2, minute) ||
      s.size() < 17 || s[16] != ':' || !read_digits(s, 17, 2, second)) {
    return "expected hh:mm:ss after the date";
  }
  if (month < 1 || month > 12) return "month out of range";
  if (day < 1 || day > days_in_month(year, month)) return "day out of range for the month";
  if (hour > 23) return "hour out of range";
  if (minute > 59) return "minute out of range";
  if (second > 60) return "second out of range";

  std::size_t pos = 19;
  std::int64_t micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::size_t digits = 0;
    while (pos < s.size() && is_digit(s[pos])) {
      if (digits < 6) micros = micros * 10 + (s[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return "expected digits after '.'";
    if (digits > 9) return "fraction longer than 9 digits";
    for (std::size_t i = digits; i < 6; ++i) micros *= 10;
  }

  std::int64_t offset_seconds = 0;
  if (pos >= s.size()) return "missing time zone offset (Z or +hh:mm)";
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    unsigned oh = 0, om = 0;
    if (!read_digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !read_digits(s, pos + 4, 2, om)) {
      return "expected a time zone offset +hh:mm";
    }
    if (oh > 23 || om > 59) return "time zone offset out of range";
    offset_seconds = (static_cast<std::int64_t>(oh) * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return "expected Z or +hh:mm after the time";
  }
  if (pos != s.size()) return "unexpected characters after the time zone offset";

  // Second 60 simply adds up: 23:59:60 is the next day's 00:00:00, as in PostgreSQL.
  const std::int64_t days = days_from_civil(year, month, day);
  const std::int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
  out = seconds * us_per_second + micros;
  return nullptr;
}

const char* epoch_number_to_us(std::string_view token, timestamp_us& out) noexcept {
  // value = mantissa * 10^exponent, with up to 36 significant digits kept (the rest lie far below a
  // microsecond for any value that can be in range).
  std::size_t pos = 0;
  bool negative = false;
  if (pos < token.size() && token[pos] == '-') {
    negative = true;
    ++pos;
  }
  __int128 mantissa = 0;
  int significant = 0;
  std::int64_t exponent = 0;
  bool any_digit = false;
  auto take = [&](char c, bool fraction) {
    any_digit = true;
    if (significant < 36) {
      mantissa = mantissa * 10 + (c - '0');
      if (mantissa != 0) ++significant;
      if (fraction) --exponent;
    } else if (!fraction) {
      ++exponent;
    }
  };
  while (pos < token.size() && is_digit(token[pos])) take(token[pos++], false);
  if (pos < token.size() && token[pos] == '.') {
    ++pos;
    while (pos < token.size() && is_digit(token[pos])) take(token[pos++], true);
  }
  if (!any_digit) return "not a number";
  if (pos < token.size() && (token[pos] == 'e' || token[pos] == 'E')) {
    ++pos;
    bool exp_negative = false;
    if (pos < token.size() && (token[pos] == '+' || token[pos] == '-')) exp_negative = token[pos++] == '-';
    std::int64_t e = 0;
    bool exp_digit = false;
    while (pos < token.size() && is_digit(token[pos])) {
      exp_digit = true;
      if (e < 100000) e = e * 10 + (token[pos] - '0');
      ++pos;
    }
    if (!exp_digit) return "not a number";
    exponent += exp_negative ? -e : e;
  }
  if (pos != token.size()) return "not a number";

  // Seconds or milliseconds? Decided on the magnitude: |x| >= 1e11 is milliseconds (1e11 seconds would be
  // the year 5138; 1e11 milliseconds is 1973).
  int digits_before_point = 0;  // of mantissa * 10^exponent
  if (mantissa != 0) {
    int mantissa_digits = 0;
    for (__int128 m = mantissa; m != 0; m /= 10) ++mantissa_digits;
    digits_before_point = static_cast<int>(mantissa_digits + exponent);
  }
  const bool milliseconds = digits_before_point >= 12;  // >= 100000000000
  std::int64_t scale = exponent + (milliseconds ? 3 : 6);

  // 2^63 microseconds is ~292000 years: anything with more than 19 digits is out of range.
  __int128 scaled = mantissa;
  if (scale >= 0) {
    for (std::int64_t i = 0; i < scale; ++i) {
      scaled *= 10;
      if (scaled > static_cast<__int128>(INT64_MAX)) return "out of range";
    }
  } else {
    if (scale < -38) {
      scaled = 0;
    } else {
      __int128 divisor = 1;
      for (std::int64_t i = 0; i < -scale; ++i) divisor *= 10;
      const bool inexact = scaled % divisor != 0;
      scaled /= divisor;
      if (negative && inexact) scaled += 1;  // floor toward -infinity once negated
    }
  }
  if (scaled > static_cast<__int128>(INT64_MAX)) return "out of range";
  out = static_cast<std::int64_t>(negative ? -scaled : scaled);
  return nullptr;
}

std::size_t format_rfc3339(timestamp_us t, char* out) noexcept {
  const std::int64_t seconds = floor_div(t, us_per_second);
  const std::int64_t micros = t - seconds * us_per_second;
  const std::int64_t days = floor_div(seconds, 86400);
  const std::int64_t sod = seconds - days * 86400;
  // H. Hinnant's civil_from_days.
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0);
  const int n = micros != 0
                    ? std::snprintf(out, 40, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ",
                                    static_cast<long long>(y), m, d, static_cast<long long>(sod / 3600),
                                    static_cast<long long>(sod / 60 % 60), static_cast<long long>(sod % 60),
                                    static_cast<long long>(micros))
                    : std::snprintf(out, 40, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ", static_cast<long long>(y),
                                    m, d, static_cast<long long>(sod / 3600),
                                    static_cast<long long>(sod / 60 % 60), static_cast<long long>(sod % 60));
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

}  // namespace crm::transform::detail
