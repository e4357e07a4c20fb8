#include "sinks/spool/file_io.h"

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace crm::sinks::spool::file_io {

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

// pread until `n` bytes are in or the file ends; returns bytes read or -errno.
ssize_t pread_full(int fd, char* out, std::size_t n, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

// Writes every iovec at `offset`, resuming after short writes. Returns 0 or errno.
int pwritev_full(int fd, iovec* iov, std::size_t count, std::uint64_t offset) {
  while (count > 0) {
    const int batch = static_cast<int>(std::min<std::size_t>(count, IOV_MAX));
    const ssize_t n = ::pwritev(fd, iov, batch, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    offset += static_cast<std::uint64_t>(n);
    auto left = static_cast<std::size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

int pwrite_full(int fd, const char* data, std::size_t n, std::uint64_t offset) {
  iovec one{const_cast<char*>(data), n};
  return pwritev_full(fd, &one, 1, offset);
}

int write_full(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return 0;
}

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace crm::sinks::spool::file_io
