#include "ingest/import/file_source.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace crm::ingest {

file_source::file_source(const std::string& path) : path_(path) {
  int fd = path == "-" ? dup(STDIN_FILENO) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      throw std::runtime_error("cannot read " + path + ": it is a directory");
    }
    if (S_ISREG(st.st_mode)) size_ = static_cast<std::uint64_t>(st.st_size);
  }
  gz_ = gzdopen(fd, "rb");
  if (!gz_) {
    ::close(fd);
    throw std::runtime_error("cannot read " + path + ": out of memory");
  }
  gzbuffer(gz_, 256 * 1024);
}

file_source::~file_source() {
  if (gz_) gzclose(gz_);
}

std::size_t file_source::read(char* buf, std::size_t len) {
  int n = gzread(gz_, buf, static_cast<unsigned>(len));
  if (n < 0) {
    int err = 0;
    const char* msg = gzerror(gz_, &err);
    if (err == Z_ERRNO) throw std::runtime_error("cannot read " + path_ + ": " + std::strerror(errno));
    throw std::runtime_error("cannot read " + path_ + ": " + (msg ? msg : "decompression error"));
  }
  if (n == 0) {
    // gzread reports a truncated gzip stream as a clean end of input plus an error state.
    int err = 0;
    const char* msg = gzerror(gz_, &err);
    if (err != Z_OK && err != Z_STREAM_END) {
      throw std::runtime_error("cannot read " + path_ + ": " + (msg ? msg : "decompression error"));
    }
  }
  return static_cast<std::size_t>(n);
}

std::uint64_t file_source::consumed() const {
  auto off = gzoffset(gz_);
  return off < 0 ? 0 : static_cast<std::uint64_t>(off);
}

}  // namespace crm::ingest
