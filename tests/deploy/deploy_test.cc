// The deployment files, checked with the real tools from Debian: crm-ingest's own `config check` on the
// rendered per-node TOML, promtool on the Prometheus config and alert rules (and unit tests of the
// alerts), docker-compose's parser on each node's compose project, systemd-analyze on the units, and
// the Grafana dashboard: it loads, and every crm_ingest_* metric it or the alerts use is exported by a
// running `crm-ingest serve`.
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <simdjson.h>

#include "ingest/config/settings.h"
#include "support/http_client.h"
#include "support/run_command.h"
#include "support/serve_process.h"
#include "support/test_db.h"

namespace fs = std::filesystem;
using crm_test::run_command;
using crm_test::shell_quote;

namespace {

const std::string source_dir = CRM_SOURCE_DIR;
const std::string exe = CRM_INGEST_EXE;
const std::vector<std::string> nodes = {"crm-test-1", "crm-test-2", "crm-test-3"};

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Renders the test inventory once per test program: crm-ingest's files, and the Patroni/etcd/HAProxy
// files when deploy/render-configs.sh is there (otherwise empty stand-ins, so compose can be parsed).
const fs::path& rendered() {
  static const fs::path dir = [] {
    // Per process: ctest runs each test of this file as its own process, possibly in parallel.
    auto d = fs::temp_directory_path() / ("crm-deploy-test-" + std::to_string(getpid()));
    fs::remove_all(d);
    const std::string inv = source_dir + "/tests/deploy/inventory.env";
    auto r = run_command("bash " + shell_quote(source_dir + "/deploy/render-app-configs.sh") + " " + shell_quote(inv) +
                         " " + shell_quote(d.string()) + " 2>&1");
    if (r.status != 0) throw std::runtime_error("render-app-configs.sh failed: " + r.out);
    if (fs::exists(source_dir + "/deploy/render-configs.sh")) {
      r = run_command("bash " + shell_quote(source_dir + "/deploy/render-configs.sh") + " " + shell_quote(inv) + " " +
                      shell_quote(d.string()) + " 2>&1");
      if (r.status != 0) throw std::runtime_error("render-configs.sh failed: " + r.out);
    }
    for (const auto& n : nodes) {
      for (const char* f : {"patroni.yml", "etcd.env", "haproxy.cfg"}) {
        if (!fs::exists(d / n / f)) std::ofstream(d / n / f) << "";
      }
    }
    return d;
  }();
  static const struct remover {
    ~remover() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove_at_exit;
  return dir;
}

// Runs a command with the CRM_INGEST_* environment cleared, so only the file is judged.
crm_test::command_result run_clean(const std::string& cmd) {
  return run_command("env $(env | grep -o '^CRM_INGEST_[A-Z0-9_]*' | sed 's/^/-u /') " + cmd + " 2>&1");
}

TEST(Deploy, RenderedCrmIngestConfigsPassConfigCheckAndDocumentEverySetting) {
  for (const auto& node : {nodes[0], nodes[1]}) {
    auto toml = rendered() / node / "crm-ingest.toml";
    auto r = run_clean(exe + " config check " + shell_quote(toml.string()));
    ASSERT_EQ(r.status, 0) << node << ":\n" << r.out;
    const std::string text = read_file(toml);
    EXPECT_EQ(text.find("${"), std::string::npos) << "unrendered variable in " << toml;
    EXPECT_NE(r.out.find("listen = \"10.0.0.1" + node.substr(node.size() - 1) + ":8080\""), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("format = \"json\""), std::string::npos) << r.out;
    // Every declared setting is present in its section, with its environment variable in the comment
    // above it (the description, default and range are written there too).
    for (const auto& s : crm::ingest::config::all_settings()) {
      auto section = text.find("\n[" + std::string(s.section) + "]\n");
      ASSERT_NE(section, std::string::npos) << s.name();
      auto next = text.find("\n[", section + 2);
      std::string body = text.substr(section, next == std::string::npos ? std::string::npos : next - section);
      EXPECT_NE(body.find("\n" + std::string(s.key) + " = "), std::string::npos) << s.name() << " missing in " << node;
      EXPECT_NE(body.find("(" + s.env_name() + ")"), std::string::npos) << s.name() << " undocumented in " << node;
      EXPECT_NE(body.find("Default "), std::string::npos) << s.name();
    }
    // No password in the TOML; the environment file carries it.
    EXPECT_EQ(text.find("test-password"), std::string::npos);
    EXPECT_NE(read_file(rendered() / node / "crm-ingest.env").find("PGPASSWORD=test-password"), std::string::npos);
  }
  // The check can fail: a value out of range in the same file is refused with exit code 2.
  auto bad = rendered() / "bad.toml";
  std::ofstream(bad) << std::regex_replace(read_file(rendered() / nodes[0] / "crm-ingest.toml"),
                                           std::regex("\nwriters = 2\n"), "\nwriters = 0\n");
  auto r = run_clean(exe + " config check " + shell_quote(bad.string()));
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("postgres.writers = 0 is outside [1, 64]"), std::string::npos) << r.out;
}

TEST(Deploy, PrometheusConfigAndAlertRulesPassPromtool) {
  auto dir = rendered() / nodes[2];
  auto r = run_command("promtool check config " + shell_quote((dir / "prometheus.yml").string()) + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("SUCCESS: 1 rule files found"), std::string::npos) << r.out;
  EXPECT_NE(read_file(dir / "prometheus.yml").find("'10.0.0.12:8080'"), std::string::npos);
  r = run_command("promtool check rules " + shell_quote(source_dir + "/deploy/observability/crm-ingest-alerts.yml") + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  // Each alert named in the issue exists.
  const std::string rules = read_file(source_dir + "/deploy/observability/crm-ingest-alerts.yml");
  for (const char* a : {"NoPrimary", "CrmIngestIngestionStalled", "CrmIngestRejectedEventRateHigh", "CrmIngestDurableLogFilling",
                        "ReplicationLagHigh", "PartitionMissingForNextMonth", "CrmIngestSignatureFailuresSpike"}) {
    EXPECT_NE(rules.find("- alert: " + std::string(a) + "\n"), std::string::npos) << a;
  }
  // The alerts fire on the situations they describe.
  r = run_command("cd " + shell_quote(source_dir + "/tests/deploy") + " && promtool test rules alerts_test.yml 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
}

TEST(Deploy, ComposeFilesParseWithPinnedImages) {
  for (const auto& node : nodes) {
    auto dir = rendered() / node;
    auto r = run_command("cd " + shell_quote(dir.string()) + " && docker-compose config 2>&1");
    ASSERT_EQ(r.status, 0) << node << ":\n" << r.out;
    std::regex image(R"(\n\s+image: (\S+))");
    int images = 0;
    for (std::sregex_iterator it(r.out.begin(), r.out.end(), image), end; it != end; ++it, ++images) {
      std::string ref = (*it)[1];
      auto colon = ref.rfind(':');
      ASSERT_NE(colon, std::string::npos) << ref << " has no tag";
      std::string tag = ref.substr(colon + 1);
      EXPECT_NE(tag, "latest") << ref;
      EXPECT_TRUE(std::regex_search(tag, std::regex("[0-9]+\\.[0-9]+"))) << ref << " is not pinned to a version";
    }
    EXPECT_GE(images, 4) << r.out;
    EXPECT_NE(r.out.find("patroni.yml:/etc/patroni/patroni.yml"), std::string::npos) << r.out;
  }
  auto n1 = run_command("cd " + shell_quote((rendered() / nodes[0]).string()) + " && docker-compose config --services");
  for (const char* s : {"etcd", "patroni", "haproxy", "crm-ingest"}) EXPECT_NE(n1.out.find(s), std::string::npos) << s;
  auto n3 = run_command("cd " + shell_quote((rendered() / nodes[2]).string()) + " && docker-compose config --services");
  for (const char* s : {"etcd", "patroni", "prometheus", "grafana"}) EXPECT_NE(n3.out.find(s), std::string::npos) << s;
  EXPECT_EQ(n3.out.find("crm-ingest"), std::string::npos);
}

TEST(Deploy, SystemdUnitsVerifyAndInstallNodePlacesTheFiles) {
  auto units = rendered() / "units";
  fs::create_directories(units);
  std::string names;
  for (const auto& e : fs::directory_iterator(source_dir + "/deploy/systemd")) {
    // The units name the installed binary; verify them against the one just built.
    std::ofstream(units / e.path().filename())
        << std::regex_replace(read_file(e.path()), std::regex("/usr/bin/crm-ingest"), exe);
    names += " " + shell_quote((units / e.path().filename()).string());
  }
  auto r = run_command("systemd-analyze verify --man=no" + names + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "") << r.out;

  auto root = rendered() / "root";
  r = run_command("bash " + shell_quote(source_dir + "/deploy/install-node.sh") + " " +
                  shell_quote((rendered() / nodes[0]).string()) + " --root " + shell_quote(root.string()) + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(fs::exists(root / "etc/crm-ingest/crm-ingest.toml"));
  EXPECT_EQ(fs::status(root / "etc/crm-ingest/crm-ingest.env").permissions() & fs::perms::others_read, fs::perms::none);
  EXPECT_TRUE(fs::exists(root / "etc/systemd/system/crm-ingest-partitions-retain.timer"));
  EXPECT_TRUE(fs::exists(root / "etc/patroni/config.yml"));
  EXPECT_TRUE(fs::exists(root / "etc/default/etcd"));
}

// crm_ingest_* names in `text` (with histogram suffixes as written).
std::set<std::string> metric_names(const std::string& text) {
  std::set<std::string> out;
  std::regex name("crm_ingest_[a-z0-9_]+");
  for (std::sregex_iterator it(text.begin(), text.end(), name), end; it != end; ++it) out.insert(it->str());
  return out;
}

TEST(Deploy, GrafanaDashboardLoadsAndEveryMetricItUsesIsExported) {
  simdjson::dom::parser parser;
  simdjson::dom::element dash;
  auto path = source_dir + "/deploy/observability/grafana/crm-ingest-dashboard.json";
  ASSERT_EQ(parser.load(path).get(dash), simdjson::SUCCESS);
  std::string_view uid, title;
  ASSERT_EQ(dash["uid"].get(uid), simdjson::SUCCESS);
  ASSERT_EQ(dash["title"].get(title), simdjson::SUCCESS);
  simdjson::dom::array panels;
  ASSERT_EQ(dash["panels"].get(panels), simdjson::SUCCESS);
  std::vector<std::string> exprs;
  std::set<std::int64_t> ids;
  for (auto p : panels) {
    std::string_view type;
    ASSERT_EQ(p["type"].get(type), simdjson::SUCCESS);
    std::int64_t id = 0;
    ASSERT_EQ(p["id"].get(id), simdjson::SUCCESS);
    EXPECT_TRUE(ids.insert(id).second) << "duplicate panel id " << id;
    std::int64_t w = 0;
    ASSERT_EQ(p["gridPos"]["w"].get(w), simdjson::SUCCESS);
    if (type == "row") continue;
    std::string_view ds;
    EXPECT_EQ(p["datasource"]["uid"].get(ds), simdjson::SUCCESS);
    EXPECT_EQ(ds, "prometheus");
    simdjson::dom::array targets;
    ASSERT_EQ(p["targets"].get(targets), simdjson::SUCCESS) << id;
    EXPECT_GT(targets.size(), 0u) << id;
    for (auto t : targets) {
      std::string_view e;
      ASSERT_EQ(t["expr"].get(e), simdjson::SUCCESS);
      exprs.emplace_back(e);
    }
  }
  ASSERT_GT(exprs.size(), 20u);

  // Every panel query is valid PromQL: promtool parses them as recording rules (Grafana's own
  // variables replaced by values).
  auto rules = rendered() / "dashboard-queries.yml";
  {
    std::ofstream out(rules);
    out << "groups:\n  - name: dashboard\n    rules:\n";
    for (std::size_t i = 0; i < exprs.size(); ++i) {
      std::string e = std::regex_replace(exprs[i], std::regex("\\$__rate_interval"), "5m");
      e = std::regex_replace(e, std::regex("\\$node"), ".*");
      std::string quoted;
      for (char c : e) {
        if (c == '\'') quoted += "''";
        else quoted.push_back(c);
      }
      out << "      - record: dashboard:query_" << i << "\n        expr: '" << quoted << "'\n";
    }
  }
  auto r = run_command("promtool check rules " + shell_quote(rules.string()) + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;

  // The names the dashboard and the alerts use, against a running serve's /metrics after some traffic
  // (labelled families appear with their first sample).
  std::string used_text;
  for (const auto& e : exprs) used_text += e + "\n";
  used_text += read_file(source_dir + "/deploy/observability/crm-ingest-alerts.yml");
  auto used = metric_names(used_text);
  ASSERT_GT(used.size(), 20u);

  auto dsn = crm_test::fresh_database("t_deploy_metrics");
  auto dir = fs::temp_directory_path() / "crm-deploy-test-serve";
  fs::remove_all(dir);
  crm_test::serve_process srv(dsn, dir, "\n[webhooks.segment]\nshared_secret = \"s\"\n");
  srv.start();
  auto sample = read_file(source_dir + "/deploy/sample/events.ndjson");
  EXPECT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", sample, {{"Content-Type", "application/x-ndjson"}}).status, 200);
  EXPECT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/webhooks/segment", "{}", {{"X-Signature", "00"}}).status, 401);
  std::string exposition;
  for (int i = 0; i < 100; ++i) {
    exposition = crm_test::http_request(srv.port(), "GET", "/metrics").body;
    if (exposition.find("crm_ingest_writer_batches_total 0") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::set<std::string> exported;
  std::regex type_line(R"(# TYPE (\S+) (\S+))");
  for (std::sregex_iterator it(exposition.begin(), exposition.end(), type_line), end; it != end; ++it) {
    std::string n = (*it)[1], t = (*it)[2];
    exported.insert(n);
    if (t == "histogram") {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) exported.insert(n + suffix);
    }
  }
  for (const auto& n : used) EXPECT_TRUE(exported.count(n)) << n << " is used by the dashboard or the alerts but not exported";
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

}  // namespace

namespace {

// "name{labels} value" lines of an exposition as promtool input series (constant), with the scrape
// labels Prometheus adds (deploy/app-templates/prometheus.yml.tmpl).
std::string as_promtool_series(const std::string& exposition, const std::string& node) {
  std::string out;
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    auto space = line.rfind(' ');
    std::string name = line.substr(0, space), value = line.substr(space + 1);
    if (value == "NaN" || value == "+Inf" || value == "-Inf") continue;
    std::string labels = "job=\"crm-ingest\", instance=\"" + node + ":8080\", node=\"" + node + "\"";
    if (auto brace = name.find('{'); brace != std::string::npos) {
      labels += ", " + name.substr(brace + 1, name.size() - brace - 2);
      name = name.substr(0, brace);
    }
    std::string quoted;  // YAML single-quoted scalar: double the single quotes
    for (char c : name + "{" + labels + "}") quoted += c == '\'' ? std::string("''") : std::string(1, c);
    out += "      - series: '" + quoted + "'\n        values: '" + value + "x90'\n";
  }
  return out;
}

}  // namespace

// The private PostgreSQL of deploy/local-postgres.sh (the embedded default, the tests' and the benchmarks'
// server) compares text bytewise: anonymous ids, tenants, sources and the other text keys are compared with
// memcmp and sorted with abbreviated keys, not through the C library's strcoll (C.UTF-8 before: the same
// order, ~5 % more of the analytics stage's CPU). Character classes stay UTF-8. A server of the script's
// own, so that neither $CRM_TEST_ADMIN_DSN nor a test server made by an older script decides the outcome.
TEST(Deploy, ThePrivateServerComparesTextBytewise) {
  const auto dir = fs::temp_directory_path() / "crm-deploy-test-collation";
  const std::string script = "bash " + shell_quote(source_dir + "/deploy/local-postgres.sh");
  fs::remove_all(dir);
  auto started = run_command(script + " start " + shell_quote(dir.string()));
  ASSERT_EQ(started.status, 0) << started.out;
  std::string dsn = started.out.substr(0, started.out.find('\n'));
  try {
    pqxx::connection c(dsn);
    pqxx::nontransaction tx(c);
    auto r = tx.exec("SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()");
    EXPECT_EQ(r[0][0].as<std::string>(), "C");
    EXPECT_EQ(r[0][1].as<std::string>(), "C.UTF-8");
    EXPECT_EQ(tx.exec("SELECT upper('é')")[0][0].as<std::string>(), "É");
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  EXPECT_EQ(run_command(script + " stop " + shell_quote(dir.string())).status, 0);
  fs::remove_all(dir);
}

// A healthy idle node (serve started, database reachable, no traffic, Patroni with a leader): scraped for
// real, held for 90 minutes in promtool, and no alert fires. The database_up gauge used to start at 0 until
// the first committed batch, so CrmIngestDatabaseUnreachable fired on every idle collector.
TEST(Deploy, NoAlertFiresOnAHealthyIdleCollector) {
  auto dsn = crm_test::fresh_database("t_deploy_idle");
  auto dir = fs::temp_directory_path() / "crm-deploy-test-idle";
  fs::remove_all(dir);
  crm_test::serve_process srv(dsn, dir);
  srv.start();
  std::string exposition;
  // Until the writers connected and the partition catalog was read once (both at start).
  for (int i = 0; i < 100; ++i) {
    exposition = crm_test::http_request(srv.port(), "GET", "/metrics").body;
    if (exposition.find("\ncrm_ingest_writer_database_up 1\n") != std::string::npos &&
        exposition.find("\ncrm_ingest_partition_catalog_checked_timestamp_seconds 0\n") == std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(exposition.find("\ncrm_ingest_writer_database_up 1\n"), std::string::npos) << exposition;
  EXPECT_EQ(srv.stop(SIGTERM), 0);

  const std::string rules = read_file(source_dir + "/deploy/observability/crm-ingest-alerts.yml");
  std::vector<std::string> alerts;
  std::regex alert_line(R"(- alert: (\w+))");
  for (std::sregex_iterator it(rules.begin(), rules.end(), alert_line), end; it != end; ++it) alerts.push_back((*it)[1]);
  ASSERT_GT(alerts.size(), 10u);

  std::string test = "rule_files:\n  - " + source_dir + "/deploy/observability/crm-ingest-alerts.yml\n"
                     "evaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n";
  test += as_promtool_series(exposition, "n1");
  // Patroni: n1 leads, n2 and n3 replay everything.
  test += "      - series: 'patroni_primary{job=\"patroni\", instance=\"n1:8008\", node=\"n1\"}'\n        values: '1x90'\n";
  test += "      - series: 'patroni_xlog_location{job=\"patroni\", instance=\"n1:8008\", node=\"n1\"}'\n        values: '1000x90'\n";
  for (const char* n : {"n2", "n3"}) {
    std::string labels = std::string("job=\"patroni\", instance=\"") + n + ":8008\", node=\"" + n + "\"";
    test += "      - series: 'patroni_primary{" + labels + "}'\n        values: '0x90'\n";
    test += "      - series: 'patroni_replica{" + labels + "}'\n        values: '1x90'\n";
    test += "      - series: 'patroni_xlog_replayed_location{" + labels + "}'\n        values: '1000x90'\n";
  }
  test += "      - series: 'up{job=\"crm-ingest\", instance=\"n1:8080\", node=\"n1\"}'\n        values: '1x90'\n";
  test += "    alert_rule_test:\n";
  for (const char* at : {"10m", "90m"}) {
    for (const auto& a : alerts) test += std::string("      - eval_time: ") + at + "\n        alertname: " + a + "\n        exp_alerts: []\n";
  }
  auto file = dir / "idle_alerts_test.yml";
  std::ofstream(file) << test;
  auto r = run_command("promtool test rules " + shell_quote(file.string()) + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out << "\n" << test;
}
