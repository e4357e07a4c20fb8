// Exchange-rate files for `crm-ingest rates import`: read into quotes (day, currency, rate against one base),
// every bad line reported with its file:line and a reason. Pure: no I/O, never throws past a line (only an
// allocation failure escapes).
//
// Formats, told apart by the header (the first non-blank line):
//   * the ECB's wide form, e.g. eurofxref-hist.csv:
//         Date,USD,JPY,BGN,CYP,...,ZAR,
//         2024-01-05,1.0921,158.22,1.9558,N/A,...,20.4224,
//     one column per currency (a trailing empty column is ignored), `N/A` or an empty cell = not quoted that day;
//     and its daily eurofxref.csv, the same with blanks after the commas and the date written out:
//         Date, USD, JPY, ...
//         05 January 2024, 1.0921, 158.22, ...
//   * the long form: a header naming the columns date, currency and rate (any order, any case), one quote a line:
//         date,currency,rate
//         2024-01-05,USD,1.0921
// Dates are YYYY-MM-DD or "D Month YYYY" (English month names); currencies ISO 4217 (transform/normalize/
// currency.h, any case, upper-cased); rates positive, finite decimals, kept as written (the database stores
// them exactly). A UTF-8 byte order mark, CR before LF, blank lines and double quotes around a cell are accepted.
// The same day and currency twice is an error (at the second line), as is a quote of the base itself.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace crm::ingest::rates {

struct rate_quote {
  std::string day;       // YYYY-MM-DD
  std::string currency;  // ISO 4217, upper case
  std::string rate;      // the decimal as written (trimmed)
  std::size_t line = 0;  // 1-based line of the file
};

struct rates_file {
  std::string format;                // "ecb" (the wide form) or "long"; empty when the header is not understood
  std::vector<rate_quote> quotes;    // in file order
  std::vector<std::string> errors;   // "NAME:LINE: reason", in file order
  std::size_t data_lines = 0;        // non-blank lines after the header
  std::size_t not_quoted = 0;        // ECB cells N/A or empty
};

// Reads `text` (the whole file); `name` prefixes the errors; `base` (ISO 4217, upper case) is the currency the
// rates are against.
rates_file parse_rates_csv(std::string_view text, std::string_view name, std::string_view base);

// "2024-01-05" or "5 January 2024" / "05 Jan 2024" -> "2024-01-05"; empty when it is neither or not a real day.
std::string parse_rate_day(std::string_view text);

// A positive finite decimal (digits with an optional point and exponent, no sign): true, and `text` is one.
bool is_rate(std::string_view text);

}  // namespace crm::ingest::rates
