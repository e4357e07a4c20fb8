// A minimal blocking HTTP/1.1 client over POSIX sockets for integration tests (loopback only).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace crm_test {

struct http_reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// Parses one response out of `buf`, calling `fill` (which appends to `buf`, false at the end of the stream)
// for more bytes; status 0 when the stream ended first. Shared by the plain and the TLS client.
template <class Fill>
http_reply read_http_reply(std::string& buf, Fill fill) {
  http_reply r;
  std::size_t header_end;
  while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return r;
  }
  std::string head = buf.substr(0, header_end);
  buf.erase(0, header_end + 4);
  auto sp = head.find(' ');
  r.status = std::stoi(head.substr(sp + 1, 3));
  std::size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos + 2 < head.size()) {
    auto next = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    auto colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers[name] = value;
    pos = next;
  }
  std::size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
  while (buf.size() < length) {
    if (!fill()) break;
  }
  r.body = buf.substr(0, length);
  buf.erase(0, std::min(length, buf.size()));
  return r;
}

class http_connection {
 public:
  // `from`: a local address to connect from (any of 127.0.0.0/8 on Linux), e.g. to act as another client.
  explicit http_connection(unsigned short port, const char* from = nullptr) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (from) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      inet_pton(AF_INET, from, &local.sin_addr);
      if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
        ::close(fd_);
        throw std::runtime_error(std::string("cannot bind to ") + from);
      }
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
    }
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~http_connection() {
    if (fd_ >= 0) ::close(fd_);
  }
  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;

  void send_raw(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<std::size_t>(n);
    }
  }

  http_reply request(const std::string& method, const std::string& target, const std::string& body = "",
                     const std::map<std::string, std::string>& headers = {}) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    send_raw(req);
    return read_reply();
  }

  // Reads one response; status 0 when the server closed the connection instead.
  http_reply read_reply() {
    return read_http_reply(buf_, [this] { return fill(); });
  }

  // True when the server has closed the connection (reads return 0).
  bool closed_by_server() {
    char c;
    auto n = ::recv(fd_, &c, 1, 0);
    return n == 0;
  }

 private:
  bool fill() {
    char tmp[65536];
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buf_;
};

inline http_reply http_request(unsigned short port, const std::string& method, const std::string& target,
                               const std::string& body = "", const std::map<std::string, std::string>& headers = {}) {
  http_connection c(port);
  return c.request(method, target, body, headers);
}

// The sum of the samples of metric `name` (with or without labels) on a /metrics page served at `port`;
// 0 when it has none.
inline double metric_sum(unsigned short port, const std::string& name) {
  std::istringstream in(http_request(port, "GET", "/metrics").body);
  std::string line;
  double sum = 0;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) == 0 && line.size() > name.size() && (line[name.size()] == ' ' || line[name.size()] == '{')) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

}  // namespace crm_test
