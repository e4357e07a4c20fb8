// Fault tests on the real cluster: three PostgreSQL 15 nodes under Patroni, etcd and HAProxy, started
// by deploy/cluster/cluster.sh from the production templates (ctest fixture `patroni_cluster`).
//
// Every scenario drives sustained load through `crm-ingest serve` (bench/http_load: unique events, an
// ack log of every id a 2xx acknowledged) and through back-to-back `crm-ingest import` runs of unique
// files (the crash scenarios also through `crm-ingest consume` of a Kafka topic, librdkafka's mock
// cluster), injects one fault, and then asserts: every acknowledged, imported or consumed event is in the
// database exactly once, no event is duplicated, communication_metrics equals a recount, the ledger agrees
// with the rows, and writing resumed within resume_bound_s (5 s) of HAProxy routing to a primary again. It
// prints the measured pause (last write before, first write after) next to the cluster's own leader change.
//
// Replication: the `Failover` tests run the cluster in synchronous replication (Patroni's
// synchronous_mode, the production template); `AsyncFailover` switches it to asynchronous replication,
// Patroni's default, and repeats its crash CRM_FAULT_ASYNC_ROUNDS times (default 2). The crash recipe
// (`cluster.sh failover DIR LAG_S`): the leader's WAL senders are frozen for the last LAG_S seconds
// (CRM_FAULT_LAG_S, default 0.3: a congested link), then its Patroni, postmaster and every PostgreSQL child
// are killed at once, as on a crashed host, so nothing they did not ship reaches a replica. Patroni then
// promotes a replica that lacks that tail: the tests set maximum_lag_on_failover to 64 MiB
// (CRM_FAULT_MAX_LAG) so that it does in every round. With production's 1 MiB it does only when its last
// published leader position predates the freeze; otherwise no replica qualifies, and the crashed node is
// started again after 25 s, as a host that reboots (and nothing is lost).
//
// The scenarios connect as a least-privilege login role (member of crm_ingest_writer, schemas/0003), as
// production does; the checks read as the database owner.
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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <functional>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "sinks/postgres/confirmer.h"
#include "sinks/postgres/connection.h"
#include "sinks/postgres/migrations.h"
#include "sinks/postgres/replication_status.h"
#include "sinks/postgres/writer.h"
#include "sinks/postgres/writer_pool.h"
#include "support/child_process.h"
#include "transform/normalize/normalize.h"
#include "support/http_client.h"
#include "support/run_command.h"
#include "support/serve_load.h"
#include "support/kafka_mock.h"

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

std::string run(const std::string& cmd, int* status = nullptr) { return crm_test::command_output(cmd, status); }

double env_number(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stod(v) : fallback;
}

// When serve, import and consume release a batch's position (postgres.confirm, import --confirm):
// `standbys` (the default: once it is safe on the cluster) or `commit` (at the primary's COMMIT, the
// behaviour before confirmation; CRM_FAULT_CONFIRM=commit measures what that loses in the same scenarios).
std::string confirm_mode() {
  const char* v = std::getenv("CRM_FAULT_CONFIRM");
  return v && *v ? std::string(v) : std::string("standbys");
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string last_line(const std::string& text) {
  auto t = trim(text);
  auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// deploy/cluster/cluster.sh COMMAND on the fixture's cluster ("failover 0.3" runs `failover DIR 0.3`);
// its output (stdout and stderr).
std::string cluster(const std::string& command) {
  const auto space = command.find(' ');
  const std::string verb = command.substr(0, space), args = space == std::string::npos ? "" : command.substr(space);
  return run(fmt::format("bash {} {} {}{} 2>&1", CRM_CLUSTER_SH, verb, CRM_CLUSTER_DIR, args));
}

using crm_test::acked_ids;
using crm_test::child;
using crm_test::json_number;
using crm_test::metrics_mismatch_sql;
using crm_test::metrics_missing_sql;
using crm_test::missing_acked;
using crm_test::rows_with;
using crm_test::start_server;
using crm_test::tail;
using crm_test::wait_until_stored;

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

// The same DSN as another user: scheme://user:password@host...
std::string with_user(const std::string& dsn, const std::string& user, const std::string& password) {
  auto scheme = dsn.find("://") + 3;
  auto at = dsn.find('@', scheme);
  return dsn.substr(0, scheme) + user + ":" + password + dsn.substr(at);
}

// A login role of its own for the replication-status tests, with or without pg_read_all_stats.
std::string status_reader_dsn(const cluster_dsns& dsns, const std::string& db, bool may_read_stats) {
  pqxx::connection admin(dsns.admin);
  pqxx::nontransaction tx(admin);
  tx.exec("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_status_reader') THEN"
          " CREATE ROLE crm_status_reader LOGIN PASSWORD 'local-status-reader'; END IF; END $$");
  tx.exec(may_read_stats ? "GRANT pg_read_all_stats TO crm_status_reader"
                         : "REVOKE pg_read_all_stats FROM crm_status_reader");
  return with_user(with_database(dsns.primary, db), "crm_status_reader", "local-status-reader");
}

// Commits a one-row transaction on `c` and reads the replication status right after, on the same session.
crm::sinks::postgres::replication_status commit_and_read_status(pqxx::connection& c) {
  {
    pqxx::work tx(c);
    tx.exec("CREATE TEMP TABLE IF NOT EXISTS crm_status_probe (v int)");
    tx.exec("INSERT INTO crm_status_probe VALUES (1)");
    tx.commit();
  }
  pqxx::nontransaction tx(c);
  return crm::sinks::postgres::read_replication_status(tx);
}

// `n` new communications (unique ids from `seed`), occurring now: a batch for the write path.
std::shared_ptr<crm::transform::event_batch> events_batch(std::uint32_t seed, std::uint32_t n) {
  auto b = std::make_shared<crm::transform::event_batch>();
  const auto now = crm::transform::now_us();
  for (std::uint32_t i = 0; i < n; ++i) {
    crm::transform::communication c;
    std::uint64_t hi = (std::uint64_t{seed} << 32) | i, lo = 0x5eed5eed00000000ULL | i;
    std::memcpy(c.event_id.data(), &hi, 8);
    std::memcpy(c.event_id.data() + 8, &lo, 8);
    c.event_id[6] = static_cast<std::uint8_t>((c.event_id[6] & 0x0F) | 0x40);
    c.event_id[8] = static_cast<std::uint8_t>((c.event_id[8] & 0x3F) | 0x80);
    c.occurred_at = now;
    c.received_at = now;
    c.lead_id = static_cast<std::int64_t>(i % 7 + 1);
    c.channel_ = crm::transform::channel::email;
    c.status = crm::transform::comm_status::delivered;
    c.provider = "fault";
    b->communications.push_back(c);
  }
  return b;
}

// What the write path reports that these tests look at.
struct confirm_observer : crm::sinks::postgres::writer_observer {
  std::atomic<int> rewritten{0};
  std::mutex mu;
  std::string mode;
  void batch_rewritten() override { ++rewritten; }
  void replication_mode(std::string_view m) override {
    std::lock_guard lock(mu);
    mode = m;
  }
  std::string last_mode() {
    std::lock_guard lock(mu);
    return mode;
  }
};

crm::sinks::postgres::pool_options write_path(const std::string& dsn, std::shared_ptr<confirm_observer> obs) {
  crm::sinks::postgres::pool_options o;
  o.writer.dsn = dsn;
  o.writer.retry = crm::sinks::postgres::retry_policy::for_ever();
  o.writer.observer = std::move(obs);
  o.writers = 2;
  o.max_in_flight = 4;
  return o;
}

// The least-privilege login role the scenarios' processes connect as (cluster-wide, made once).
constexpr const char* writer_login = "crm_ingest_fault";
constexpr const char* writer_password = "local-fault-writer";

long long q(const std::string& dsn, const std::string& sql) { return crm_test::count(dsn, sql); }

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
      child c({CRM_INGEST_EXE, "import", "--dsn", dsn_, "--allow-superuser", "--retry-for", "120", "--no-progress",
               "--confirm", confirm_mode(), file.string()},
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

// A Kafka topic fed at `rate` unique events per second by a producer of the test's own, and one
// `crm-ingest consume` writing it into the database (librdkafka's mock cluster, crm-kafka-mock).
// Threads: the producer thread owns the producer; produced() and the rest belong to the test's thread.
class kafka_feed {
 public:
  static constexpr int partitions = 8;

  kafka_feed(const fs::path& dir, const std::string& dsn, int seed, int rate) : seed_(seed), rate_(rate) {
    if (mock_.command(fmt::format("topic events {}", partitions)) != "ok") throw std::runtime_error("topic");
    config_ = dir / "consume.toml";
    std::ofstream(config_) << "[postgres]\ndsn = \"" << dsn << "\"\nbatch_rows = 500\nlinger_ms = 20\nconfirm = \""
                           << confirm_mode() << "\"\n\n[kafka]\nbrokers = \""
                           << mock_.bootstrap() << "\"\ngroup = \"fault\"\ntopics = \"events=canonical\"\n"
                           << "session_timeout_ms = 6000\n";
    consumer_ = std::make_unique<child>(std::vector<std::string>{CRM_INGEST_EXE, "consume", "--config", config_.string()},
                                        dir / "consume.out", dir / "consume.err");
    producer_ = std::make_unique<crm_test::test_producer>(mock_.bootstrap());
    thread_ = std::thread([this] { produce(); });
  }
  ~kafka_feed() { stop_producing(); }

  // The id prefix of this feed's events (provider_message_id).
  std::string prefix() const { return fmt::format("kf-{}-", seed_); }

  // Stops producing and waits for every delivery report; returns the number of events produced.
  long long stop_producing() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
      producer_->flush();
    }
    return produced_;
  }

  // Waits until the consumer committed the end offset of every partition (everything consumed and
  // written, as far as the consumer knows).
  bool wait_consumed(std::chrono::seconds timeout) {
    const auto end = producer_->end_offsets("events", partitions);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (mock_.committed("fault", "events", partitions) == end) return true;
      if (!consumer_->running()) return false;
      std::this_thread::sleep_for(500ms);
    }
    return false;
  }

  // SIGTERM; the exit status (-999 when it did not stop).
  int stop_consumer() {
    consumer_->signal(SIGTERM);
    auto st = consumer_->wait_for(60s);
    return st ? *st : -999;
  }
  std::string consumer_err() const { return consumer_->err(); }

 private:
  void produce() {
    // Paced in 20 ms ticks; occurred_at is now, so the month's partition exists.
    long long n = 0;
    auto next = std::chrono::steady_clock::now();
    while (!stop_) {
      next += 20ms;
      const long long due = n + std::max(1, rate_ / 50);
      const auto t = std::time(nullptr);
      std::tm tm{};
      gmtime_r(&t, &tm);
      char when[32];
      std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
      for (; n < due; ++n) {
        producer_->produce(
            "events", std::to_string(n % 997),
            fmt::format(R"({{"kind":"communication","occurred_at":"{}","lead_id":{},"channel":"email","status":"sent",)"
                        R"("provider":"sendgrid","provider_message_id":"{}{}","email":"lead{}@example.com"}})",
                        when, 5000 + n % 997, prefix(), n, n % 997));
      }
      produced_ = n;
      std::this_thread::sleep_until(next);
    }
  }

  crm_test::kafka_mock mock_{1};
  int seed_, rate_;
  fs::path config_;
  std::unique_ptr<child> consumer_;
  std::unique_ptr<crm_test::test_producer> producer_;
  std::atomic<bool> stop_{false};
  std::atomic<long long> produced_{0};
  std::thread thread_;
};

std::unique_ptr<child> start_load(const fs::path& dir, unsigned port, double seconds, unsigned seed,
                                  const std::string& tag, int rate = 50) {
  // `rate` requests/s x 20 events (default 1000 events/s), open loop.
  crm_test::load_args a;
  a.rate = rate;
  a.duration_s = seconds;
  a.events_per_request = 20;
  a.connections = 8;
  a.seed = seed;
  a.timeout_s = 5;
  a.drain_timeout_s = 5;
  return crm_test::start_load(dir, port, a, tag);
}

// The scenario's pause: the longest gap between consecutive committed batches (ledger) after the
// fault, and when HAProxy routed to a primary again (first good probe after the last failed one).
struct pause_report {
  double fault_at = 0;
  double last_write_before = 0, first_write_after = 0;
  double routed_at = 0;          // HAProxy reached a primary again
  double leader_changed_at = 0;  // Patroni's history (0: no leader change)
  int old_port = 0, new_port = 0;
};

// What a scenario lost: events acknowledged (HTTP 2xx), imported (exit 0) or consumed (offset committed)
// and not stored, and rows stored more than once.
struct loss_report {
  long long acked = 0, acked_lost = 0;
  long long imported = 0, imported_lost = 0;
  long long consumed = 0, consumed_lost = 0;
  long long duplicates = 0;
  long long lost() const { return acked_lost + imported_lost + consumed_lost; }
  std::string describe() const {
    return fmt::format("lost {} of {} acknowledged, {} of {} imported, {} of {} consumed; {} duplicated", acked_lost,
                       acked, imported_lost, imported, consumed_lost, consumed, duplicates);
  }
};

// What one scenario drives: load, duration, and the sources besides serve and import.
struct scenario_options {
  double load_s = 10;
  bool leader_changes = true;
  int seed = 0;
  int http_rate = 50;  // requests/s of 20 events
  int kafka_rate = 0;  // events/s through a Kafka topic and `crm-ingest consume` (0: none)
  // Results of imports the fault itself started (optional).
  std::function<std::vector<import_loop::run_result>()> late_imports;
};

// How a crash of the leader went: who was crashed, who took over, after how long.
struct crash_report {
  std::string old_leader, new_leader;
  bool promoted = false;
  double seconds = 0;  // from the crash until a new leader (or until the old one was started again)
  std::string before;  // WAL rate and replica lag just before
};

class Failover : public ::testing::Test {
 protected:
  // The replication mode the fixture's tests run in.
  virtual std::string replication() const { return "sync"; }
  // Patroni's maximum_lag_on_failover for the tests: 64 MiB (CRM_FAULT_MAX_LAG overrides), so that every
  // crash of a lagging leader promotes a replica, the case to prove. With production's 1 MiB
  // (deploy/templates/patroni.yml) Patroni promotes only when its last published leader position predates
  // the freeze (about half the rounds here) and otherwise waits for the crashed node.
  std::string max_lag() const { return fmt::format("{:.0f}", env_number("CRM_FAULT_MAX_LAG", 64 << 20)); }

  void SetUp() override {
    // Whatever the previous scenario left (a killed node, HAProxy down) comes back first.
    cluster("heal");
    cluster("replication " + replication() + " " + max_lag());
    dsns_ = read_dsns();
    {
      // The writer role of schemas/0003 and a login in it (cluster-wide; made by an administrator, as the
      // migrating role may not create roles).
      pqxx::connection admin(dsns_.admin);
      pqxx::nontransaction tx(admin);
      tx.exec(fmt::format(
          "DO $$ BEGIN"
          " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN"
          "   CREATE ROLE crm_ingest_writer NOLOGIN; END IF;"
          " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{0}') THEN"
          "   CREATE ROLE {0} LOGIN PASSWORD '{1}' IN ROLE crm_ingest_writer; END IF;"
          " END $$",
          writer_login, writer_password));
      // What schemas/0004 grants when the migrating role may (crm may not: an administrator does it).
      tx.exec("GRANT pg_read_all_stats TO crm_ingest_writer");
    }
    prepare("");
  }

  // A fresh database (owned by crm, every migration applied) and a fresh directory for a scenario;
  // `round` tells repetitions of one test apart.
  void prepare(const std::string& round) {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    const std::string suite = ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name();
    db_name_ = "fault_" + (suite == "Failover" ? name : suite + "_" + name) + (round.empty() ? "" : "_" + round);
    std::transform(db_name_.begin(), db_name_.end(), db_name_.begin(), ::tolower);
    {
      pqxx::connection admin(dsns_.admin);
      pqxx::nontransaction tx(admin);
      tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(db_name_) + " WITH (FORCE)");
      tx.exec("CREATE DATABASE " + tx.quote_name(db_name_) + " OWNER crm");
    }
    owner_dsn_ = with_database(dsns_.primary, db_name_);
    dsn_ = with_user(owner_dsn_, writer_login, writer_password);
    {
      pqxx::connection c(owner_dsn_);
      crm::sinks::postgres::migrate(c, crm::sinks::postgres::embedded_migrations(), {1, 2});
    }
    dir_ = fs::temp_directory_path() / ("crm-fault-" + db_name_.substr(6));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_ = dir_ / "serve.toml";
    std::ofstream f(config_);
    f << "[http]\nlisten = \"127.0.0.1:0\"\n\n[postgres]\ndsn = \"" << dsn_ << "\"\nlinger_ms = 20\nconfirm = \""
      << confirm_mode() << "\"\n\n[log]\ndir = \""
      << (dir_ / "log").string() << "\"\n";
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cout << "[   INFO   ] cluster state:\n" << run("bash " CRM_CLUSTER_SH " status " CRM_CLUSTER_DIR " 2>&1 || true");
      std::cout << "[   INFO   ] files kept in " << dir_ << "\n";
    }
  }

  void record(const std::string& line) {
    std::cout << "[ MEASURED ] " << line << "\n";
    std::ofstream(fs::path(CRM_CLUSTER_DIR) / "measurements.txt", std::ios::app) << line << "\n";
  }

  // The crash of a lagging leader (cluster.sh failover DIR LAG_S), then the wait for a promotion: a
  // leader other than the crashed one within 25 s (the leader key's ttl is 10 s). When no replica
  // qualifies (maximum_lag_on_failover), the crashed node is started again, as a host that reboots.
  crash_report crash_lagging_leader(double& fault_at) {
    crash_report c;
    const double lag_s = env_number("CRM_FAULT_LAG_S", 0.3);
    try {
      // The WAL rate of the load and how far the replicas are behind just before the crash.
      pqxx::connection admin(dsns_.admin);
      pqxx::nontransaction tx(admin);
      const auto before = tx.exec("SELECT pg_current_wal_lsn()::text")[0][0].as<std::string>();
      std::this_thread::sleep_for(1s);
      const auto rate = tx.exec_params("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", before)[0][0].as<double>();
      std::string behind;
      for (const auto& row : tx.exec("SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)"
                                     " FROM pg_stat_replication ORDER BY 1")) {
        behind += fmt::format(" {} {:.0f} kB", row[0].c_str(), row[1].as<double>(0) / 1024);
      }
      c.before = fmt::format("WAL {:.1f} MB/s, replicas behind by{}", rate / 1e6, behind);
    } catch (const std::exception& e) {
      c.before = std::string("no WAL figures: ") + e.what();
    }
    const auto out = cluster(fmt::format("failover {:.2f}", lag_s));
    fault_at = now_s();
    c.old_leader = last_line(out);
    // cluster.sh logs when it froze the WAL senders and when it crashed the host ("... at HH:MM:SS.N").
    static const std::regex at(R"(at ([0-9]{2}):([0-9]{2}):([0-9.]+))");
    std::vector<double> times;
    for (std::sregex_iterator i(out.begin(), out.end(), at), end; i != end; ++i) {
      times.push_back(std::stod((*i)[1]) * 3600 + std::stod((*i)[2]) * 60 + std::stod((*i)[3]));
    }
    if (times.size() >= 2) c.before += fmt::format("; WAL senders frozen {:.2f} s before the crash", times[1] - times[0]);
    const auto deadline = std::chrono::steady_clock::now() + 25s;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      auto l = trim(run(fmt::format("bash {} leader {} 2>/dev/null", CRM_CLUSTER_SH, CRM_CLUSTER_DIR), &st));
      if (st == 0 && !l.empty() && l != c.old_leader) {
        c.new_leader = l;
        c.promoted = true;
        break;
      }
      std::this_thread::sleep_for(250ms);
    }
    if (!c.promoted) {
      cluster("start-node " + c.old_leader);
      c.new_leader = c.old_leader;
    }
    c.seconds = now_s() - fault_at;
    return c;
  }

  // From the ledger and the probes: the pause around the fault injected at `fault_at`.
  pause_report measure(double fault_at, const primary_probe& probe, bool leader_changes) {
    pause_report r;
    r.fault_at = fault_at;
    pqxx::connection c(owner_dsn_);
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
    record(line);
    RecordProperty("pause", line);
  }

  // Every acknowledged, imported and consumed event exactly once; metrics and ledger agree with the rows.
  // Returns what was lost or doubled (for the report) besides asserting that nothing was.
  loss_report expect_exactly_once(const std::string& acked, std::size_t acked_count,
                                  const std::vector<import_loop::run_result>& imports,
                                  const std::string& kafka_prefix = "", long long kafka_produced = 0) {
    const std::string& db = owner_dsn_;
    loss_report loss;
    loss.acked = static_cast<long long>(acked_count);
    loss.acked_lost = missing_acked(db, acked);
    EXPECT_EQ(loss.acked_lost, 0) << "acknowledged events missing";
    EXPECT_EQ(rows_with(db, acked) + loss.acked_lost, static_cast<long long>(acked_count))
        << "an acknowledged event stored twice";
    for (const auto& r : imports) {
      EXPECT_EQ(r.status, 0) << "import seed " << r.seed << ":\n" << tail(r.err);
      if (r.status != 0) continue;
      loss.imported += import_loop::records_per_file;
      const long long stored = q(db, fmt::format("SELECT (SELECT count(DISTINCT provider_message_id) FROM communications"
                                                 " WHERE provider_message_id LIKE 'm-{0}-%') + (SELECT count(DISTINCT"
                                                 " message_id) FROM customer_touchpoints WHERE message_id LIKE 'tp-{0}-%')",
                                                 r.seed));
      EXPECT_EQ(stored, import_loop::records_per_file) << "import seed " << r.seed << " reported success";
      loss.imported_lost += import_loop::records_per_file - stored;
    }
    EXPECT_GE(imports.size(), 1u);
    if (!kafka_prefix.empty()) {
      loss.consumed = kafka_produced;
      const long long stored = q(db, fmt::format("SELECT count(DISTINCT provider_message_id) FROM communications"
                                                 " WHERE provider_message_id LIKE '{}%'",
                                                 kafka_prefix));
      loss.consumed_lost = kafka_produced - stored;
      EXPECT_EQ(stored, kafka_produced) << "events consumed from Kafka (offsets committed) missing";
    }
    loss.duplicates = q(db, "SELECT (SELECT count(*) - count(DISTINCT provider_message_id) FROM communications)"
                            " + (SELECT count(*) - count(DISTINCT message_id) FROM customer_touchpoints)");
    EXPECT_EQ(loss.duplicates, 0);
    crm_test::expect_stored_exactly_once(db);
    // Nothing else got in: the stored events are exactly the acknowledged, imported and consumed ones.
    EXPECT_EQ(q(db, "SELECT (SELECT count(*) FROM communications) + (SELECT count(*) FROM customer_touchpoints)"),
              loss.acked + loss.imported + loss.consumed - loss.lost() + loss.duplicates);
    return loss;
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

  // Until every acknowledged id is stored, or serve's log is drained (no durable bytes after its
  // checkpoint, twice in a row a second apart: what is missing then stays missing). Returns the missing.
  long long wait_drained(unsigned port, const std::string& ids, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int drained = 0;
    long long missing = -1;
    do {
      try {
        missing = missing_acked(owner_dsn_, ids);
        if (missing == 0) return 0;
        drained = metric_sum(port, "crm_ingest_log_backlog_bytes") == 0 ? drained + 1 : 0;
        if (drained >= 2) return missing;
      } catch (const std::exception&) {
        drained = 0;
      }
      std::this_thread::sleep_for(1s);
    } while (std::chrono::steady_clock::now() < deadline);
    return missing;
  }

  // The common scenario: serve + import (+ consume) under load, `fault` at 3 s, load until `load_s`,
  // then the checks. Returns what was lost.
  loss_report run_scenario(const std::string& scenario, const scenario_options& o,
                           const std::function<void(double& fault_at)>& fault) {
    loss_report loss;
    auto srv = start_server(dir_, config_, "1");
    if (srv.port == 0) {
      ADD_FAILURE() << "serve did not start";
      return loss;
    }
    primary_probe probe(dsn_);
    std::unique_ptr<kafka_feed> kafka;
    if (o.kafka_rate > 0) kafka = std::make_unique<kafka_feed>(dir_, dsn_, o.seed, o.kafka_rate);
    auto load = start_load(dir_, srv.port, o.load_s, static_cast<unsigned>(o.seed), "1", o.http_rate);
    import_loop imports(dir_, dsn_, o.seed);
    std::this_thread::sleep_for(3s);
    double fault_at = now_s();  // the fault may move it to the moment the database really went away
    fault(fault_at);
    const auto load_done = load->wait_for(std::chrono::milliseconds(static_cast<long>(o.load_s * 1000) + 60000));
    EXPECT_EQ(load_done, 0) << load->err();
    imports.stop();
    long long produced = 0;
    if (kafka) produced = kafka->stop_producing();
    auto import_runs = imports.runs();
    if (o.late_imports) {
      for (auto& r : o.late_imports()) import_runs.push_back(std::move(r));
    }
    const auto out = load->out();
    EXPECT_EQ(json_number(out, "ok"), json_number(out, "scheduled")) << "serve acknowledges through the fault: " << out;
    std::size_t acked = 0;
    auto ids = acked_ids(dir_, acked);
    EXPECT_GT(acked, 0u);
    EXPECT_EQ(wait_drained(srv.port, ids, 90s), 0) << tail(srv.proc->err());
    if (kafka) {
      EXPECT_TRUE(kafka->wait_consumed(90s)) << "the consumer did not commit every partition's end\n"
                                             << tail(kafka->consumer_err());
      EXPECT_EQ(kafka->stop_consumer(), 0) << tail(kafka->consumer_err());
    }
    // The writers' own account of the fault.
    const double retries = metric_sum(srv.port, "crm_ingest_writer_retries_total");
    const double reconnects = metric_sum(srv.port, "crm_ingest_writer_reconnects_total");
    const double without = metric_sum(srv.port, "crm_ingest_writer_seconds_without_primary_total");
    const double confirmed = metric_sum(srv.port, "crm_ingest_writer_confirm_seconds_count");
    record(fmt::format("{}: serve writers: retries={} reconnects={} seconds_without_primary={} replayed={} in_doubt={} "
                       "rewritten={} batches_confirmed={} confirm_mean_ms={:.2f}",
                       scenario, retries, reconnects, without,
                       metric_sum(srv.port, "crm_ingest_writer_replayed_batches_total"),
                       metric_sum(srv.port, "crm_ingest_writer_in_doubt_commits_total"),
                       metric_sum(srv.port, "crm_ingest_writer_rewritten_batches_total"), confirmed,
                       confirmed > 0 ? 1000 * metric_sum(srv.port, "crm_ingest_writer_confirm_seconds_sum") / confirmed : 0));
    srv.proc->signal(SIGTERM);
    EXPECT_EQ(srv.proc->wait_for(60s), 0) << tail(srv.proc->err());
    auto r = measure(fault_at, probe, o.leader_changes);
    report(scenario, r);
    EXPECT_GT(retries, 0) << "the fault did not reach the serve writers";
    EXPECT_GE(reconnects, 1);
    EXPECT_GT(r.first_write_after, r.routed_at - 0.5) << "no write after the primary came back";
    EXPECT_LE(r.first_write_after - r.routed_at, resume_bound_s) << "ingestion did not resume promptly after HAProxy routing";
    loss = expect_exactly_once(ids, acked, import_runs, kafka ? kafka->prefix() : "", produced);
    record(scenario + ": " + loss.describe());
    return loss;
  }

  // serve under HTTP load + import + consume; the leader's WAL senders frozen for its last moments, then
  // its host crashes (crash_lagging_leader). `rounds` times, each in a fresh database, with a summary of
  // how many rounds promoted a replica and how many lost events.
  void crash_of_lagging_leader(int rounds, int first_seed) {
    int promoted = 0, losing = 0;
    long long lost = 0, total = 0;
    for (int round = 1; round <= rounds; ++round) {
      if (round > 1) {
        cluster("heal");
        prepare(fmt::format("r{}", round));
      }
      scenario_options o;
      o.load_s = 14;
      o.seed = first_seed + round;
      o.http_rate = 100;
      o.kafka_rate = 1000;
      crash_report crash;
      const auto name = fmt::format("{} replication, crash of a lagging leader, release at {}, round {}/{}", replication(),
                                  confirm_mode() == "commit" ? "COMMIT" : "confirmation", round, rounds);
      auto loss = run_scenario(name, o, [&](double& fault_at) { crash = crash_lagging_leader(fault_at); });
      record(fmt::format("{}: {}; crashed {}; {} after {:.1f} s", name, crash.before, crash.old_leader,
                         crash.promoted ? "Patroni promoted " + crash.new_leader
                                        : std::string("no replica qualified (maximum_lag_on_failover); restarted it"),
                         crash.seconds));
      total += loss.acked + loss.imported + loss.consumed;
      lost += loss.lost();
      losing += loss.lost() > 0 ? 1 : 0;
      promoted += crash.promoted ? 1 : 0;
    }
    record(fmt::format("{} replication, crash of a lagging leader, release at {}: {} of {} rounds promoted a replica; {} "
                       "rounds lost events ({} of {} events)",
                       replication(), confirm_mode() == "commit" ? "COMMIT" : "confirmation", promoted, rounds, losing,
                       lost, total));
  }

  cluster_dsns dsns_;
  std::string db_name_, dsn_, owner_dsn_;
  fs::path dir_, config_;
};

// The same scenarios with asynchronous replication (Patroni's default, synchronous_mode off).
class AsyncFailover : public Failover {
 protected:
  std::string replication() const override { return "async"; }
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

// The status the write path confirms by, read on the Patroni cluster in synchronous replication: a role
// without pg_read_all_stats sees the standbys but not their positions (and so confirms nothing); with it,
// the synchronous standby is seen and a COMMIT that returned is confirmed by itself (nothing waits twice).
TEST_F(Failover, ReplicationStatusInSynchronousMode) {
  namespace pg = crm::sinks::postgres;
  {
    pqxx::connection c(status_reader_dsn(dsns_, db_name_, false));
    const auto s = commit_and_read_status(c);
    EXPECT_EQ(s.standbys, 0) << pg::describe(s, {});
    EXPECT_EQ(s.hidden, 2) << pg::describe(s, {});
    EXPECT_EQ(pg::confirmation_at_commit(s, {}), pg::verdict::blind) << pg::describe(s, {});
  }
  pqxx::connection c(status_reader_dsn(dsns_, db_name_, true));
  const auto s = commit_and_read_status(c);
  std::cout << "[ MEASURED ] " << pg::describe(s, {}) << "\n";
  EXPECT_EQ(s.hidden, 0);
  EXPECT_EQ(s.standbys, 2);
  EXPECT_EQ(s.synchronous, 1);
  EXPECT_EQ(s.slots, 2);  // Patroni's use_slots
  EXPECT_FALSE(s.synchronous_standby_names.empty());
  EXPECT_EQ(pg::mode_of(s, {}), pg::replication_mode::synchronous);
  EXPECT_EQ(pg::confirmation_at_commit(s, {}), pg::verdict::confirmed) << pg::describe(s, {});
  EXPECT_TRUE(s.sync_flushed.has_value());
}

// The write path in synchronous replication: a batch completes at its COMMIT (the synchronous standby has
// it); nothing waits a second time for the standbys.
TEST_F(Failover, TheWritePathConfirmsAtCommitInSynchronousMode) {
  namespace pg = crm::sinks::postgres;
  auto obs = std::make_shared<confirm_observer>();
  pg::writer_pool pool(write_path(dsn_, obs));
  for (std::uint32_t k = 0; k < 5; ++k) pool.submit(events_batch(900 + k, 200), {"fault test", "sync"}, k);
  for (std::uint32_t k = 0; k < 5; ++k) {
    auto c = pool.next(30s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->status, pg::batch_status::written) << c->error;
    EXPECT_EQ(c->confirm_seconds, 0) << "a batch waited for the standbys after a synchronous COMMIT";
  }
  EXPECT_EQ(obs->last_mode(), "synchronous");
  EXPECT_EQ(q(owner_dsn_, "SELECT count(*) FROM communications"), 1000);
}

TEST_F(Failover, SwitchoverUnderLoad) {
  scenario_options o;
  o.load_s = 10;
  o.seed = 101;
  run_scenario("switchover", o, [](double&) { cluster("switchover"); });
}

// Synchronous replication: the crash of a lagging leader (serve + import + consume) loses nothing,
// because a COMMIT returned only once the synchronous standby had it, and Patroni promotes only it.
TEST_F(Failover, KillNineOfLeaderPostgresAndPatroniUnderLoad) { crash_of_lagging_leader(1, 200); }

// Synchronous mode, the synchronous standby crashes first: Patroni names the other replica synchronous
// (or, with none left to name, drops to asynchronous replication, as non-strict synchronous_mode does);
// then the leader's host crashes under load.
TEST_F(Failover, SyncStandbyKilledThenLeaderKilledUnderLoad) {
  auto sync_standby = [] {
    int st = 0;
    return trim(run(fmt::format("bash {} sync-standby {} 2>/dev/null", CRM_CLUSTER_SH, CRM_CLUSTER_DIR), &st));
  };
  scenario_options o;
  o.load_s = 20;
  o.seed = 700;
  o.http_rate = 100;
  o.kafka_rate = 1000;
  std::string standby, next;
  double reacted_s = -1;
  crash_report crash;
  run_scenario("sync standby crashed, then the leader", o, [&](double& fault_at) {
    standby = sync_standby();
    ASSERT_FALSE(standby.empty()) << "no synchronous standby to crash";
    cluster("crash " + standby);
    const double t0 = now_s();
    // Until Patroni has reacted (it first drops the crashed standby from its /sync key, then names
    // another one once that one has caught up), for at most 10 s: another synchronous standby, or none.
    for (int i = 0; i < 40; ++i) {
      next = sync_standby();
      if (next != standby && reacted_s < 0) reacted_s = now_s() - t0;
      if (next != standby && !next.empty()) break;
      std::this_thread::sleep_for(250ms);
    }
    std::this_thread::sleep_for(1s);  // load under the new replication state
    crash = crash_lagging_leader(fault_at);
  });
  record(fmt::format("sync standby crashed, then the leader: crashed standby {}; Patroni dropped it after {:.1f} s, "
                     "synchronous standby then: {}; {}; crashed leader {}; {} after {:.1f} s",
                     standby, reacted_s, next.empty() ? std::string("none (asynchronous)") : next, crash.before,
                     crash.old_leader,
                     crash.promoted ? "promoted " + crash.new_leader : std::string("no promotion; restarted it"),
                     crash.seconds));
  EXPECT_GE(reacted_s, 0) << "Patroni kept the crashed synchronous standby";
}

TEST_F(Failover, HaproxyRestartUnderLoad) {
  scenario_options o;
  o.load_s = 8;
  o.leader_changes = false;
  o.seed = 301;
  run_scenario("HAProxy restart", o, [](double&) { cluster("haproxy-restart"); });
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
  scenario_options o;
  o.load_s = 50;
  o.seed = 401;
  o.late_imports = [&] {
    late.join();
    return std::vector<import_loop::run_result>{late_result};
  };
  run_scenario("database unreachable 30 s", o, [&](double& fault_at) {
    cluster("db-stop");
    fault_at = now_s();
    std::this_thread::sleep_for(5s);
    start_late_import();
    std::this_thread::sleep_for(25s);
    cluster("db-start");
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
  ASSERT_EQ(wait_until_stored(owner_dsn_, ids, 60s), 0) << tail(again.proc->err());
  again.proc->signal(SIGTERM);
  ASSERT_EQ(again.proc->wait_for(60s), 0) << tail(again.proc->err());
  auto r = measure(fault_at, probe, true);
  report("kill -9 of serve during a switchover", r);
  EXPECT_LE(r.first_write_after - r.routed_at, resume_bound_s) << "ingestion did not resume promptly after HAProxy routing";
  // Requests in flight at the kill got no answer and may or may not be stored; every id stored is
  // stored once, every acknowledged one is there.
  EXPECT_EQ(missing_acked(owner_dsn_, ids), 0);
  EXPECT_EQ(rows_with(owner_dsn_, ids), static_cast<long long>(acked));
  auto runs = imports.runs();
  for (const auto& run_ : runs) EXPECT_EQ(run_.status, 0) << tail(run_.err);
  EXPECT_EQ(q(owner_dsn_, "SELECT count(*) - count(DISTINCT provider_message_id) FROM communications"), 0);
  EXPECT_EQ(q(owner_dsn_, "SELECT count(*) - count(DISTINCT event_id) FROM communications"), 0);
  EXPECT_EQ(q(owner_dsn_, "SELECT count(*) - count(DISTINCT touchpoint_id) FROM customer_touchpoints"), 0);
  EXPECT_EQ(q(owner_dsn_, metrics_mismatch_sql), 0);
  EXPECT_EQ(q(owner_dsn_, metrics_missing_sql), 0);
  EXPECT_EQ(q(owner_dsn_, "SELECT coalesce(sum(communications_inserted), 0) FROM ingest_batches"),
            q(owner_dsn_, "SELECT count(*) FROM communications"));
  for (const auto& run_ : runs) {
    if (run_.status != 0) continue;
    EXPECT_EQ(q(owner_dsn_, fmt::format("SELECT (SELECT count(*) FROM communications WHERE provider_message_id LIKE 'm-{0}-%')"
                                  " + (SELECT count(*) FROM customer_touchpoints WHERE message_id LIKE 'tp-{0}-%')",
                                  run_.seed)),
              import_loop::records_per_file);
  }
}

// The write path under asynchronous replication: a committed batch completes (its source may release its
// position) only once the standbys have flushed it; with their WAL receivers stopped it stays pending, its
// rows already committed on the primary.
TEST_F(AsyncFailover, TheWritePathHoldsABatchWhileTheStandbysLag) {
  namespace pg = crm::sinks::postgres;
  auto obs = std::make_shared<confirm_observer>();
  pg::writer_pool pool(write_path(dsn_, obs));
  pool.submit(events_batch(950, 100), {"fault test", "before"}, 1);
  auto c = pool.next(30s);
  ASSERT_TRUE(c);
  EXPECT_EQ(obs->last_mode(), "asynchronous");
  cluster("pause-receivers");
  pool.submit(events_batch(951, 100), {"fault test", "while the standbys lag"}, 2);
  for (int i = 0; i < 100 && q(owner_dsn_, "SELECT count(*) FROM communications") < 200; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(q(owner_dsn_, "SELECT count(*) FROM communications"), 200) << "not committed on the primary";
  EXPECT_FALSE(pool.next(1500ms)) << "released although no standby has it";
  EXPECT_EQ(pool.unconfirmed().batches, 1u);
  cluster("resume-receivers");
  c = pool.next(30s);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->token, 2u);
  EXPECT_GT(c->confirm_seconds, 1.0);
  record(fmt::format("async replication: the write path released a batch {:.2f} s after its commit (WAL receivers "
                     "stopped for about 1.5 s)",
                     c->confirm_seconds));
  // The confirmation's latency on the healthy cluster: 21 batches one after the other.
  std::vector<double> waits;
  for (std::uint32_t k = 0; k < 21; ++k) {
    pool.submit(events_batch(970 + k, 100), {"fault test", "healthy"}, 10 + k);
    auto h = pool.next(30s);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, pg::batch_status::written) << h->error;
    waits.push_back(h->confirm_seconds);
  }
  std::sort(waits.begin(), waits.end());
  record(fmt::format("async replication, healthy cluster: a batch is confirmed {:.1f} ms after its commit (median of "
                     "{}; max {:.1f} ms)",
                     1000 * waits[waits.size() / 2], waits.size(), 1000 * waits.back()));
}

// The corner of issue 15 through the write path: a batch committed while the leader's WAL senders were
// frozen, then the leader's host crashed; the promoted replica lacks it. The batch completes only after
// the write path found it missing from the new primary's ledger and wrote it again: stored once, counted
// once.
TEST_F(AsyncFailover, TheWritePathRewritesWhatThePromotedReplicaLacks) {
  namespace pg = crm::sinks::postgres;
  auto obs = std::make_shared<confirm_observer>();
  pg::writer_pool pool(write_path(dsn_, obs));
  pool.submit(events_batch(960, 300), {"fault test", "before"}, 1);
  ASSERT_TRUE(pool.next(30s));
  cluster("freeze-senders");
  pool.submit(events_batch(961, 300), {"fault test", "during the freeze"}, 2);
  for (int i = 0; i < 100 && q(owner_dsn_, "SELECT count(*) FROM communications") < 600; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(q(owner_dsn_, "SELECT count(*) FROM communications"), 600) << "not committed on the old primary";
  const std::string old_leader = last_line(cluster("failover"));
  const double crashed_at = now_s();
  auto c = pool.next(90s);
  ASSERT_TRUE(c) << "the batch never completed";
  EXPECT_EQ(c->token, 2u);
  EXPECT_EQ(c->status, pg::batch_status::written) << c->error;
  EXPECT_GE(obs->rewritten.load(), 1) << "the promoted replica had the batch: the freeze did not work";
  EXPECT_EQ(q(owner_dsn_, "SELECT count(*) FROM communications"), 600);
  EXPECT_EQ(q(owner_dsn_, "SELECT count(DISTINCT event_id) FROM communications"), 600);
  EXPECT_EQ(q(owner_dsn_, "SELECT coalesce(sum(communications_inserted), 0) FROM ingest_batches"), 600);
  EXPECT_EQ(q(owner_dsn_, metrics_mismatch_sql), 0);
  EXPECT_EQ(q(owner_dsn_, metrics_missing_sql), 0);
  record(fmt::format("async replication: the write path wrote again {} part(s) the promoted replica lacked; the batch "
                     "completed {:.1f} s after the crash of {}",
                     obs->rewritten.load(), now_s() - crashed_at, old_leader));
}

// Asynchronous replication, Patroni's default: the same crash, repeated (CRM_FAULT_ASYNC_ROUNDS, default
// 2): every round promotes a replica without the old primary's last moments; the code before issue 15
// (positions released at COMMIT) lost events in every such round.
// Last in the file: the cluster switches to asynchronous replication once, after the synchronous tests.
TEST_F(AsyncFailover, KillNineOfLeaderPostgresAndPatroniUnderLoad) {
  crash_of_lagging_leader(static_cast<int>(env_number("CRM_FAULT_ASYNC_ROUNDS", 2)), 600);
}

}  // namespace
