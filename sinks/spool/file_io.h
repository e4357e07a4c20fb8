// POSIX file I/O of the durable log that resumes after EINTR and short transfers. Stateless: any thread,
// on file descriptors the caller owns.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace crm::sinks::spool::file_io {

std::string errno_text(int error);
// pread until `n` bytes are in or the file ends; returns bytes read or -errno.
ssize_t pread_full(int fd, char* out, std::size_t n, std::uint64_t offset);
// Writes every iovec at `offset`, resuming after short writes. Returns 0 or errno.
int pwritev_full(int fd, iovec* iov, std::size_t count, std::uint64_t offset);
// Writes all of `data` at `offset`. Returns 0 or errno.
int pwrite_full(int fd, const char* data, std::size_t n, std::uint64_t offset);
// Writes all of `data` at the file position. Returns 0 or errno.
int write_full(int fd, const char* data, std::size_t n);
void close_fd(int& fd) noexcept;

}  // namespace crm::sinks::spool::file_io
