// A loopback TCP server that takes connections and never answers them: a database that hangs (a stopped process
// whose kernel still completes handshakes, a proxy with no backend), for tests of what a client does meanwhile.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <vector>

namespace crm_test {

class silent_server {
 public:
  silent_server() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("silent_server: cannot listen on the loopback");
    }
    port_ = ntohs(a.sin_port);
  }
  ~silent_server() {
    for (const int c : accepted_) ::close(c);
    ::close(fd_);
  }
  silent_server(const silent_server&) = delete;
  silent_server& operator=(const silent_server&) = delete;

  unsigned short port() const noexcept { return port_; }

  // Waits up to `limit` for a client to connect and keeps its connection open, unanswered; false when none came.
  bool wait_for_connection(std::chrono::milliseconds limit) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return false;
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    accepted_.push_back(c);
    return true;
  }

 private:
  int fd_ = -1;
  unsigned short port_ = 0;
  std::vector<int> accepted_;
};

}  // namespace crm_test
