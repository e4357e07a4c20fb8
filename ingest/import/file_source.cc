#include "ingest/import/file_source.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace crm::ingest {

namespace {

constexpr std::size_t buffer_bytes = 256 * 1024;

bool opens_gzip_member(const z_stream& s) {
  return s.avail_in >= 2 && s.next_in[0] == 0x1f && s.next_in[1] == 0x8b;
}

}  // namespace

file_source::file_source(const std::string& path)
    : path_(path), in_(new unsigned char[buffer_bytes]) {
  fd_ = path == "-" ? dup(STDIN_FILENO) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd_, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      ::close(fd_);
      throw std::runtime_error("cannot read " + path + ": it is a directory");
    }
    if (S_ISREG(st.st_mode)) {
      size_ = static_cast<std::uint64_t>(st.st_size);
      // Standard input may be a file read in part already: positions are the file's offsets.
      const off_t at = ::lseek(fd_, 0, SEEK_CUR);
      if (at > 0) taken_ = static_cast<std::uint64_t>(at);
    }
  }
  stream_.next_in = in_.get();
}

file_source::~file_source() {
  if (inflating_) inflateEnd(&stream_);
  if (fd_ >= 0) ::close(fd_);
}

void file_source::fail(const std::string& what) const {
  throw std::runtime_error("cannot read " + path_ + ": " + what);
}

std::size_t file_source::read_fd(unsigned char* dst, std::size_t len) {
  while (!at_end_) {
    const ssize_t n = ::read(fd_, dst, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::strerror(errno));
    if (n == 0) break;
    taken_ += static_cast<std::uint64_t>(n);
    return static_cast<std::size_t>(n);
  }
  at_end_ = true;
  return 0;
}

bool file_source::fill() {
  if (stream_.avail_in > 0 && stream_.next_in != in_.get()) std::memmove(in_.get(), stream_.next_in, stream_.avail_in);
  stream_.next_in = in_.get();
  const std::size_t n = read_fd(in_.get() + stream_.avail_in, buffer_bytes - stream_.avail_in);
  stream_.avail_in += static_cast<uInt>(n);
  return n > 0;
}

std::size_t file_source::read(char* buf, std::size_t len) {
  if (!error_.empty()) throw std::runtime_error(error_);
  if (len == 0) return 0;
  if (state_ == state::undecided) {
    while (stream_.avail_in < 2 && fill()) {
    }
    if (opens_gzip_member(stream_)) {
      if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) fail("out of memory");
      inflating_ = true;
      member_at_ = consumed();
      state_ = state::in_member;
    } else {
      state_ = state::plain;
    }
  }
  if (state_ != state::plain) return read_gzip(buf, len);
  if (stream_.avail_in == 0) return read_fd(reinterpret_cast<unsigned char*>(buf), len);
  const std::size_t n = std::min<std::size_t>(len, stream_.avail_in);
  std::memcpy(buf, stream_.next_in, n);
  stream_.next_in += n;
  stream_.avail_in -= static_cast<uInt>(n);
  return n;
}

void file_source::start_member() {
  const std::uint64_t at = consumed();
  while (stream_.avail_in < 2 && fill()) {
  }
  if (!opens_gzip_member(stream_)) {
    // zlib's own gzread ignores this; what follows would be lost without a word.
    struct stat st {};
    if (fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > at) {
      const auto n = static_cast<std::uint64_t>(st.st_size) - at;
      fail(std::to_string(n) + (n == 1 ? " byte" : " bytes") + " after the gzip stream at byte " + std::to_string(at) +
           (n == 1 ? " is" : " are") + " not a gzip member");
    }
    fail("what follows the gzip stream at byte " + std::to_string(at) + " is not a gzip member");
  }
  inflateReset(&stream_);
  member_at_ = at;
  state_ = state::in_member;
}

std::size_t file_source::read_gzip(char* buf, std::size_t len) {
  stream_.next_out = reinterpret_cast<Bytef*>(buf);
  stream_.avail_out = static_cast<uInt>(std::min<std::size_t>(len, std::numeric_limits<uInt>::max()));
  const uInt asked = stream_.avail_out;
  try {
    decode(asked);
  } catch (const std::runtime_error& e) {
    // What was decoded before the error is handed over first; the error comes with the next read.
    error_ = e.what();
    if (stream_.avail_out == asked) throw;
  }
  return asked - stream_.avail_out;
}

void file_source::decode(uInt asked) {
  while (stream_.avail_out > 0) {
    if (stream_.avail_in == 0) {
      if (stream_.avail_out < asked) break;  // what is decoded goes first; more input may take a while to come
      if (!fill()) {
        if (state_ == state::in_member) {
          fail("unexpected end of file: the gzip member at byte " + std::to_string(member_at_) + " is cut short at byte " +
               std::to_string(consumed()));
        }
        break;  // the end, right after a member
      }
    }
    if (state_ == state::after_member) start_member();
    const int rc = inflate(&stream_, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      state_ = state::after_member;
    } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && (stream_.avail_in == 0 || stream_.avail_out == 0))) {
      fail(std::string(stream_.msg ? stream_.msg : rc == Z_MEM_ERROR ? "out of memory" : "corrupt gzip data") +
           " in the gzip member at byte " + std::to_string(member_at_) + " (near byte " + std::to_string(consumed()) +
           ")");
    }
  }
}

}  // namespace crm::ingest
