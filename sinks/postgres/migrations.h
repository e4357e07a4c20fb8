// Forward-only schema migrations from schemas/NNNN_name.sql, embedded in the binary at build time.
// Each applied migration is recorded in schema_migrations with its SHA-256; a migration edited after it
// was applied is refused, so every database runs exactly the SQL that is in the repository.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

namespace crm::sinks::postgres {

struct migration {
  int version;
  std::string_view name;  // file name, e.g. "0001_events.sql"
  std::string_view sql;
};

// In version order.
const std::vector<migration>& embedded_migrations();

std::string sha256_hex(std::string_view data);

class migration_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct migrate_result {
  std::vector<std::string> applied;  // names applied by this run
  int schema_version = 0;            // highest version now in the database
  int partitions_created = 0;
};

struct partition_window {
  int months_back = 3;
  int months_ahead = 3;
};

// Applies pending migrations in one transaction under an advisory lock (concurrent migrators wait),
// then creates the monthly partitions of the window. Throws migration_error on an edited or unknown
// migration; lets libpqxx errors through.
migrate_result migrate(pqxx::connection& conn, const std::vector<migration>& migrations, partition_window window);

// Creates the monthly partitions of the window; returns how many were new.
int ensure_partitions(pqxx::connection& conn, partition_window window);

// Throws migration_error with advice unless every embedded migration is applied (with its checksum).
void check_schema_current(pqxx::connection& conn, const std::vector<migration>& migrations);

}  // namespace crm::sinks::postgres
