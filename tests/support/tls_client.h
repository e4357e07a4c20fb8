// A minimal blocking HTTPS client for integration tests (loopback only; OpenSSL, no certificate check:
// the tests aim at the server's HTTP layer behind TLS, not at the chain).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>
#include <string>

#include "support/http_client.h"

namespace crm_test {

class tls_connection {
 public:
  // `cipher_list`: TLS 1.2 only with exactly these suites (OpenSSL names); empty = the defaults.
  explicit tls_connection(unsigned short port, const std::string& cipher_list = "") {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (!cipher_list.empty()) {
      SSL_CTX_set_max_proto_version(ctx_, TLS1_2_VERSION);
      SSL_CTX_set_cipher_list(ctx_, cipher_list.c_str());
    }
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      cleanup();
      throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
    }
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    if (SSL_connect(ssl_) != 1) {
      cleanup();
      throw std::runtime_error("TLS handshake failed");
    }
  }
  ~tls_connection() { cleanup(); }
  tls_connection(const tls_connection&) = delete;
  tls_connection& operator=(const tls_connection&) = delete;

  // The negotiated suite (OpenSSL name).
  std::string cipher() const { return SSL_get_cipher_name(ssl_); }

  void send_raw(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      int n = SSL_write(ssl_, bytes.data() + off, static_cast<int>(std::min<std::size_t>(bytes.size() - off, 1 << 20)));
      if (n <= 0) throw std::runtime_error("TLS send failed");
      off += static_cast<std::size_t>(n);
    }
  }

  http_reply read_reply() {
    return read_http_reply(buf_, [this] {
      char tmp[16384];
      int n = SSL_read(ssl_, tmp, sizeof tmp);
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<std::size_t>(n));
      return true;
    });
  }

 private:
  void cleanup() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    if (ctx_) SSL_CTX_free(ctx_);
    ssl_ = nullptr;
    fd_ = -1;
    ctx_ = nullptr;
  }
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  std::string buf_;
};

}  // namespace crm_test
