#include "ingest/rates/rates_csv.h"

#include <array>
#include <chrono>
#include <charconv>
#include <cmath>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "transform/normalize/currency.h"
#include "transform/text/ascii.h"

namespace crm::ingest::rates {

namespace {

using transform::detail::ascii_lower;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The cells of one line, trimmed; a cell in double quotes may hold commas ("" is a quote).
std::vector<std::string> split_cells(std::string_view line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cells.back().push_back('"');
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        cells.back().push_back(ch);
      }
    } else if (ch == '"' && trim(cells.back()).empty()) {
      cells.back().clear();
      quoted = true;
    } else if (ch == ',') {
      cells.emplace_back();
    } else {
      cells.back().push_back(ch);
    }
  }
  for (auto& c : cells) c = std::string(trim(c));
  return cells;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& ch : out) ch = ascii_lower(ch);
  return out;
}

bool real_day(int y, unsigned m, unsigned d) {
  return y >= 1 && y <= 9999 && std::chrono::year_month_day(std::chrono::year(y), std::chrono::month(m), std::chrono::day(d)).ok();
}

template <typename T>
bool whole_number(std::string_view s, T& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

unsigned month_of(std::string_view name) {
  static constexpr std::array<std::string_view, 12> months = {"january", "february", "march",     "april",
                                                              "may",     "june",     "july",      "august",
                                                              "september", "october", "november", "december"};
  const std::string n = lower(name);
  for (unsigned i = 0; i < months.size(); ++i) {
    if (n == months[i] || (n.size() == 3 && months[i].substr(0, 3) == n)) return i + 1;
  }
  return 0;
}

struct line_reader {
  std::string_view text;
  std::size_t pos = 0, number = 0;
  bool next(std::string_view& line) {
    if (pos >= text.size()) return false;
    const std::size_t end = text.find('\n', pos);
    line = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    ++number;
    return true;
  }
};

class parser {
 public:
  parser(std::string_view name, std::string_view base, rates_file& out) : name_(name), base_(base), out_(out) {}

  void error(std::size_t line, std::string_view reason) {
    out_.errors.push_back(fmt::format("{}:{}: {}", name_, line, reason));
  }

  // The header: the columns of the long form, or the ECB's currencies. False when it is neither.
  bool header(std::size_t line, const std::vector<std::string>& cells) {
    std::map<std::string, std::size_t> named;
    for (std::size_t i = 0; i < cells.size(); ++i) named.emplace(lower(cells[i]), i);
    if (named.count("date") && named.count("currency") && named.count("rate")) {
      out_.format = "long";
      day_col_ = named["date"];
      currency_col_ = named["currency"];
      rate_col_ = named["rate"];
      width_ = cells.size();
      return true;
    }
    if (cells.empty() || lower(cells[0]) != "date" || cells.size() < 2) {
      error(line, "expected a header: `Date,USD,JPY,...` (the ECB's reference rates) or `date,currency,rate`");
      return false;
    }
    out_.format = "ecb";
    bool ok = true;
    for (std::size_t i = 1; i < cells.size(); ++i) {
      if (cells[i].empty()) {
        if (i + 1 != cells.size()) {
          error(line, fmt::format("column {} has no currency in the header", i + 1));
          ok = false;
        }
        continue;  // the ECB's trailing comma
      }
      char code[3];
      if (!transform::normalize_currency(cells[i], code)) {
        error(line, fmt::format("column {}: \"{}\" is not an ISO 4217 code", i + 1, cells[i]));
        ok = false;
        continue;
      }
      columns_.emplace_back(i, std::string(code, 3));
    }
    for (const auto& [col, code] : columns_) {
      if (code == base_) {
        error(line, fmt::format("column {}: {} is the base currency (--base {})", col + 1, code, base_));
        ok = false;
      }
    }
    width_ = cells.size();
    return ok;
  }

  void row(std::size_t line, const std::vector<std::string>& cells) {
    ++out_.data_lines;
    if (out_.format == "long") {
      if (cells.size() != width_) {
        return error(line, fmt::format("expected {} fields (as the header), got {}", width_, cells.size()));
      }
      quote(line, cells[day_col_], cells[currency_col_], cells[rate_col_], false);
      return;
    }
    // ECB: cells past the last currency's column must be empty (a trailing comma); missing cells are an error.
    const std::size_t need = columns_.empty() ? 1 : columns_.back().first + 1;
    for (std::size_t i = need; i < cells.size(); ++i) {
      if (!cells[i].empty()) return error(line, fmt::format("field {} has no currency in the header", i + 1));
    }
    if (cells.size() < need) return error(line, fmt::format("expected {} fields (as the header), got {}", need, cells.size()));
    for (const auto& [col, code] : columns_) quote(line, cells[0], code, cells[col], true);
  }

 private:
  void quote(std::size_t line, const std::string& day_text, const std::string& currency_text,
             const std::string& rate_text, bool wide) {
    const std::string day = parse_rate_day(day_text);
    if (day.empty()) {
      if (!day_reported_(line)) error(line, fmt::format("\"{}\" is not a date (YYYY-MM-DD or 5 January 2024)", day_text));
      return;
    }
    if (wide && (rate_text.empty() || rate_text == "N/A" || rate_text == "n/a")) {
      ++out_.not_quoted;
      return;
    }
    char code[3];
    if (!transform::normalize_currency(currency_text, code)) {
      return error(line, fmt::format("currency \"{}\" is not an ISO 4217 code", currency_text));
    }
    const std::string currency(code, 3);
    if (currency == base_) return error(line, fmt::format("{} is the base currency (--base {})", currency, base_));
    if (!is_rate(rate_text)) {
      return error(line, fmt::format("{} rate \"{}\" is not a positive finite number", currency, rate_text));
    }
    auto [it, fresh] = seen_.emplace(day + currency, line);
    if (!fresh) return error(line, fmt::format("{} on {} already given on line {}", currency, day, it->second));
    out_.quotes.push_back({day, currency, rate_text, line});
  }

  // A bad date of a wide row is said once for the row, not once per column.
  bool day_reported_(std::size_t line) {
    if (last_bad_day_line_ == line) return true;
    last_bad_day_line_ = line;
    return false;
  }

  std::string_view name_, base_;
  rates_file& out_;
  std::size_t day_col_ = 0, currency_col_ = 0, rate_col_ = 0, width_ = 0;
  std::vector<std::pair<std::size_t, std::string>> columns_;  // ECB: column index, currency
  std::map<std::string, std::size_t> seen_;                    // day + currency -> line
  std::size_t last_bad_day_line_ = 0;
};

}  // namespace

std::string parse_rate_day(std::string_view text) {
  text = trim(text);
  int y = 0;
  unsigned m = 0, d = 0;
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    if (!whole_number(text.substr(0, 4), y) || !whole_number(text.substr(5, 2), m) ||
        !whole_number(text.substr(8, 2), d)) {
      return {};
    }
  } else {
    // "05 January 2024"
    const auto a = text.find(' ');
    const auto b = a == std::string_view::npos ? a : text.find(' ', a + 1);
    if (b == std::string_view::npos || text.find(' ', b + 1) != std::string_view::npos) return {};
    if (!whole_number(text.substr(0, a), d) || !whole_number(text.substr(b + 1), y)) return {};
    m = month_of(text.substr(a + 1, b - a - 1));
    if (text.substr(b + 1).size() != 4) return {};
  }
  if (m == 0 || !real_day(y, m, d)) return {};
  return fmt::format("{:04}-{:02}-{:02}", y, m, d);
}

bool is_rate(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  bool digit = false;
  for (char ch : text) {
    if (ch >= '0' && ch <= '9') digit = true;
    else if (ch != '.' && ch != 'e' && ch != 'E' && ch != '-' && ch != '+') return false;
  }
  if (!digit || text.front() == '-' || text.front() == '+' || text.front() == 'e' || text.front() == 'E') return false;
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  return ec == std::errc() && p == text.data() + text.size() && std::isfinite(v) && v > 0;
}

rates_file parse_rates_csv(std::string_view text, std::string_view name, std::string_view base) {
  rates_file out;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  parser p(name, base, out);
  line_reader lines{text};
  std::string_view line;
  bool have_header = false;
  while (lines.next(line)) {
    if (trim(line).empty()) continue;
    const auto cells = split_cells(line);
    if (!have_header) {
      have_header = true;
      // A header refused refuses the file: its rows would only repeat that.
      if (!p.header(lines.number, cells)) return out;
      continue;
    }
    p.row(lines.number, cells);
  }
  if (!have_header) p.error(1, "the file is empty");
  return out;
}

}  // namespace crm::ingest::rates
