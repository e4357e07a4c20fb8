// libFuzzer: raw bytes into a connection of the real HTTP server (ingest/http/server.cc, TLS off): request
// lines, headers, framing (Content-Length, chunked, trailers, Transfer-Encoding lists), Expect, Content-
// Encoding (gzip/deflate bodies), pipelining. One server runs for the whole session on a loopback port;
// each input is sent on a fresh connection, which is then half-closed, and every answer read. Nothing may
// crash, leak, hang or read out of bounds, and:
//   - no connection ends in an exception (server_stats::connection_errors stays 0);
//   - every answer is a well-formed HTTP/1.1 status line with a Content-Length;
//   - the handler never sees a body over the body limit, nor a request the screen refused.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include <spdlog/spdlog.h>

#include "ingest/http/server.h"

namespace {

namespace http = crm::ingest::http;

constexpr std::size_t body_limit = 4096;

// The server's answer to the current input, printed with a failed expectation.
std::string last_answer;

// Names the broken expectation before aborting, so that a crash report says which one.
void require_at(bool condition, const char* what, int line) {
  if (condition) return;
  std::fprintf(stderr, "fuzz_http.cc:%d: expectation failed: %s\nanswer (%zu bytes): %.2000s\n", line, what,
               last_answer.size(), last_answer.c_str());
  std::abort();
}
#define require(condition) require_at((condition), #condition, __LINE__)

// Refuses /refused on its head; answers everything else with what it received.
class echo_handler final : public http::handler {
 public:
  std::optional<http::response> screen(const http::request& head, http::admission& admitted) override {
    require(head.body.empty());
    if (head.path == "/refused") return http::response{401, "application/json", "{\"error\":\"no\"}", {}};
    admitted.tenant = "t";
    return std::nullopt;
  }
  void handle(const http::request& req, http::respond_fn respond) override {
    require(req.path != "/refused");
    require(req.body.size() <= body_limit);
    require(req.admitted && req.admitted->tenant == "t");
    std::string out = std::to_string(req.body.size());
    if (req.headers) {
      if (auto h = req.headers->find("X-Echo")) out.append(h->substr(0, 16));
    }
    respond(http::response{200, "text/plain", std::move(out), {}});
  }
};

struct fixture {
  echo_handler handler;
  http::server* srv = nullptr;
  unsigned short port = 0;
};

fixture& running_server() {
  // Never destroyed: the I/O thread serves until the process exits.
  static fixture* f = [] {
    spdlog::set_level(spdlog::level::off);
    auto* fx = new fixture;
    http::server_options o;
    o.listen = "127.0.0.1:0";
    o.io_threads = 1;
    o.body_limit_bytes = body_limit;
    o.body_budget_bytes = 4 * body_limit;
    o.header_timeout = std::chrono::milliseconds(500);
    o.request_timeout = std::chrono::milliseconds(500);
    o.idle_timeout = std::chrono::milliseconds(500);
    fx->srv = new http::server(o, fx->handler);
    fx->srv->listen();
    fx->port = fx->srv->port();
    std::thread([s = fx->srv] { s->run(); }).detach();
    return fx;
  }();
  return *f;
}

// Checks that `bytes` is a sequence of complete responses (the last one may be cut by the close).
void check_responses(std::string_view bytes) {
  while (!bytes.empty()) {
    require(bytes.substr(0, 9) == "HTTP/1.1 ");
    auto end = bytes.find("\r\n\r\n");
    if (end == std::string_view::npos) return;  // cut short by our own read timeout at worst
    std::string_view head = bytes.substr(0, end + 4);
    const int status = std::atoi(std::string(head.substr(9, 3)).c_str());
    require(status >= 100 && status <= 599);
    require(status != 500);
    bytes.remove_prefix(head.size());
    if (status == 100) continue;
    auto cl = head.find("Content-Length: ");
    require(cl != std::string_view::npos);
    const std::size_t length = std::strtoul(std::string(head.substr(cl + 16, 12)).c_str(), nullptr, 10);
    if (bytes.size() < length) return;
    bytes.remove_prefix(length);
  }
}

// A fresh connection to the server. Thousands of connections a second leave the client's ports in
// TIME_WAIT; when the kernel has none free for a moment (EADDRNOTAVAIL) the connect is tried again. A
// server that stopped accepting fails every attempt and aborts the run.
int connect_to_server(unsigned short port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int last_errno = 0;
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    require(fd >= 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    last_errno = errno;
    close(fd);
    if (last_errno != EADDRNOTAVAIL && last_errno != EAGAIN && last_errno != EINTR) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "fuzz_http.cc: cannot connect to the server: %s\n", std::strerror(last_errno));
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& fx = running_server();
  const int fd = connect_to_server(fx.port);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::size_t off = 0;
  while (off < size) {
    auto n = send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server closed: fine, it may refuse early
    off += static_cast<std::size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string answer;
  char buf[16384];
  for (;;) {
    auto n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  last_answer = answer;
  check_responses(answer);
  require(fx.srv->stats().connection_errors.load() == 0);
  return 0;
}
