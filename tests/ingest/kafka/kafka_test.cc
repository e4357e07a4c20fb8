// The Kafka source and the scale-out topology against a real PostgreSQL and the mock Kafka cluster
// (crm-kafka-mock, a separate process).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "ingest/kafka/kafka_source.h"
#include "support/child_process.h"
#include "support/http_client.h"
#include "support/kafka_mock.h"
#include "support/scratch.h"
#include "support/test_db.h"

namespace {

using namespace std::chrono_literals;
using crm::ingest::kafka_source;
using crm::ingest::kafka_source_options;
using crm_test::wait_until;

constexpr int partitions = 4;

std::string event_json(int i) {
  return fmt::format(
      R"({{"kind":"communication","occurred_at":"2026-11-{:02}T09:{:02}:{:02}Z","lead_id":{},"channel":"email","status":"sent","provider":"sendgrid","provider_message_id":"kafka-msg-{}","email":"lead{}@example.com"}})",
      1 + i % 20, i / 60 % 60, i % 60, 1000 + i % 97, i, i % 97);
}

kafka_source_options source_options(const crm_test::kafka_mock& k, const std::string& dsn, const std::string& group) {
  kafka_source_options o;
  o.brokers = k.bootstrap();
  o.group = group;
  o.topics = {{"events", "canonical"}};
  o.session_timeout_ms = 6000;
  o.write.writer.dsn = dsn;
  o.write.writers = 1;
  o.write.batch.rows = 300;
  o.write.batch.linger = 50ms;
  return o;
}

struct produced {
  int events = 0;         // distinct events
  int messages = 0;       // all messages
  std::vector<std::size_t> garbage;  // producer indexes of the garbage messages
};

// `n` distinct events, every 10th sent twice, every 100th message followed by one garbage message.
produced produce_mix(crm_test::test_producer& p, int n, int first = 0) {
  produced out;
  for (int i = first; i < first + n; ++i) {
    p.produce("events", std::to_string(1000 + i % 97), event_json(i));
    ++out.messages;
    if (i % 10 == 0) {
      p.produce("events", std::to_string(1000 + i % 97), event_json(i));
      ++out.messages;
    }
    if (i % 100 == 0) {
      out.garbage.push_back(p.produce("events", "", i % 200 == 0 ? std::string("{\"kind\": nope") : std::string("\xff\xfe binary")));
      ++out.messages;
    }
  }
  out.events = n;
  p.flush();
  return out;
}

// The database refuses the insert of event kafka-msg-5 with `sqlstate`, through trigger `name`, until it is dropped;
// the sequence `name` counts the refusals (nextval outlives the rollback).
void refuse_event_5(const std::string& dsn, const std::string& name, const std::string& sqlstate) {
  crm_test::execute(dsn, "CREATE SEQUENCE " + name);
  crm_test::execute(dsn, "CREATE FUNCTION " + name + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('" +
                             name + "'); RAISE EXCEPTION 'refused by the test' USING ERRCODE = '" + sqlstate +
                             "'; END $$");
  crm_test::execute(dsn, "CREATE TRIGGER " + name + " BEFORE INSERT ON communications FOR EACH ROW WHEN "
                         "(NEW.provider_message_id = 'kafka-msg-5') EXECUTE FUNCTION " + name + "()");
}

long long rows(const std::string& dsn) { return crm_test::count(dsn, "SELECT count(*) FROM communications"); }

void expect_exactly_once(const std::string& dsn, int events) {
  EXPECT_EQ(rows(dsn), events);
  // The metrics are counted from the rows really inserted: a double write would show here.
  EXPECT_EQ(crm_test::count(dsn, "SELECT coalesce(sum(event_count), 0) FROM communication_metrics"), events);
}

std::vector<long long> as_vector(const std::vector<long long>& v) { return v; }

// A kafka_source running on a thread of its own; stop() (or leaving the scope, also on a failed ASSERT) stops it
// and waits for the thread.
class running_source {
 public:
  explicit running_source(const kafka_source_options& o) : src_(o), thread_([this] { src_.run(); }) {}
  ~running_source() { stop(); }
  running_source(const running_source&) = delete;
  running_source& operator=(const running_source&) = delete;

  const kafka_source* operator->() const { return &src_; }
  // Whether it has read `messages` messages within `limit`.
  bool consumed(int messages, std::chrono::milliseconds limit = 30s) const {
    return wait_until([&] { return src_.stats().messages >= static_cast<std::uint64_t>(messages); }, limit);
  }
  // Asks it to stop without waiting (members of one group that should leave together), then stop() waits.
  void request_stop() noexcept { src_.stop(); }
  void stop() {
    src_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  kafka_source src_;
  std::thread thread_;
};

class KafkaSource : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = crm_test::fresh_database(std::string("kafka_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(kafka_.command("topic events " + std::to_string(partitions)), "ok");
  }
  // Every event stored once, and `group` committed the end of every partition `producer` wrote to (committed
  // offsets == consumed).
  void expect_written_once_and_committed(crm_test::test_producer& producer, const std::string& group, int events) {
    expect_exactly_once(dsn_, events);
    EXPECT_EQ(kafka_.committed(group, "events", partitions), producer.end_offsets("events", partitions));
  }
  crm_test::kafka_mock kafka_{3};
  std::string dsn_;
};

TEST_F(KafkaSource, DuplicatesAndGarbageGiveExactlyOnceRowsRejectionsWithOffsetsAndCommittedOffsets) {
  crm_test::test_producer producer(kafka_.bootstrap());
  auto sent = produce_mix(producer, 1000);
  running_source src(source_options(kafka_, dsn_, "g-exact"));
  EXPECT_TRUE(src.consumed(sent.messages));
  src.stop();

  expect_written_once_and_committed(producer, "g-exact", sent.events);
  EXPECT_EQ(src->stats().messages, static_cast<std::uint64_t>(sent.messages));
  // Every garbage message is dead-lettered under its topic/partition:offset.
  EXPECT_EQ(crm_test::count(dsn_, "SELECT count(*) FROM rejected_events"), static_cast<long long>(sent.garbage.size()));
  for (auto i : sent.garbage) {
    const auto& w = producer.where(i);
    EXPECT_EQ(crm_test::count(dsn_, fmt::format("SELECT count(*) FROM rejected_events WHERE source = 'events/{}:{}'",
                                                w.partition, w.offset)),
              1)
        << "garbage at " << w.partition << ":" << w.offset;
  }
}

TEST_F(KafkaSource, BrokerErrorsAndABrokerDownAreSurvived) {
  crm_test::test_producer producer(kafka_.bootstrap());
  auto first = produce_mix(producer, 600);
  // Fetch and OffsetCommit fail a few times (6 NOT_LEADER_OR_FOLLOWER, 15 COORDINATOR_NOT_AVAILABLE).
  ASSERT_EQ(kafka_.command("errors 1 4 6"), "ok");
  ASSERT_EQ(kafka_.command("errors 8 3 15"), "ok");
  running_source src(source_options(kafka_, dsn_, "g-faults"));
  ASSERT_TRUE(wait_until([&] { return src->stats().batches > 0; }));
  // A broker goes away while more events arrive, then comes back.
  ASSERT_EQ(kafka_.command("down 2"), "ok");
  std::this_thread::sleep_for(1s);
  ASSERT_EQ(kafka_.command("up 2"), "ok");
  auto second = produce_mix(producer, 600, 600);
  EXPECT_TRUE(src.consumed(first.messages + second.messages, 40s));
  src.stop();
  expect_written_once_and_committed(producer, "g-faults", first.events + second.events);
}

// A graceful stop commits the offsets of every written batch even when the broker keeps refusing commits for
// a while (as it does while the group rebalances: a second writer stopping at the same time).
TEST_F(KafkaSource, AStopCommitsTheWrittenOffsetsThroughRefusedCommits) {
  crm_test::test_producer producer(kafka_.bootstrap());
  auto first = produce_mix(producer, 300);
  running_source src(source_options(kafka_, dsn_, "g-stop"));
  ASSERT_TRUE(src.consumed(first.messages));
  ASSERT_TRUE(wait_until([&] { return src->stats().offset_commits > 0; }));
  // The next commits are refused (27 REBALANCE_IN_PROGRESS), more of them than a few quick retries cover.
  ASSERT_EQ(kafka_.command("errors 8 12 27"), "ok");
  auto second = produce_mix(producer, 200, 300);
  ASSERT_TRUE(src.consumed(first.messages + second.messages));
  src.stop();
  expect_written_once_and_committed(producer, "g-stop", first.events + second.events);
}

// Issue 15: a partition's offset is committed only once the batch holding it is safe on the cluster, not at
// its COMMIT. The private PostgreSQL is told it needs a standby (confirm_min_standbys 1, as a replicated primary
// whose standbys do not have the batch yet): the rows commit, the offsets stay uncommitted (also through the
// stop, which waits 10 s for the confirmation), and the next member of the group consumes the messages again:
// stored once.
TEST_F(KafkaSource, OffsetsAreCommittedOnlyOnceTheClusterConfirmsTheBatch) {
  crm_test::test_producer producer(kafka_.bootstrap());
  auto sent = produce_mix(producer, 300);
  auto o = source_options(kafka_, dsn_, "g-confirm");
  o.write.confirm.min_standbys = 1;
  {
    running_source src(o);
    EXPECT_TRUE(wait_until([&] { return rows(dsn_) == sent.events; })) << "committed, only not released";
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(src->stats().offset_commits, 0u) << "offsets committed before the cluster confirmed their batch";
    src.stop();
    EXPECT_EQ(src->stats().offset_commits, 0u);
  }
  for (long long off : kafka_.committed("g-confirm", "events", partitions)) EXPECT_LT(off, 1) << "an offset was committed";
  // The next run (a single PostgreSQL: its COMMIT is the confirmation) consumes them again: no-ops.
  running_source again(source_options(kafka_, dsn_, "g-confirm"));
  EXPECT_TRUE(again.consumed(sent.messages));
  again.stop();
  EXPECT_EQ(again->stats().inserted, 0u) << "everything was stored by the first run";
  expect_exactly_once(dsn_, sent.events);
  EXPECT_EQ(kafka_.committed("g-confirm", "events", partitions), producer.end_offsets("events", partitions));
}

// A stop while the batch ahead is committed but not confirmed (no standby where one is required) and the batch
// behind it cannot be written (the database gone): the source gives the failing one up, waits its 10 s for the
// confirmation and leaves with their offsets uncommitted. It used to wait, for ever, for the unconfirmed batch
// to come back in order ahead of the given-up one.
TEST_F(KafkaSource, AStopWithAnUnconfirmedBatchAheadOfAFailingOneEnds) {
  crm_test::test_producer producer(kafka_.bootstrap());
  auto first = produce_mix(producer, 300);
  auto o = source_options(kafka_, dsn_, "g-stop-unconfirmed");
  o.write.confirm.min_standbys = 1;
  const std::string db = "kafka_AStopWithAnUnconfirmedBatchAheadOfAFailingOneEnds";
  auto admin = [](const std::string& sql) { crm_test::execute(crm_test::admin_dsn(), sql); };
  running_source src(o);
  ASSERT_TRUE(wait_until([&] { return rows(dsn_) == first.events; })) << "committed, only not confirmed";
  admin("ALTER DATABASE \"" + db + "\" ALLOW_CONNECTIONS false");
  admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + db + "'");
  auto second = produce_mix(producer, 300, 300);
  // Everything produced is consumed (the lag is measured as the source polls), and the second batch is in the
  // writer's hands, failing.
  EXPECT_TRUE(wait_until([&] { return src->stats().lag == 0; }, 30s));
  std::this_thread::sleep_for(1s);
  const auto told = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { src.stop(); });
  const bool ended = stopped.wait_for(40s) == std::future_status::ready;
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - told).count();
  admin("ALTER DATABASE \"" + db + "\" ALLOW_CONNECTIONS true");
  if (!ended) {
    // The source cannot be joined: end the test program, failed, instead of hanging ctest.
    ADD_FAILURE() << "the source still had not stopped 40 s after stop()";
    kafka_.terminate();
    std::fflush(nullptr);
    std::_Exit(1);
  }
  EXPECT_LT(took, 30.0);
  EXPECT_EQ(src->stats().offset_commits, 0u) << "an offset was committed for an unconfirmed or unwritten batch";
  // The next run (a single PostgreSQL: its COMMIT is the confirmation) writes the second batch; the first is a no-op.
  running_source again(source_options(kafka_, dsn_, "g-stop-unconfirmed"));
  EXPECT_TRUE(again.consumed(first.messages + second.messages));
  again.stop();
  expect_exactly_once(dsn_, first.events + second.events);
  EXPECT_EQ(kafka_.committed("g-stop-unconfirmed", "events", partitions), producer.end_offsets("events", partitions));
}

// A stop while one writer retries its part of a batch (here a serialization failure on one event, retried for ever)
// gives that batch up, while the other writer's parts and the first writer's queued parts of the later batches are
// still written. Their offsets cover the given-up batch's messages too, so committing them lost that batch's
// unwritten rows for good. After the first batch not written, no later offset is committed: the next run reads
// them again, and stores what was missing.
TEST_F(KafkaSource, AStopNeverCommitsOffsetsPastABatchThatWasNotWritten) {
  refuse_event_5(dsn_, "poisoned", "40001");
  crm_test::test_producer producer(kafka_.bootstrap());
  auto sent = produce_mix(producer, 1200);
  auto o = source_options(kafka_, dsn_, "g-held");
  o.write.writers = 2;
  {
    running_source src(o);
    EXPECT_TRUE(wait_until([&] { return src->stats().lag == 0; }, 30s));
    // The other writer's parts are stored; the poisoned part keeps its batch, and all after it, in flight.
    EXPECT_TRUE(wait_until([&] { return rows(dsn_) > 0; }, 30s));
    std::this_thread::sleep_for(2s);
    src.stop();
  }
  crm_test::execute(dsn_, "DROP TRIGGER poisoned ON communications");
  ASSERT_LT(rows(dsn_), sent.events) << "the poisoned event was stored: the test proves nothing";
  running_source again(source_options(kafka_, dsn_, "g-held"));
  EXPECT_TRUE(wait_until([&] { return rows(dsn_) == sent.events; }, 30s)) << "rows lost: their offsets were committed";
  again.stop();
  expect_exactly_once(dsn_, sent.events);
}

// From a review: a member losing its partitions (another joined the group) waits in librdkafka's rebalance
// callback for its writes; with one of them retried for ever (the database refusing it) a stop was never seen
// there, and the member stayed until the database accepted the batch. A stop gives the batch up (its offsets
// uncommitted: the partitions' next owner reads it again) and ends the wait.
TEST_F(KafkaSource, AStopEndsARevocationWaitingForABatchRetriedForEver) {
  refuse_event_5(dsn_, "refused", "42501");
  crm_test::test_producer producer(kafka_.bootstrap());
  auto sent = produce_mix(producer, 600);
  auto o = source_options(kafka_, dsn_, "g-revoke");
  o.write.writer.retry = crm::sinks::postgres::retry_policy::for_ever();  // refusals retried after a pause
  auto a = std::make_unique<running_source>(o);
  // The batch with the refused event is being retried (with one writer, whatever is queued behind it waits).
  ASSERT_TRUE(wait_until(
      [&] { return crm_test::count(dsn_, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM refused") > 0; },
      30s));
  ASSERT_LT(rows(dsn_), sent.events);
  // Another member joins: the first is revoked while its refused batch is being retried.
  running_source b(source_options(kafka_, dsn_, "g-revoke"));
  std::this_thread::sleep_for(3s);
  const auto started = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { a->stop(); });
  const bool in_time = stopped.wait_for(20s) == std::future_status::ready;
  EXPECT_TRUE(in_time) << "the stop did not end the revocation's wait";
  crm_test::execute(dsn_, "DROP TRIGGER refused ON communications");
  stopped.wait();
  if (in_time) {
    EXPECT_LT(std::chrono::steady_clock::now() - started, 15s);
  }
  a.reset();
  // The other member takes every partition and stores what the first gave up.
  EXPECT_TRUE(wait_until([&] { return rows(dsn_) == sent.events; }, 60s)) << rows(dsn_);
  b.stop();
  expect_exactly_once(dsn_, sent.events);
}

TEST_F(KafkaSource, TwoWritersInOneGroupSplitThePartitionsAndWriteEachEventOnce) {
  crm_test::test_producer producer(kafka_.bootstrap());
  running_source a(source_options(kafka_, dsn_, "g-two")), b(source_options(kafka_, dsn_, "g-two"));
  // Both members hold partitions before the events arrive.
  ASSERT_TRUE(wait_until([&] { return a->assigned_partitions() > 0 && b->assigned_partitions() > 0; }));
  EXPECT_EQ(a->assigned_partitions() + b->assigned_partitions(), static_cast<std::size_t>(partitions));
  auto sent = produce_mix(producer, 1000);
  const auto total = static_cast<std::uint64_t>(sent.messages);
  EXPECT_TRUE(wait_until([&] { return a->stats().messages + b->stats().messages >= total; }));
  a.request_stop();
  b.request_stop();
  a.stop();
  b.stop();
  EXPECT_GT(a->stats().messages, 0u);
  EXPECT_GT(b->stats().messages, 0u);
  EXPECT_EQ(a->stats().messages + b->stats().messages, total);
  expect_written_once_and_committed(producer, "g-two", sent.events);
}

TEST_F(KafkaSource, ASlowDatabasePausesThePartitionsWhileTheMemberStaysInTheGroup) {
  crm_test::test_producer producer(kafka_.bootstrap());
  auto sent = produce_mix(producer, 1000);
  // Hold the table: the first batch's INSERT waits, the next batch fills, the partitions pause.
  pqxx::connection blocker(dsn_);
  pqxx::work lock_tx(blocker);
  lock_tx.exec("LOCK TABLE communications IN ACCESS EXCLUSIVE MODE");
  running_source src(source_options(kafka_, dsn_, "g-slow"));
  EXPECT_TRUE(wait_until([&] { return src->stats().pauses > 0; }));
  std::this_thread::sleep_for(1s);  // paused, still polling
  EXPECT_EQ(src->assigned_partitions(), static_cast<std::size_t>(partitions));
  lock_tx.abort();
  EXPECT_TRUE(src.consumed(sent.messages));
  src.stop();
  EXPECT_EQ(src->stats().rebalances, 1u) << "the member lost its partitions while paused";
  expect_written_once_and_committed(producer, "g-slow", sent.events);
}

TEST(KafkaTopics, TopicFormatsParseAndMistakesAreNamed) {
  auto t = crm::ingest::parse_kafka_topics(" crm.events=canonical, sg = sendgrid ");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1].topic, "sg");
  EXPECT_EQ(t[1].format, "sendgrid");
  EXPECT_THROW(crm::ingest::parse_kafka_topics("a=xml"), std::invalid_argument);
  EXPECT_THROW(crm::ingest::parse_kafka_topics("a"), std::invalid_argument);
  EXPECT_THROW(crm::ingest::parse_kafka_topics("a=canonical,a=segment"), std::invalid_argument);
  EXPECT_TRUE(crm::ingest::parse_kafka_topics("").empty());
}

// ---- processes: `crm-ingest consume` killed mid-batch, and serve --log kafka + write ----

// A crm-ingest process (argv[0] names it; CRM_INGEST_EXE runs), stdout to `out`, stderr beside it.
class child : public crm_test::child {
 public:
  child(std::vector<std::string> args, const std::filesystem::path& out)
      : crm_test::child(with_exe(std::move(args)), out, out.string() + ".err") {}
  // Sends `sig` and waits; the exit code (-signal when killed by one).
  int stop(int sig) {
    signal(sig);
    auto status = wait_for(std::chrono::seconds(120));
    return status ? *status : -1;
  }

 private:
  static std::vector<std::string> with_exe(std::vector<std::string> args) {
    args.front() = CRM_INGEST_EXE;
    return args;
  }
};

TEST_F(KafkaSource, ConsumerKilledMidBatchAndRestartedLosesAndDuplicatesNothing) {
  crm_test::temp_dir tmp;
  const auto& dir = tmp.path();
  {
    std::ofstream cfg(dir / "consume.toml");
    cfg << "[postgres]\ndsn = \"" << dsn_ << "\"\nbatch_rows = 200\nlinger_ms = 20\nallow_superuser = true\n\n[kafka]\nbrokers = \""
        << kafka_.bootstrap() << "\"\ngroup = \"g-kill\"\ntopics = \"events=canonical\"\n"
        // A short session: the killed member's partitions are given away sooner.
        << "session_timeout_ms = 3000\nproperties = \"heartbeat.interval.ms=500\"\n";
  }
  crm_test::test_producer producer(kafka_.bootstrap());
  auto sent = produce_mix(producer, 2500);
  const std::string config = (dir / "consume.toml").string();
  {
    child c({"crm-ingest", "consume", "--config", config}, dir / "run1.txt");
    // Kill it while batches are being written: some rows stored, not all.
    ASSERT_TRUE(wait_until([&] { return rows(dsn_) > 0; }));
    c.stop(SIGKILL);
  }
  const auto after_kill = rows(dsn_);
  EXPECT_LT(after_kill, sent.events) << "the consumer finished before it could be killed mid-way";
  child c({"crm-ingest", "consume", "--config", config}, dir / "run2.txt");
  EXPECT_TRUE(wait_until([&] {
    return rows(dsn_) >= sent.events &&
           crm_test::count(dsn_, "SELECT count(*) FROM rejected_events") >= static_cast<long long>(sent.garbage.size());
  }));
  EXPECT_EQ(c.stop(SIGTERM), 0);
  expect_written_once_and_committed(producer, "g-kill", sent.events);
  EXPECT_EQ(crm_test::count(dsn_, "SELECT count(*) FROM rejected_events"), static_cast<long long>(sent.garbage.size()));
}

TEST_F(KafkaSource, ServeWithKafkaLogAndTwoWritersStoreEveryAcknowledgedEventOnce) {
  crm_test::temp_dir tmp;
  const auto& dir = tmp.path();
  ASSERT_EQ(kafka_.command("topic crm-ingest.events " + std::to_string(partitions)), "ok");
  {
    std::ofstream cfg(dir / "node.toml");
    cfg << "[http]\nlisten = \"127.0.0.1:0\"\n\n[postgres]\ndsn = \"" << dsn_
        << "\"\nbatch_rows = 200\nlinger_ms = 20\nallow_superuser = true\n\n[kafka]\nbrokers = \"" << kafka_.bootstrap()
        << "\"\nsession_timeout_ms = 6000\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
  }
  const std::string config = (dir / "node.toml").string();
  child serve({"crm-ingest", "serve", "--config", config, "--log", "kafka"}, dir / "serve.txt");
  unsigned short port = 0;
  ASSERT_TRUE(wait_until([&] {
    std::ifstream in(dir / "serve.txt");
    std::string word;
    while (in >> word) {
      if (word == "port" && (in >> port)) return true;
    }
    return false;
  }));
  // A collector without writers exports no writer series: CrmIngestDatabaseUnreachable cannot fire on it.
  EXPECT_EQ(crm_test::http_request(port, "GET", "/metrics").body.find("crm_ingest_writer_"), std::string::npos);
  child w1({"crm-ingest", "write", "--config", config}, dir / "w1.txt");
  child w2({"crm-ingest", "write", "--config", config}, dir / "w2.txt");
  // 40 requests of 25 events, the 5th request of each ten sent twice (a client retry).
  int events = 0;
  for (int r = 0; r < 40; ++r) {
    std::string body;
    for (int i = 0; i < 25; ++i) body += event_json(r * 25 + i) + "\n";
    events += 25;
    for (int times = r % 10 == 4 ? 2 : 1; times > 0; --times) {
      auto reply = crm_test::http_request(port, "POST", "/v1/events", body, {{"Content-Type", "application/x-ndjson"}});
      ASSERT_EQ(reply.status / 100, 2) << reply.body;
    }
  }
  EXPECT_TRUE(wait_until([&] { return rows(dsn_) >= events; }, 40s));
  // `write` exports the write path's metrics on metrics.listen (port 0: its port is in its output).
  unsigned short w1_metrics = 0;
  ASSERT_TRUE(wait_until([&] {
    std::ifstream in(dir / "w1.txt");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("metrics on port ", 0) == 0) w1_metrics = static_cast<unsigned short>(std::stoi(line.substr(16)));
    }
    return w1_metrics != 0;
  }));
  const auto exposition = crm_test::http_request(w1_metrics, "GET", "/metrics").body;
  for (const char* series : {"\ncrm_ingest_writer_database_up 1\n", "\ncrm_ingest_writer_batches_total ",
                             "\ncrm_ingest_writer_batch_seconds_count ", "\ncrm_ingest_kafka_messages_total ",
                             "\ncrm_ingest_kafka_lag_messages ", "\ncrm_ingest_writer_failures_total 0\n",
                             "\ncrm_ingest_writer_rows_total{table=\"rejected_events\"} "}) {
    EXPECT_NE(exposition.find(series), std::string::npos) << series << " in " << exposition;
  }
  EXPECT_EQ(serve.stop(SIGTERM), 0);
  EXPECT_EQ(w1.stop(SIGTERM), 0);
  EXPECT_EQ(w2.stop(SIGTERM), 0);
  expect_exactly_once(dsn_, events);
  // Each lead's events share a key and so a partition: order within a lead is the order of acknowledgement.
  EXPECT_EQ(kafka_.committed("crm-ingest-writers", "crm-ingest.events", partitions),
            as_vector(crm_test::test_producer(kafka_.bootstrap()).end_offsets("crm-ingest.events", partitions)));
}

}  // namespace
