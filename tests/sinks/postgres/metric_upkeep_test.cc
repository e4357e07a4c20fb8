// The communications' daily counts and A/B message counts (schemas/0021_pending_metric_counts.sql) against a real
// PostgreSQL: a batch appends its counts to communication_metrics_pending (ab_test_message_counts_pending) and locks
// no counter row, crm_metrics_fold() moves them into the _folded tables, and communication_metrics and
// ab_test_message_counts (the views of both) equal a recount of the stored rows before, during and after folds,
// whichever writer or session folds.
#include "sinks/postgres/writer.h"

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "sinks/postgres/migrations.h"
#include "support/event_ids.h"
#include "support/test_db.h"
#include "direct_copy_checks.h"
#include "writer_options.h"

namespace pg = crm::sinks::postgres;
namespace tf = crm::transform;

namespace {

using crm_test::id_of;
using crm_test::nov_2026;
using crm_test::writer_options_for;

// Events `from` to `to`, on three days, two channels, three campaigns: every batch shares its counters with the
// others.
tf::event_batch events(std::uint64_t from, std::uint64_t to) {
  tf::event_batch b;
  for (std::uint64_t i = from; i < to; ++i) {
    tf::communication c;
    c.event_id = id_of(i);
    c.occurred_at = nov_2026 + static_cast<tf::timestamp_us>(i % 3) * crm_test::day_us;
    c.occurred_at += static_cast<tf::timestamp_us>(i);
    c.received_at = c.occurred_at;
    c.channel_ = i % 2 ? tf::channel::email : tf::channel::sms;
    c.status = tf::comm_status::delivered;
    c.provider = "test";
    if ((i / 3) % 3) c.campaign_id = static_cast<std::int64_t>((i / 3) % 3);
    if (i % 4 < 3) {  // messages of a running A/B test: its counts are shared by every batch too
      c.ab_test_id = "subject-line";
      c.variant = i % 4 ? "A" : "B";
    }
    b.communications.push_back(c);
  }
  return b;
}

long long pending_rows(const std::string& dsn) {
  return crm_test::count(dsn, "SELECT (SELECT count(*) FROM communication_metrics_pending)"
                              " + (SELECT count(*) FROM ab_test_message_counts_pending)");
}

// crm_metrics_fold() on a session of its own: the pending rows folded, -1 for NULL (another session folding).
long long fold(const std::string& dsn) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  const auto f = tx.exec("SELECT crm_metrics_fold()")[0][0];
  return f.is_null() ? -1 : f.as<long long>();
}

pg::writer_options folding_every(const std::string& dsn, std::uint64_t rows) {
  auto o = writer_options_for(dsn);
  o.metric_fold_rows = rows;
  return o;
}

}  // namespace

// Before 0021 a batch upserted its counters and held their row locks until COMMIT: a writer whose batch shared a
// day, campaign, channel and status with another writer's uncommitted batch waited for that COMMIT (here held
// open by a deferred trigger on the ledger row, as a COMMIT waiting for a synchronous standby would be).
TEST(MetricUpkeep, AWriterDoesNotWaitForTheCountersOfAnotherWritersUncommittedBatch) {
  auto dsn = crm_test::fresh_database("t_metric_no_wait");
  crm_test::execute(dsn,
                    "CREATE FUNCTION t_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                    " PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242); RETURN NULL; END $$;"
                    "CREATE CONSTRAINT TRIGGER t_hold AFTER INSERT ON ingest_batches DEFERRABLE INITIALLY DEFERRED"
                    " FOR EACH ROW WHEN (NEW.source = 'held') EXECUTE FUNCTION t_hold()");
  pqxx::connection holder(dsn);
  pqxx::nontransaction h(holder);
  h.exec("SELECT pg_advisory_lock(4242)");
  pg::writer held(writer_options_for(dsn)), other(writer_options_for(dsn));
  auto first = std::async(std::launch::async, [&] { return held.write(events(0, 300), {"held", "1"}); });
  // The first batch has run every statement and waits at its COMMIT.
  const bool holding = crm_test::wait_for_count(dsn,
                                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                                " AND objid = 4242 AND NOT granted AND database ="
                                                " (SELECT oid FROM pg_database WHERE datname = current_database())",
                                                1) == 1;
  EXPECT_TRUE(holding) << "the first batch did not reach its COMMIT";
  if (holding) {
    auto second = std::async(std::launch::async, [&] { return other.write(events(1000, 1300), {"free", "1"}); });
    const bool done = second.wait_for(std::chrono::seconds(15)) == std::future_status::ready;
    EXPECT_TRUE(done) << "the second writer waited for the first one's counters";
    EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ingest_batches"), done ? 1 : 0);
    h.exec("SELECT pg_advisory_unlock(4242)");
    EXPECT_EQ(second.get().communications_inserted, 300u);
  } else {
    h.exec("SELECT pg_advisory_unlock(4242)");
  }
  EXPECT_EQ(first.get().communications_inserted, 300u);
  crm_test::expect_metrics_equal_recount(dsn);
}

TEST(MetricUpkeep, AFoldMovesThePendingCountsAndReadersSeeTheSameCounts) {
  auto dsn = crm_test::fresh_database("t_metric_fold");
  pg::writer w(folding_every(dsn, 0));  // never folds itself
  for (std::uint64_t b = 0; b < 4; ++b) w.write(events(b * 200, b * 200 + 200), {"test", std::to_string(b)});
  const auto pending = pending_rows(dsn);
  EXPECT_GT(pending, 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communication_metrics_folded"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ab_test_message_counts_folded"), 0);
  crm_test::expect_metrics_equal_recount(dsn);
  EXPECT_EQ(fold(dsn), pending);
  EXPECT_EQ(pending_rows(dsn), 0);
  crm_test::expect_metrics_equal_recount(dsn);
  // Counts on top of folded ones, folded again.
  w.write(events(800, 1000), {"test", "4"});
  crm_test::expect_metrics_equal_recount(dsn);
  EXPECT_GT(fold(dsn), 0);
  crm_test::expect_metrics_equal_recount(dsn);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics_folded"), 1000);
  EXPECT_EQ(fold(dsn), 0);
}

TEST(MetricUpkeep, AFoldWhileAnotherRunsLeavesThePendingCountsToIt) {
  auto dsn = crm_test::fresh_database("t_metric_fold_busy");
  pg::writer w(folding_every(dsn, 0));
  w.write(events(0, 100), {"test", "1"});
  const auto pending = pending_rows(dsn);
  pqxx::connection other(dsn);
  pqxx::work busy(other);
  busy.exec("SELECT pg_advisory_xact_lock(hashtext('crm_metrics_fold'), 0)");
  EXPECT_EQ(fold(dsn), -1);  // NULL: another session holds the fold's lock
  EXPECT_EQ(pending_rows(dsn), pending);
  busy.abort();
  EXPECT_EQ(fold(dsn), pending);
  crm_test::expect_metrics_equal_recount(dsn);
}

TEST(MetricUpkeep, AWriterFoldsOnceItHasAppendedEnoughRows) {
  auto dsn = crm_test::fresh_database("t_metric_fold_due");
  pg::writer patient(folding_every(dsn, 1000000)), eager(folding_every(dsn, 1));
  patient.write(events(0, 60), {"test", "1"});  // a writer's first COMMIT folds (what earlier runs left)
  EXPECT_EQ(pending_rows(dsn), 0);
  patient.write(events(60, 120), {"test", "2"});  // fewer rows appended since than its threshold: left pending
  const auto pending = pending_rows(dsn);
  EXPECT_GT(pending, 0);
  patient.write(events(120, 150), {"test", "3"});
  EXPECT_GT(pending_rows(dsn), pending);
  eager.write(events(150, 180), {"test", "4"});  // folds after its COMMIT: every writer's pending rows
  EXPECT_EQ(pending_rows(dsn), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics_folded"), 180);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(events) FROM ab_test_message_counts_folded"), 135);
  crm_test::expect_metrics_equal_recount(dsn);
}

// Writers appending and folding, and a session folding in a loop, all at once: every count once, at every moment.
TEST(MetricUpkeep, WritersAndFoldsAtOnceCountEveryRowOnce) {
  auto dsn = crm_test::fresh_database("t_metric_fold_race");
  std::atomic<bool> writing{true};
  std::atomic<long long> folds{0}, checks{0}, mismatches{0};
  std::thread folder([&] {
    pqxx::connection c(dsn);
    pqxx::nontransaction tx(c);
    while (writing.load()) {
      const auto f = tx.exec("SELECT crm_metrics_fold()")[0][0];
      if (!f.is_null() && f.as<long long>() > 0) ++folds;
    }
  });
  // The views against a recount of the stored rows, in one statement (one snapshot) at a time, all along.
  const std::string mismatches_sql = crm_test::counter_mismatches_query();
  std::thread checker([&] {
    pqxx::connection c(dsn);
    pqxx::nontransaction tx(c);
    while (writing.load()) {
      mismatches += tx.exec(mismatches_sql)[0][0].as<long long>();
      ++checks;
    }
  });
  std::vector<std::thread> writers;
  for (std::uint64_t n = 0; n < 3; ++n) {
    writers.emplace_back([&, n] {
      pg::writer w(folding_every(dsn, 20));
      for (std::uint64_t b = 0; b < 15; ++b) {
        const std::uint64_t from = (n * 15 + b) * 100;
        w.write(events(from, from + 100), {"test", std::to_string(n) + "/" + std::to_string(b)});
      }
    });
  }
  for (auto& t : writers) t.join();
  writing = false;
  folder.join();
  checker.join();
  EXPECT_GT(folds.load(), 0);
  EXPECT_GT(checks.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), 4500);
  crm_test::expect_metrics_equal_recount(dsn);
  fold(dsn);
  EXPECT_EQ(pending_rows(dsn), 0);
  crm_test::expect_metrics_equal_recount(dsn);
}

// A database an earlier release wrote (its counters upserted into the tables) keeps its counts across 0021, and
// batches after it add on top.
TEST(MetricUpkeep, CountsAnEarlierReleaseWroteAreKeptByTheMigration) {
  auto dsn = crm_test::fresh_database("t_metric_upgrade", false);
  {
    pqxx::connection c(dsn);
    pg::migrate(c, crm_test::migrations_before(21), {1, 1});
  }
  // What an earlier release's batches left: rows and the counters they upserted.
  const auto old = events(0, 300);
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    for (const auto& e : old.communications) {
      tx.exec_params("INSERT INTO communications (event_id, occurred_at, received_at, channel, direction, status,"
                     " provider, campaign_id, ab_test_id, variant) VALUES ($1::uuid, to_timestamp($2::float8 / 1e6),"
                     " now(), $3, 'outbound', 'delivered', 'test', nullif($4, 0), nullif($5, ''), nullif($6, ''))",
                     tf::to_string(e.event_id), static_cast<double>(e.occurred_at),
                     std::string(tf::to_string(e.channel_)), e.campaign_id, std::string(e.ab_test_id),
                     std::string(e.variant));
    }
    tx.exec("INSERT INTO communication_metrics (day, campaign_id, channel, status, event_count)"
            " SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*) FROM communications"
            " GROUP BY 1, 2, 3, 4");
    tx.exec("INSERT INTO ab_test_message_counts (ab_test_id, variant, status, events)"
            " SELECT ab_test_id, variant, status, count(*) FROM communications"
            " WHERE ab_test_id IS NOT NULL AND variant IS NOT NULL GROUP BY 1, 2, 3");
    tx.commit();
  }
  {
    pqxx::connection c(dsn);
    pg::migrate(c, pg::embedded_migrations(), {1, 1});
  }
  crm_test::expect_metrics_equal_recount(dsn);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics_folded"), 300);
  pg::writer w(writer_options_for(dsn));
  w.write(events(300, 600), {"test", "after"});
  crm_test::expect_metrics_equal_recount(dsn);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), 600);
}
