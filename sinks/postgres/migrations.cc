#include "sinks/postgres/migrations.h"

#include <map>

#include <openssl/evp.h>

namespace crm::sinks::postgres {

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 digest failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

namespace {

constexpr const char* create_ledger_sql =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

// A fixed advisory-lock key shared by every migrator.
constexpr const char* lock_sql = "SELECT pg_advisory_xact_lock(7243190417301)";

struct applied_row {
  std::string name;
  std::string checksum;
};

std::map<int, applied_row> read_applied(pqxx::transaction_base& tx) {
  std::map<int, applied_row> out;
  auto exists = tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL");
  if (!exists[0][0].as<bool>()) return out;
  for (const auto& row : tx.exec("SELECT version, name, checksum FROM schema_migrations ORDER BY version")) {
    out[row[0].as<int>()] = applied_row{row[1].as<std::string>(), row[2].as<std::string>()};
  }
  return out;
}

void verify_applied(const std::map<int, applied_row>& applied, const std::vector<migration>& migrations) {
  std::map<int, const migration*> known;
  for (const auto& m : migrations) known[m.version] = &m;
  for (const auto& [version, row] : applied) {
    auto it = known.find(version);
    if (it == known.end()) {
      throw migration_error("the database has migration " + std::to_string(version) + " (" + row.name +
                            ") which this build of crm-ingest does not know: it is newer than this binary; "
                            "upgrade crm-ingest");
    }
    auto sum = sha256_hex(it->second->sql);
    if (sum != row.checksum) {
      throw migration_error("migration " + std::string(it->second->name) +
                            " was changed after it was applied (checksum in the database " + row.checksum.substr(0, 12) +
                            "…, in this build " + sum.substr(0, 12) +
                            "…); migrations are forward-only: restore the original file and add a new migration");
    }
  }
}

}  // namespace

migrate_result migrate(pqxx::connection& conn, const std::vector<migration>& migrations, partition_window window) {
  migrate_result result;
  {
    pqxx::work tx(conn);
    // Whatever the role's or the database's default: a migration's statements must see what committed before
    // each of them (the ledger after the lock below; 0013's bound after the analytics stage's lock), not a
    // snapshot from the transaction's first statement.
    tx.exec("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
    tx.exec(lock_sql);
    tx.exec(create_ledger_sql);
    auto applied = read_applied(tx);
    verify_applied(applied, migrations);
    for (const auto& m : migrations) {
      if (applied.count(m.version)) continue;
      tx.exec(std::string(m.sql));
      tx.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.version,
                     std::string(m.name), sha256_hex(m.sql));
      result.applied.emplace_back(m.name);
    }
    auto v = tx.exec("SELECT coalesce(max(version), 0) FROM schema_migrations");
    result.schema_version = v[0][0].as<int>();
    tx.commit();
  }
  result.partitions_created = ensure_partitions(conn, window);
  return result;
}

int ensure_partitions(pqxx::connection& conn, partition_window window) {
  pqxx::work tx(conn);
  auto r = tx.exec_params("SELECT crm_ensure_partitions($1, $2)", window.months_back, window.months_ahead);
  tx.commit();
  return r[0][0].as<int>();
}

void check_schema_current(pqxx::connection& conn, const std::vector<migration>& migrations) {
  pqxx::read_transaction tx(conn);
  auto applied = read_applied(tx);
  verify_applied(applied, migrations);
  for (const auto& m : migrations) {
    if (!applied.count(m.version)) {
      throw migration_error("the database schema is not up to date (migration " + std::string(m.name) +
                            " is not applied): run `crm-ingest migrate --dsn DSN` first");
    }
  }
}

}  // namespace crm::sinks::postgres
