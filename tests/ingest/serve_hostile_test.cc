// `crm-ingest serve` facing a hostile or careless client: each test sends the request shape that broke
// an earlier version, with a raw socket to the real process (plain HTTP, TLS and [auth] listeners), and
// checks that the process survives, answers as documented, and stores nothing it should not.
#include <csignal>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "ingest/auth/credentials.h"
#include "support/http_client.h"
#include "support/run_command.h"
#include "support/serve_process.h"
#include "support/test_db.h"
#include "support/tls_client.h"

namespace fs = std::filesystem;
using crm_test::run_command;
using crm_test::shell_quote;

namespace {

const std::string api_key = "ck_live_hostile_0123456789abcdef";

fs::path scratch(const std::string& name) {
  auto d = fs::temp_directory_path() / ("crm-hostile-test-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

long long wait_for(const std::string& dsn, const std::string& sql, long long want) {
  long long got = -1;
  for (int i = 0; i < 200; ++i) {
    got = crm_test::count(dsn, sql);
    if (got == want) return got;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return got;
}

std::string event(const std::string& message_id) {
  return R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent",)"
         R"("email":"a@b.co","provider_message_id":")" +
         message_id + "\"}";
}

// A chunked POST of one event whose trailer is `trailer` (complete lines, each ending in CRLF).
std::string chunked_with_trailer(const std::string& body, const std::string& trailer, const std::string& extra = "") {
  char size[32];
  std::snprintf(size, sizeof size, "%zx", body.size());
  return "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra +
         "Transfer-Encoding: chunked\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n" + trailer + "\r\n";
}

std::string big_trailer(std::size_t value_bytes) { return "X-Pad: " + std::string(value_bytes, 'a') + "\r\n"; }

void issue_certificate(const fs::path& dir) {
  auto r = run_command("bash " + shell_quote(std::string(CRM_SOURCE_DIR) + "/tests/support/make-ca.sh") + " " +
                       shell_quote(dir.string()) + " server 'DNS:localhost,IP:127.0.0.1' 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
}

std::string tls_settings(const fs::path& dir) {
  return "tls_cert_file = \"" + (dir / "server.pem").string() + "\"\ntls_key_file = \"" + (dir / "server.key").string() +
         "\"\n";
}

std::string auth_settings() {
  return "\n[auth]\napi_keys = \"loader=sha256:" + crm::ingest::auth::sha256_hex(api_key) + "\"\n";
}

// Sends `bytes` on a fresh plain connection and returns the answer (status 0: closed without one).
crm_test::http_reply send_plain(unsigned short port, const std::string& bytes) {
  crm_test::http_connection c(port);
  try {
    c.send_raw(bytes);
  } catch (const std::exception&) {
    // The server may close before the client is done sending: the answer, if any, is still readable.
  }
  return c.read_reply();
}

crm_test::http_reply send_tls(unsigned short port, const std::string& bytes) {
  crm_test::tls_connection c(port);
  try {
    c.send_raw(bytes);
  } catch (const std::exception&) {
  }
  return c.read_reply();
}

// Item 1 of the probe: one unauthenticated request with a 64 KiB trailer field aborted the process
// (Beast threw std::length_error out of io_context::run), on every kind of listener.
TEST(ServeHostile, HugeTrailerFieldEndsOnlyItsConnection) {
  auto dsn = crm_test::fresh_database("t_hostile_trailer");
  auto dir = scratch("trailer");
  issue_certificate(dir);
  crm_test::serve_process plain(dsn, dir / "plain");
  crm_test::serve_process tls(dsn, dir / "tls", "", tls_settings(dir));
  crm_test::serve_process authed(dsn, dir / "auth", auth_settings());
  plain.start();
  tls.start();
  authed.start();

  for (std::size_t value : {std::size_t{65534}, std::size_t{65535}, std::size_t{70000}}) {
    auto r = send_plain(plain.port(), chunked_with_trailer(event("plain"), big_trailer(value)));
    EXPECT_NE(r.status, 200) << value;
    auto t = send_tls(tls.port(), chunked_with_trailer(event("tls"), big_trailer(value)));
    EXPECT_NE(t.status, 200) << value;
    auto a = send_plain(authed.port(), chunked_with_trailer(event("auth"), big_trailer(value),
                                                            "X-API-Key: " + api_key + "\r\n"));
    EXPECT_NE(a.status, 200) << value;
  }
  // Every process is alive and answers the next request.
  ASSERT_TRUE(plain.running());
  ASSERT_TRUE(tls.running());
  ASSERT_TRUE(authed.running());
  EXPECT_EQ(crm_test::http_request(plain.port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(send_tls(tls.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  EXPECT_EQ(crm_test::http_request(authed.port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(plain.stop(SIGTERM), 0);
  EXPECT_EQ(tls.stop(SIGTERM), 0);
  EXPECT_EQ(authed.stop(SIGTERM), 0);
}

// A trailer is bounded like a header (60 MB of trailer fields were accepted), and a small one is fine.
TEST(ServeHostile, TrailersAreBoundedAndASmallOneIsIgnored) {
  auto dsn = crm_test::fresh_database("t_hostile_trailer_bound");
  crm_test::serve_process srv(dsn, scratch("trailer-bound"));
  srv.start();
  std::string many;
  while (many.size() < 4 << 20) many += "X-T" + std::to_string(many.size()) + ": v\r\n";
  auto refused = send_plain(srv.port(), chunked_with_trailer(event("many"), many));
  EXPECT_NE(refused.status, 200);
  auto fine = send_plain(srv.port(), chunked_with_trailer(event("small-trailer"), "X-Checksum: abc\r\n"));
  EXPECT_EQ(fine.status, 200) << fine.body;
  EXPECT_EQ(wait_for(dsn, "SELECT count(*) FROM communications", 1), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'many'"), 0);
  EXPECT_TRUE(srv.running());
}

// Trailer fields are not header fields: an API key sent as a trailer authenticates nothing.
TEST(ServeHostile, ACredentialInATrailerDoesNotAuthenticate) {
  auto dsn = crm_test::fresh_database("t_hostile_trailer_key");
  crm_test::serve_process srv(dsn, scratch("trailer-key"), auth_settings());
  srv.start();
  auto r = send_plain(srv.port(), chunked_with_trailer(event("trailer-key"), "X-API-Key: " + api_key + "\r\n"));
  EXPECT_EQ(r.status, 401) << r.body;
  auto ok = send_plain(srv.port(), chunked_with_trailer(event("header-key"), "", "X-API-Key: " + api_key + "\r\n"));
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(wait_for(dsn, "SELECT count(*) FROM communications", 1), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'trailer-key'"), 0);
}

}  // namespace

namespace {

std::string read_fixture(const std::string& rel) {
  std::ifstream in(std::string(CRM_FIXTURES_DIR) + "/webhooks/" + rel);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

const std::string forged_order =
    R"({"type":"track","event":"Order Completed","anonymousId":"forger","messageId":"forged-order-1",)"
    R"("timestamp":"2026-11-02T09:00:00Z","properties":{"revenue":999999,"currency":"USD"}})";

// Item 2: a provider endpoint without its secret stored whatever anyone posted, also with auth.required.
TEST(ServeHostile, ProviderEndpointWithoutItsSecretRefusesUnsignedRequests) {
  auto dsn = crm_test::fresh_database("t_hostile_unsigned");
  crm_test::serve_process srv(dsn, scratch("unsigned"), "\n[auth]\nrequired = true\n");
  srv.start();
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
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 0);
  EXPECT_EQ(srv.stderr_text().find("UNSIGNED"), std::string::npos) << srv.stderr_text();
}

// The explicit opt-in, per provider, is warned about at start; other providers stay closed.
TEST(ServeHostile, UnsignedWebhooksAreAnExplicitWarnedOptInPerProvider) {
  auto dsn = crm_test::fresh_database("t_hostile_unsigned_optin");
  crm_test::serve_process srv(dsn, scratch("unsigned-optin"), "\n[webhooks.segment]\nallow_unsigned = true\n");
  srv.start();
  const std::map<std::string, std::string> json = {{"Content-Type", "application/json"}};
  auto segment = crm_test::http_request(srv.port(), "POST", "/v1/webhooks/segment", forged_order, json);
  EXPECT_EQ(segment.status, 200) << segment.body;
  EXPECT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/webhooks/sendgrid", "[]", json).status, 401);
  EXPECT_EQ(wait_for(dsn, "SELECT count(*) FROM customer_touchpoints", 1), 1);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  const auto log = srv.stderr_text();
  EXPECT_NE(log.find("POST /v1/webhooks/segment accepts UNSIGNED requests"), std::string::npos) << log;
  EXPECT_EQ(log.find("POST /v1/webhooks/sendgrid accepts UNSIGNED"), std::string::npos) << log;
}

}  // namespace
