// The process log (spdlog, stderr) in one of two formats: text (a human-readable line) or json (one
// object per line for log shippers). Log lines are written as "Sentence. key=value key=value"; the json
// format turns that into {"ts":..,"level":..,"msg":"Sentence.","key":"value",...}.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/formatter.h>

namespace crm::ingest {

// Formats a record as one JSON object per line. Thread-safe as spdlog formatters must be (one clone per
// sink, called under the sink's lock).
class json_log_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Renders one record (exposed for tests): `level` as spdlog names it, `unix_ms` the time.
std::string json_log_line(std::string_view level, long long unix_ms, std::string_view payload);

// Switches the default logger to `format` ("text" or "json"); throws std::invalid_argument otherwise.
void set_log_format(const std::string& format);

}  // namespace crm::ingest
