// Reads a file, a .gz file or standard input ("-") as a byte stream. Gzip is recognised by its magic bytes,
// not by the file name; other input is passed through as it is. A gzip file may hold several members one
// after the other (as `cat a.gz b.gz` makes): they are read as one stream. Whatever follows the last member
// must be another member: anything else (plain text, a damaged header, padding) is a read error naming where
// it starts, never dropped in silence. Owned by the reading thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <zlib.h>

namespace crm::ingest {

class file_source {
 public:
  // Throws std::runtime_error with the OS's reason when the file cannot be opened.
  explicit file_source(const std::string& path);
  ~file_source();
  file_source(const file_source&) = delete;
  file_source& operator=(const file_source&) = delete;

  // Returns the number of bytes read, 0 at end of input; throws std::runtime_error on a read error
  // (including a corrupt or truncated gzip member and bytes after a member that are not a gzip member).
  // May return fewer bytes than asked for before the end (what a pipe has delivered so far).
  std::size_t read(char* buf, std::size_t len);

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
  [[noreturn]] void fail(const std::string& what) const;

  std::string path_;
  int fd_ = -1;
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
