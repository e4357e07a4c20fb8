// `crm-ingest serve` as providers and operators meet it: real sockets, a real PostgreSQL.
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/scratch.h"
#include "support/serve_process.h"
#include "support/silent_server.h"
#include "support/test_db.h"
#include "sinks/spool/durable_log.h"
#include "transform/canonical/event_codec.h"
#include "transform/normalize/normalize.h"

namespace fs = std::filesystem;
using crm_test::scratch;
using crm_test::wait_for_count;

namespace {

std::string sample() {
  std::ifstream in(std::string(CRM_SOURCE_DIR) + "/deploy/sample/events.ndjson");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

const std::map<std::string, std::string> ndjson = {{"Content-Type", "application/x-ndjson"}};

// The sample's rows, each stored once however often it was posted: 12 communications, 8 touchpoints, 8 dead letters.
std::string sample_rows(const std::string& dsn) {
  return std::to_string(crm_test::count(dsn, "SELECT count(*) FROM communications")) + "/" +
         std::to_string(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints")) + "/" +
         std::to_string(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"));
}

TEST(Serve, EventsAreAcknowledgedDurablyAndStoredOnceEvenWhenPostedTwice) {
  auto dsn = crm_test::fresh_database("t_serve_events");
  crm_test::serve_process srv(dsn, scratch("events"));
  srv.start();
  auto r1 = crm_test::http_request(srv.port(), "POST", "/v1/events", sample(), ndjson);
  ASSERT_EQ(r1.status, 200) << r1.body;
  EXPECT_NE(r1.body.find("\"accepted\":21,\"rejected\":8"), std::string::npos) << r1.body;
  EXPECT_NE(r1.body.find("\"source\":\"/v1/events:10\""), std::string::npos) << r1.body;
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications", 12), 12);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM customer_touchpoints", 8), 8);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM rejected_events", 8), 8);
  auto metrics = crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics");

  auto r2 = crm_test::http_request(srv.port(), "POST", "/v1/events", sample(), ndjson);
  ASSERT_EQ(r2.status, 200) << r2.body;
  // Wait until the second request's records are committed (the ledger counts 13 communication records per
  // post, its in-request duplicate included, however the drainer split them), then nothing has changed.
  EXPECT_EQ(wait_for_count(dsn, "SELECT coalesce(sum(communications_in), 0) FROM ingest_batches", 26), 26);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 12);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 8);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 8);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), metrics);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

TEST(Serve, JsonArrayBodiesAreAccepted) {
  auto dsn = crm_test::fresh_database("t_serve_array");
  crm_test::serve_process srv(dsn, scratch("array"));
  srv.start();
  auto r = crm_test::http_request(
      srv.port(), "POST", "/v1/events",
      R"([{"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent","email":"a@b.co","provider_message_id":"m1"},
          {"kind":"touchpoint","occurred_at":"2026-11-02T09:00:00Z","anonymous_id":"x","touch_type":"page_view"}])",
      {{"Content-Type", "application/json"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":2,\"rejected\":0"), std::string::npos) << r.body;
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications", 1), 1);
}

TEST(Serve, HostileAndWrongRequestsGetTheRightStatus) {
  auto dsn = crm_test::fresh_database("t_serve_hostile");
  crm_test::serve_process srv(dsn, scratch("hostile"), "", "body_limit_bytes = 2048\nheader_timeout_ms = 300\n");
  srv.start();
  const auto port = srv.port();

  EXPECT_EQ(crm_test::http_request(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(crm_test::http_request(port, "GET", "/no/such/path").status, 404);
  EXPECT_EQ(crm_test::http_request(port, "POST", "/v1/webhooks/nosuchprovider", "{}", ndjson).status, 404);
  auto wrong_method = crm_test::http_request(port, "GET", "/v1/events");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers["allow"], "POST");
  EXPECT_EQ(crm_test::http_request(port, "POST", "/v1/events", "a,b", {{"Content-Type", "text/csv"}}).status, 415);
  EXPECT_EQ(crm_test::http_request(port, "POST", "/v1/events", "", ndjson).status, 400);

  // Too large: refused from the Content-Length alone.
  auto big = crm_test::http_request(port, "POST", "/v1/events", std::string(4096, ' '), ndjson);
  EXPECT_EQ(big.status, 413) << big.body;

  // Not JSON at all: 400, and the response says where.
  auto garbage = crm_test::http_request(port, "POST", "/v1/events", "{\"kind\": nope}\n", ndjson);
  EXPECT_EQ(garbage.status, 400) << garbage.body;
  EXPECT_NE(garbage.body.find("malformed JSON at byte"), std::string::npos) << garbage.body;

  // A malformed request line: 400 and the connection is closed.
  {
    crm_test::http_connection c(port);
    c.send_raw("BLAH\r\n\r\n");
    auto r = c.read_reply();
    EXPECT_EQ(r.status, 400);
  }
  // A slow client that never finishes its headers is cut off after the header timeout.
  {
    crm_test::http_connection c(port);
    c.send_raw("POST /v1/events HTTP/1.1\r\nHost: x\r\n");
    auto started = std::chrono::steady_clock::now();
    EXPECT_TRUE(c.closed_by_server());
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  }
  // The server is still healthy after all that.
  EXPECT_EQ(crm_test::http_request(port, "GET", "/healthz").status, 200);
  auto metrics = crm_test::http_request(port, "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("crm_ingest_http_requests_total{code=\"415\",endpoint=\"/v1/events\"} 1"),
            std::string::npos)
      << metrics.body.substr(0, 2000);
}

TEST(Serve, KeepAliveServesManyRequestsOnOneConnection) {
  auto dsn = crm_test::fresh_database("t_serve_keepalive");
  crm_test::serve_process srv(dsn, scratch("keepalive"));
  srv.start();
  crm_test::http_connection c(srv.port());
  for (int i = 0; i < 50; ++i) {
    std::string body = R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"sms","status":"sent","provider_message_id":"k)" +
                       std::to_string(i) + R"("})";
    auto r = c.request("POST", "/v1/events", body, ndjson);
    ASSERT_EQ(r.status, 200) << r.body;
  }
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications", 50), 50);
}

// A stop while serve starts: its one connection attempt meets a database that takes the connection and never
// answers (a hung server; no connect_timeout in the DSN, so libpq would wait for ever). The stop signals were blocked
// until the start-up ended: a SIGTERM did nothing, and a systemd stop waited for its timeout and SIGKILLed. Nothing
// was acknowledged yet: serve ends at once, with 0 as any stopped serve, and says so.
TEST(Serve, AStopWhileItReachesTheDatabaseAtStartUpEndsItAtOnce) {
  crm_test::silent_server db;
  crm_test::serve_process srv("postgresql://crm@127.0.0.1:" + std::to_string(db.port()) + "/none?sslmode=disable",
                              scratch("stop-at-start"));
  srv.launch();
  ASSERT_TRUE(db.wait_for_connection(std::chrono::seconds(15))) << srv.stderr_text();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // inside its connection attempt
  ASSERT_TRUE(srv.running()) << srv.stderr_text();
  const double took = srv.signal_and_wait(SIGTERM, std::chrono::seconds(3));
  ASSERT_FALSE(srv.running()) << "serve still running " << took << " s after SIGTERM:\n" << srv.stderr_text();
  ASSERT_TRUE(WIFEXITED(srv.status())) << srv.status();
  EXPECT_EQ(WEXITSTATUS(srv.status()), 0) << srv.stderr_text();
  EXPECT_NE(srv.stderr_text().find("Stopped during start-up"), std::string::npos) << srv.stderr_text();
}

TEST(Serve, ReadyzReportsAnUnreachableDatabase) {
  crm_test::serve_process srv("postgresql://crm@127.0.0.1:1/none?connect_timeout=1", scratch("notready"));
  srv.start();
  // Accepted into the local log even though the database is down: the log is the promise.
  auto r = crm_test::http_request(srv.port(), "POST", "/v1/events", sample(), ndjson);
  EXPECT_EQ(r.status, 200) << r.body;
  bool unready = false;
  for (int i = 0; i < 100 && !unready; ++i) {
    unready = crm_test::http_request(srv.port(), "GET", "/readyz").status == 503;
    if (!unready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(unready);
  srv.stop(SIGKILL);
}

}  // namespace

TEST(Serve, ALogRecordThatCannotBeDecodedIsDeadLetteredAndTheRestIsWritten) {
  auto dsn = crm_test::fresh_database("t_serve_undecodable");
  const fs::path dir = scratch("undecodable");
  {
    // What a newer version or a bug could leave behind: a CRC-intact record that is not an event batch,
    // between two good ones.
    crm::sinks::spool::durable_log_options o;
    o.directory = dir / "log";
    auto log = crm::sinks::spool::durable_log::open(o);
    crm::transform::normalizer norm;
    crm::transform::event_batch batch;
    ASSERT_EQ(norm.normalize(R"({"kind":"touchpoint","occurred_at":"2026-11-02T09:00:00Z","anonymous_id":"a",)"
                             R"("touch_type":"page_view"})",
                             {"test", 1}, crm::transform::now_us(), batch),
              crm::transform::normalize_outcome::touchpoint);
    std::string good;
    crm::transform::encode_event_batch(batch, good);
    const std::string garbage = "EB\xff not an event batch";
    const std::string_view records[] = {good, garbage, good};
    ASSERT_TRUE(log->append(records).ok());
  }
  crm_test::serve_process srv(dsn, dir);
  srv.start();
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM rejected_events WHERE source LIKE 'log 1:%' AND reason LIKE "
                          "'the local log holds a record this version cannot decode: %'",
                     1),
            1);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM customer_touchpoints", 1), 1);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

// crm_ingest_writer_database_up tells the truth from start-up: an idle serve with a reachable database
// reports 1 within a second of listening (it was 0 until the first committed batch, so the shipped
// CrmIngestDatabaseUnreachable alert fired on every idle collector), and 0 when the database is not there.
TEST(Serve, DatabaseUpIsTrueFromStartUpWithoutTraffic) {
  auto dsn = crm_test::fresh_database("t_serve_database_up");
  crm_test::serve_process srv(dsn, scratch("database-up"));
  srv.start();
  const auto listening = std::chrono::steady_clock::now();
  std::string exposition;
  while (std::chrono::steady_clock::now() - listening < std::chrono::seconds(1)) {
    exposition = crm_test::http_request(srv.port(), "GET", "/metrics").body;
    if (exposition.find("\ncrm_ingest_writer_database_up 1\n") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(exposition.find("\ncrm_ingest_writer_database_up 1\n"), std::string::npos) << exposition;
  EXPECT_NE(exposition.find("\ncrm_ingest_writer_batches_total 0\n"), std::string::npos) << "no traffic: " << exposition;
  // postgres.adaptive_writers (on by default): batches go to one writer until more are measured faster.
  EXPECT_NE(exposition.find("\ncrm_ingest_writer_writers_in_use 1\n"), std::string::npos) << exposition;

  // Nothing listens on port 1: the database is down from the start, and the gauge says so.
  crm_test::serve_process down("postgresql://crm@127.0.0.1:1/none?connect_timeout=1", scratch("database-down"));
  down.start();
  const auto started = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - started < std::chrono::seconds(10)) {
    exposition = crm_test::http_request(down.port(), "GET", "/metrics").body;
    if (exposition.find("\ncrm_ingest_writer_database_up 0\n") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(exposition.find("\ncrm_ingest_writer_database_up 0\n"), std::string::npos) << exposition;
}

// Every thread of serve carries the name of its stage (top -H, ps -L, perf and gdb show it), so an operator
// can tell which stage uses the CPU: the main thread keeps the command's name, the others are named where
// they start. The set below is serve's with the defaults (local log, attribution maintained).
TEST(Serve, EveryThreadIsNamedForItsStage) {
  auto dsn = crm_test::fresh_database("t_serve_thread_names");
  crm_test::serve_process srv(dsn, scratch("thread-names"));
  srv.start();
  std::multiset<std::string> names;
  const auto started = std::chrono::steady_clock::now();
  const char* const stages[] = {"crm-log-flush", "crm-drain", "crm-writer-0", "crm-stage", "crm-signals", "crm-catalog"};
  auto all_named = [&] {
    for (const char* stage : stages) {
      if (names.count(stage) != 1) return false;
    }
    return names.count("crm-ingest") == 1;
  };
  // Some start after the port is announced (the writers, the stage and the confirmer with the pool; the signal
  // thread once the server listens): wait for every one of them, and for each new thread to have taken its name
  // (a thread is "crm-ingest", its creator's name, until it names itself).
  while (std::chrono::steady_clock::now() - started < std::chrono::seconds(10)) {
    names.clear();
    for (const auto& task : fs::directory_iterator(fs::path("/proc") / std::to_string(srv.pid()) / "task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name)) names.insert(name);
    }
    if (all_named()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string all;
  for (const auto& n : names) all += n + " ";
  EXPECT_EQ(names.count("crm-ingest"), 1U) << all;
  for (const char* stage : stages) EXPECT_EQ(names.count(stage), 1U) << stage << " in: " << all;
  for (const auto& n : names) EXPECT_EQ(n.rfind("crm-", 0), 0U) << "an unnamed thread: " << n << " in: " << all;
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

// SIGTERM while PostgreSQL is down, with a backlog in the local log (an operator restarting serve during an
// outage, e.g. to point it at another database): serve writes for at most log.drain_on_stop_s, then exits 0 and
// leaves the backlog in the log, where the next start finds it and writes it once. Before the limit existed it
// retried for ever, the HTTP edge already closed, until systemd's SIGKILL (TimeoutStopSec) ended it.
TEST(Serve, StopsWithinItsDrainLimitWhileTheDatabaseIsDownAndKeepsTheBacklogForTheNextStart) {
  auto dsn = crm_test::fresh_database("t_serve_stop_down");
  const fs::path dir = scratch("stop-down");
  {
    crm_test::serve_process down("postgresql://crm@127.0.0.1:1/none?connect_timeout=1", dir, "drain_on_stop_s = 2\n");
    down.start();
    auto r = crm_test::http_request(down.port(), "POST", "/v1/events", sample(), ndjson);
    ASSERT_EQ(r.status, 200) << r.body;
    const double took = down.signal_and_wait(SIGTERM, std::chrono::seconds(30));
    ASSERT_FALSE(down.running()) << "serve still running " << took << " s after SIGTERM:\n" << down.stderr_text();
    EXPECT_EQ(down.status(), 0) << down.stderr_text();
    EXPECT_GE(took, 1.5) << down.stderr_text();  // it did try for the configured time
    EXPECT_LT(took, 15.0);
    EXPECT_NE(down.stderr_text().find("are written at the next start"), std::string::npos) << down.stderr_text();
  }
  crm_test::serve_process up(dsn, dir);
  up.start();
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications", 12), 12);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM customer_touchpoints", 8), 8);
  EXPECT_EQ(wait_for_count(dsn, "SELECT count(*) FROM rejected_events", 8), 8);
  EXPECT_EQ(up.stop(SIGTERM), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 12);
}

// The same stop when the batch ahead is committed but waits for a standby that never confirms it (Patroni dropped
// to asynchronous replication with its slot kept, or confirm_min_standbys above the standbys there are) and the
// batch behind it cannot be written: the pool holds a written batch and a given-up one, so waiting for either to
// come back in order would never end. Serve still exits within its limit; both batches stay in the log.
TEST(Serve, StopsWithinItsDrainLimitWithAnUnconfirmedBatchAheadOfAFailingOne) {
  const std::string name = "t_serve_stop_unconfirmed";
  auto dsn = crm_test::fresh_database(name);
  const fs::path dir = scratch("stop-unconfirmed");
  auto admin = [](const std::string& sql) { crm_test::execute(crm_test::admin_dsn(), sql); };
  {
    // A single PostgreSQL has no standby: with one required, every committed batch waits for its confirmation.
    setenv("CRM_INGEST_POSTGRES_CONFIRM_MIN_STANDBYS", "1", 1);
    crm_test::serve_process srv(dsn, dir, "drain_on_stop_s = 2\n");
    srv.start();
    unsetenv("CRM_INGEST_POSTGRES_CONFIRM_MIN_STANDBYS");
    ASSERT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", sample(), ndjson).status, 200);
    ASSERT_EQ(wait_for_count(dsn, "SELECT count(*) FROM communications", 12), 12);
    // Now the database goes away for serve: no new connection, and its sessions are ended.
    admin("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false");
    admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'");
    ASSERT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", sample(), ndjson).status, 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the second batch is in the writer's hands
    const double took = srv.signal_and_wait(SIGTERM, std::chrono::seconds(30));
    const bool still_running = srv.running();
    admin("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true");
    ASSERT_FALSE(still_running) << "serve still running " << took << " s after SIGTERM:\n" << srv.stderr_text();
    EXPECT_EQ(srv.status(), 0) << srv.stderr_text();
    EXPECT_LT(took, 15.0);
  }
  // Both batches were left in the log (the first one unconfirmed): the next start writes them, once.
  crm_test::serve_process up(dsn, dir);
  up.start();
  bool drained = false;
  for (int i = 0; i < 200 && !drained; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    drained = crm_test::http_request(up.port(), "GET", "/metrics").body.find("\ncrm_ingest_log_backlog_bytes 0\n") !=
              std::string::npos;
  }
  EXPECT_TRUE(drained);
  EXPECT_EQ(up.stop(SIGTERM), 0);
  EXPECT_GE(crm_test::count(dsn, "SELECT sum(communications_in) FROM ingest_batches"), 26);
  EXPECT_EQ(sample_rows(dsn), "12/8/8");
}

// The limit is on a stop without progress, not on the drain: with the database up, a SIGTERM still writes the
// whole backlog however long that takes, and the log is written when serve exits. Every batch is made to take
// 0.8 s (a trigger on the ledger), and the backlog is held back (a lock on the ledger) until it spans several
// batches of the drainer's 256-record reads: the drain after the stop outlasts the 2 s limit, each batch within it.
TEST(Serve, AStopWritesTheWholeBacklogWhileBatchesKeepBeingWritten) {
  auto dsn = crm_test::fresh_database("t_serve_stop_progress");
  crm_test::execute(dsn, "CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN PERFORM pg_sleep(0.8); RETURN NULL; END $$");
  crm_test::execute(dsn, "CREATE TRIGGER slow_batch AFTER INSERT ON ingest_batches FOR EACH STATEMENT "
                         "EXECUTE FUNCTION slow_batch()");
  crm_test::serve_process srv(dsn, scratch("stop-progress"), "drain_on_stop_s = 2\n");
  srv.start();
  const int posts = 1200;
  {
    pqxx::connection c(dsn);
    pqxx::work hold(c);
    hold.exec("LOCK TABLE ingest_batches IN ACCESS EXCLUSIVE MODE");
    for (int i = 0; i < posts; ++i) {
      ASSERT_EQ(crm_test::http_request(srv.port(), "POST", "/v1/events", sample(), ndjson).status, 200);
    }
    hold.commit();
  }
  const double took = srv.signal_and_wait(SIGTERM, std::chrono::seconds(60));
  ASSERT_FALSE(srv.running()) << srv.stderr_text();
  EXPECT_EQ(srv.status(), 0) << srv.stderr_text();
  EXPECT_GT(took, 2.0) << "the drain after the stop did not outlast the limit: the test proves nothing";
  // Every post's 13 communication records (its in-request duplicate included) went through a committed batch.
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(communications_in) FROM ingest_batches"), posts * 13)
      << srv.stderr_text();
  EXPECT_EQ(srv.stderr_text().find("Stopping before the local log is written"), std::string::npos);
}
