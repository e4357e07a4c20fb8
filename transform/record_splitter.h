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

  input_format format_;
  std::size_t max_record_bytes_;
  std::uint64_t line_ = 1;
  std::string carry_;  // a record that straddles chunk boundaries
  // framing state for json_array
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
  bool array_open_ = false;
  bool array_closed_ = false;
  bool oversize_ = false;
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
