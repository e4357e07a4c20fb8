// Caller authentication, rate limits and the database role of `crm-ingest serve`, end to end: real
// sockets, tokens signed with libjwt, a real PostgreSQL with the roles of schemas/0003_security.sql.
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ingest/auth/credentials.h"
#include "support/event_json.h"
#include "support/http_client.h"
#include "support/jwt_signing.h"
#include "support/scratch.h"
#include "support/serve_process.h"
#include "support/test_db.h"

namespace fs = std::filesystem;
using crm_test::scratch;
using crm_test::wait_for_count;

namespace {

const auto event = crm_test::communication_json;

const std::string secret = "super-secret-jwt-token-with-at-least-32-characters-long";
const std::string issuer = "https://project.supabase.co/auth/v1";
const std::string api_key = "ck_live_5b7e0c1d9a2f4e6b8c0d1e2f3a4b5c6d";

crm_test::jwt_claims good_claims(long now) {
  return {{{"iss", issuer}, {"aud", "authenticated"}, {"role", "service_role"}, {"sub", "svc"}, {"tenant_id", "acme"}},
          {{"exp", now + 600}, {"iat", now}}};
}

std::map<std::string, std::string> bearer(const std::string& token) {
  return {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}};
}

TEST(AuthServe, TokensAndApiKeysDecideWhoMayPostEvents) {
  auto dsn = crm_test::fresh_database("t_auth_events");
  auto dir = scratch("events");
  fs::create_directories(dir);
  auto [rsa_private, rsa_public] = crm_test::key_pair("RSA");
  std::ofstream(dir / "rs256.pem") << rsa_public;
  crm_test::serve_process srv(dsn, dir,
                              "\n[auth]\njwt_secret = \"" + secret + "\"\njwt_public_key_file = \"" +
                                  (dir / "rs256.pem").string() + "\"\njwt_audience = \"authenticated\"\n" +
                                  "jwt_issuer = \"" + issuer + "\"\njwt_leeway_s = 5\napi_keys = \"loader=sha256:" +
                                  crm::ingest::auth::sha256_hex(api_key) + "\"\n");
  srv.start();
  const long now = static_cast<long>(std::time(nullptr));
  auto post = [&](const std::string& id, const std::map<std::string, std::string>& h) {
    return crm_test::http_request(srv.port(), "POST", "/v1/events", event(id), h);
  };

  // Accepted: HS256, RS256, the API key (as X-API-Key and as a bearer).
  auto ok1 = post("hs256", bearer(crm_test::sign_jwt(JWT_ALG_HS256, secret, good_claims(now))));
  EXPECT_EQ(ok1.status, 200) << ok1.body;
  auto ok2 = post("rs256", bearer(crm_test::sign_jwt(JWT_ALG_RS256, rsa_private, good_claims(now))));
  EXPECT_EQ(ok2.status, 200) << ok2.body;
  auto ok3 = post("apikey", {{"Content-Type", "application/json"}, {"X-API-Key", api_key}});
  EXPECT_EQ(ok3.status, 200) << ok3.body;
  auto ok4 = post("apikey-bearer", bearer(api_key));
  EXPECT_EQ(ok4.status, 200) << ok4.body;

  // Refused with 401: no credential, expired, not yet valid, wrong audience, wrong signature, alg none,
  // a wrong API key; with 403: a valid token whose role may not ingest.
  auto none = post("refused-none", {{"Content-Type", "application/json"}});
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer realm=\"crm-ingest\"");
  auto c = good_claims(now);
  c.numbers["exp"] = now - 60;
  auto expired = post("refused-expired", bearer(crm_test::sign_jwt(JWT_ALG_HS256, secret, c)));
  EXPECT_EQ(expired.status, 401);
  EXPECT_NE(expired.body.find("expired"), std::string::npos) << expired.body;
  c = good_claims(now);
  c.numbers["nbf"] = now + 60;
  auto early = post("refused-nbf", bearer(crm_test::sign_jwt(JWT_ALG_HS256, secret, c)));
  EXPECT_EQ(early.status, 401);
  EXPECT_NE(early.body.find("not valid yet"), std::string::npos) << early.body;
  c = good_claims(now);
  c.strings["aud"] = "anon";
  auto aud = post("refused-aud", bearer(crm_test::sign_jwt(JWT_ALG_HS256, secret, c)));
  EXPECT_EQ(aud.status, 401);
  EXPECT_NE(aud.body.find("audience"), std::string::npos) << aud.body;
  auto forged = post("refused-sig", bearer(crm_test::sign_jwt(JWT_ALG_HS256, "another-secret-another-secret-another", good_claims(now))));
  EXPECT_EQ(forged.status, 401);
  auto [other_private, other_public] = crm_test::key_pair("RSA");
  auto forged_rsa = post("refused-rsa", bearer(crm_test::sign_jwt(JWT_ALG_RS256, other_private, good_claims(now))));
  EXPECT_EQ(forged_rsa.status, 401);
  // {"alg":"none"} with valid claims and an empty signature.
  auto signed_token = crm_test::sign_jwt(JWT_ALG_HS256, secret, good_claims(now));
  auto payload = signed_token.substr(signed_token.find('.') + 1);
  payload = payload.substr(0, payload.find('.'));
  auto alg_none = post("refused-alg-none", bearer("eyJhbGciOiJub25lIn0." + payload + "."));
  EXPECT_EQ(alg_none.status, 401) << alg_none.body;
  auto wrong_key = post("refused-key", {{"Content-Type", "application/json"}, {"X-API-Key", api_key + "x"}});
  EXPECT_EQ(wrong_key.status, 401);
  c = good_claims(now);
  c.strings["role"] = "authenticated";
  auto forbidden = post("refused-role", bearer(crm_test::sign_jwt(JWT_ALG_HS256, secret, c)));
  EXPECT_EQ(forbidden.status, 403) << forbidden.body;

  // Only the four accepted requests reached the database; the JWT's tenant is on its rows; nothing of the
  // refused bodies was kept (not even as a dead letter).
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications", 4), 4);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE tenant_id = 'acme'"), 2);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE provider_message_id LIKE 'refused%'"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 0);
  // /metrics takes the same credentials (a token whose role may not ingest may still read it); probes stay open.
  auto anonymous_metrics = crm_test::http_request(srv.port(), "GET", "/metrics");
  EXPECT_EQ(anonymous_metrics.status, 401);
  EXPECT_EQ(crm_test::http_request(srv.port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(crm_test::http_request(srv.port(), "GET", "/metrics", "", bearer(crm_test::sign_jwt(JWT_ALG_HS256, secret, c))).status,
            200);
  auto metrics = crm_test::http_request(srv.port(), "GET", "/metrics", "", {{"X-API-Key", api_key}}).body;
  EXPECT_NE(metrics.find("crm_ingest_auth_requests_total{result=\"forbidden\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("crm_ingest_auth_requests_total{result=\"unauthenticated\"} 9"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("crm_ingest_auth_requests_total{result=\"ok\"} 4"), std::string::npos);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  // No secret in the process log: neither the JWT secret, a token, nor the API key.
  auto log = srv.stderr_text();
  EXPECT_EQ(log.find(secret), std::string::npos);
  EXPECT_EQ(log.find(api_key), std::string::npos);
  EXPECT_EQ(log.find(payload), std::string::npos);
  EXPECT_EQ(log.find("is OPEN"), std::string::npos);
}

// Dead letters carry the tenant of the credential or endpoint that brought them (they were stored with
// tenant_id NULL: tenant A's raw bodies visible to tenant-less readers, invisible to A); a numeric tenant
// claim is used as its decimal text (it was dropped).
TEST(AuthServe, DeadLettersCarryTheTenantOfTheirCredentialOrEndpoint) {
  auto dsn = crm_test::fresh_database("t_auth_dead_letter_tenant");
  crm_test::serve_process srv(dsn, scratch("dead-letter-tenant"),
                              "\n[auth]\njwt_secret = \"" + secret + "\"\n" +
                                  "\n[webhooks.segment]\nallow_unsigned = true\ntenant_id = \"seg-tenant\"\n");
  srv.start();
  const long now = static_cast<long>(std::time(nullptr));
  const std::string bad = R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"fax","status":"sent"})";
  const std::string pigeon = R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"pigeon"})";
  auto r = crm_test::http_request(srv.port(), "POST", "/v1/events", event("tenant-ok") + "\n" + bad,
                                  {{"Content-Type", "application/x-ndjson"},
                                   {"Authorization", "Bearer " + crm_test::sign_jwt(JWT_ALG_HS256, secret, good_claims(now))}});
  EXPECT_EQ(r.status, 200) << r.body;
  auto c = good_claims(now);
  c.strings.erase("tenant_id");
  c.numbers["tenant_id"] = 42;
  r = crm_test::http_request(srv.port(), "POST", "/v1/events", event("tenant-42") + "\n" + pigeon,
                             {{"Content-Type", "application/x-ndjson"},
                              {"Authorization", "Bearer " + crm_test::sign_jwt(JWT_ALG_HS256, secret, c)}});
  EXPECT_EQ(r.status, 200) << r.body;
  const std::string segment_bad =
      R"({"type":"track","event":"Order Completed","anonymousId":"a1","messageId":"seg-bad-1",)"
      R"("timestamp":"2026-11-02T09:00:00Z","properties":{"lead_id":"0","revenue":10}})";  // no lead id
  r = crm_test::http_request(srv.port(), "POST", "/v1/webhooks/segment", segment_bad, {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM rejected_events", 3), 3);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE tenant_id = 'acme'"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE tenant_id = '42'"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE tenant_id = 'seg-tenant'"), 1);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'tenant-42' AND tenant_id = '42'", 1), 1);
}

TEST(AuthServe, OpenEventsEndpointIsLoudlyReported) {
  auto dsn = crm_test::fresh_database("t_auth_open");
  crm_test::serve_process srv(dsn, scratch("open"));
  srv.start();
  auto r = crm_test::http_request(srv.port(), "POST", "/v1/events", event("open"), {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  EXPECT_NE(srv.stderr_text().find("POST /v1/events is OPEN"), std::string::npos);
}

TEST(AuthServe, ClientOverItsRateLimitGets429WhileOthersAreUnaffected) {
  auto dsn = crm_test::fresh_database("t_auth_rate");
  const std::string key_b = "ck_live_second_key_0123456789";
  crm_test::serve_process srv(dsn, scratch("rate"),
                              "\n[auth]\napi_keys = \"a=sha256:" + crm::ingest::auth::sha256_hex(api_key) +
                                  ",b=sha256:" + crm::ingest::auth::sha256_hex(key_b) +
                                  "\"\n\n[rate_limit]\nper_address_rps = 1\nper_address_burst = 3\n"
                                  "per_credential_rps = 1\nper_credential_burst = 2\n");
  srv.start();
  auto post = [&](const char* from, const std::string& key, const std::string& id) {
    crm_test::http_connection c(srv.port(), from);
    return c.request("POST", "/v1/events", event(id), {{"Content-Type", "application/json"}, {"X-API-Key", key}});
  };
  // Credential a: its bucket holds 2.
  EXPECT_EQ(post("127.0.0.1", api_key, "r1").status, 200);
  EXPECT_EQ(post("127.0.0.1", api_key, "r2").status, 200);
  auto over = post("127.0.0.1", api_key, "r3");
  EXPECT_EQ(over.status, 429) << over.body;
  EXPECT_NE(over.body.find("credential"), std::string::npos) << over.body;
  EXPECT_GE(std::atoi(over.headers["retry-after"].c_str()), 1);
  // Credential b from another address: unaffected.
  EXPECT_EQ(post("127.0.0.2", key_b, "r4").status, 200);
  // 127.0.0.1 has used its 3: now even credential b is refused there, by address.
  auto by_address = post("127.0.0.1", key_b, "r5");
  EXPECT_EQ(by_address.status, 429);
  EXPECT_NE(by_address.body.find("address"), std::string::npos) << by_address.body;
  EXPECT_GE(std::atoi(by_address.headers["retry-after"].c_str()), 1);
  EXPECT_EQ(post("127.0.0.3", key_b, "r6").status, 200);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications", 4), 4);
  auto metrics = crm_test::http_request(srv.port(), "GET", "/metrics", "", {{"X-API-Key", key_b}}).body;
  EXPECT_NE(metrics.find("crm_ingest_rate_limited_total{limit=\"credential\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("crm_ingest_rate_limited_total{limit=\"address\"} 1"), std::string::npos) << metrics;
}

TEST(AuthServe, BadAuthConfigurationIsRefusedAtStart) {
  auto dsn = crm_test::fresh_database("t_auth_badcfg");
  crm_test::serve_process srv(dsn, scratch("badcfg"), "\n[auth]\napi_keys = \"plain-text-key\"\n");
  EXPECT_THROW(srv.start(), std::runtime_error);
  auto log = srv.stderr_text();
  EXPECT_NE(log.find("auth.api_keys"), std::string::npos) << log;
  EXPECT_EQ(log.find("plain-text-key"), std::string::npos) << "the refused value is a secret: " << log;
}

TEST(AuthServe, KeysAreReloadedOnSighup) {
  auto dsn = crm_test::fresh_database("t_auth_reload");
  const std::string new_key = "ck_live_rotated_key_987654321";
  crm_test::serve_process srv(dsn, scratch("reload"),
                              "\n[auth]\napi_keys = \"old=sha256:" + crm::ingest::auth::sha256_hex(api_key) + "\"\n");
  srv.start();
  auto post = [&](const std::string& key, const std::string& id) {
    return crm_test::http_request(srv.port(), "POST", "/v1/events", event(id),
                                  {{"Content-Type", "application/json"}, {"X-API-Key", key}})
        .status;
  };
  EXPECT_EQ(post(api_key, "before"), 200);
  EXPECT_EQ(post(new_key, "before-new"), 401);
  // Rotate: the file now names only the new key's hash.
  std::string text;
  {
    std::ifstream in(srv.config_path());
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto at = text.find(crm::ingest::auth::sha256_hex(api_key));
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 64, crm::ingest::auth::sha256_hex(new_key));
  std::ofstream(srv.config_path()) << text;
  kill(srv.pid(), SIGHUP);
  int status = 0;
  for (int i = 0; i < 50 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = post(new_key, "after-new-" + std::to_string(i));
  }
  EXPECT_EQ(status, 200);
  EXPECT_EQ(post(api_key, "after-old"), 401);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

// The role the cluster's tests connect as is a superuser: refused unless allowed.
TEST(DatabaseRole, ServeRefusesASuperuserConnectionUnlessAllowed) {
  auto dsn = crm_test::fresh_database("t_role_superuser");
  crm_test::serve_process refused(dsn, scratch("superuser"), "", "", /*allow_superuser=*/false);
  EXPECT_THROW(refused.start(), std::runtime_error);
  EXPECT_NE(refused.stderr_text().find("refusing to serve with a superuser PostgreSQL connection"), std::string::npos)
      << refused.stderr_text();
  crm_test::serve_process allowed(dsn, scratch("superuser-allowed"));
  allowed.start();
  EXPECT_EQ(allowed.stop(SIGTERM), 0);
}

std::string with_user(const std::string& dsn, const std::string& user) {
  auto at = dsn.find('@');
  auto scheme = dsn.find("://") + 3;
  return dsn.substr(0, scheme) + user + dsn.substr(at);
}

// A login role holding only crm_ingest_writer runs every ingestion path: temp staging + COPY, inserts with
// ON CONFLICT, the metrics upsert, the ledger, dead letters, replays of the same batch, a new month's
// partition.
TEST(DatabaseRole, WriterRoleIsEnoughForServe) {
  auto dsn = crm_test::fresh_database("t_role_writer");
  {
    pqxx::connection admin(crm_test::admin_dsn());
    pqxx::nontransaction tx(admin);
    tx.exec("DROP ROLE IF EXISTS t_writer_login");
    tx.exec("CREATE ROLE t_writer_login LOGIN IN ROLE crm_ingest_writer");
  }
  crm_test::serve_process srv(with_user(dsn, "t_writer_login"), scratch("writer"), "", "", /*allow_superuser=*/false);
  srv.start();
  std::ifstream in(std::string(CRM_SOURCE_DIR) + "/deploy/sample/events.ndjson");
  std::string sample((std::istreambuf_iterator<char>(in)), {});
  const std::map<std::string, std::string> ndjson = {{"Content-Type", "application/x-ndjson"}};
  ASSERT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", sample, ndjson).status, 200);
  ASSERT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", sample, ndjson).status, 200);
  // Far outside the partitions made at migration: the writer creates the month through the definer function.
  auto old = R"({"kind":"communication","occurred_at":"2021-03-04T09:00:00Z","channel":"email","status":"sent",)"
             R"("email":"old@b.co","provider_message_id":"old"})";
  ASSERT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", old, {{"Content-Type", "application/json"}}).status,
            200);
  EXPECT_EQ(wait_for_count(dsn, "SELECT coalesce(sum(communications_in), 0) FROM ingest_batches", 27), 27);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 13);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 8);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 8);
  EXPECT_GT(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM pg_class WHERE relname = 'communications_2021_03'"), 1);
  // The analytics stage runs as the same role: it applies the backlog (the conversion gets its six models' credits,
  // the exposures their A/B units) and deletes it.
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(DISTINCT model) FROM attribution_credits", 6), 6);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM analytics_backlog", 0), 0);
  EXPECT_GT(crm_test::count(dsn, "SELECT count(*) FROM ab_test_units"), 0);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  EXPECT_EQ(srv.stderr_text().find("superuser"), std::string::npos);
  EXPECT_EQ(srv.stderr_text().find("analytics stage failed"), std::string::npos) << srv.stderr_text();
}

}  // namespace
