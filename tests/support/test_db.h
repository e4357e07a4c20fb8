// Test databases on the real PostgreSQL that CTest's `postgres` fixture starts (deploy/local-postgres.sh
// under the build tree), or on $CRM_TEST_ADMIN_DSN when set. Every test gets a fresh database.
#pragma once

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "sinks/postgres/migrations.h"
#include "support/db_count.h"

namespace crm_test {

inline std::string admin_dsn() {
  if (const char* d = std::getenv("CRM_TEST_ADMIN_DSN"); d && *d) return d;
  std::ifstream port_file(std::string(CRM_TEST_PG_DIR) + "/port");
  std::string port;
  if (!(port_file >> port)) {
    throw std::runtime_error("no test PostgreSQL: run the tests through ctest (fixture `postgres`) or set "
                             "CRM_TEST_ADMIN_DSN");
  }
  return "postgresql://crm@127.0.0.1:" + port + "/postgres";
}

inline std::string dsn_for(const std::string& db) {
  std::string admin = admin_dsn();
  auto slash = admin.rfind('/');
  auto q = admin.find('?', slash);
  return admin.substr(0, slash + 1) + db + (q == std::string::npos ? "" : admin.substr(q));
}

// Drops and creates database `name`; returns its DSN. `migrated` applies the schema.
inline std::string fresh_database(const std::string& name, bool migrated = true) {
  {
    pqxx::connection admin(admin_dsn());
    pqxx::nontransaction tx(admin);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name) + " WITH (FORCE)");
    tx.exec("CREATE DATABASE " + tx.quote_name(name));
  }
  std::string dsn = dsn_for(name);
  if (migrated) {
    pqxx::connection c(dsn);
    crm::sinks::postgres::migrate(c, crm::sinks::postgres::embedded_migrations(), {3, 3});
  }
  return dsn;
}

// The embedded migrations older than `version`: a database as an earlier release left it.
inline std::vector<crm::sinks::postgres::migration> migrations_before(int version) {
  std::vector<crm::sinks::postgres::migration> out;
  for (const auto& m : crm::sinks::postgres::embedded_migrations()) {
    if (m.version < version) out.push_back(m);
  }
  return out;
}

// Runs `sql` outside a transaction block (ALTER DATABASE, triggers a test adds, pg_terminate_backend).
inline void execute(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

// Polls the count `sql` every 100 ms until it is `want` or `limit` has passed (the writers commit
// asynchronously); returns the last count.
inline long long wait_for_count(const std::string& dsn, const std::string& sql, long long want,
                                std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  long long got = count(dsn, sql);
  while (got != want && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    got = count(dsn, sql);
  }
  return got;
}

}  // namespace crm_test
