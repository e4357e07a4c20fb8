// `crm-ingest serve` facing a hostile or careless client (see serve_hostile_test.cc), here the server around
// the requests: provider endpoints without their secrets, TLS suites and renegotiation, the error bodies and
// connection counters, the log files' mode, and a descriptor limit below max_connections.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "serve_hostile.h"
#include "support/scratch.h"
#include "support/child_process.h"

namespace {

using namespace crm_test::hostile;
using crm_test::run_command;
using crm_test::shell_quote;

std::string read_fixture(const std::string& rel) {
  std::ifstream in(std::string(CRM_FIXTURES_DIR) + "/webhooks/" + rel);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

const std::string forged_order =
    R"({"type":"track","event":"Order Completed","anonymousId":"forger","messageId":"forged-order-1",)"
    R"("timestamp":"2026-11-02T09:00:00Z","properties":{"revenue":999999,"currency":"USD"}})";

// Item 2: a provider endpoint without its secret stored whatever anyone posted, also with auth.required.
TEST(ServeHostile, ProviderEndpointWithoutItsSecretRefusesUnsignedRequests) {
  hostile_serve srv("unsigned", "\n[auth]\nrequired = true\n");
  const std::map<std::string, std::string> json = {{"Content-Type", "application/json"}};
  auto segment = crm_test::http_request(srv.port(), "POST", "/v1/webhooks/segment", forged_order, json);
  EXPECT_EQ(segment.status, 401) << segment.body;
  EXPECT_NE(segment.body.find("webhooks.segment.allow_unsigned"), std::string::npos) << segment.body;
  // Postmark's endpoint authenticates with basic auth: without configured credentials, any pair is refused.
  auto postmark = crm_test::http_request(srv.port(), "POST", "/v1/webhooks/postmark",
                                         read_fixture("postmark/docs-delivery.json"),
                                         {{"Content-Type", "application/json"}, {"Authorization", "Basic dTpw"}});
  EXPECT_EQ(postmark.status, 401) << postmark.body;
  EXPECT_NE(postmark.body.find("webhooks.postmark.allow_unsigned"), std::string::npos) << postmark.body;
  for (const char* p : {"sendgrid", "whatsapp", "mailgun", "resend"}) {
    EXPECT_EQ(crm_test::http_request(srv.port(), "POST", std::string("/v1/webhooks/") + p, "[]", json).status, 401) << p;
  }
  auto twilio = crm_test::http_request(srv.port(), "POST", "/v1/webhooks/twilio",
                                       read_fixture("twilio/status-callback-sent.docs.form"),
                                       {{"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(twilio.status, 401) << twilio.body;
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM customer_touchpoints"), 0);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM communications"), 0);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM rejected_events"), 0);
  EXPECT_EQ(srv.stderr_text().find("UNSIGNED"), std::string::npos) << srv.stderr_text();
}

// The explicit opt-in, per provider, is warned about at start; other providers stay closed.
TEST(ServeHostile, UnsignedWebhooksAreAnExplicitWarnedOptInPerProvider) {
  hostile_serve srv("unsigned-optin", "\n[webhooks.segment]\nallow_unsigned = true\n");
  const std::map<std::string, std::string> json = {{"Content-Type", "application/json"}};
  auto segment = crm_test::http_request(srv.port(), "POST", "/v1/webhooks/segment", forged_order, json);
  EXPECT_EQ(segment.status, 200) << segment.body;
  EXPECT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/webhooks/sendgrid", "[]", json).status, 401);
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM customer_touchpoints", 1), 1);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  const auto log = srv.stderr_text();
  EXPECT_NE(log.find("POST /v1/webhooks/segment accepts UNSIGNED requests"), std::string::npos) << log;
  EXPECT_EQ(log.find("POST /v1/webhooks/sendgrid accepts UNSIGNED"), std::string::npos) << log;
}


// Item 10: the server's own counters are exported; error bodies quote a short prefix of the input at most.
TEST(ServeHostile, ConnectionCountersAreExportedAndErrorsQuoteLittle) {
  auto dsn = crm_test::fresh_database("t_hostile_counters");
  auto dir = scratch("counters");
  issue_certificate(dir);
  crm_test::serve_process srv(dsn, dir / "plain", "", "header_timeout_ms = 300\nbody_limit_bytes = 2048\n");
  crm_test::serve_process tls(dsn, dir / "tls", "", tls_settings(dir));
  srv.start();
  tls.start();
  // A 60 KB path: the 404 quotes a short prefix of it.
  auto long_path = crm_test::http_request(srv.port(), "GET", "/" + std::string(60000, 'a'));
  EXPECT_EQ(long_path.status, 404);
  EXPECT_LT(long_path.body.size(), 200u) << long_path.body.size();
  // Bytes that are not UTF-8 come back as U+FFFD inside valid JSON.
  auto bad_utf8 = crm_test::http_request(srv.port(), "GET", "/\xff\xfe/x");
  EXPECT_EQ(bad_utf8.status, 404);
  EXPECT_NE(bad_utf8.body.find("\xEF\xBF\xBD"), std::string::npos) << bad_utf8.body;
  EXPECT_EQ(bad_utf8.body.find('\xff'), std::string::npos);
  auto long_type = crm_test::http_request(srv.port(), "POST", "/v1/events", "{}", {{"Content-Type", std::string(30000, 't')}});
  EXPECT_EQ(long_type.status, 415);
  EXPECT_LT(long_type.body.size(), 300u);
  // One of each: an early 413, a timeout, a malformed request; a plain request on the TLS port.
  EXPECT_EQ(send_plain(srv.port(), post_head("", 4096)).status, 413);
  {
    crm_test::http_connection slow(srv.port());
    slow.send_raw("GET /healthz HTTP/1.1\r\n");
    EXPECT_TRUE(slow.closed_by_server());
  }
  EXPECT_EQ(send_plain(srv.port(), "BLAH\r\n\r\n").status, 400);
  EXPECT_EQ(send_plain(tls.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status, 0);
  // The server notices the closes above on its own threads: poll until its gauges have caught up (the
  // scrape's own connection is the one left open), then check every line of the last scrape.
  const std::vector<std::string> expected = {
      "crm_ingest_http_body_too_large_total 1",     "crm_ingest_http_timeouts_total 1",
      "crm_ingest_http_bad_requests_total 1",       "crm_ingest_http_connections_refused_total 0",
      "crm_ingest_http_accept_errors_total 0",      "crm_ingest_http_connections_open 1"};
  std::string m;
  auto all_there = [&] {
    m = crm_test::http_request(srv.port(), "GET", "/metrics").body;
    for (const auto& line : expected)
      if (m.find("\n" + line + "\n") == std::string::npos) return false;
    return true;
  };
  crm_test::wait_until(all_there, std::chrono::seconds(10), std::chrono::milliseconds(100));
  for (const auto& line : expected) EXPECT_NE(m.find("\n" + line + "\n"), std::string::npos) << line << "\n" << m;
  EXPECT_NE(m.find("crm_ingest_http_connections_accepted_total "), std::string::npos);
  auto t = send_tls(tls.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").body;
  EXPECT_NE(t.find("\ncrm_ingest_http_tls_handshake_failures_total 1\n"), std::string::npos) << t;
}

// Item 10: TLS 1.2 offers forward-secret suites only (a static-RSA suite was accepted).
TEST(ServeHostile, TlsOffersForwardSecretSuitesOnly) {
  auto dsn = crm_test::fresh_database("t_hostile_tls_suites");
  auto dir = scratch("tls-suites");
  auto made = run_command("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout " +
                          shell_quote((dir / "server.key").string()) + " -out " +
                          shell_quote((dir / "server.pem").string()) + " 2>&1");
  ASSERT_EQ(made.status, 0) << made.out;
  crm_test::serve_process srv(dsn, dir / "serve", "", tls_settings(dir));
  srv.start();
  for (const char* weak : {"AES128-GCM-SHA256", "AES256-SHA256", "AES128-SHA"}) {
    EXPECT_THROW(crm_test::tls_connection(srv.port(), weak), std::runtime_error) << weak;
  }
  crm_test::tls_connection fs(srv.port(), "ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_EQ(fs.cipher(), "ECDHE-RSA-AES128-GCM-SHA256");
  fs.send_raw("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(fs.read_reply().status, 200);
  EXPECT_EQ(send_tls(srv.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);  // TLS 1.3
}

// Item 10: the local log's segment files hold callers' raw bodies: owner-only.
TEST(ServeHostile, LogSegmentsAreOwnerOnly) {
  hostile_serve srv("log-mode");
  EXPECT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", event("mode"), {{"Content-Type", "application/json"}})
                .status,
            200);
  int segments = 0;
  for (const auto& f : fs::directory_iterator(srv.dir / "log")) {
    if (f.path().extension() != ".seg") continue;
    ++segments;
    const auto perms = fs::status(f.path()).permissions();
    EXPECT_EQ(perms & (fs::perms::group_all | fs::perms::others_all), fs::perms::none) << f.path();
  }
  EXPECT_GT(segments, 0);
}

// CPU seconds (user + system) a process has used, from /proc.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close_paren + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stod(f);
    if (i == 15) stime = std::stod(f);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Item 7: with nofile 128 and 150 idle connections the accept loop spun (1.88 M log lines, both cores). serve
// now fits max_connections into RLIMIT_NOFILE (warning at start) and refuses the excess at accept.
TEST(ServeHostile, FileDescriptorLimitLowersMaxConnectionsInsteadOfSpinning) {
  auto dsn = crm_test::fresh_database("t_hostile_nofile");
  auto dir = scratch("nofile");
  crm_test::serve_process cfg(dsn, dir);  // writes serve.toml; started below under a low limit instead
  crm_test::child srv({"/bin/bash", "-c", "ulimit -n 200 && exec " + shell_quote(CRM_INGEST_EXE) +
                                              " serve --config " + shell_quote(cfg.config_path())},
                      dir / "out.txt", dir / "err.txt");
  unsigned short port = 0;
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::istringstream out(srv.out());
    std::string word;
    while (out >> word) {
      if (word == "port") out >> port;
    }
    if (port == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(port, 0) << srv.err();
  EXPECT_NE(srv.err().find("RLIMIT_NOFILE (200) is below http.max_connections (10000)"), std::string::npos)
      << srv.err();
  // Far more idle connections than descriptors.
  std::vector<std::unique_ptr<crm_test::http_connection>> idle;
  for (int i = 0; i < 250; ++i) idle.push_back(std::make_unique<crm_test::http_connection>(port));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double before = cpu_seconds(srv.pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double used = cpu_seconds(srv.pid()) - before;
  EXPECT_LT(used, 0.5) << "serve spun while out of descriptors";
  EXPECT_LT(srv.err().size(), 20000u) << "the log is flooded";
  idle.clear();
  bool healthy = false;
  for (int i = 0; i < 50 && !healthy; ++i) {
    try {
      healthy = crm_test::http_request(port, "GET", "/healthz").status == 200;
    } catch (const std::exception&) {
    }
    if (!healthy) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(healthy);
  auto m = crm_test::http_request(port, "GET", "/metrics").body;
  EXPECT_EQ(m.find("\ncrm_ingest_http_connections_refused_total 0\n"), std::string::npos) << m;
  srv.signal(SIGTERM);
  EXPECT_EQ(srv.wait_for(std::chrono::seconds(30)), 0);
}


// TLS renegotiation is refused (TLS 1.2; 1.3 has none); the connection's next request is still served or the
// connection closed, and the server keeps serving.
TEST(ServeHostile, TlsRenegotiationIsRefused) {
  auto dsn = crm_test::fresh_database("t_hostile_renegotiation");
  auto dir = scratch("renegotiation");
  issue_certificate(dir);
  crm_test::serve_process srv(dsn, dir / "serve", "", tls_settings(dir));
  srv.start();
  // s_client's R command asks for a renegotiation; the server answers with a no_renegotiation alert.
  auto r = run_command("(printf 'R\\n'; sleep 2) | timeout 10 openssl s_client -connect 127.0.0.1:" +
                       std::to_string(srv.port()) + " -tls1_2 2>&1");
  ASSERT_NE(r.out.find("RENEGOTIATING"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no renegotiation"), std::string::npos) << r.out;
  EXPECT_TRUE(srv.running());
  EXPECT_EQ(send_tls(srv.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
}

}  // namespace

namespace {
// POSTs 100-event requests ("<prefix><i>-<k>") until one is refused; returns how many were acknowledged.
int post_until_refused(crm_test::serve_process& srv, const std::string& prefix, crm_test::http_reply& refused) {
  int acknowledged = 0;
  for (int i = 0; i < 200 && refused.status != 503; ++i) {  // ~20 KB a request
    std::string body;
    for (int k = 0; k < 100; ++k) body += event(prefix + std::to_string(i) + "-" + std::to_string(k)) + "\n";
    refused = crm_test::http_request(srv.port(), "POST", "/v1/events", body, {{"Content-Type", "application/x-ndjson"}});
    EXPECT_TRUE(refused.status == 200 || refused.status == 503) << refused.status << " " << refused.body;
    if (refused.status == 200) ++acknowledged;
  }
  return acknowledged;
}

// serve on a fresh database with its log's files limited to 256 KiB (writes past it fail as on a full disk),
// fed 100-event requests ("<prefix>...") until one is refused.
struct serve_with_a_failed_log {
  std::string dsn;
  fs::path dir;
  crm_test::serve_process srv;
  crm_test::http_reply refused{};
  int acknowledged = 0;
  serve_with_a_failed_log(const std::string& database, const std::string& name, const std::string& prefix)
      : dsn(crm_test::fresh_database(database)), dir(scratch(name)), srv(dsn, dir) {
    srv.limit_file_size(256 << 10);
    srv.start();
    acknowledged = post_until_refused(srv, prefix, refused);
  }
};

// The metrics' text once it holds `line` (published every second), or the last one after 10 s.
std::string wait_for_metric(unsigned short port, const std::string& line) {
  std::string m;
  for (int i = 0; i < 100; ++i) {
    m = crm_test::http_request(port, "GET", "/metrics").body;
    if (m.find("\n" + line + "\n") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return m;
}
}  // namespace

// From a review: after a write error (a full disk) the local log refused everything until serve was restarted.
// It now cuts what the failed write left and takes requests again once it can write; what was acknowledged
// before is written to PostgreSQL exactly once.
TEST(ServeHostile, AFailedLocalLogTakesRequestsAgainOnceThereIsRoom) {
  serve_with_a_failed_log failed("t_hostile_log_recovers", "log-recovers", "a");
  auto& dsn = failed.dsn;
  auto& srv = failed.srv;
  ASSERT_EQ(failed.refused.status, 503) << "the log never failed";
  EXPECT_EQ(crm_test::http_request(srv.port(), "GET", "/readyz").status, 503);
  auto m = wait_for_metric(srv.port(), "crm_ingest_log_failed 1");
  EXPECT_NE(m.find("\ncrm_ingest_log_failed 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("\ncrm_ingest_log_write_failures_total 1\n"), std::string::npos) << m;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a retry while there is still no room
  EXPECT_EQ(crm_test::http_request(srv.port(), "GET", "/readyz").status, 503);

  ASSERT_TRUE(srv.lift_file_size_limit());
  crm_test::http_reply ready{};
  for (int i = 0; i < 100 && ready.status != 200; ++i) {
    ready = crm_test::http_request(srv.port(), "GET", "/readyz");
    if (ready.status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(ready.status, 200) << "never ready again: " << ready.body;
  EXPECT_NE(ready.body.find("\"log_failed\":false"), std::string::npos) << ready.body;
  crm_test::http_reply after{};
  const int more = post_until_refused(srv, "b", after);
  EXPECT_EQ(more, 200) << after.status << " " << after.body;
  m = wait_for_metric(srv.port(), "crm_ingest_log_failed 0");
  EXPECT_NE(m.find("\ncrm_ingest_log_write_recoveries_total 1\n"), std::string::npos) << m;
  const long long events = 100LL * (failed.acknowledged + more);
  EXPECT_EQ(wait_for(dsn, "SELECT count(*) FROM communications", events), events);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT provider_message_id) FROM communications"), events);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 0);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

// From a review: after a write error (a full disk) the local log takes nothing (until it has room again), but
// /readyz said ready (a load balancer kept sending) and the 503s had no Retry-After. A file size limit makes the
// log's writes fail as a full disk does.
TEST(ServeHostile, AFailedLocalLogMakesServeUnreadyAndItsRefusalsSayWhenToRetry) {
  serve_with_a_failed_log failed("t_hostile_log_failed", "log-failed", "r");
  const auto& refused = failed.refused;
  ASSERT_EQ(refused.status, 503) << "the log never failed";
  EXPECT_NE(refused.body.find("the local log cannot store the request"), std::string::npos) << refused.body;
  EXPECT_EQ(refused.headers.count("retry-after"), 1u) << refused.body;
  auto ready = crm_test::http_request(failed.srv.port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_NE(ready.body.find("\"log_failed\":true"), std::string::npos) << ready.body;
  EXPECT_TRUE(failed.srv.running());
}
