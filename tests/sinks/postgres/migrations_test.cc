#include "sinks/postgres/migrations.h"

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

}  // namespace
