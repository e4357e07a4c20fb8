// The exactly-once batch transaction against a real PostgreSQL.
#include "sinks/postgres/writer.h"

#include <thread>

#include <gtest/gtest.h>

#include "support/event_ids.h"
#include "support/test_db.h"
#include "writer_options.h"

namespace pg = crm::sinks::postgres;
namespace tf = crm::transform;

namespace {

using crm_test::nov_2026;
constexpr tf::timestamp_us day = crm_test::day_us;

using crm_test::id_of;

tf::communication comm(std::uint64_t n, tf::timestamp_us at, std::int64_t campaign, tf::comm_status status) {
  tf::communication c;
  c.event_id = id_of(n);
  c.occurred_at = at;
  c.received_at = nov_2026 + 30 * day;
  c.lead_id = static_cast<std::int64_t>(n % 7 + 1);
  c.campaign_id = campaign;
  c.channel_ = tf::channel::email;
  c.status = status;
  c.provider = "test";
  c.email = "lead@example.com";
  return c;
}

auto touch = crm_test::page_view;

const char* recount_mismatch_sql =
    "SELECT count(*) FROM ("
    " SELECT day, campaign_id, channel, status, event_count FROM communication_metrics WHERE event_count <> 0"
    " EXCEPT SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "   FROM communications GROUP BY 1, 2, 3, 4"
    ") a";
const char* recount_missing_sql =
    "SELECT count(*) FROM ("
    " SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "   FROM communications GROUP BY 1, 2, 3, 4"
    " EXCEPT SELECT day, campaign_id, channel, status, event_count FROM communication_metrics"
    ") a";

void expect_metrics_equal_recount(const std::string& dsn) {
  EXPECT_EQ(crm_test::count(dsn, recount_mismatch_sql), 0);
  EXPECT_EQ(crm_test::count(dsn, recount_missing_sql), 0);
}

auto opts = crm_test::writer_options_for;

TEST(PostgresWriter, WritesOnceAndReplayIsANoOp) {
  auto dsn = crm_test::fresh_database("t_writer_replay");
  tf::event_batch b;
  for (std::uint64_t i = 0; i < 500; ++i) {
    b.communications.push_back(comm(i, nov_2026 + static_cast<std::int64_t>(i % 5) * day, i % 3 ? 10 : 0,
                                    i % 2 ? tf::comm_status::delivered : tf::comm_status::opened));
  }
  for (std::uint64_t i = 0; i < 100; ++i) b.touchpoints.push_back(touch(i, nov_2026 + day));
  b.rejections.push_back({nov_2026, "unit:1", "status: bad", "{\"status\":\"x\"}", {}});

  pg::writer w(opts(dsn));
  auto r1 = w.write(b, {"test", "first"});
  EXPECT_EQ(r1.communications_in, 500u);
  EXPECT_EQ(r1.communications_inserted, 500u);
  EXPECT_EQ(r1.touchpoints_inserted, 100u);
  EXPECT_EQ(r1.rejected_inserted, 1u);
  expect_metrics_equal_recount(dsn);
  auto metrics_before = crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics");
  EXPECT_EQ(metrics_before, 500);

  auto r2 = w.write(b, {"test", "replay"});
  EXPECT_EQ(r2.communications_inserted, 0u);
  EXPECT_EQ(r2.touchpoints_inserted, 0u);
  EXPECT_EQ(r2.rejected_inserted, 0u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 500);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 100);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), metrics_before);
  expect_metrics_equal_recount(dsn);
  // Both batches are in the ledger, the replay with zero inserted rows.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ingest_batches"), 2);
  EXPECT_EQ(crm_test::count(dsn, "SELECT communications_inserted FROM ingest_batches WHERE source_position = 'replay'"),
            0);
  // NULL campaigns are one metric row per day/channel/status (NULLS NOT DISTINCT).
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communication_metrics WHERE campaign_id IS NULL"),
            crm_test::count(dsn, "SELECT count(DISTINCT (occurred_at::date, status)) FROM communications "
                                 "WHERE campaign_id IS NULL"));
}

TEST(PostgresWriter, DuplicatesInsideOneBatchCountOnce) {
  auto dsn = crm_test::fresh_database("t_writer_dupes");
  tf::event_batch b;
  for (int k = 0; k < 3; ++k) {
    for (std::uint64_t i = 0; i < 50; ++i) b.communications.push_back(comm(i, nov_2026, 5, tf::comm_status::sent));
  }
  pg::writer w(opts(dsn));
  auto r = w.write(b, {"test", "dupes"});
  EXPECT_EQ(r.communications_in, 150u);
  EXPECT_EQ(r.duplicates_in_batch, 100u);
  EXPECT_EQ(r.communications_inserted, 50u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), 50);
  expect_metrics_equal_recount(dsn);
}

TEST(PostgresWriter, RetriesOfEventsWithoutAnEventTimeAreStoredOnce) {
  // A Twilio "sent" callback has no timestamp: occurred_at is when it arrived, so its retry carries the
  // same event_id with a later occurred_at.
  auto dsn = crm_test::fresh_database("t_writer_receipt_time");
  pg::writer w(opts(dsn));
  auto receipt = [](std::uint64_t n, tf::timestamp_us at) {
    auto c = comm(n, at, 9, tf::comm_status::sent);
    c.occurred_at_is_receipt_time = true;
    return c;
  };
  const tf::timestamp_us hour = 3600LL * 1000000;
  tf::event_batch first;
  first.communications.push_back(receipt(1, nov_2026 + 10 * hour));
  EXPECT_EQ(w.write(first, {"test", "original"}).communications_inserted, 1u);

  tf::event_batch retry;  // a day later, and twice within one batch
  retry.communications.push_back(receipt(1, nov_2026 + 34 * hour));
  retry.communications.push_back(receipt(1, nov_2026 + 35 * hour));
  retry.communications.push_back(receipt(2, nov_2026 + 35 * hour));  // a different event
  retry.communications.push_back(receipt(2, nov_2026 + 36 * hour));  // and its retry in the same batch
  auto r = w.write(retry, {"test", "retries"});
  EXPECT_EQ(r.communications_inserted, 1u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 2);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT event_id) FROM communications"), 2);
  expect_metrics_equal_recount(dsn);

  // Events that carry their own time keep (event_id, occurred_at) as their identity.
  tf::event_batch timed;
  timed.communications.push_back(comm(3, nov_2026 + hour, 9, tf::comm_status::sent));
  timed.communications.push_back(comm(3, nov_2026 + 2 * hour, 9, tf::comm_status::sent));
  EXPECT_EQ(w.write(timed, {"test", "timed"}).communications_inserted, 2u);
}

TEST(PostgresWriter, MonthOutsideThePrecreatedRangeGetsItsPartition) {
  auto dsn = crm_test::fresh_database("t_writer_partition");
  const tf::timestamp_us may_2003 = 1051747200LL * 1000000 + 5 * day;  // 2003-05-06
  tf::event_batch b;
  b.communications.push_back(comm(1, may_2003, 1, tf::comm_status::sent));
  b.touchpoints.push_back(touch(1, may_2003));
  pg::writer w(opts(dsn));
  w.write(b, {"test", "old"});
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_2003_05"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints_2003_05"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_default"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints_default"), 0);
}

TEST(PostgresWriter, RowsTheDatabaseRefusesAreDeadLetteredAndTheRestCommitted) {
  auto dsn = crm_test::fresh_database("t_writer_split");
  tf::event_batch b;
  for (std::uint64_t i = 0; i < 20; ++i) b.communications.push_back(comm(i, nov_2026, 3, tf::comm_status::sent));
  b.communications[7].metadata = "{not json";  // jsonb refuses it (22P02)
  b.communications[13].lead_id = -5;           // the CHECK refuses it (23514)
  pg::writer w(opts(dsn));
  auto r = w.write(b, {"test", "split"});
  EXPECT_EQ(r.communications_inserted, 18u);
  EXPECT_EQ(r.refused_by_database, 2u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 18);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE reason LIKE 'database refused%'"), 2);
  expect_metrics_equal_recount(dsn);
}

// From a review: a refused row's dead letter carried its metadata as a string ("metadata_text", a field the
// canonical reader does not know, so a replay stored {"metadata_text": "..."}) and its tenant in the body
// (where a replay reads it as metadata) instead of the dead letter's tenant: the replayed row lost both. The
// metadata is an object again when it is one (kept as text only when it is what the database refused), and
// the tenant is the dead letter's.
TEST(PostgresWriter, ARefusedRowsDeadLetterKeepsItsMetadataObjectAndTenant) {
  auto dsn = crm_test::fresh_database("t_writer_refused_row");
  tf::event_batch b;
  for (std::uint64_t i = 0; i < 4; ++i) b.communications.push_back(comm(i, nov_2026, 3, tf::comm_status::sent));
  b.communications[1].lead_id = -5;  // the CHECK refuses it (23514)
  b.communications[1].metadata = R"({"k":"v","custom":[1,2]})";
  b.communications[1].tenant_id = "tenant-x";
  b.communications[2].metadata = "{not json";  // jsonb refuses it (22P02)
  pg::writer w(opts(dsn));
  EXPECT_EQ(w.write(b, {"test", "refused-row"}).refused_by_database, 2u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE tenant_id = 'tenant-x' AND "
                                 "raw::jsonb -> 'metadata' = '{\"k\":\"v\",\"custom\":[1,2]}'::jsonb AND "
                                 "NOT raw::jsonb ? 'tenant_id' AND NOT raw::jsonb ? 'metadata_text'"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE tenant_id IS NULL AND "
                                 "raw::jsonb ->> 'metadata_text' = '{not json'"), 1);
}

// From a review: a dead letter the database refuses (decoded from a Kafka log message with a received_at before
// timestamptz's range) threw out of the writer, and the pool retried the batch for ever: `write` stalled on one
// message, every restart too. It is kept once more, received now, the refusal and its first reason in its
// reason; the rest of the batch is committed.
TEST(PostgresWriter, ADeadLetterTheDatabaseRefusesIsKeptReceivedNow) {
  auto dsn = crm_test::fresh_database("t_writer_refused_dead_letter");
  tf::event_batch b;
  for (std::uint64_t i = 0; i < 6; ++i) b.communications.push_back(comm(i, nov_2026, 3, tf::comm_status::sent));
  tf::rejection bad;
  bad.received_at = -1'000'000'000'000'000'000LL;  // 22008: before 4714 BC
  bad.source = "log/0:17";
  bad.reason = "status: unknown";
  bad.raw = R"({"status":"?"})";
  b.rejections.push_back(bad);
  tf::rejection fine = bad;
  fine.received_at = nov_2026;
  fine.raw = R"({"status":"??"})";
  b.rejections.push_back(fine);
  pg::writer w(opts(dsn));
  const auto r = w.write(b, {"test", "refused-dead-letter"});
  EXPECT_EQ(r.communications_inserted, 6u);
  EXPECT_EQ(r.rejected(), 2u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 6);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 2);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE raw = '{\"status\":\"?\"}'"
                                 " AND received_at > now() - interval '1 hour' AND source = 'log/0:17'"
                                 " AND reason LIKE 'the database refused this dead letter (22008)%'"
                                 " AND reason LIKE '%its reason was: status: unknown'"),
            1);
  // Written again (a replay of the same batch): nothing more.
  w.write(b, {"test", "refused-dead-letter"});
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 2);
  expect_metrics_equal_recount(dsn);
}

TEST(PostgresWriter, ReconnectsAfterItsBackendIsKilled) {
  auto dsn = crm_test::fresh_database("t_writer_reconnect");
  pg::writer w(opts(dsn));
  tf::event_batch b;
  b.communications.push_back(comm(1, nov_2026, 1, tf::comm_status::sent));
  w.write(b, {"test", "one"});
  {
    pqxx::connection admin(dsn);
    pqxx::nontransaction tx(admin);
    tx.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'crm-ingest writer'");
  }
  b.communications[0] = comm(2, nov_2026, 1, tf::comm_status::sent);
  auto r = w.write(b, {"test", "two"});
  EXPECT_EQ(r.communications_inserted, 1u);
  EXPECT_GE(r.attempts, 2u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 2);
}

TEST(PostgresWriter, GivesUpWithAClearErrorWhenTheDatabaseIsUnreachable) {
  pg::writer_options o;
  o.dsn = "postgresql://crm@127.0.0.1:1/none?connect_timeout=1";
  o.retry = pg::retry_policy::for_at_most(std::chrono::seconds(1));
  o.backoff_base = std::chrono::milliseconds(50);
  pg::writer w(o);
  tf::event_batch b;
  b.communications.push_back(comm(1, nov_2026, 1, tf::comm_status::sent));
  try {
    w.write(b, {"test", "unreachable"});
    FAIL() << "write succeeded without a database";
  } catch (const pg::write_error& e) {
    EXPECT_NE(std::string(e.what()).find("gave up after"), std::string::npos) << e.what();
  }
}

TEST(PostgresWriter, TwoWritersWithOverlappingBatchesWriteEachEventOnce) {
  auto dsn = crm_test::fresh_database("t_writer_concurrent");
  constexpr int batches = 20;
  auto run = [&](int offset) {
    pg::writer w(opts(dsn));
    for (int k = 0; k < batches; ++k) {
      tf::event_batch b;
      // Each batch overlaps the other writer's batches by half.
      for (std::uint64_t i = 0; i < 400; ++i) {
        std::uint64_t n = static_cast<std::uint64_t>(k * 200 + offset) + i;
        b.communications.push_back(comm(n, nov_2026 + static_cast<std::int64_t>(n % 3) * day,
                                        static_cast<std::int64_t>(n % 4), tf::comm_status::delivered));
      }
      w.write(b, {"test", std::to_string(offset) + ":" + std::to_string(k)});
    }
  };
  std::thread a(run, 0), b(run, 100);
  a.join();
  b.join();
  const long long expected = (batches - 1) * 200 + 400 + 100;  // ids 0 .. 4299
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), expected);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), expected);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(communications_inserted) FROM ingest_batches"), expected);
  expect_metrics_equal_recount(dsn);
}

}  // namespace
