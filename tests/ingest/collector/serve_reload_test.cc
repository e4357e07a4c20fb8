// SIGHUP reloads the webhook secrets of a running `crm-ingest serve` without dropping connections, and
// [logging] format = "json" writes one JSON object per log line.
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "support/hmac.h"
#include "support/http_client.h"
#include "support/scratch.h"
#include "support/serve_process.h"
#include "support/test_db.h"

using crm_test::read_file;
using crm_test::write_file;

namespace {

// Value of an unlabelled sample in the exposition text; -1 when absent.
double sample(const std::string& metrics, const std::string& name) {
  std::istringstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

double scrape(unsigned short port, const std::string& name) {
  return sample(crm_test::http_request(port, "GET", "/metrics").body, name);
}

bool wait_for_metric(unsigned short port, const std::string& name, double want) {
  for (int i = 0; i < 100; ++i) {
    if (scrape(port, name) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST(ServeReload, SighupSwapsWebhookSecretsUnderAKeptAliveConnection) {
  auto dsn = crm_test::fresh_database("t_serve_reload");
  auto dir = crm_test::scratch("reload");
  crm_test::serve_process srv(dsn, dir,
                              "\n[logging]\nformat = \"json\"\n\n[webhooks.segment]\nshared_secret = \"old-secret\"\n");
  srv.start();
  const std::string body = read_file(std::string(CRM_FIXTURES_DIR) + "/webhooks/segment/docs-email-delivered.json");
  ASSERT_FALSE(body.empty());
  auto post = [&](crm_test::http_connection& c, const std::string& secret) {
    return c.request("POST", "/v1/webhooks/segment", body,
                     {{"Content-Type", "application/json"}, {"X-Signature", crm_test::hmac_hex(EVP_sha1(), secret, body)}});
  };

  crm_test::http_connection conn(srv.port());
  EXPECT_EQ(post(conn, "old-secret").status, 200);
  EXPECT_EQ(post(conn, "new-secret").status, 401);

  // Rotate the secret in the file and signal; the same connection carries on.
  std::string cfg = read_file(srv.config_path());
  auto at = cfg.find("old-secret");
  ASSERT_NE(at, std::string::npos);
  write_file(srv.config_path(), cfg.substr(0, at) + "new-secret" + cfg.substr(at + 10));
  ASSERT_EQ(kill(srv.pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for_metric(srv.port(), "crm_ingest_config_reloads_total", 1)) << srv.stderr_text();
  EXPECT_EQ(post(conn, "new-secret").status, 200);
  EXPECT_EQ(post(conn, "old-secret").status, 401);

  // An invalid file is refused as a whole: the secrets in force stay, the connection too.
  write_file(srv.config_path(), read_file(srv.config_path()) + "\n[webhooks.segmnt]\nshared_secret = \"x\"\n");
  ASSERT_EQ(kill(srv.pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for_metric(srv.port(), "crm_ingest_config_reload_failures_total", 1)) << srv.stderr_text();
  EXPECT_EQ(post(conn, "new-secret").status, 200);
  EXPECT_EQ(scrape(srv.port(), "crm_ingest_config_reloads_total"), 1);
  EXPECT_EQ(srv.stop(SIGTERM), 0);

  // Every log line is one JSON object with ts, level and msg; key=value fields became members.
  std::istringstream log(srv.stderr_text());
  std::string line;
  int lines = 0;
  bool saw_reload = false;
  while (std::getline(log, line)) {
    ++lines;
    EXPECT_EQ(line.rfind("{\"ts\":\"", 0), 0u) << line;
    EXPECT_EQ(line.back(), '}') << line;
    EXPECT_NE(line.find("\"level\":\""), std::string::npos) << line;
    EXPECT_NE(line.find("\"msg\":\""), std::string::npos) << line;
    if (line.find("\"msg\":\"Reloaded the webhook sources and secrets on SIGHUP.\"") != std::string::npos) {
      saw_reload = true;
      EXPECT_NE(line.find("\"changed\":\"segment\""), std::string::npos) << line;
    }
  }
  EXPECT_GT(lines, 3);
  EXPECT_TRUE(saw_reload) << srv.stderr_text();
}

}  // namespace
