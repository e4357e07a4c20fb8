// The monthly partitions a writer creates for the months a batch meets (writer::ensure_month_partitions) against a
// real PostgreSQL: the months it needs and, when one of them has no partition yet, the next `premake_months` in the
// direction the months run, in one transaction; and the one order of the two parents (schemas/0022): every
// transaction that touches both takes communications first, so a batch in flight cannot deadlock with a
// transaction creating partitions.
#include "sinks/postgres/writer.h"

#include <atomic>
#include <ctime>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "sinks/postgres/writer_observer.h"
#include "support/event_ids.h"
#include "support/test_db.h"
#include "writer_options.h"

namespace pg = crm::sinks::postgres;
namespace tf = crm::transform;

namespace {

using crm_test::id_of;

// 00:00 UTC on the 10th of `month` (1-12) of `year`.
tf::timestamp_us at(int year, int month) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = 10;
  return static_cast<tf::timestamp_us>(timegm(&tm)) * 1000000;
}

tf::communication comm(std::uint64_t n, tf::timestamp_us when) {
  tf::communication c;
  c.event_id = id_of(n);
  c.occurred_at = when;
  c.received_at = when;
  c.channel_ = tf::channel::email;
  c.status = tf::comm_status::sent;
  c.provider = "test";
  return c;
}

auto touch = crm_test::page_view;

// The partitions of both parents named like `pattern` (a LIKE pattern of the month part, 'YYYY_MM').
long long partitions(const std::string& dsn, const std::string& pattern) {
  return crm_test::count(dsn, "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND (relname LIKE 'communications_" +
                                  pattern + "' OR relname LIKE 'customer_touchpoints_" + pattern + "')");
}

// The month `ahead` months after the current one (UTC), as a partition's suffix 'YYYY_MM'.
std::string month_ahead(const std::string& dsn, int ahead) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  return tx.exec("SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => " +
                 std::to_string(ahead) + "), 'YYYY_MM')")[0][0]
      .as<std::string>();
}

struct failure_counter : pg::writer_observer {
  std::atomic<int> failed{0};
  void attempt_failed(const pg::failure&, bool) override { ++failed; }
};

// A writer counting its failed attempts, writing one batch of a communication (and a page view) of `month` on a
// thread of its own: the communications inserted.
struct background_write {
  background_write(const std::string& dsn, int year, int month, bool with_touchpoint)
      : failures(std::make_shared<failure_counter>()), w(options(dsn, failures)) {
    inserted = std::async(std::launch::async, [this, year, month, with_touchpoint] {
      tf::event_batch b;
      b.communications.push_back(comm(1, at(year, month)));
      if (with_touchpoint) b.touchpoints.push_back(touch(1, at(year, month)));
      return w.write(b, {"test", "background"}).communications_inserted;
    });
  }
  static pg::writer_options options(const std::string& dsn, std::shared_ptr<failure_counter> observer) {
    auto o = crm_test::writer_options_for(dsn);
    o.observer = std::move(observer);
    return o;
  }
  std::shared_ptr<failure_counter> failures;
  pg::writer w;
  std::future<std::uint64_t> inserted;
};

TEST(MonthPartitions, AMonthWithoutAPartitionGetsTheNextMonthsToo) {
  auto dsn = crm_test::fresh_database("t_months_premake");
  tf::event_batch b;
  b.communications.push_back(comm(1, at(2003, 5)));
  b.touchpoints.push_back(touch(1, at(2003, 7)));
  pg::writer w(crm_test::writer_options_for(dsn));
  EXPECT_EQ(w.write(b, {"test", "2003"}).communications_inserted, 1u);
  // May and July (the batch's), June (between them) is not needed, and August to October (3 after the newest).
  for (const char* m : {"2003_05", "2003_07", "2003_08", "2003_09", "2003_10"}) EXPECT_EQ(partitions(dsn, m), 2) << m;
  EXPECT_EQ(partitions(dsn, "2003_06"), 0);
  EXPECT_EQ(partitions(dsn, "2003_11"), 0);
  EXPECT_EQ(partitions(dsn, "2003_04"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_2003_05"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints_2003_07"), 1);

  // The next months of the history come without a partition to make (no new table); a month past the premade
  // ones gets its own three.
  tf::event_batch next;
  next.communications.push_back(comm(2, at(2003, 9)));
  next.communications.push_back(comm(3, at(2003, 11)));
  EXPECT_EQ(w.write(next, {"test", "2003-b"}).communications_inserted, 2u);
  for (const char* m : {"2003_11", "2003_12", "2004_01", "2004_02"}) EXPECT_EQ(partitions(dsn, m), 2) << m;
  EXPECT_EQ(partitions(dsn, "2004_03"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_default"), 0);
}

TEST(MonthPartitions, MonthsRunningBackwardsArePremadeBeforeTheOldest) {
  auto dsn = crm_test::fresh_database("t_months_backwards");
  pg::writer w(crm_test::writer_options_for(dsn));
  tf::event_batch first;
  first.communications.push_back(comm(1, at(2010, 6)));
  w.write(first, {"test", "june"});
  tf::event_batch earlier;  // an export read newest first
  earlier.communications.push_back(comm(2, at(2010, 2)));
  EXPECT_EQ(w.write(earlier, {"test", "february"}).communications_inserted, 1u);
  for (const char* m : {"2010_02", "2010_01", "2009_12", "2009_11"}) EXPECT_EQ(partitions(dsn, m), 2) << m;
  EXPECT_EQ(partitions(dsn, "2009_10"), 0);
  EXPECT_EQ(partitions(dsn, "2010_03"), 0);  // between the two batches' months: not needed
}

// A month the session had not met but whose partitions exist (serve after a restart, meeting an event of a month
// kept ready by `migrate`) makes no months around it: the premade months follow a month that had no partition.
TEST(MonthPartitions, AMonthThatHasItsPartitionsMakesNoMore) {
  auto dsn = crm_test::fresh_database("t_months_existing");  // months kept ready: 3 back, 3 ahead of now
  const std::string last_ready = month_ahead(dsn, 3);
  pg::writer w(crm_test::writer_options_for(dsn));
  tf::event_batch b;
  b.communications.push_back(comm(1, at(std::stoi(last_ready.substr(0, 4)), std::stoi(last_ready.substr(5, 2)))));
  EXPECT_EQ(w.write(b, {"test", "ready"}).communications_inserted, 1u);
  const std::string next = month_ahead(dsn, 4);
  EXPECT_EQ(partitions(dsn, next), 0) << next;
}

// Holds `sql`'s locks in a transaction of its own until destroyed.
struct holder {
  explicit holder(const std::string& dsn) : conn(dsn), tx(conn) {}
  pqxx::connection conn;
  pqxx::work tx;
};

const char* waiting_for_exclusive =
    "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND relation IN ('customer_touchpoints'::regclass, 'communications'::regclass)";

// 0022: a batch transaction takes communications, then customer_touchpoints (crm_retention_cutoff_for_write, its
// first statement). It took them the other way round (0017), while every creator of partitions takes
// communications first.
TEST(MonthPartitions, ABatchTransactionTakesCommunicationsFirst) {
  auto dsn = crm_test::fresh_database("t_months_batch_order");
  holder exclusive(dsn);
  exclusive.tx.exec("LOCK TABLE ONLY customer_touchpoints IN ACCESS EXCLUSIVE MODE");
  pqxx::connection batch_conn(dsn);
  const int batch_pid = batch_conn.backendpid();
  auto batch = std::async(std::launch::async, [&] {
    pqxx::work tx(batch_conn);
    tx.exec("SELECT crm_retention_cutoff_for_write()");
    tx.commit();
  });
  // The batch waits for the touchpoints' lock holding the communications' one.
  EXPECT_EQ(crm_test::wait_for_count(dsn,
                                     "SELECT count(*) FROM pg_locks WHERE pid = " + std::to_string(batch_pid) +
                                         " AND NOT granted AND relation = 'customer_touchpoints'::regclass",
                                     1, std::chrono::seconds(10)),
            1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM pg_locks WHERE pid = " + std::to_string(batch_pid) +
                                     " AND granted AND mode = 'RowExclusiveLock'"
                                     " AND relation = 'communications'::regclass"),
            1);
  exclusive.tx.commit();
  EXPECT_NO_THROW(batch.get());
}

// A batch in flight holds communications and asks for customer_touchpoints next; the writer's partition
// transaction must not hold the touchpoints' exclusive lock while it waits for the communications' one. (It made
// the touchpoints' partitions first for a while: a deadlock, the partition transaction aborted after
// deadlock_timeout, a failed attempt and a retry.)
TEST(MonthPartitions, APartitionTransactionTakesTheParentsInTheBatchesOrder) {
  auto dsn = crm_test::fresh_database("t_months_lock_order");
  holder batch(dsn);  // another writer's batch transaction, as far as its locks go
  batch.tx.exec("LOCK TABLE ONLY communications IN ROW EXCLUSIVE MODE");

  background_write written(dsn, 2005, 3, true);
  // The writer's partition transaction waits for a parent's exclusive lock.
  EXPECT_EQ(crm_test::wait_for_count(dsn, waiting_for_exclusive, 1, std::chrono::seconds(10)), 1);
  // Then the batch asks for the touchpoints' lock, as every batch does next.
  batch.tx.exec("SET LOCAL statement_timeout = '10s'");
  EXPECT_NO_THROW(batch.tx.exec("LOCK TABLE ONLY customer_touchpoints IN ROW EXCLUSIVE MODE"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // past deadlock_timeout: any cycle is found
  batch.tx.commit();
  EXPECT_EQ(written.inserted.get(), 1u);
  EXPECT_EQ(written.failures->failed.load(), 0);
  EXPECT_EQ(partitions(dsn, "2005_03"), 2);
}

// `partitions ensure` / `migrate` (crm_ensure_partitions) against a batch in flight, in a window where one month has
// its communications partition and not its touchpoints one: it made each month's pair in turn, so it created that
// touchpoints partition and then asked for the communications' lock for the next month — a deadlock with a batch
// holding communications and asking for touchpoints. 0022: every communications month first.
TEST(MonthPartitions, EnsurePartitionsTakesTheParentsInTheBatchesOrder) {
  auto dsn = crm_test::fresh_database("t_months_ensure_order");
  crm_test::execute(dsn, "DROP TABLE customer_touchpoints_" + month_ahead(dsn, 3));
  holder batch(dsn);
  batch.tx.exec("LOCK TABLE ONLY communications IN ROW EXCLUSIVE MODE");
  auto ensured = std::async(std::launch::async, [&] {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    // Now to 12 months ahead: 9 communications months are new, 10 touchpoints months.
    auto n = tx.exec("SELECT crm_ensure_partitions(0, 12)")[0][0].as<long long>();
    tx.commit();
    return n;
  });
  EXPECT_EQ(crm_test::wait_for_count(dsn, waiting_for_exclusive, 1, std::chrono::seconds(10)), 1);
  batch.tx.exec("SET LOCAL statement_timeout = '10s'");
  EXPECT_NO_THROW(batch.tx.exec("LOCK TABLE ONLY customer_touchpoints IN ROW EXCLUSIVE MODE"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  batch.tx.commit();
  long long made = -1;
  EXPECT_NO_THROW(made = ensured.get());
  EXPECT_EQ(made, 19);
}

// A month another session is creating when the writer comes to it: the writer waits for that session's advisory
// lock, then finds the partition (0022: a CREATE that meets it returns false too) — the batch is stored, not refused.
TEST(MonthPartitions, AMonthAnotherSessionIsCreatingIsWaitedForAndNotMadeTwice) {
  auto dsn = crm_test::fresh_database("t_months_concurrent");
  holder creator(dsn);
  creator.tx.exec("SELECT crm_ensure_month_partition('communications', '2007-04-01')");
  background_write written(dsn, 2007, 4, false);
  EXPECT_EQ(crm_test::wait_for_count(dsn,
                                     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                     " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                                     1, std::chrono::seconds(10)),
            1);
  creator.tx.commit();
  EXPECT_EQ(written.inserted.get(), 1u);
  EXPECT_EQ(written.failures->failed.load(), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications_2007_04"), 1);
}

}  // namespace
