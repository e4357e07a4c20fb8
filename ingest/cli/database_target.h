// Resolves which database a command talks to: --dsn, else $CRM_INGEST_POSTGRES_DSN, else the embedded
// default (a private PostgreSQL started on demand and migrated).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace crm::ingest::cli {

struct database_target {
  std::string dsn;
  std::string data_dir;  // for the embedded default
  int months_back = 3;
  int months_ahead = 3;
  bool allow_superuser = false;  // the one superuser policy (sinks/postgres/startup.h)

  void add_options(CLI::App& cmd, bool with_partition_window = true);
  // --allow-superuser (CRM_INGEST_POSTGRES_ALLOW_SUPERUSER), for the commands that write events.
  void add_superuser_option(CLI::App& cmd);
  bool embedded() const noexcept { return dsn.empty(); }
  // Returns a usable DSN; for the embedded default starts the server and migrates it first.
  std::string resolve(bool migrate_embedded = true);
};

}  // namespace crm::ingest::cli
