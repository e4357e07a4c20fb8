// Record splitter: cuts a byte stream (NDJSON, or one JSON array of objects) into records without
// parsing them, so that a 2 GB file streams with bounded memory and one bad record never takes its
// neighbours down. Pure code; one instance per input stream, owned by the thread reading that stream.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace crm::transform {

enum class input_format : std::uint8_t { auto_detect, ndjson, json_array };

struct split_record {
  std::string_view text;     // the record's bytes (for NDJSON without the line break)
  std::uint64_t line = 0;    // 1-based line where the record starts
  std::string_view error;    // non-empty: the record is malformed at the framing level; reason
};

// The reasons of framing errors (split_record::error), as the dead letters carry them.
namespace split_reason {
inline constexpr std::string_view not_object = "array element is not a JSON object";
inline constexpr std::string_view no_separator = "expected ',' or ']' after an array element";
inline constexpr std::string_view empty_element = "empty array element (a ',' with nothing before it)";
inline constexpr std::string_view no_open = "expected '[' to open a JSON array";
inline constexpr std::string_view after_close = "unexpected content after the closing ']' of the JSON array";
inline constexpr std::string_view unterminated = "unterminated JSON array (missing ']') at end of stream";
inline constexpr std::string_view truncated = "truncated array element at end of stream (missing '}')";
}  // namespace split_reason

class record_splitter {
 public:
  explicit record_splitter(input_format format = input_format::auto_detect,
                           std::size_t max_record_bytes = 1 << 20);

  // Feeds the next piece of the stream. Calls on_record(const split_record&) for every complete
  // record; views are valid only during the call. Blank NDJSON lines are skipped.
  template <typename F>
  void feed(std::string_view chunk, F&& on_record);

  // End of stream: emits the last record (an NDJSON line without a final newline) or a framing
  // error (unterminated array, truncated element).
  template <typename F>
  void finish(F&& on_record);

  input_format format() const noexcept { return format_; }
  std::uint64_t lines_seen() const noexcept { return line_; }

 private:
  // Implementation is free to restructure these; the public interface above is the contract.
  // A type-erased on_record, so that the splitting code is compiled once in record_splitter.cc.
  struct sink {
    virtual void operator()(const split_record&) = 0;
    virtual ~sink() = default;
  };
  template <typename F>
  struct sink_for final : sink {
    F& f;
    explicit sink_for(F& fn) : f(fn) {}
    void operator()(const split_record& r) override { f(r); }
  };
  void feed_impl(std::string_view chunk, sink& out);
  void finish_impl(sink& out);

  enum class state : std::uint8_t {
    start,          // auto_detect: whitespace before the first byte that tells the format
    ndjson,         // inside the NDJSON line stream
    array_open,     // json_array: expecting '['
    array_element,  // after '[' or ',': expecting an element or ']'
    array_after,    // after an element: expecting ',' or ']'
    in_object,      // inside an object element
    in_junk,        // inside something that is not an object element, up to the next top-level ',' or ']'
    array_closed,   // after ']': only whitespace may follow
    trailing_junk,  // content after ']' (or instead of '['): collected until the end of the stream
  };

  void process(std::string_view data, sink& out);
  std::size_t detect(std::string_view data);
  void split_ndjson(std::string_view data, sink& out);
  void split_array(std::string_view data, sink& out);
  // Emits the record [start, end) of `data`, prefixed by carry_ when it began in an earlier chunk, cut to
  // its first content_size bytes, and to max_record_bytes_ (an oversize error unless `error` is set).
  void emit_record(std::string_view data, std::size_t start, std::size_t end, std::string_view error,
                   std::size_t content_size, sink& out);
  // Keeps the unfinished record's bytes from `start` for the next chunk (at most max_record_bytes_ + 1).
  void keep(std::string_view data, std::size_t start);
  // Begins a record of an array (an object at nesting `depth`, or junk) at the current line: the string and
  // nesting scan and the carried bytes start afresh.
  void begin_record(state next, int depth);
  void start_junk(std::string_view reason, state next);
  void count_junk_byte(char b) noexcept;
  bool skip_whitespace(char c, std::size_t& i) noexcept;
  bool in_string(char b) noexcept;
  // Follows strings and brackets through `b`: +1 for an opening bracket, -1 for a closing one, outside
  // strings; 0 for any other byte.
  int nesting_step(char b) noexcept;

  input_format format_;
  std::size_t max_record_bytes_;
  std::string oversize_error_;  // "record exceeds N bytes"
  std::uint64_t line_ = 1;
  state state_ = state::start;
  std::uint8_t bom_matched_ = 0;  // bytes of a leading UTF-8 BOM seen so far
  bool bom_done_ = false;         // the stream's first bytes were checked for a BOM
  std::string carry_;             // a record that straddles chunk boundaries (bounded)
  bool in_carry_ = false;         // the current record began in an earlier chunk (its bytes are in carry_)
  bool oversize_ = false;         // the current record is too long: already reported, now being skipped
  // framing state for json_array
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
  bool comma_pending_ = false;  // a ',' was read and no element followed yet
  std::string_view junk_reason_;
  std::size_t junk_size_ = 0;          // bytes of the junk so far
  std::size_t junk_content_size_ = 0;  // ... up to its last non-whitespace byte
  std::uint64_t record_line_ = 0;
};

template <typename F>
void record_splitter::feed(std::string_view chunk, F&& on_record) {
  sink_for<F> s(on_record);
  feed_impl(chunk, s);
}

template <typename F>
void record_splitter::finish(F&& on_record) {
  sink_for<F> s(on_record);
  finish_impl(s);
}

}  // namespace crm::transform
