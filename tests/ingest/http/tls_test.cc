// Encryption: the HTTPS listener of `crm-ingest serve` (certificate from a self-made CA, TLS 1.2+, plain
// HTTP refused, SIGHUP reload of the pair), and libpq sslmode=verify-full against a local PostgreSQL whose
// certificate that CA signed.
#include <csignal>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "support/http_client.h"
#include "support/run_command.h"
#include "support/serve_process.h"
#include "support/test_db.h"

namespace fs = std::filesystem;
using crm_test::run_command;
using crm_test::shell_quote;

namespace {

const std::string make_ca = std::string(CRM_SOURCE_DIR) + "/tests/support/make-ca.sh";

fs::path scratch(const std::string& name) {
  auto d = fs::temp_directory_path() / ("crm-tls-test-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void issue(const fs::path& dir, const std::string& name, const std::string& san) {
  auto r = run_command("bash " + shell_quote(make_ca) + " " + shell_quote(dir.string()) + " " + name + " " +
                       shell_quote(san) + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
}

// curl over HTTPS, trusting only `ca`; returns "<status>" or "error: ..." .
std::string curl(const fs::path& ca, unsigned short port, const std::string& extra) {
  auto r = run_command("curl -sS --max-time 10 -o /dev/null -w '%{http_code}' --cacert " + shell_quote(ca.string()) +
                       " " + extra + " https://127.0.0.1:" + std::to_string(port) + "/healthz 2>&1");
  return r.status == 0 ? r.out : "error: " + r.out;
}

std::string served_serial(unsigned short port) {
  return run_command("openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                     " </dev/null 2>/dev/null | openssl x509 -noout -serial")
      .out;
}

TEST(Tls, HttpsIsServedPlainHttpRefusedAndThePairReloadsOnSighup) {
  auto dir = scratch("https");
  issue(dir, "server", "DNS:localhost,IP:127.0.0.1");
  auto dsn = crm_test::fresh_database("t_tls_https");
  crm_test::serve_process srv(dsn, dir / "serve",
                              "", "tls_cert_file = \"" + (dir / "server.pem").string() + "\"\ntls_key_file = \"" +
                                      (dir / "server.key").string() + "\"\n");
  srv.start();
  EXPECT_EQ(curl(dir / "ca.pem", srv.port(), ""), "200");
  EXPECT_EQ(curl(dir / "ca.pem", srv.port(), "--tlsv1.2 --tls-max 1.2"), "200");
  EXPECT_EQ(curl(dir / "ca.pem", srv.port(), "--tlsv1.3"), "200");
  // Events over HTTPS reach the database.
  auto post = run_command(
      "curl -sS --max-time 10 --cacert " + shell_quote((dir / "ca.pem").string()) +
      " -H 'Content-Type: application/json' --data-binary " +
      shell_quote(R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent","email":"a@b.co","provider_message_id":"tls"})") +
      " https://127.0.0.1:" + std::to_string(srv.port()) + "/v1/events 2>&1");
  EXPECT_NE(post.out.find("\"accepted\":1"), std::string::npos) << post.out;
  // An untrusted certificate is not silently accepted by a verifying client (the test can fail).
  auto other = scratch("https-other-ca");
  issue(other, "unused", "DNS:localhost");
  EXPECT_NE(curl(other / "ca.pem", srv.port(), "").rfind("error", 0), std::string::npos);
  // TLS 1.1 and older are refused by the server (the client allows them here).
  auto old = run_command("openssl s_client -connect 127.0.0.1:" + std::to_string(srv.port()) +
                         " -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null 2>&1");
  EXPECT_NE(old.status, 0) << old.out;
  // Plain HTTP on the TLS port gets no HTTP answer: the handshake fails and the connection is closed.
  bool answered = false;
  try {
    auto r = crm_test::http_request(srv.port(), "POST", "/v1/events", "{}", {{"Content-Type", "application/json"}});
    answered = r.status != 0;
  } catch (const std::exception&) {
  }
  EXPECT_FALSE(answered);
  // SIGHUP: a new pair on the same paths is used by new connections.
  auto before = served_serial(srv.port());
  ASSERT_NE(before.find("serial="), std::string::npos) << before;
  issue(dir, "server", "DNS:localhost,IP:127.0.0.1");
  kill(srv.pid(), SIGHUP);
  std::string after;
  for (int i = 0; i < 50; ++i) {
    after = served_serial(srv.port());
    if (after != before) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(after, before);
  EXPECT_EQ(curl(dir / "ca.pem", srv.port(), ""), "200");
  // A broken pair on SIGHUP is refused and the served one stays.
  std::ofstream(dir / "server.key") << "not a key";
  kill(srv.pid(), SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(served_serial(srv.port()), after);
  EXPECT_EQ(curl(dir / "ca.pem", srv.port(), ""), "200");
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  EXPECT_NE(srv.stderr_text().find("Refused the SIGHUP reload"), std::string::npos) << srv.stderr_text();
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 1);
}

TEST(Tls, MismatchedPairIsRefusedAtStart) {
  auto dir = scratch("mismatch");
  issue(dir, "a", "DNS:localhost");
  issue(dir, "b", "DNS:localhost");
  auto dsn = crm_test::fresh_database("t_tls_mismatch");
  crm_test::serve_process srv(dsn, dir / "serve", "",
                              "tls_cert_file = \"" + (dir / "a.pem").string() + "\"\ntls_key_file = \"" +
                                  (dir / "b.key").string() + "\"\n");
  EXPECT_THROW(srv.start(), std::runtime_error);
  EXPECT_NE(srv.stderr_text().find("cannot load the TLS private key"), std::string::npos) << srv.stderr_text();
}

// A private PostgreSQL with ssl = on and a certificate for "localhost" from the self-made CA.
TEST(Tls, PostgresConnectionWithSslmodeVerifyFull) {
  auto dir = scratch("pg");
  issue(dir, "postgres", "DNS:localhost");
  const std::string script = std::string(CRM_SOURCE_DIR) + "/deploy/local-postgres.sh";
  auto pgdir = dir / "pg";
  auto started = run_command("bash " + shell_quote(script) + " start " + shell_quote(pgdir.string()) + " 2>&1");
  ASSERT_EQ(started.status, 0) << started.out;
  struct stop_at_end {
    std::string cmd;
    ~stop_at_end() { run_command(cmd); }
  } stopper{"bash " + shell_quote(script) + " stop " + shell_quote(pgdir.string()) + " >/dev/null 2>&1"};
  std::string port;
  std::ifstream(pgdir / "port") >> port;
  // The server reads its key as the postgres user, which must own it (mode 0600).
  for (const char* f : {"postgres.pem", "postgres.key", "ca.pem"}) fs::copy_file(dir / f, pgdir / f);
  run_command("id postgres >/dev/null 2>&1 && chown postgres: " + shell_quote((pgdir / "postgres.key").string()) + " " +
              shell_quote((pgdir / "postgres.pem").string()));
  {
    pqxx::connection admin("postgresql://crm@127.0.0.1:" + port + "/crm");
    pqxx::nontransaction tx(admin);
    tx.exec("ALTER SYSTEM SET ssl = on");
    tx.exec("ALTER SYSTEM SET ssl_cert_file = " + tx.quote((pgdir / "postgres.pem").string()));
    tx.exec("ALTER SYSTEM SET ssl_key_file = " + tx.quote((pgdir / "postgres.key").string()));
    tx.exec("ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1.2'");
    tx.exec("SELECT pg_reload_conf()");
  }
  const std::string ca = (dir / "ca.pem").string();
  const std::string verified = "host=localhost port=" + port + " user=crm dbname=crm sslmode=verify-full sslrootcert=" + ca;
  bool on = false;
  for (int i = 0; i < 50 && !on; ++i) {  // the reload is asynchronous
    try {
      pqxx::connection c(verified);
      pqxx::read_transaction tx(c);
      on = tx.exec("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0].as<bool>();
    } catch (const std::exception&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ASSERT_TRUE(on);
  // The name must match the certificate: 127.0.0.1 is not in it.
  EXPECT_THROW(pqxx::connection("host=127.0.0.1 port=" + port +
                                " user=crm dbname=crm sslmode=verify-full sslrootcert=" + ca),
               std::exception);
  // Another CA's certificate is not trusted.
  auto other = scratch("pg-other-ca");
  issue(other, "unused", "DNS:localhost");
  EXPECT_THROW(pqxx::connection("host=localhost port=" + port + " user=crm dbname=crm sslmode=verify-full sslrootcert=" +
                                (other / "ca.pem").string()),
               std::exception);
  // crm-ingest itself over verify-full: migrate, then serve and store an event.
  auto mig = run_command(std::string(CRM_INGEST_EXE) + " migrate --dsn " + shell_quote(verified) + " 2>&1");
  ASSERT_EQ(mig.status, 0) << mig.out;
  crm_test::serve_process srv(verified, dir / "serve");
  srv.start();
  auto r = crm_test::http_request(
      srv.port(), "POST", "/v1/events",
      R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent","email":"a@b.co","provider_message_id":"ssl"})",
      {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 200) << r.body;
  long long rows = 0;
  for (int i = 0; i < 100 && rows == 0; ++i) {
    pqxx::connection c(verified);
    pqxx::read_transaction tx(c);
    rows = tx.exec("SELECT count(*) FROM communications")[0][0].as<long long>();
    if (rows == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(rows, 1);
  {
    // The writer's own connections are encrypted.
    pqxx::connection c(verified);
    pqxx::read_transaction tx(c);
    EXPECT_EQ(tx.exec("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                      "WHERE a.datname = 'crm' AND NOT s.ssl AND a.backend_type = 'client backend'")[0][0]
                  .as<long long>(),
              0);
  }
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

}  // namespace
