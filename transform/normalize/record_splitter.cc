// Record framing without JSON parsing. NDJSON: one record per line. JSON array: a small state machine
// (string, escape, nesting depth) finds where each top-level element starts and ends. A record that lies
// inside one chunk is handed out as a view into it; one that straddles chunks is gathered in carry_, which
// never holds more than max_record_bytes + 1 bytes: a longer record is reported once, by its first
// max_record_bytes bytes, and the rest of it is skipped.
#include "transform/normalize/record_splitter.h"

#include <cstring>

#include "transform/text/ascii.h"

namespace crm::transform {
namespace {

constexpr char bom[] = "\xEF\xBB\xBF";
constexpr std::size_t bom_size = 3;

using detail::is_json_whitespace;

bool is_blank(std::string_view s) noexcept {
  for (const char c : s) {
    if (!is_json_whitespace(c)) return false;
  }
  return true;
}

}  // namespace

record_splitter::record_splitter(input_format format, std::size_t max_record_bytes)
    : format_(format),
      max_record_bytes_(max_record_bytes),
      oversize_error_("record exceeds " + std::to_string(max_record_bytes) + " bytes") {
  if (format_ == input_format::ndjson) state_ = state::ndjson;
  if (format_ == input_format::json_array) state_ = state::array_open;
}

void record_splitter::feed_impl(std::string_view chunk, sink& out) {
  // A UTF-8 BOM is skipped at the very start of the stream, even when it arrives one byte per chunk.
  while (!bom_done_ && !chunk.empty()) {
    if (chunk.front() == bom[bom_matched_]) {
      chunk.remove_prefix(1);
      if (++bom_matched_ == bom_size) bom_done_ = true;
      continue;
    }
    bom_done_ = true;
    if (bom_matched_ > 0) process({bom, bom_matched_}, out);  // not a BOM after all: those bytes are data
  }
  if (!chunk.empty()) process(chunk, out);
}

void record_splitter::process(std::string_view data, sink& out) {
  if (state_ == state::start) {
    const std::size_t from = detect(data);
    if (state_ == state::start) return;
    data.remove_prefix(from);
  }
  if (state_ == state::ndjson) {
    split_ndjson(data, out);
  } else {
    split_array(data, out);
  }
}

// auto_detect: skips whitespace until the first byte that tells the format. Returns where the chosen
// splitter starts: the '[' for an array, the start of the current line for NDJSON (its leading whitespace
// from earlier chunks is in carry_).
std::size_t record_splitter::detect(std::string_view data) {
  std::size_t line_begin = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (c == '\n') {
      ++line_;
      line_begin = i + 1;
      carry_.clear();
      in_carry_ = false;
      continue;
    }
    if (is_json_whitespace(c)) continue;
    if (c == '[') {
      format_ = input_format::json_array;
      state_ = state::array_open;
      carry_.clear();
      in_carry_ = false;
      return i;
    }
    format_ = input_format::ndjson;
    state_ = state::ndjson;
    return line_begin;
  }
  // Whitespace only so far: keep this line's part of it, in case the line turns out to be a record.
  if (line_begin < data.size()) keep(data, line_begin);
  return data.size();
}

void record_splitter::split_ndjson(std::string_view data, sink& out) {
  std::size_t pos = 0;
  while (pos < data.size()) {
    const auto* nl = static_cast<const char*>(std::memchr(data.data() + pos, '\n', data.size() - pos));
    if (oversize_) {  // the rest of an oversized line
      if (nl == nullptr) return;
      pos = static_cast<std::size_t>(nl - data.data()) + 1;
      ++line_;
      oversize_ = false;
      continue;
    }
    const std::size_t end = nl == nullptr ? data.size() : static_cast<std::size_t>(nl - data.data());
    std::string_view piece = data.substr(pos, end - pos);
    // A line may be max_record_bytes_ + 1 long before its '\r' is stripped.
    const std::size_t limit = max_record_bytes_ + 1;
    const std::size_t have = in_carry_ ? carry_.size() : 0;
    if (have + piece.size() > limit) {
      // Too long whatever follows: report it by its first max_record_bytes_ bytes, skip the rest.
      if (!in_carry_) carry_.clear();
      if (carry_.size() < max_record_bytes_) carry_.append(piece.substr(0, max_record_bytes_ - carry_.size()));
      out({std::string_view(carry_).substr(0, max_record_bytes_), line_, oversize_error_});
      carry_.clear();
      in_carry_ = false;
      oversize_ = true;
      pos = end;  // the '\n' (if any) is consumed by the oversize branch above
      continue;
    }
    if (nl == nullptr) {  // the line continues in the next chunk
      if (!in_carry_) {
        carry_.clear();
        in_carry_ = true;
      }
      carry_.append(piece);
      return;
    }
    std::string_view line = piece;
    if (in_carry_) {
      carry_.append(piece);
      line = carry_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_record_bytes_) {
      out({line.substr(0, max_record_bytes_), line_, oversize_error_});
    } else if (!is_blank(line)) {
      out({line, line_, {}});
    }
    carry_.clear();
    in_carry_ = false;
    ++line_;
    pos = end + 1;
  }
}

void record_splitter::emit_record(std::string_view data, std::size_t start, std::size_t end,
                                  std::string_view error, std::size_t content_size, sink& out) {
  std::string_view text = data.substr(start, end - start);
  if (in_carry_) {
    if (carry_.size() < max_record_bytes_ + 1) {
      carry_.append(text.substr(0, max_record_bytes_ + 1 - carry_.size()));
    }
    text = carry_;
  }
  text = text.substr(0, content_size);
  if (text.size() > max_record_bytes_) {
    text = text.substr(0, max_record_bytes_);
    if (error.empty()) error = oversize_error_;
  }
  out({text, record_line_, error});
  carry_.clear();
  in_carry_ = false;
}

void record_splitter::keep(std::string_view data, std::size_t start) {
  if (!in_carry_) {
    carry_.clear();
    in_carry_ = true;
  }
  const std::size_t room = carry_.size() < max_record_bytes_ + 1 ? max_record_bytes_ + 1 - carry_.size() : 0;
  carry_.append(data.substr(start, room));
}

void record_splitter::begin_record(state next, int depth) {
  state_ = next;
  depth_ = depth;
  in_string_ = false;
  escape_ = false;
  record_line_ = line_;
  carry_.clear();
  in_carry_ = false;
}

void record_splitter::start_junk(std::string_view reason, state next) {
  begin_record(next, 0);
  junk_reason_ = reason;
  junk_size_ = 0;
  junk_content_size_ = 0;
}

// Advances the string state over one byte; true when the byte is inside a string (its closing quote
// included).
bool record_splitter::in_string(char b) noexcept {
  if (!in_string_) return false;
  if (escape_) {
    escape_ = false;
  } else if (b == '\\') {
    escape_ = true;
  } else if (b == '"') {
    in_string_ = false;
  }
  return true;
}

// Junk is reported without its trailing whitespace, whatever the chunking: its size up to the last
// non-whitespace byte is counted as it goes.
void record_splitter::count_junk_byte(char b) noexcept {
  ++junk_size_;
  if (!is_json_whitespace(b)) junk_content_size_ = junk_size_;
}

// Between the array's values: whitespace (counting lines) is passed over; false for anything else.
int record_splitter::nesting_step(char b) noexcept {
  if (in_string(b)) return 0;
  if (b == '"') in_string_ = true;
  return b == '{' || b == '[' ? 1 : b == '}' || b == ']' ? -1 : 0;
}

bool record_splitter::skip_whitespace(char c, std::size_t& i) noexcept {
  if (!is_json_whitespace(c)) return false;
  if (c == '\n') ++line_;
  ++i;
  return true;
}

void record_splitter::split_array(std::string_view data, sink& out) {
  const std::size_t n = data.size();
  // Where the current record starts in `data`; 0 when it started in an earlier chunk (then in_carry_).
  std::size_t start = 0;
  std::size_t i = 0;
  while (i < n) {
    const char c = data[i];
    const bool between_values = state_ == state::array_open || state_ == state::array_element ||
                                state_ == state::array_after || state_ == state::array_closed;
    if (between_values && skip_whitespace(c, i)) continue;
    switch (state_) {
      case state::array_open:
        if (c == '[') {
          state_ = state::array_element;
          comma_pending_ = false;
          ++i;
        } else {
          start_junk(split_reason::no_open, state::trailing_junk);
          start = i;
        }
        break;

      case state::array_element:
        if (c == '{') {
          begin_record(state::in_object, 1);
          comma_pending_ = false;
          start = i++;
        } else if (c == ']' || c == ',') {
          if (comma_pending_ || c == ',') {
            record_line_ = line_;
            out({{}, line_, split_reason::empty_element});
          }
          if (c == ']') state_ = state::array_closed;
          comma_pending_ = c == ',';
          ++i;
        } else {
          comma_pending_ = false;
          start_junk(split_reason::not_object, state::in_junk);
          start = i;
        }
        break;

      case state::array_after:
        if (c == ',') {
          state_ = state::array_element;
          comma_pending_ = true;
          ++i;
        } else if (c == ']') {
          state_ = state::array_closed;
          ++i;
        } else {
          start_junk(split_reason::no_separator, state::in_junk);
          start = i;
        }
        break;

      case state::in_object: {
        std::size_t j = i;
        bool closed = false;
        for (; j < n; ++j) {
          if (data[j] == '\n') ++line_;
          depth_ += nesting_step(data[j]);
          if (depth_ == 0) {
            closed = true;
            break;
          }
        }
        if (!closed) {
          i = n;
          break;
        }
        if (oversize_) {
          oversize_ = false;  // reported when it outgrew the limit
        } else {
          emit_record(data, start, j + 1, {}, std::string_view::npos, out);
        }
        state_ = state::array_after;
        i = j + 1;
        break;
      }

      case state::in_junk: {
        // Up to the next ',' or ']' outside strings and brackets; a stray '}' is part of the junk.
        std::size_t j = i;
        bool ended = false;
        for (; j < n; ++j) {
          const char b = data[j];
          if (!in_string_ && depth_ == 0 && (b == ',' || b == ']')) {
            ended = true;
            break;
          }
          count_junk_byte(b);
          if (b == '\n') ++line_;
          const int step = nesting_step(b);
          if (step > 0 || depth_ > 0) depth_ += step;  // a stray closing bracket at depth 0 is junk too
        }
        if (!ended) {
          i = n;
          break;
        }
        emit_record(data, start, j, junk_reason_, junk_content_size_, out);
        state_ = state::array_after;  // the ',' or ']' is read there
        i = j;
        break;
      }

      case state::array_closed:
        if (c == '[') {  // another array: concatenated exports (`cat a.json b.json`) are read whole
          state_ = state::array_element;
          comma_pending_ = false;
          ++i;
          break;
        }
        start_junk(split_reason::after_close, state::trailing_junk);
        start = i;
        break;

      case state::trailing_junk:
        // Collected until the end of the stream.
        for (; i < n; ++i) {
          count_junk_byte(data[i]);
          if (data[i] == '\n') ++line_;
        }
        break;

      case state::start:
      case state::ndjson:
        return;  // not reached: process() dispatches these elsewhere
    }
  }

  // The chunk ends inside a record: keep its bytes (bounded) for the next chunk.
  if (state_ == state::in_object) {
    if (oversize_) return;
    const std::size_t have = in_carry_ ? carry_.size() : 0;
    if (have + (n - start) > max_record_bytes_) {
      keep(data, start);
      out({std::string_view(carry_).substr(0, max_record_bytes_), record_line_, oversize_error_});
      carry_.clear();
      in_carry_ = false;
      oversize_ = true;
      return;
    }
    keep(data, start);
  } else if (state_ == state::in_junk || state_ == state::trailing_junk) {
    keep(data, start);  // junk is reported by its first max_record_bytes_ bytes
  }
}

void record_splitter::finish_impl(sink& out) {
  if (!bom_done_) {  // the stream was shorter than a BOM
    bom_done_ = true;
    if (bom_matched_ > 0 && bom_matched_ < bom_size) process({bom, bom_matched_}, out);
  }
  switch (state_) {
    case state::start:
    case state::array_open:
    case state::array_closed:
      break;  // nothing, only whitespace, or a complete array
    case state::ndjson:
      if (in_carry_ && !oversize_) {
        std::string_view line = carry_;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() > max_record_bytes_) {
          out({line.substr(0, max_record_bytes_), line_, oversize_error_});
        } else if (!is_blank(line)) {
          out({line, line_, {}});
        }
      }
      break;
    case state::array_element:
    case state::array_after:
      out({{}, line_, split_reason::unterminated});
      break;
    case state::in_object:
      if (oversize_) {
        out({{}, line_, split_reason::unterminated});
      } else {
        emit_record({}, 0, 0, split_reason::truncated, std::string_view::npos, out);
      }
      break;
    case state::in_junk:
      emit_record({}, 0, 0, junk_reason_, junk_content_size_, out);
      out({{}, line_, split_reason::unterminated});
      break;
    case state::trailing_junk:
      emit_record({}, 0, 0, junk_reason_, junk_content_size_, out);
      break;
  }
  carry_.clear();
  in_carry_ = false;
  oversize_ = false;
  if (state_ != state::start && state_ != state::ndjson) state_ = state::array_closed;  // all reported
}

}  // namespace crm::transform
