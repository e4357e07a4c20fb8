// Fault tests on the real cluster: three PostgreSQL 15 nodes under Patroni, etcd and HAProxy, started
// by deploy/cluster/cluster.sh from the production templates (ctest fixture `patroni_cluster`).
//
// Every scenario drives sustained load through `crm-ingest serve` (bench/http_load: unique events, an
// ack log of every id a 2xx acknowledged) and through back-to-back `crm-ingest import` runs of unique
// files, injects one fault, and then asserts: every acknowledged or imported event is in the database
// exactly once, no event is duplicated, communication_metrics equals a recount, the ledger agrees with
// the rows, and writing resumed within resume_bound_s (5 s) of HAProxy routing to a primary again. It prints the
// measured pause (last write before, first write after) next to the cluster's own leader change.
//
// Times: the test's clock (probes) and PostgreSQL's clock_timestamp() (ledger rows) are the same
// machine's clock.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <functional>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "sinks/postgres/connection.h"
#include "sinks/postgres/migrations.h"
#include "sinks/postgres/writer.h"
#include "support/child_process.h"
#include "support/http_client.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Writes must resume within this many seconds once HAProxy routes to a primary again. The writers' backoff
// is capped at 1 s (jittered), so ~1 s is expected; the bound leaves room for a CI box whose two cores
// also run a fuzzer beside this test (2.95 s was seen under a load average of 17).
constexpr double resume_bound_s = 5.0;

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string tail(const std::string& text, std::size_t n = 3000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// Runs a command; returns its stdout, and its exit status in `status`.
std::string run(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (status) *status = code;
  else if (code != 0) throw std::runtime_error("command failed (" + std::to_string(code) + "): " + cmd + "\n" + out);
  return out;
}

// deploy/cluster/cluster.sh COMMAND on the fixture's cluster; its output (stdout and stderr).
std::string cluster(const std::string& command) {
  return run(fmt::format("bash {} {} {} 2>&1", CRM_CLUSTER_SH, command, CRM_CLUSTER_DIR));
}

using crm_test::child;

struct cluster_dsns {
  std::string primary, replica, admin;
};

cluster_dsns read_dsns() {
  cluster_dsns d;
  std::istringstream in(run(fmt::format("bash {} dsn {}", CRM_CLUSTER_SH, CRM_CLUSTER_DIR)));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("PRIMARY_DSN=", 0) == 0) d.primary = line.substr(12);
    if (line.rfind("ADMIN_DSN=", 0) == 0) d.admin = line.substr(10);
    if (line.rfind("REPLICA_DSN=", 0) == 0) d.replica = line.substr(12);
  }
  if (d.primary.empty() || d.admin.empty()) throw std::runtime_error("cluster.sh dsn printed no DSN");
  return d;
}

std::string with_database(const std::string& dsn, const std::string& db) {
  auto slash = dsn.find('/', dsn.find("://") + 3);
  auto q = dsn.find('?', slash);
  return dsn.substr(0, slash + 1) + db + (q == std::string::npos ? "" : dsn.substr(q));
}

long long q(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  return tx.exec(sql)[0][0].as<long long>();
}

// Connects through HAProxy every 100 ms and records whether it reached a writable primary.
class primary_probe {
 public:
  explicit primary_probe(std::string dsn) : dsn_(std::move(dsn)), thread_([this] { loop(); }) {}
  ~primary_probe() {
    stop_ = true;
    thread_.join();
  }
  struct sample {
    double at;  // Unix seconds, when the probe's answer came
    bool primary;
    int port;  // the PostgreSQL node's port
  };
  std::vector<sample> samples() const {
    std::lock_guard lock(mu_);
    return samples_;
  }

 private:
  void loop() {
    while (!stop_) {
      sample s{0, false, 0};
      try {
        pqxx::connection c(dsn_);
        pqxx::nontransaction tx(c);
        auto r = tx.exec("SELECT NOT pg_is_in_recovery(), inet_server_port()");
        s.primary = r[0][0].as<bool>();
        s.port = r[0][1].as<int>();
      } catch (const std::exception&) {
      }
      s.at = now_s();
      {
        std::lock_guard lock(mu_);
        samples_.push_back(s);
      }
      std::this_thread::sleep_for(100ms);
    }
  }
  std::string dsn_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<sample> samples_;
  std::thread thread_;
};

// `crm-ingest import` of fresh unique files, one after another (half a second apart), until stopped.
class import_loop {
 public:
  import_loop(fs::path dir, std::string dsn, int first_seed)
      : dir_(std::move(dir)), dsn_(std::move(dsn)), seed_(first_seed), thread_([this] { loop(); }) {}
  ~import_loop() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  struct run_result {
    int seed;
    int status;
    std::string out, err;
  };
  std::vector<run_result> runs() const { return runs_; }
  static constexpr int records_per_file = 2000;

 private:
  void loop() {
    while (!stop_) {
      int seed = seed_++;
      auto file = dir_ / fmt::format("import-{}.ndjson", seed);
      run(fmt::format("{} --count {} --seed {} --duplicates 0 --invalid 0 --months 1 > {}", GEN_EVENTS_EXE,
                      records_per_file, seed, file.string()));
      child c({CRM_INGEST_EXE, "import", "--dsn", dsn_, "--allow-superuser", "--retry-for", "120", "--no-progress", file.string()},
              dir_ / fmt::format("import-{}.out", seed), dir_ / fmt::format("import-{}.err", seed));
      auto st = c.wait_for(180s);
      runs_.push_back({seed, st ? *st : -999, c.out(), c.err()});
      for (int i = 0; i < 5 && !stop_; ++i) std::this_thread::sleep_for(100ms);
    }
  }
  fs::path dir_;
  std::string dsn_;
  int seed_;
  std::atomic<bool> stop_{false};
  std::vector<run_result> runs_;  // read after stop()
  std::thread thread_;
};

struct server {
  std::unique_ptr<child> proc;
  unsigned port = 0;
};

server start_server(const fs::path& dir, const fs::path& config, const std::string& tag) {
  server s;
  s.proc = std::make_unique<child>(std::vector<std::string>{CRM_INGEST_EXE, "serve", "--config", config.string()},
                                   dir / ("serve-" + tag + ".out"), dir / ("serve-" + tag + ".err"));
  static const std::regex line("listening on port ([0-9]+)");
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    auto out = s.proc->out();
    if (std::regex_search(out, m, line)) {
      s.port = static_cast<unsigned>(std::stoul(m[1]));
      return s;
    }
    if (s.proc->wait_for(0ms)) break;
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "crm-ingest serve did not report its port; stderr:\n" << s.proc->err();
  return s;
}

std::unique_ptr<child> start_load(const fs::path& dir, unsigned port, double seconds, unsigned seed,
                                  const std::string& tag) {
  // 50 requests/s x 20 events: 1000 events/s, open loop.
  return std::make_unique<child>(
      std::vector<std::string>{HTTP_LOAD_EXE, "--url", "http://127.0.0.1:" + std::to_string(port), "--mode", "events",
                               "--rate", "50", "--duration", std::to_string(seconds), "--events-per-request", "20",
                               "--connections", "8", "--seed", std::to_string(seed), "--timeout", "5",
                               "--drain-timeout", "5", "--epoch", std::to_string(std::time(nullptr) / 86400 * 86400),
                               "--ack-log", (dir / ("acks-" + tag)).string()},
      dir / ("load-" + tag + ".json"), dir / ("load-" + tag + ".err"));
}

long long json_number(const std::string& json, const std::string& key) {
  auto p = json.find("\"" + key + "\":");
  if (p == std::string::npos) return -1;
  return std::stoll(json.substr(p + key.size() + 3));
}

std::string acked_ids(const fs::path& dir, std::size_t& count) {
  std::string all;
  count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("acks-", 0) != 0) continue;
    std::istringstream in(read_file(entry.path()));
    std::string id;
    while (in >> id) all += (count++ ? " " : "") + id;
  }
  return all;
}

long long missing_acked(const std::string& dsn, const std::string& ids) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  return tx
      .exec_params("SELECT count(*) FROM unnest(string_to_array($1, ' ')) a(id)"
                   " WHERE NOT EXISTS (SELECT 1 FROM communications c WHERE c.provider_message_id = a.id)"
                   "   AND NOT EXISTS (SELECT 1 FROM customer_touchpoints t WHERE t.message_id = a.id)",
                   ids)[0][0]
      .as<long long>();
}

long long rows_with(const std::string& dsn, const std::string& ids) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  return tx
      .exec_params("WITH a AS (SELECT DISTINCT unnest(string_to_array($1, ' ')) AS id)"
                   " SELECT (SELECT count(*) FROM communications c JOIN a ON c.provider_message_id = a.id)"
                   "      + (SELECT count(*) FROM customer_touchpoints t JOIN a ON t.message_id = a.id)",
                   ids)[0][0]
      .as<long long>();
}

long long wait_until_stored(const std::string& dsn, const std::string& ids, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  long long missing = 0;
  do {
    try {
      missing = missing_acked(dsn, ids);
      if (missing == 0) break;
    } catch (const std::exception&) {
      missing = -1;
    }
    std::this_thread::sleep_for(250ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return missing;
}

const char* metrics_mismatch_sql =
    "SELECT count(*) FROM ("
    " SELECT day, campaign_id, channel, status, event_count FROM communication_metrics WHERE event_count <> 0"
    " EXCEPT SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "   FROM communications GROUP BY 1, 2, 3, 4) a";
const char* metrics_missing_sql =
    "SELECT count(*) FROM ("
    " SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "   FROM communications GROUP BY 1, 2, 3, 4"
    " EXCEPT SELECT day, campaign_id, channel, status, event_count FROM communication_metrics) a";

// The scenario's pause: the longest gap between consecutive committed batches (ledger) after the
// fault, and when HAProxy routed to a primary again (first good probe after the last failed one).
struct pause_report {
  double fault_at = 0;
  double last_write_before = 0, first_write_after = 0;
  double routed_at = 0;          // HAProxy reached a primary again
  double leader_changed_at = 0;  // Patroni's history (0: no leader change)
  int old_port = 0, new_port = 0;
};

class Failover : public ::testing::Test {
 protected:
  void SetUp() override {
    // Whatever the previous scenario left (a killed node, HAProxy down) comes back first.
    cluster("heal");
    dsns_ = read_dsns();
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    db_name_ = "fault_" + name;
    std::transform(db_name_.begin(), db_name_.end(), db_name_.begin(), ::tolower);
    {
      pqxx::connection admin(dsns_.admin);
      pqxx::nontransaction tx(admin);
      tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(db_name_) + " WITH (FORCE)");
      tx.exec("CREATE DATABASE " + tx.quote_name(db_name_) + " OWNER crm");
    }
    dsn_ = with_database(dsns_.primary, db_name_);
    {
      pqxx::connection c(dsn_);
      crm::sinks::postgres::migrate(c, crm::sinks::postgres::embedded_migrations(), {1, 2});
    }
    dir_ = fs::temp_directory_path() / ("crm-fault-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_ = dir_ / "serve.toml";
    std::ofstream f(config_);
    f << "[http]\nlisten = \"127.0.0.1:0\"\n\n[postgres]\ndsn = \"" << dsn_ << "\"\nlinger_ms = 20\nallow_superuser = true\n\n[log]\ndir = \""
      << (dir_ / "log").string() << "\"\n";
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cout << "[   INFO   ] cluster state:\n" << run("bash " CRM_CLUSTER_SH " status " CRM_CLUSTER_DIR " 2>&1 || true");
      std::cout << "[   INFO   ] files kept in " << dir_ << "\n";
    }
  }

  // From the ledger and the probes: the pause around the fault injected at `fault_at`.
  pause_report measure(double fault_at, const primary_probe& probe, bool leader_changes) {
    pause_report r;
    r.fault_at = fault_at;
    pqxx::connection c(dsn_);
    pqxx::read_transaction tx(c);
    // The widest gap between consecutive commits that ends after the fault.
    auto rows = tx.exec_params(
        "WITH t AS (SELECT extract(epoch FROM committed_at)::float8 AS at FROM ingest_batches"
        "           WHERE committed_at >= to_timestamp($1) - interval '20 seconds'),"
        " g AS (SELECT lag(at) OVER (ORDER BY at) AS before, at AS after FROM t)"
        " SELECT before, after FROM g WHERE before IS NOT NULL AND after > $1"
        " ORDER BY after - before DESC LIMIT 1",
        fault_at);
    if (!rows.empty()) {
      r.last_write_before = rows[0][0].as<double>();
      r.first_write_after = rows[0][1].as<double>();
    }
    auto samples = probe.samples();
    double last_bad = 0;
    for (const auto& s : samples) {
      if (s.at < fault_at && s.primary) r.old_port = s.port;
      if (s.at >= fault_at && !s.primary) last_bad = s.at;
    }
    for (const auto& s : samples) {
      if (s.at >= fault_at && s.at > last_bad && s.primary) {
        r.routed_at = s.at;
        r.new_port = s.port;
        break;
      }
    }
    if (last_bad == 0) r.routed_at = fault_at;  // never seen unreachable
    if (leader_changes) {
      r.leader_changed_at = std::stod(run(fmt::format("bash {} leader-changed-at {}", CRM_CLUSTER_SH, CRM_CLUSTER_DIR)));
    }
    return r;
  }

  void report(const std::string& scenario, const pause_report& r) {
    auto rel = [&](double t) { return t > 0 ? fmt::format("{:+.2f} s", t - r.fault_at) : std::string("n/a"); };
    std::string line = fmt::format(
        "{}: writes paused {:.2f} s (last write {} / first write {} after the fault); HAProxy routed to a primary "
        "again at {} (node port {} -> {}); Patroni leader change at {}; resumed {:.2f} s after routing",
        scenario, r.first_write_after - r.last_write_before, rel(r.last_write_before), rel(r.first_write_after),
        rel(r.routed_at), r.old_port, r.new_port, r.leader_changed_at > 0 ? rel(r.leader_changed_at) : "none",
        r.first_write_after - r.routed_at);
    std::cout << "[ MEASURED ] " << line << "\n";
    std::ofstream(fs::path(CRM_CLUSTER_DIR) / "measurements.txt", std::ios::app) << line << "\n";
    RecordProperty("pause", line);
  }

  // Every acknowledged and every imported event exactly once; metrics and ledger agree with the rows.
  void expect_exactly_once(const std::string& acked, std::size_t acked_count, const std::vector<import_loop::run_result>& imports) {
    EXPECT_EQ(missing_acked(dsn_, acked), 0);
    EXPECT_EQ(rows_with(dsn_, acked), static_cast<long long>(acked_count)) << "an acknowledged event stored twice";
    long long imported = 0;
    for (const auto& r : imports) {
      EXPECT_EQ(r.status, 0) << "import seed " << r.seed << ":\n" << tail(r.err);
      if (r.status != 0) continue;
      imported += import_loop::records_per_file;
      EXPECT_EQ(q(dsn_, fmt::format("SELECT (SELECT count(DISTINCT provider_message_id) FROM communications"
                                    " WHERE provider_message_id LIKE 'm-{0}-%') + (SELECT count(DISTINCT message_id)"
                                    " FROM customer_touchpoints WHERE message_id LIKE 'tp-{0}-%')",
                                    r.seed)),
                import_loop::records_per_file)
          << "import seed " << r.seed;
    }
    EXPECT_GE(imports.size(), 1u);
    EXPECT_EQ(q(dsn_, "SELECT count(*) - count(DISTINCT provider_message_id) FROM communications"), 0);
    EXPECT_EQ(q(dsn_, "SELECT count(*) - count(DISTINCT event_id) FROM communications"), 0);
    EXPECT_EQ(q(dsn_, "SELECT count(*) - count(DISTINCT message_id) FROM customer_touchpoints"), 0);
    EXPECT_EQ(q(dsn_, "SELECT count(*) - count(DISTINCT touchpoint_id) FROM customer_touchpoints"), 0);
    EXPECT_EQ(q(dsn_, "SELECT count(*) FROM rejected_events"), 0);
    EXPECT_EQ(q(dsn_, metrics_mismatch_sql), 0);
    EXPECT_EQ(q(dsn_, metrics_missing_sql), 0);
    EXPECT_EQ(q(dsn_, "SELECT coalesce(sum(communications_inserted), 0) FROM ingest_batches"),
              q(dsn_, "SELECT count(*) FROM communications"));
    EXPECT_EQ(q(dsn_, "SELECT coalesce(sum(touchpoints_inserted), 0) FROM ingest_batches"),
              q(dsn_, "SELECT count(*) FROM customer_touchpoints"));
    // Nothing else got in: the stored events are exactly the acknowledged plus the imported ones.
    EXPECT_EQ(q(dsn_, "SELECT (SELECT count(*) FROM communications) + (SELECT count(*) FROM customer_touchpoints)"),
              static_cast<long long>(acked_count) + imported);
  }

  std::string metric_line(unsigned port, const std::string& name) {
    auto reply = crm_test::http_request(static_cast<unsigned short>(port), "GET", "/metrics");
    std::string out;
    std::istringstream in(reply.body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name, 0) == 0) out += line + "\n";
    }
    return out;
  }

  double metric_sum(unsigned port, const std::string& name) {
    double sum = 0;
    std::istringstream in(metric_line(port, name));
    std::string line;
    while (std::getline(in, line)) sum += std::stod(line.substr(line.rfind(' ') + 1));
    return sum;
  }

  // The common scenario: serve + import under load, `fault` at 3 s, load until `load_s`, then checks.
  // `late_imports` (optional) returns the results of imports the fault itself started.
  void run_scenario(const std::string& scenario, double load_s, bool leader_changes,
                    const std::function<void(double& fault_at)>& fault, int import_seed,
                    const std::function<std::vector<import_loop::run_result>()>& late_imports = {}) {
    auto srv = start_server(dir_, config_, "1");
    ASSERT_NE(srv.port, 0u);
    primary_probe probe(dsn_);
    auto load = start_load(dir_, srv.port, load_s, static_cast<unsigned>(import_seed), "1");
    import_loop imports(dir_, dsn_, import_seed);
    std::this_thread::sleep_for(3s);
    double fault_at = now_s();  // the fault may move it to the moment the database really went away
    fault(fault_at);
    ASSERT_EQ(load->wait_for(std::chrono::milliseconds(static_cast<long>(load_s * 1000) + 60000)), 0) << load->err();
    imports.stop();
    auto import_runs = imports.runs();
    if (late_imports) {
      for (auto& r : late_imports()) import_runs.push_back(std::move(r));
    }
    const auto out = load->out();
    EXPECT_EQ(json_number(out, "ok"), json_number(out, "scheduled")) << "serve acknowledges through the fault: " << out;
    std::size_t acked = 0;
    auto ids = acked_ids(dir_, acked);
    ASSERT_GT(acked, 0u);
    ASSERT_EQ(wait_until_stored(dsn_, ids, 60s), 0) << tail(srv.proc->err());
    // The writers' own account of the fault.
    const double retries = metric_sum(srv.port, "crm_ingest_writer_retries_total");
    const double reconnects = metric_sum(srv.port, "crm_ingest_writer_reconnects_total");
    const double without = metric_sum(srv.port, "crm_ingest_writer_seconds_without_primary_total");
    std::cout << "[ MEASURED ] " << scenario << ": serve writers: retries=" << retries << " reconnects=" << reconnects
              << " seconds_without_primary=" << without
              << " replayed=" << metric_sum(srv.port, "crm_ingest_writer_replayed_batches_total")
              << " in_doubt=" << metric_sum(srv.port, "crm_ingest_writer_in_doubt_commits_total") << "\n";
    srv.proc->signal(SIGTERM);
    ASSERT_EQ(srv.proc->wait_for(60s), 0) << tail(srv.proc->err());
    auto r = measure(fault_at, probe, leader_changes);
    report(scenario, r);
    EXPECT_GT(retries, 0) << "the fault did not reach the serve writers";
    EXPECT_GE(reconnects, 1);
    EXPECT_GT(r.first_write_after, r.routed_at - 0.5) << "no write after the primary came back";
    EXPECT_LE(r.first_write_after - r.routed_at, resume_bound_s) << "ingestion did not resume promptly after HAProxy routing";
    expect_exactly_once(ids, acked, import_runs);
  }

  cluster_dsns dsns_;
  std::string db_name_, dsn_;
  fs::path dir_, config_;
};

// Landing on a replica (here: HAProxy's replica port) is a reason to reconnect, never a place to write:
// the writer's pg_is_in_recovery() check and libpq's target_session_attrs=read-write both refuse it.
TEST_F(Failover, WriterRefusesASessionOnAReplica) {
  namespace pg = crm::sinks::postgres;
  const std::string replica = with_database(dsns_.replica, db_name_);
  try {
    pg::connect_primary(replica, "fault test");
    FAIL() << "connect_primary accepted a replica";
  } catch (const std::exception& e) {
    auto f = pg::classify(e);
    EXPECT_EQ(f.kind, pg::failure_kind::reconnect) << e.what();
    EXPECT_EQ(f.reason, "not_primary") << e.what();
  }
  try {
    pg::connect_primary(replica + "&target_session_attrs=read-write", "fault test");
    FAIL() << "libpq accepted a read-only session despite target_session_attrs=read-write";
  } catch (const std::exception& e) {
    EXPECT_EQ(pg::classify(e).kind, pg::failure_kind::reconnect) << e.what();
  }
  // Through the primary port both checks pass.
  EXPECT_NO_THROW(pg::connect_primary(dsn_ + "&target_session_attrs=read-write", "fault test"));
  // A writer pointed at replicas only keeps retrying, says so, and gives up after retry_for.
  struct counting : pg::writer_observer {
    std::atomic<int> failed{0};
    void attempt_failed(const pg::failure& f, bool) override {
      if (f.reason == "not_primary") ++failed;
    }
  };
  auto obs = std::make_shared<counting>();
  pg::writer_options o;
  o.dsn = replica;
  o.retry = pg::retry_policy::for_at_most(2s);
  o.observer = obs;
  pg::writer w(o);
  crm::transform::event_batch batch;
  crm::transform::rejection rej;
  rej.source = "fault test";
  rej.reason = "a record for the replica check";
  rej.raw = "{}";
  batch.rejections.push_back(rej);
  EXPECT_THROW(w.write(batch, {"fault test", "1"}), pg::write_error);
  EXPECT_GE(obs->failed.load(), 2);
  EXPECT_EQ(q(dsn_, "SELECT count(*) FROM rejected_events"), 0);
}

TEST_F(Failover, SwitchoverUnderLoad) {
  run_scenario("switchover", 10, true, [](double&) { cluster("switchover"); }, 101);
}

TEST_F(Failover, KillNineOfLeaderPostgresAndPatroniUnderLoad) {
  run_scenario("kill -9 leader", 20, true, [](double&) { cluster("failover"); }, 201);
}

TEST_F(Failover, HaproxyRestartUnderLoad) {
  run_scenario("HAProxy restart", 8, false, [](double&) { cluster("haproxy-restart"); }, 301);
}

TEST_F(Failover, DatabaseUnreachableFor30Seconds) {
  // Besides the import loop (whose running import waits inside its writers), one import starts while
  // the database is unreachable: it must wait at start, visibly, then import everything.
  constexpr int late_seed = 499;
  std::thread late;
  import_loop::run_result late_result{late_seed, -1, "", ""};
  auto start_late_import = [&] {
    late = std::thread([&] {
      auto file = dir_ / fmt::format("late-{}.ndjson", late_seed);
      run(fmt::format("{} --count {} --seed {} --duplicates 0 --invalid 0 --months 1 > {}", GEN_EVENTS_EXE,
                      import_loop::records_per_file, late_seed, file.string()));
      child c({CRM_INGEST_EXE, "import", "--dsn", dsn_, "--allow-superuser", "--retry-for", "120", "--no-progress", file.string()},
              dir_ / "late.out", dir_ / "late.err");
      auto st = c.wait_for(180s);
      late_result = {late_seed, st ? *st : -999, c.out(), c.err()};
    });
  };
  // Every node's Patroni and PostgreSQL stop (etcd and HAProxy stay): no server at all for 30 s.
  run_scenario(
      "database unreachable 30 s", 50, true,
      [&](double& fault_at) {
        cluster("db-stop");
        fault_at = now_s();
        std::this_thread::sleep_for(5s);
        start_late_import();
        std::this_thread::sleep_for(25s);
        cluster("db-start");
      },
      401,
      [&] {
        late.join();
        return std::vector<import_loop::run_result>{late_result};
      });
  if (late.joinable()) late.join();
  EXPECT_NE(late_result.err.find("Waiting for the database before importing"), std::string::npos)
      << "the import started during the outage did not say it was waiting:\n"
      << tail(late_result.err);
}

// A crash of crm-ingest itself while the database fails over: what serve acknowledged is in its log,
// and the restarted process writes it once the new primary is there.
TEST_F(Failover, KillNineOfServeDuringFailover) {
  auto srv = start_server(dir_, config_, "1");
  ASSERT_NE(srv.port, 0u);
  primary_probe probe(dsn_);
  auto load1 = start_load(dir_, srv.port, 6, 501, "1");
  import_loop imports(dir_, dsn_, 501);
  std::this_thread::sleep_for(3s);
  const double fault_at = now_s();
  std::thread switchover([] { cluster("switchover"); });
  std::this_thread::sleep_for(500ms);  // the old primary is going down
  srv.proc->signal(SIGKILL);
  ASSERT_EQ(srv.proc->wait_for(10s), -SIGKILL);
  switchover.join();
  ASSERT_TRUE(load1->wait_for(30s).has_value());
  auto again = start_server(dir_, config_, "2");
  ASSERT_NE(again.port, 0u);
  auto load2 = start_load(dir_, again.port, 5, 502, "2");
  ASSERT_EQ(load2->wait_for(60s), 0) << load2->err();
  imports.stop();
  EXPECT_EQ(json_number(load2->out(), "ok"), json_number(load2->out(), "scheduled")) << load2->out();
  std::size_t acked = 0;
  auto ids = acked_ids(dir_, acked);
  ASSERT_GT(acked, 0u);
  ASSERT_EQ(wait_until_stored(dsn_, ids, 60s), 0) << tail(again.proc->err());
  again.proc->signal(SIGTERM);
  ASSERT_EQ(again.proc->wait_for(60s), 0) << tail(again.proc->err());
  auto r = measure(fault_at, probe, true);
  report("kill -9 of serve during a switchover", r);
  EXPECT_LE(r.first_write_after - r.routed_at, resume_bound_s) << "ingestion did not resume promptly after HAProxy routing";
  // Requests in flight at the kill got no answer and may or may not be stored; every id stored is
  // stored once, every acknowledged one is there.
  EXPECT_EQ(missing_acked(dsn_, ids), 0);
  EXPECT_EQ(rows_with(dsn_, ids), static_cast<long long>(acked));
  auto runs = imports.runs();
  for (const auto& run_ : runs) EXPECT_EQ(run_.status, 0) << tail(run_.err);
  EXPECT_EQ(q(dsn_, "SELECT count(*) - count(DISTINCT provider_message_id) FROM communications"), 0);
  EXPECT_EQ(q(dsn_, "SELECT count(*) - count(DISTINCT event_id) FROM communications"), 0);
  EXPECT_EQ(q(dsn_, "SELECT count(*) - count(DISTINCT touchpoint_id) FROM customer_touchpoints"), 0);
  EXPECT_EQ(q(dsn_, metrics_mismatch_sql), 0);
  EXPECT_EQ(q(dsn_, metrics_missing_sql), 0);
  EXPECT_EQ(q(dsn_, "SELECT coalesce(sum(communications_inserted), 0) FROM ingest_batches"),
            q(dsn_, "SELECT count(*) FROM communications"));
  for (const auto& run_ : runs) {
    if (run_.status != 0) continue;
    EXPECT_EQ(q(dsn_, fmt::format("SELECT (SELECT count(*) FROM communications WHERE provider_message_id LIKE 'm-{0}-%')"
                                  " + (SELECT count(*) FROM customer_touchpoints WHERE message_id LIKE 'tp-{0}-%')",
                                  run_.seed)),
              import_loop::records_per_file);
  }
}

}  // namespace
