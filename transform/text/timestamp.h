// Timestamps of the canonical format: RFC 3339 strings and epoch numbers -> UTC microseconds, and back
// to text for rejection reasons. Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "transform/canonical/canonical_event.h"

namespace crm::transform::detail {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

constexpr bool is_leap_year(std::int64_t y) noexcept { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

constexpr unsigned days_in_month(std::int64_t y, unsigned m) noexcept {
  constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap_year(y) ? 29 : days[m - 1];
}

// RFC 3339 date-time: YYYY-MM-DD, 'T'/'t'/' ', hh:mm:ss, optional fraction of 1..9 digits (truncated to
// microseconds), then 'Z'/'z' or +hh:mm/-hh:mm. The calendar is validated; second 60 is accepted and rolls
// over into the next minute, as PostgreSQL does. Returns nullptr on success, else what is wrong.
[[nodiscard]] const char* parse_rfc3339(std::string_view text, timestamp_us& out) noexcept;

// A JSON number token of epoch seconds, or of epoch milliseconds when |value| >= 1e11, converted exactly
// (decimal arithmetic on the token, fractions and exponents allowed) and floored to microseconds.
// Returns nullptr on success, else what is wrong.
[[nodiscard]] const char* epoch_number_to_us(std::string_view token, timestamp_us& out) noexcept;

// "2024-02-29T12:00:00Z", or "...:00.000123Z" when there are microseconds. `out` holds >= 40 chars.
std::size_t format_rfc3339(timestamp_us t, char* out) noexcept;

}  // namespace crm::transform::detail
