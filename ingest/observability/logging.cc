#include "ingest/observability/logging.h"

#include <chrono>
#include <ctime>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include "transform/json_text.h"

namespace crm::ingest {

namespace {

constexpr const char* text_pattern = "%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v";

bool is_key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

// Copies `s`, replacing every byte that is not part of a valid UTF-8 sequence by '?', so the JSON stays
// valid whatever an error message carried.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (!ok) {
      out.push_back('?');
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace

std::string json_log_line(std::string_view level, long long unix_ms, std::string_view payload) {
  // Field starts: " key=" where key is [a-z0-9_]+ beginning with a letter.
  std::vector<std::size_t> starts;
  for (std::size_t i = 1; i < payload.size(); ++i) {
    if (payload[i - 1] != ' ' || payload[i] < 'a' || payload[i] > 'z') continue;
    std::size_t j = i;
    while (j < payload.size() && is_key_char(payload[j])) ++j;
    if (j < payload.size() && payload[j] == '=') starts.push_back(i);
  }
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::string out = fmt::format("{{\"ts\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"level\":", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, unix_ms % 1000);
  transform::append_json_string(out, level);
  out.append(",\"msg\":");
  std::string_view sentence = payload.substr(0, starts.empty() ? payload.size() : starts[0] - 1);
  transform::append_json_string(out, valid_utf8(sentence));
  for (std::size_t f = 0; f < starts.size(); ++f) {
    std::size_t end = f + 1 < starts.size() ? starts[f + 1] - 1 : payload.size();
    std::string_view field = payload.substr(starts[f], end - starts[f]);
    auto eq = field.find('=');
    std::string key(field.substr(0, eq));
    if (key == "ts" || key == "level" || key == "msg") key.insert(0, "field_");
    out.push_back(',');
    transform::append_json_string(out, key);
    out.push_back(':');
    transform::append_json_string(out, valid_utf8(field.substr(eq + 1)));
  }
  out.append("}\n");
  return out;
}

void json_log_formatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
  auto level = spdlog::level::to_string_view(msg.level);
  auto line = json_log_line(std::string_view(level.data(), level.size()), static_cast<long long>(ms),
                            std::string_view(msg.payload.data(), msg.payload.size()));
  dest.append(line.data(), line.data() + line.size());
}

std::unique_ptr<spdlog::formatter> json_log_formatter::clone() const { return std::make_unique<json_log_formatter>(); }

void set_log_format(const std::string& format) {
  auto logger = spdlog::default_logger();
  if (format == "json") {
    logger->set_formatter(std::make_unique<json_log_formatter>());
  } else if (format == "text") {
    logger->set_formatter(
        std::make_unique<spdlog::pattern_formatter>(text_pattern, spdlog::pattern_time_type::utc));
  } else {
    throw std::invalid_argument("log format must be text or json, got \"" + format + "\"");
  }
}

}  // namespace crm::ingest
