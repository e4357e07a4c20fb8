#include "ingest/cli/database_target.h"

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "ingest/runtime/embedded_postgres.h"
#include "sinks/postgres/connection.h"
#include "sinks/postgres/migrations.h"

namespace crm::ingest::cli {

void database_target::add_options(CLI::App& cmd, bool with_partition_window) {
  cmd.add_option("--dsn", dsn,
                 "PostgreSQL connection string (libpq URI or key=value). Default: $CRM_INGEST_POSTGRES_DSN, else the "
                 "embedded private PostgreSQL")
      ->envname("CRM_INGEST_POSTGRES_DSN");
  cmd.add_option("--data-dir", data_dir, "Data directory of the embedded PostgreSQL (used when no DSN is given)")
      ->default_str(default_embedded_data_dir());
  if (with_partition_window) {
    cmd.add_option("--months-back", months_back, "Monthly partitions to keep ready before the current month")
        ->default_val(3)
        ->check(CLI::Range(0, 120));
    cmd.add_option("--months-ahead", months_ahead, "Monthly partitions to create ahead of the current month")
        ->default_val(3)
        ->check(CLI::Range(0, 120));
  }
}

void database_target::add_superuser_option(CLI::App& cmd) {
  cmd.add_flag("--allow-superuser", allow_superuser,
               "Write with a superuser PostgreSQL connection (refused otherwise; use a role granted crm_ingest_writer)")
      ->envname("CRM_INGEST_POSTGRES_ALLOW_SUPERUSER");
}

std::string database_target::resolve(bool migrate_embedded) {
  if (!dsn.empty()) return dsn;
  if (data_dir.empty()) data_dir = default_embedded_data_dir();
  std::string url = local_postgres("start", data_dir);
  spdlog::info("Using the embedded PostgreSQL. data_dir={} dsn={}", data_dir, url);
  if (migrate_embedded) {
    pqxx::connection conn(url);
    auto r = sinks::postgres::migrate(conn, sinks::postgres::embedded_migrations(), {months_back, months_ahead});
    for (const auto& name : r.applied) spdlog::info("Applied a migration. migration={}", name);
  }
  return url;
}

}  // namespace crm::ingest::cli
