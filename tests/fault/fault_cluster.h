// What the fault tests drive the Patroni cluster with (failover_test.cc): deploy/cluster/cluster.sh, the
// cluster's DSNs, a probe of where HAProxy routes, and the load sources besides serve (back-to-back imports,
// a Kafka topic and its consumer, batches for the write path itself).
// The target defines CRM_CLUSTER_DIR, CRM_CLUSTER_SH, CRM_INGEST_EXE, CRM_KAFKA_MOCK_EXE, GEN_EVENTS_EXE and
// HTTP_LOAD_EXE.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "sinks/postgres/replication_status.h"
#include "sinks/postgres/writer.h"
#include "sinks/postgres/writer_pool.h"
#include "support/child_process.h"
#include "support/kafka_mock.h"
#include "support/run_command.h"
#include "support/serve_load.h"
#include "transform/normalize/normalize.h"

namespace crm_fault {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

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

// Writes must resume within this many seconds once HAProxy routes to a primary again. The writers' backoff
// is capped at 1 s (jittered), so ~1 s is expected; the bound leaves room for a CI box whose two cores
// also run a fuzzer beside this test (2.95 s was seen under a load average of 17).
constexpr double resume_bound_s = 5.0;

double now_s();

inline std::string run(const std::string& cmd, int* status = nullptr) { return crm_test::command_output(cmd, status); }

double env_number(const char* name, double fallback);

// When serve, import and consume release a batch's position (postgres.confirm, import --confirm):
// `standbys` (the default: once it is safe on the cluster) or `commit` (at the primary's COMMIT, the
// behaviour before confirmation; CRM_FAULT_CONFIRM=commit measures what that loses in the same scenarios).
std::string confirm_mode();

std::string trim(std::string s);
std::string last_line(const std::string& text);

// deploy/cluster/cluster.sh COMMAND on the fixture's cluster ("failover 0.3" runs `failover DIR 0.3`);
// its output (stdout and stderr).
std::string cluster(const std::string& command);

// The current leader's node name (empty: none), and waiting up to `timeout` for `node` to be it (true when it is).
std::string leader_now();
bool wait_for_leader(const std::string& node, std::chrono::seconds timeout);

struct cluster_dsns {
  std::string primary, replica, admin;
};

cluster_dsns read_dsns();

std::string with_database(const std::string& dsn, const std::string& db);

// The same DSN as another user: scheme://user:password@host...
std::string with_user(const std::string& dsn, const std::string& user, const std::string& password);

// A login role of its own for the replication-status tests, with or without pg_read_all_stats.
std::string status_reader_dsn(const cluster_dsns& dsns, const std::string& db, bool may_read_stats);

// Commits a one-row transaction on `c` and reads the replication status right after, on the same session.
crm::sinks::postgres::replication_status commit_and_read_status(pqxx::connection& c);

// The least-privilege login role the scenarios' processes connect as (cluster-wide, made once).
constexpr const char* writer_login = "crm_ingest_fault";
constexpr const char* writer_password = "local-fault-writer";

inline long long q(const std::string& dsn, const std::string& sql) { return crm_test::count(dsn, sql); }

// Connects through HAProxy every 100 ms and records whether it reached a writable primary.
class primary_probe {
 public:
  explicit primary_probe(std::string dsn) : dsn_(std::move(dsn)), thread_([this] { loop(); }) {}
  ~primary_probe() {
    stop_ = true;
    thread_.join();
  }
  struct sample {
    double at;    // Unix seconds, when the probe's answer came
    double from;  // Unix seconds, when the probe began to connect
    bool primary;
    int port;  // the PostgreSQL node's port
  };
  std::vector<sample> samples() const {
    std::lock_guard lock(mu_);
    return samples_;
  }

 private:
  void loop();
  std::string dsn_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<sample> samples_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------------
// Load sources

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
  void loop();
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

  kafka_feed(const fs::path& dir, const std::string& dsn, int seed, int rate);
  ~kafka_feed() { stop_producing(); }

  // The id prefix of this feed's events (provider_message_id).
  std::string prefix() const;

  // Stops producing and waits for every delivery report; returns the number of events produced.
  long long stop_producing();

  // Waits until the consumer committed the end offset of every partition (everything consumed and
  // written, as far as the consumer knows).
  bool wait_consumed(std::chrono::seconds timeout);

  // SIGTERM; the exit status (-999 when it did not stop).
  int stop_consumer();
  std::string consumer_err() const { return consumer_->err(); }

 private:
  void produce();

  crm_test::kafka_mock mock_{1};
  int seed_, rate_;
  fs::path config_;
  std::unique_ptr<child> consumer_;
  std::unique_ptr<crm_test::test_producer> producer_;
  std::atomic<bool> stop_{false};
  std::atomic<long long> produced_{0};
  std::thread thread_;
};

// bench/http_load against serve on `port`: `rate` requests/s x 20 events (default 1000 events/s), open loop.
std::unique_ptr<child> start_load(const fs::path& dir, unsigned port, double seconds, unsigned seed,
                                  const std::string& tag, int rate = 50);

// ---------------------------------------------------------------------------------------------------
// The write path driven directly

// `n` new communications (unique ids from `seed`), occurring now: a batch for the write path.
std::shared_ptr<crm::transform::event_batch> events_batch(std::uint32_t seed, std::uint32_t n);

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

crm::sinks::postgres::pool_options write_path(const std::string& dsn, std::shared_ptr<confirm_observer> obs);

}  // namespace crm_fault
