// `crm-ingest partitions retain` against a real PostgreSQL: old monthly partitions are detached, archived
// with pg_dump (restorable), dropped; reruns are no-ops; a run that died mid-way is finished by the next;
// a concurrent run does nothing; the DEFAULT partitions are never touched.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "support/run_command.h"
#include "support/scratch.h"
#include "support/test_db.h"

namespace fs = std::filesystem;
using crm_test::scratch;

namespace {

const std::string exe = CRM_INGEST_EXE;

crm_test::command_result retain(const std::string& dsn, const std::string& args) {
  return crm_test::run_command(exe + " --log-level warn partitions retain --dsn " + crm_test::shell_quote(dsn) + " " +
                               args + " 2>&1");
}

// `expr` of `m`, the start of the month `months_ago` months before the current one (UTC), with `arg` as $2.
std::string of_month(const std::string& dsn, int months_ago, const std::string& expr, const std::string& arg) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  return tx.exec_params("SELECT " + expr + " FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') - "
                        "make_interval(months => $1) AS m) t",
                        months_ago, arg)[0][0]
      .as<std::string>();
}

// Name of the monthly partition `months_ago` months before the current one, e.g. communications_2025_06.
std::string month_name(const std::string& dsn, const std::string& parent, int months_ago) {
  return of_month(dsn, months_ago, "$2 || '_' || to_char(m, 'YYYY_MM')", parent);
}

// A time `offset` into the month `months_ago` months before the current one, as the importer reads it (UTC).
std::string month_time(const std::string& dsn, int months_ago, const std::string& offset) {
  return of_month(dsn, months_ago, "to_char(m + $2::interval, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')", offset);
}

crm_test::command_result import(const std::string& dsn, const fs::path& file, const std::string& args = "") {
  return crm_test::run_command(exe + " --log-level warn import --no-progress --allow-superuser --dsn " +
                               crm_test::shell_quote(dsn) + " " + args + " " + file.string() + " 2>&1");
}

void exec(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

bool table_exists(const std::string& dsn, const std::string& name) {
  return crm_test::count(dsn, "SELECT count(*) FROM pg_class WHERE relname = '" + name + "'") == 1;
}

struct prepared {
  std::string dsn;
  std::string old_comm;  // the communications partition 16 months back, with its 25 rows
};

// A database with monthly partitions from 20 months back, rows 16 and 12 months back, and a row far in
// the past that only the DEFAULT partition can hold.
prepared prepared_database(const std::string& name) {
  auto dsn = crm_test::fresh_database(name);
  exec(dsn, "SELECT crm_ensure_partitions(20, 3)");
  exec(dsn,
       "INSERT INTO communications (event_id, occurred_at, received_at, channel, status, email) "
       "SELECT gen_random_uuid(), date_trunc('month', now()) - interval '16 months' + n * interval '1 hour', now(), "
       "'email', 'sent', 'a@example.com' FROM generate_series(1, 25) n");
  exec(dsn,
       "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, anonymous_id, touch_type, channel_group) "
       "SELECT gen_random_uuid(), date_trunc('month', now()) - interval '16 months' + n * interval '1 hour', now(), 'x', "
       "'page_view', 'Direct' FROM generate_series(1, 7) n");
  exec(dsn,
       "INSERT INTO communications (event_id, occurred_at, received_at, channel, status, email) "
       "VALUES (gen_random_uuid(), date_trunc('month', now()) - interval '12 months' + interval '1 day', now(), 'email', "
       "'sent', 'kept@example.com'), (gen_random_uuid(), '2001-01-01', now(), 'email', 'sent', 'default@example.com')");
  return {dsn, month_name(dsn, "communications", 16)};
}

TEST(PartitionsRetain, DropsOldMonthsWithVerifiedRestorableArchivesAndIsIdempotent) {
  const auto [dsn, old_comm] = prepared_database("t_retain");
  auto archive = scratch("archive");
  const auto old_touch = month_name(dsn, "customer_touchpoints", 16);
  const auto kept = month_name(dsn, "communications", 12);
  const auto boundary = month_name(dsn, "communications", 13);

  auto dry = retain(dsn, "--keep 13mo --dry-run");
  ASSERT_EQ(dry.status, 0) << dry.out;
  EXPECT_NE(dry.out.find("would detach and drop " + old_comm), std::string::npos) << dry.out;
  EXPECT_TRUE(table_exists(dsn, old_comm));

  auto r = retain(dsn, "--keep 13mo --archive " + archive.string());
  ASSERT_EQ(r.status, 0) << r.out;
  // 20..13 months back go (8 months x 2 tables); 12 months back and newer stay.
  EXPECT_NE(r.out.find(": 16 partitions dropped (32 rows), 1 rows before the cutoff in the DEFAULT partitions (kept)"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(table_exists(dsn, old_comm));
  EXPECT_FALSE(table_exists(dsn, old_touch));
  EXPECT_FALSE(table_exists(dsn, boundary));
  EXPECT_TRUE(table_exists(dsn, kept));
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 2);  // 12 months back + DEFAULT
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_default"), 1);
  EXPECT_TRUE(fs::exists(archive / (old_comm + ".dump")));
  EXPECT_FALSE(fs::exists(archive / (old_comm + ".dump.partial")));

  // The archive restores into another database with every row.
  auto restored = crm_test::fresh_database("t_retain_restored", false);
  auto rr = crm_test::run_command("pg_restore --no-owner --dbname=" + crm_test::shell_quote(restored) + " " +
                                  (archive / (old_comm + ".dump")).string() + " 2>&1");
  ASSERT_EQ(rr.status, 0) << rr.out;
  EXPECT_EQ(crm_test::count(restored, "SELECT count(*) FROM " + old_comm), 25);

  // Again: nothing left to do.
  r = retain(dsn, "--keep 13mo --archive " + archive.string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(": 0 partitions dropped"), std::string::npos) << r.out;
}

TEST(PartitionsRetain, ARunThatDiedAfterTheDetachIsFinishedByTheNext) {
  const auto [dsn, old_comm] = prepared_database("t_retain_resume");
  auto archive = scratch("resume");
  // State of a run killed after detaching and while writing the archive.
  exec(dsn, "ALTER TABLE communications DETACH PARTITION " + old_comm + "; COMMENT ON TABLE " + old_comm +
                " IS 'crm-ingest retain: detached from communications [x, y)'");
  fs::create_directories(archive);
  { std::ofstream(archive / (old_comm + ".dump.partial")) << "torn"; }
  // A stale final file that does not hold the rows must not be trusted either.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM " + old_comm), 25);

  auto r = retain(dsn, "--keep 13mo --archive " + archive.string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("dropped " + old_comm), std::string::npos) << r.out;
  EXPECT_FALSE(table_exists(dsn, old_comm));
  EXPECT_FALSE(fs::exists(archive / (old_comm + ".dump.partial")));
  auto check = crm_test::run_command("pg_restore --data-only --file=- " + (archive / (old_comm + ".dump")).string() +
                                     " | grep -c '@example.com'");
  EXPECT_EQ(check.out, "25\n");
}

// From a review: an event of a month past retention that arrived while its partition was detached (an archive
// that failed) went to the DEFAULT partition, as designed; once the detached table was dropped, creating that
// month's partition failed (23514: the DEFAULT held a row of it), so every later event of the month was
// dead-lettered and `partitions ensure` / `migrate --months-back` failed for every month (exit 3). Since 0014 such
// a month stays in the DEFAULT partition (reported by retain): its events are stored, and the other months'
// partitions are made.
TEST(PartitionsRetain, AMonthWhoseRowsAreInTheDefaultPartitionStaysThereAndBlocksNothing) {
  const auto [dsn, old_comm] = prepared_database("t_retain_late_month");
  exec(dsn, "ALTER TABLE communications DETACH PARTITION " + old_comm);
  exec(dsn,
       "INSERT INTO communications (event_id, occurred_at, received_at, channel, status, email) "
       "VALUES (gen_random_uuid(), date_trunc('month', now()) - interval '16 months' + interval '2 days', now(), "
       "'email', 'sent', 'late@example.com')");
  exec(dsn, "DROP TABLE " + old_comm);
  exec(dsn, "DROP TABLE " + month_name(dsn, "communications", 1));  // a month to make again
  auto ensure = crm_test::run_command(exe + " --log-level warn partitions ensure --months-back 20 --months-ahead 3 "
                                      "--dsn " + crm_test::shell_quote(dsn) + " 2>&1");
  EXPECT_EQ(ensure.status, 0) << ensure.out;
  EXPECT_TRUE(table_exists(dsn, month_name(dsn, "communications", 1)));
  EXPECT_FALSE(table_exists(dsn, old_comm));
  // A later event of that month is stored (in the DEFAULT partition), not refused.
  const auto file = scratch("late-month") / "late.ndjson";
  std::ofstream(file) << R"({"kind":"communication","occurred_at":")" + month_time(dsn, 16, "3 days") +
                             R"(","channel":"email","status":"sent","email":"later@example.com"})" "\n";
  auto r = import(dsn, file);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_default WHERE email = 'later@example.com'"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 0);
}

std::string test_id(int n) {
  char b[40];
  std::snprintf(b, sizeof b, "00000000-0000-4000-8000-%012d", n);
  return b;
}

std::string communication_line(int id, const std::string& at, int campaign, const std::string& ab_test) {
  return R"({"kind":"communication","event_id":")" + test_id(id) + R"(","occurred_at":")" + at +
         R"(","channel":"email","status":"delivered","email":"e)" + std::to_string(id) +
         R"(@example.com","campaign_id":)" + std::to_string(campaign) + R"(,"ab_test_id":")" + ab_test +
         R"(","variant":"A"})" "\n";
}

std::string touchpoint_line(int id, const std::string& at) {
  return R"({"kind":"touchpoint","touchpoint_id":")" + test_id(id) + R"(","occurred_at":")" + at +
         R"(","touch_type":"page_view","anonymous_id":"v)" + std::to_string(id) + R"("})" "\n";
}

const std::string refused_by_cutoff =
    "SELECT count(*) FROM rejected_events WHERE reason LIKE 'older than the retention cutoff ' || "
    "to_char(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '12 months', 'YYYY-MM-DD') || "
    "' set by partitions retain%'";

// The product never stores an event twice. Events of a month `partitions retain` dropped that arrived again (a file
// imported again, a provider's replay, a Kafka re-consume) were stored again (the writer made the month's partition
// anew) and counted again in communication_metrics and ab_test_message_counts, which outlive the rows. The run now
// records its cutoff and every write path refuses older events (dead letters with the cutoff in their reason); the
// other records of their batches are stored, once.
TEST(PartitionsRetain, EventsOfADroppedMonthThatArriveAgainAreDeadLetteredNotStoredTwice) {
  const auto dsn = crm_test::fresh_database("t_retain_again");
  exec(dsn, "SELECT crm_ensure_partitions(20, 3)");
  const auto old_comm = month_name(dsn, "communications", 16);
  const auto old_touch = month_name(dsn, "customer_touchpoints", 16);
  // 10 communications (campaign 7, A/B test t-old) and 4 touchpoints 16 months back, 3 communications last month
  // (campaign 8), interleaved: with 4 records a batch, every batch holds both.
  const auto file = scratch("retain-again") / "events.ndjson";
  {
    std::ofstream out(file);
    for (int i = 1; i <= 10; ++i) {
      out << communication_line(i, month_time(dsn, 16, std::to_string(i) + " hours"), 7, "t-old");
      if (i <= 4) out << touchpoint_line(100 + i, month_time(dsn, 16, std::to_string(i) + " hours"));
      if (i <= 3) out << communication_line(200 + i, month_time(dsn, 1, std::to_string(i) + " hours"), 8, "t-new");
    }
  }
  const std::string metrics = "SELECT coalesce(sum(event_count), 0) FROM communication_metrics WHERE campaign_id = ";
  const std::string ab = "SELECT coalesce(sum(events), 0) FROM ab_test_message_counts WHERE ab_test_id = ";
  auto r = import(dsn, file, "--batch-rows 4");
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(crm_test::count(dsn, "SELECT count(*) FROM " + old_comm), 10);
  ASSERT_EQ(crm_test::count(dsn, metrics + "7"), 10);
  ASSERT_EQ(crm_test::count(dsn, ab + "'t-old'"), 10);

  // A dry run records nothing: the month's events are still duplicates, not refusals.
  r = retain(dsn, "--keep 13mo --dry-run");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("retention cutoff"), std::string::npos) << r.out;
  r = retain(dsn, "--keep 13mo");
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_FALSE(table_exists(dsn, old_comm));
  EXPECT_NE(r.out.find("events older than it are refused"), std::string::npos) << r.out;

  r = import(dsn, file, "--batch-rows 4");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE campaign_id = 7"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE campaign_id = 8"), 3);
  EXPECT_FALSE(table_exists(dsn, old_comm)) << "the writer made the dropped month's partition again";
  EXPECT_FALSE(table_exists(dsn, old_touch));
  EXPECT_EQ(crm_test::count(dsn, metrics + "7"), 10);  // what the dropped month counted, once
  EXPECT_EQ(crm_test::count(dsn, ab + "'t-old'"), 10);
  EXPECT_EQ(crm_test::count(dsn, metrics + "8"), 3);
  EXPECT_EQ(crm_test::count(dsn, refused_by_cutoff), 14);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 14);

  // One batch: an old event beside five new ones. The new ones are stored once, the old one dead-lettered.
  const auto mixed = scratch("retain-again") / "mixed.ndjson";
  {
    std::ofstream out(mixed);
    for (int i = 1; i <= 5; ++i) {
      out << communication_line(300 + i, month_time(dsn, 0, std::to_string(i) + " minutes"), 8, "t-new");
    }
    out << communication_line(11, month_time(dsn, 14, "1 day"), 7, "t-old");
  }
  r = import(dsn, mixed);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE campaign_id = 8"), 8);
  EXPECT_EQ(crm_test::count(dsn, metrics + "8"), 8);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE campaign_id = 7"), 0);
  EXPECT_EQ(crm_test::count(dsn, refused_by_cutoff), 15);

  // Replaying the dead letters refuses them again and keeps them as they were, once each.
  r = crm_test::run_command(exe + " --log-level warn rejected replay --allow-superuser --dsn " +
                            crm_test::shell_quote(dsn) + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("refused 15: older than the retention cutoff"), std::string::npos) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE campaign_id = 7"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE replayed_at IS NULL"), 15);
  EXPECT_EQ(crm_test::count(dsn, refused_by_cutoff), 15);
}

// A writer's batch that meets a retain run between its detach and its commit waits for the run and refuses the event:
// it does not go to the DEFAULT partition beside the detached table's copy of it.
TEST(PartitionsRetain, AWriterWaitsForARetainRunThatHasDetachedAndRefusesItsMonth) {
  const auto [dsn, old_comm] = prepared_database("t_retain_race");
  const auto file = scratch("retain-race") / "event.ndjson";
  std::ofstream(file) << communication_line(1, month_time(dsn, 16, "5 days"), 7, "t-old");
  auto r = import(dsn, file);
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(crm_test::count(dsn, "SELECT count(*) FROM " + old_comm + " WHERE campaign_id = 7"), 1);

  // The run's transaction, stopped after its detach and its cutoff.
  pqxx::connection holder(dsn);
  pqxx::work tx(holder);
  tx.exec("ALTER TABLE communications DETACH PARTITION " + old_comm);
  tx.exec("INSERT INTO retention_cutoff (cutoff, keep_months) "
          "VALUES (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '12 months', 13)");
  std::thread release([&] {
    crm_test::wait_for_count(dsn,
                             "SELECT (count(*) > 0)::int FROM pg_stat_activity WHERE datname = current_database()"
                             " AND wait_event_type = 'Lock'",
                             1, std::chrono::seconds(30));
    tx.commit();
  });
  r = import(dsn, file);
  release.join();
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE campaign_id = 7"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM " + old_comm + " WHERE campaign_id = 7"), 1);
  EXPECT_EQ(crm_test::count(dsn, refused_by_cutoff), 1);
}

TEST(PartitionsRetain, AConcurrentRunDoesNothingAndTheDefaultPartitionIsNeverTouched) {
  const auto [dsn, old_comm] = prepared_database("t_retain_lock");
  pqxx::connection holder(dsn);
  {
    pqxx::nontransaction tx(holder);
    tx.exec("SELECT pg_advisory_lock(hashtext('crm_partitions_retain'))");
  }
  auto r = retain(dsn, "--keep 13mo");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("another run holds the lock; nothing done"), std::string::npos) << r.out;
  EXPECT_TRUE(table_exists(dsn, old_comm));
  {
    pqxx::nontransaction tx(holder);
    tx.exec("SELECT pg_advisory_unlock_all()");
  }
  // Without --archive, dropped directly; the DEFAULT partition keeps its old row.
  r = retain(dsn, "--keep 13mo");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_FALSE(table_exists(dsn, old_comm));
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_default"), 1);

  auto bad = retain(dsn, "--keep 13");
  EXPECT_EQ(bad.status, 2) << bad.out;
  EXPECT_NE(bad.out.find("--keep takes a number of months or years"), std::string::npos) << bad.out;
}

TEST(PartitionsRetain, WaitsForATableLockHeldBySomeoneElseThenProceeds) {
  const auto [dsn, old_comm] = prepared_database("t_retain_busy");
  // A long transaction holds communications (as a report query would): the detach times out, retries.
  pqxx::connection holder(dsn);
  pqxx::work tx(holder);
  tx.exec("LOCK TABLE communications IN ACCESS SHARE MODE");
  // Released once the run has waited for it longer than its lock timeout (the detach timed out at least once),
  // however long the command took to get there on a busy machine.
  std::thread release([&] {
    crm_test::wait_for_count(dsn,
                             "SELECT (count(*) > 0)::int FROM pg_stat_activity WHERE datname = current_database()"
                             " AND wait_event_type = 'Lock'",
                             1, std::chrono::seconds(30));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    tx.commit();
  });
  auto r = retain(dsn, "--keep 13mo --lock-timeout-ms 200");
  release.join();
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Waiting for a table lock held by other sessions"), std::string::npos) << r.out;
  EXPECT_FALSE(table_exists(dsn, old_comm));

  // Held for longer than every attempt: the run fails (non-zero, for the timer to report) and changes nothing.
  pqxx::connection holder2(dsn);
  pqxx::work tx2(holder2);
  tx2.exec("LOCK TABLE customer_touchpoints IN ACCESS SHARE MODE");
  const auto old_touch_next = month_name(dsn, "customer_touchpoints", 12);
  r = retain(dsn, "--keep 12mo --lock-timeout-ms 50");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("lock timeout"), std::string::npos) << r.out;
  EXPECT_TRUE(table_exists(dsn, old_touch_next));
  tx2.abort();
}

}  // namespace
