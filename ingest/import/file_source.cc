#include "ingest/import/file_source.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

namespace crm::ingest {

namespace {

constexpr std::size_t buffer_bytes = 256 * 1024;

bool opens_gzip_member(const z_stream& s) {
  return s.avail_in >= 2 && s.next_in[0] == 0x1f && s.next_in[1] == 0x8b;
}

// Formats import does not read, by their magic bytes: refused whole, instead of their bytes becoming dead letters
// of garbage. bzip2's magic is followed by its block size, a digit 1-9.
struct foreign_format {
  std::string_view magic;
  bool level_digit;
  const char* what;    // after "compressed with" or as it stands
  const char* undo;    // "decompress", "extract"
  const char* command;  // writes the text to standard output
};
constexpr foreign_format foreign_formats[] = {
    {"BZh", true, "compressed with bzip2", "decompress", "bzip2 -dc"},
    {std::string_view("\xFD" "7zXZ\0", 6), false, "compressed with xz", "decompress", "xz -dc"},
    {"\x28\xB5\x2F\xFD", false, "compressed with zstd", "decompress", "zstd -dc"},
    {"PK\x03\x04", false, "a zip archive", "extract", "unzip -p"},
};

std::size_t signature_size(const foreign_format& f) { return f.magic.size() + (f.level_digit ? 1 : 0); }

bool opens(const foreign_format& f, std::string_view head) {
  return head.size() >= signature_size(f) && head.starts_with(f.magic) &&
         (!f.level_digit || (head[f.magic.size()] >= '1' && head[f.magic.size()] <= '9'));
}

// `head` is shorter than a signature it begins: more bytes decide.
bool may_open_foreign(std::string_view head) {
  for (const auto& f : foreign_formats) {
    if (head.size() < signature_size(f) && f.magic.starts_with(head.substr(0, std::min(head.size(), f.magic.size())))) {
      return true;
    }
  }
  return false;
}

std::string_view buffered(const z_stream& s) { return {reinterpret_cast<const char*>(s.next_in), s.avail_in}; }

}  // namespace

file_source::file_source(const std::string& path, int stop_fd)
    : path_(path), stop_fd_(stop_fd), in_(new unsigned char[buffer_bytes]) {
  if (path == "-") {
    fd_ = dup(STDIN_FILENO);
  } else {
    int flags = O_RDONLY | O_CLOEXEC;
    // Opening a FIFO waits for its writer; with a stop it is opened at once and its reads wait (polled) instead.
    struct stat named {};
    if (stop_fd_ >= 0 && ::stat(path.c_str(), &named) == 0 && S_ISFIFO(named.st_mode)) flags |= O_NONBLOCK;
    fd_ = ::open(path.c_str(), flags);
  }
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  waits_ = true;  // until fstat says it is a regular file
  struct stat st {};
  if (fstat(fd_, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      ::close(fd_);
      throw std::runtime_error("cannot read " + path + ": it is a directory");
    }
    if (S_ISREG(st.st_mode)) {
      waits_ = false;
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

void file_source::wait_for_input() {
  pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};  // poll skips a stop descriptor of -1
  for (;;) {
    int timeout_ms = -1;
    if (until_ != clock::time_point::max()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until_ - clock::now()).count();
      timeout_ms = static_cast<int>(std::clamp<decltype(left)>(left, 0, std::numeric_limits<int>::max()));
    }
    const int n = ::poll(p, 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::strerror(errno));
    if (n == 0) throw read_idle();
    if (p[1].revents != 0) throw read_stopped();  // bytes that came with the stop are after it: not read
    if (p[0].revents != 0) return;  // bytes, the writer's end (read says 0) or an error (read says which)
  }
}

std::size_t file_source::read_fd(unsigned char* dst, std::size_t len) {
  while (!at_end_) {
    if (waits_) wait_for_input();
    const ssize_t n = ::read(fd_, dst, len);
    if (n < 0 && (errno == EINTR || (waits_ && errno == EAGAIN))) continue;
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

std::size_t file_source::read(char* buf, std::size_t len, clock::time_point until) {
  if (!error_.empty()) throw std::runtime_error(error_);
  if (len == 0) return 0;
  until_ = until;  // a read_idle leaves what is buffered (and the decoder) as it was: the next read goes on
  if (state_ == state::undecided) {
    while ((stream_.avail_in < 2 || may_open_foreign(buffered(stream_))) && fill()) {
    }
    refuse_foreign_format();
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

void file_source::refuse_foreign_format() {
  for (const auto& f : foreign_formats) {
    if (!opens(f, buffered(stream_))) continue;
    const std::string how = std::string(f.command) + (path_ == "-" ? " FILE" : " " + path_) + " | crm-ingest import -";
    throw refused_input("cannot read " + path_ + ": " +
                        (path_ == "-" ? "standard input is " + std::string(f.what) + ": " + f.undo +
                                            " it before the pipe: " + how
                                      : std::string(f.what) + ": " + f.undo + " it first, or pipe it: " + how));
  }
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
  } catch (const read_idle&) {
    if (stream_.avail_out == asked) throw;  // what was decoded before the pipe went quiet is handed over
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
