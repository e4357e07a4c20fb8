// The fault tests' fixture (failover_fixture.h).
#include "failover_fixture.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <regex>
#include <thread>

#include <pqxx/pqxx>

#include "sinks/postgres/migrations.h"
#include "support/http_client.h"

namespace crm_fault {

using crm_test::metric_sum;  // the sum of a metric's samples on serve's /metrics

void Failover::SetUp() {
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
        // As the deployment makes it (deploy/render-configs.sh): the writer COPYs communications into the table.
        " ALTER ROLE {0} BYPASSRLS;"
        " END $$",
        writer_login, writer_password));
    // What schemas/0004 grants when the migrating role may (crm may not: an administrator does it).
    tx.exec("GRANT pg_read_all_stats TO crm_ingest_writer");
  }
  prepare("");
}

void Failover::prepare(const std::string& round) {
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

void Failover::TearDown() {
  if (HasFailure()) {
    std::cout << "[   INFO   ] cluster state:\n" << run("bash " CRM_CLUSTER_SH " status " CRM_CLUSTER_DIR " 2>&1 || true");
    std::cout << "[   INFO   ] files kept in " << dir_ << "\n";
  }
}

void Failover::record(const std::string& line) {
  std::cout << "[ MEASURED ] " << line << "\n";
  std::ofstream(fs::path(CRM_CLUSTER_DIR) / "measurements.txt", std::ios::app) << line << "\n";
}

crash_report Failover::crash_lagging_leader(double& fault_at) {
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

pause_report Failover::measure(double fault_at, const primary_probe& probe, bool leader_changes) {
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
  r.first_routed_from = fault_at;
  bool failed = false;
  for (const auto& s : samples) {
    if (s.from < fault_at) continue;
    if (!s.primary) {
      failed = true;
      r.first_routed_from = s.from;
    } else if (failed) {
      break;
    }
  }
  if (leader_changes) {
    r.leader_changed_at = std::stod(run(fmt::format("bash {} leader-changed-at {}", CRM_CLUSTER_SH, CRM_CLUSTER_DIR)));
  }
  return r;
}

void Failover::report(const std::string& scenario, const pause_report& r) {
  auto rel = [&](double t) { return t > 0 ? fmt::format("{:+.2f} s", t - r.fault_at) : std::string("n/a"); };
  std::string line = fmt::format(
      "{}: writes paused {:.2f} s (last write {} / first write {} after the fault); HAProxy routed to a primary "
      "again at {} (reachable from {} at the earliest; node port {} -> {}); Patroni leader change at {}; resumed "
      "{:.2f} s after routing",
      scenario, r.first_write_after - r.last_write_before, rel(r.last_write_before), rel(r.first_write_after),
      rel(r.routed_at), rel(r.first_routed_from), r.old_port, r.new_port,
      r.leader_changed_at > 0 ? rel(r.leader_changed_at) : "none",
      r.first_write_after - r.routed_at);
  record(line);
  RecordProperty("pause", line);
}

loss_report Failover::expect_exactly_once(const std::string& acked, std::size_t acked_count,
                                          const std::vector<import_loop::run_result>& imports,
                                          const std::string& kafka_prefix, long long kafka_produced) {
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

long long Failover::wait_drained(unsigned port, const std::string& ids, std::chrono::seconds timeout) {
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

loss_report Failover::run_scenario(const std::string& scenario, const scenario_options& o,
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
  // A write on a new primary cannot come before its promotion (Patroni's history); where the leader stays, the
  // primary is back no earlier than the start of the failed probe before the first good one.
  const double back_from = r.leader_changed_at > 0 ? r.leader_changed_at : r.first_routed_from;
  EXPECT_GT(r.first_write_after, back_from - 0.5) << "no write after the primary came back";
  EXPECT_LE(r.first_write_after - r.routed_at, resume_bound_s) << "ingestion did not resume promptly after HAProxy routing";
  loss = expect_exactly_once(ids, acked, import_runs, kafka ? kafka->prefix() : "", produced);
  record(scenario + ": " + loss.describe());
  return loss;
}

void Failover::crash_of_lagging_leader(int rounds, int first_seed) {
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

}  // namespace crm_fault
