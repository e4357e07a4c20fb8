// What the hostile-client tests of `crm-ingest serve` share (serve_hostile_test.cc, serve_hostile_server_test.cc):
// a fresh database with serve started on it, raw requests on plain and TLS connections, and the settings of
// the TLS and [auth] listeners.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "ingest/auth/credentials.h"
#include "support/http_client.h"
#include "support/run_command.h"
#include "support/serve_process.h"
#include "support/test_db.h"
#include "support/tls_client.h"

namespace crm_test::hostile {

namespace fs = std::filesystem;

inline const std::string api_key = "ck_live_hostile_0123456789abcdef";
inline const std::string ndjson_head = "Content-Type: application/x-ndjson\r\n";

inline fs::path scratch(const std::string& name) {
  auto d = fs::temp_directory_path() / ("crm-hostile-test-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// What `sql` counts once it is `want`, or what it counted after 20 s.
inline long long wait_for(const std::string& dsn, const std::string& sql, long long want) {
  long long got = -1;
  for (int i = 0; i < 200; ++i) {
    got = crm_test::count(dsn, sql);
    if (got == want) return got;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return got;
}

inline std::string event(const std::string& message_id) {
  return R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent",)"
         R"("email":"a@b.co","provider_message_id":")" +
         message_id + "\"}";
}

// The head of an NDJSON POST of `length` bytes with the `extra` header lines.
inline std::string post_head(const std::string& extra, std::size_t length, const std::string& path = "/v1/events") {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + ndjson_head + extra +
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

// A server certificate for localhost (server.pem, server.key) in `dir`, from tests/support/make-ca.sh.
inline void issue_certificate(const fs::path& dir) {
  auto r = run_command("bash " + shell_quote(std::string(CRM_SOURCE_DIR) + "/tests/support/make-ca.sh") + " " +
                       shell_quote(dir.string()) + " server 'DNS:localhost,IP:127.0.0.1' 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
}

inline std::string tls_settings(const fs::path& dir) {
  return "tls_cert_file = \"" + (dir / "server.pem").string() + "\"\ntls_key_file = \"" + (dir / "server.key").string() +
         "\"\n";
}

inline std::string auth_settings() {
  return "\n[auth]\napi_keys = \"loader=sha256:" + crm::ingest::auth::sha256_hex(api_key) + "\"\n";
}

// Sends `bytes` on a fresh connection (http_connection or tls_connection) and returns the answer (status 0:
// closed without one).
template <class Connection>
http_reply send_on_a_fresh_connection(unsigned short port, const std::string& bytes) {
  Connection c(port);
  try {
    c.send_raw(bytes);
  } catch (const std::exception&) {
    // The server may close before the client is done sending: the answer, if any, is still readable.
  }
  return c.read_reply();
}

inline http_reply send_plain(unsigned short port, const std::string& bytes) {
  return send_on_a_fresh_connection<http_connection>(port, bytes);
}

inline http_reply send_tls(unsigned short port, const std::string& bytes) {
  return send_on_a_fresh_connection<tls_connection>(port, bytes);
}

struct hostile_database {
  std::string dsn;
  fs::path dir;
};

// One test's serve, started: a fresh database t_hostile_<name> ('-' read as '_') and serve on it in
// scratch(name) (`dir`), with serve_process's `extra_toml` and `http_extra`. `dsn` is the database's.
class hostile_serve : private hostile_database, public serve_process {
 public:
  explicit hostile_serve(const std::string& name, const std::string& extra_toml = "", const std::string& http_extra = "")
      : hostile_database{fresh_database(database_name(name)), scratch(name)},
        serve_process(dsn, dir, extra_toml, http_extra) {
    start();
  }
  using hostile_database::dir;
  using hostile_database::dsn;

 private:
  static std::string database_name(std::string name) {
    for (auto& ch : name) ch = ch == '-' ? '_' : ch;
    return "t_hostile_" + name;
  }
};

}  // namespace crm_test::hostile
