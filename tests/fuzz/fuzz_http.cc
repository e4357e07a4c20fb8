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

#include <cstdint>
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

void require(bool condition) {
  if (!condition) std::abort();
}

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& fx = running_server();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  require(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(fx.port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  require(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
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
  check_responses(answer);
  require(fx.srv->stats().connection_errors.load() == 0);
  return 0;
}
