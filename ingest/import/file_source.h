// Reads a file, a .gz file or standard input ("-") as a byte stream. Gzip is recognised by its magic bytes,
// not by the file name; other input is passed through as it is. A gzip file may hold several members one
// after the other (as `cat a.gz b.gz` makes): they are read as one stream. Whatever follows the last member
// must be another member: anything else (plain text, a damaged header, padding) is a read error naming where
// it starts, never dropped in silence. Input in a format import does not read (bzip2, xz, zstd, a zip archive:
// recognised by their magic bytes) is refused before anything of it is handed over (refused_input, naming the
// format and how to decompress it). Reading a pipe, a FIFO or a terminal waits for its bytes, the stop (with a stop
// descriptor: read_stopped) or the read's deadline (read_idle), whichever comes first. Owned by the reading thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>

#include <zlib.h>

namespace crm::ingest {

// The input is in a format import does not read (compressed other than with gzip, an archive): nothing of it was
// handed over. The message names the file, the format and the command that decompresses it.
class refused_input : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The stop descriptor turned readable while a read waited for a pipe's bytes: what is read so far is all there is.
class read_stopped : public std::exception {
 public:
  const char* what() const noexcept override { return "stopped while waiting for input"; }
};

// A pipe delivered nothing before the read's deadline: nothing was handed over and nothing is lost (the next read
// goes on where this one was).
class read_idle : public std::exception {
 public:
  const char* what() const noexcept override { return "no input before the deadline"; }
};

class file_source {
 public:
  // Throws std::runtime_error with the OS's reason when the file cannot be opened. `stop_fd` (optional): a
  // descriptor that turns readable with a stop (runtime::stop_event); a read from anything but a regular file
  // then waits for the input, the stop or its deadline (and a FIFO is opened without waiting for its writer).
  explicit file_source(const std::string& path, int stop_fd = -1);
  ~file_source();
  file_source(const file_source&) = delete;
  file_source& operator=(const file_source&) = delete;

  // Returns the number of bytes read, 0 at end of input; throws std::runtime_error on a read error
  // (including a corrupt or truncated gzip member and bytes after a member that are not a gzip member).
  // May return fewer bytes than asked for before the end (what a pipe has delivered so far). Reading anything but a
  // regular file, it throws read_idle when no byte came by `until` (a regular file's reads never wait for it).
  using clock = std::chrono::steady_clock;
  std::size_t read(char* buf, std::size_t len, clock::time_point until = clock::time_point::max());

  // Bytes of the underlying file consumed so far (compressed bytes for .gz) and the file's size
  // (0 when unknown, e.g. a pipe).
  std::uint64_t consumed() const noexcept { return taken_ - stream_.avail_in; }
  std::uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

 private:
  enum class state { undecided, plain, in_member, after_member };

  bool fill();  // reads more input after what is buffered; false at the end of the file
  std::size_t read_gzip(char* buf, std::size_t len);
  void decode(uInt asked);  // inflates into stream_'s output until it is full, the input waits or ends
  void start_member();  // after a member: the next input must open another one
  std::size_t read_fd(unsigned char* dst, std::size_t len);  // one read(2); 0 at the end of the file
  void wait_for_input();  // until the input is readable; throws read_stopped or read_idle (until_)
  void refuse_foreign_format();  // throws refused_input when the buffered bytes open a format import does not read
  [[noreturn]] void fail(const std::string& what) const;

  std::string path_;
  int fd_ = -1;
  int stop_fd_ = -1;
  bool waits_ = false;  // not a regular file: reads wait for a writer (polled with the stop descriptor, until until_)
  clock::time_point until_ = clock::time_point::max();  // the deadline of the read under way
  std::uint64_t size_ = 0;
  std::uint64_t taken_ = 0;      // the file descriptor's offset: bytes before it and bytes read from it
  std::uint64_t member_at_ = 0;  // where the gzip member being read starts
  std::unique_ptr<unsigned char[]> in_;
  z_stream stream_{};  // in plain mode only its next_in/avail_in, the buffered input
  bool inflating_ = false;
  bool at_end_ = false;  // the file descriptor reported the end of the file
  state state_ = state::undecided;
  std::string error_;  // a read error, thrown by every read from the one that met it (or the next, if that one
                       // handed over data decoded before it)
};

}  // namespace crm::ingest
