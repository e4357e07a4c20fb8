// Reads a file, a .gz file or standard input ("-") as a byte stream. zlib reads plain and gzip input
// alike (gzip is recognised by its magic bytes, not by the file name). Owned by the reading thread.
#pragma once

#include <cstdint>
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
  // (including a corrupt or truncated gzip stream).
  std::size_t read(char* buf, std::size_t len);

  // Bytes of the underlying file consumed so far (compressed bytes for .gz) and the file's size
  // (0 when unknown, e.g. a pipe).
  std::uint64_t consumed() const;
  std::uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  gzFile gz_ = nullptr;
  std::uint64_t size_ = 0;
};

}  // namespace crm::ingest
