#include "sinks/postgres/migrations.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "support/test_db.h"

namespace pg = crm::sinks::postgres;

namespace {

TEST(Migrations, ApplyOnceThenNothing) {
  auto dsn = crm_test::fresh_database("t_migrate_idempotent", false);
  pqxx::connection c(dsn);
  auto first = pg::migrate(c, pg::embedded_migrations(), {3, 3});
  EXPECT_EQ(first.applied.size(), pg::embedded_migrations().size());
  EXPECT_EQ(first.partitions_created, 2 * 7);  // 3 back + current + 3 ahead, two tables
  auto second = pg::migrate(c, pg::embedded_migrations(), {3, 3});
  EXPECT_TRUE(second.applied.empty());
  EXPECT_EQ(second.partitions_created, 0);
  EXPECT_EQ(second.schema_version, first.schema_version);
  EXPECT_NO_THROW(pg::check_schema_current(c, pg::embedded_migrations()));
}

TEST(Migrations, EditedMigrationIsRefused) {
  auto dsn = crm_test::fresh_database("t_migrate_edited", true);
  auto edited = pg::embedded_migrations();
  std::string changed = std::string(edited[0].sql) + "\n-- edited\n";
  edited[0].sql = changed;
  pqxx::connection c(dsn);
  try {
    pg::migrate(c, edited, {3, 3});
    FAIL() << "an edited migration was accepted";
  } catch (const pg::migration_error& e) {
    EXPECT_NE(std::string(e.what()).find("was changed after it was applied"), std::string::npos) << e.what();
  }
}

TEST(Migrations, UnknownNewerMigrationIsRefused) {
  auto dsn = crm_test::fresh_database("t_migrate_newer", true);
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_future.sql', 'x')");
    tx.commit();
  }
  pqxx::connection c(dsn);
  EXPECT_THROW(pg::migrate(c, pg::embedded_migrations(), {3, 3}), pg::migration_error);
  EXPECT_THROW(pg::check_schema_current(c, pg::embedded_migrations()), pg::migration_error);
}

TEST(Migrations, UnmigratedDatabaseIsReportedWithAdvice) {
  auto dsn = crm_test::fresh_database("t_migrate_missing", false);
  pqxx::connection c(dsn);
  try {
    pg::check_schema_current(c, pg::embedded_migrations());
    FAIL() << "an empty database passed the schema check";
  } catch (const pg::migration_error& e) {
    EXPECT_NE(std::string(e.what()).find("crm-ingest migrate"), std::string::npos);
  }
}

TEST(Migrations, ConcurrentMigratorsApplyOnce) {
  auto dsn = crm_test::fresh_database("t_migrate_concurrent", false);
  std::vector<std::thread> threads;
  std::atomic<int> applied{0}, failed{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      try {
        pqxx::connection c(dsn);
        applied += static_cast<int>(pg::migrate(c, pg::embedded_migrations(), {1, 1}).applied.size());
      } catch (...) {
        ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(applied, static_cast<int>(pg::embedded_migrations().size()));
}

// Migrations run READ COMMITTED whatever the database's default. 0013 sets attribution_watermark from the
// conversions committed before it got the analytics stage's lock: a stage run that credits a conversion while the
// migration waits for that lock must be seen, which a snapshot taken at the migration's first statement
// (REPEATABLE READ) misses — the bound stayed NULL and a late touchpoint never re-attributed the conversion.
TEST(Migrations, RunReadCommittedWhateverTheDatabaseDefault) {
  auto dsn = crm_test::fresh_database("t_migrate_isolation", false);
  {
    pqxx::connection c(dsn);
    pg::migrate(c, crm_test::migrations_before(13), {1, 1});
    pqxx::nontransaction n(c);
    n.exec("ALTER DATABASE " + c.quote_name(c.dbname()) + " SET default_transaction_isolation = 'repeatable read'");
  }
  // A stage run in progress: it holds the lock and credits a conversion while the migration waits for the lock.
  pqxx::connection stage(dsn);
  pqxx::work tx(stage);
  tx.exec("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
  tx.exec("SELECT pg_advisory_xact_lock(hashtext('crm_analytics'), 0)");
  std::string migrate_error;
  std::thread migrator([&] {
    try {
      pqxx::connection c(dsn);
      pg::migrate(c, pg::embedded_migrations(), {1, 1});
    } catch (const std::exception& e) {
      migrate_error = e.what();
    }
  });
  const bool waiting =
      crm_test::wait_for_count(dsn,
                               "SELECT (count(*) > 0)::int FROM pg_stat_activity WHERE datname = current_database()"
                               " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
                               1, std::chrono::seconds(10)) == 1;
  tx.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, touch_type,"
          " channel_group, conversion_value, currency, is_conversion) VALUES"
          " ('00000000-0000-4000-8000-000000000001', date_trunc('second', now()) - interval '1 hour', now(), 5,"
          "  'conversion', 'Direct', 100, 'USD', true)");
  tx.exec("SELECT crm_analytics_recompute()");
  tx.commit();
  migrator.join();
  ASSERT_TRUE(waiting) << "the migration never waited for the analytics stage's lock";
  ASSERT_EQ(migrate_error, "");
  pqxx::connection c(dsn);
  pqxx::work check(c);
  EXPECT_EQ(check.exec("SELECT count(*) FROM attribution_credits")[0][0].as<int>(), 6);
  EXPECT_TRUE(check.exec("SELECT (SELECT credited_until FROM attribution_watermark)"
                         " = (SELECT occurred_at FROM customer_touchpoints)")[0][0]
                  .as<bool>(false));
}

}  // namespace
