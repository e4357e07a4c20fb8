// Test databases on the real PostgreSQL that CTest's `postgres` fixture starts (deploy/local-postgres.sh
// under the build tree), or on $CRM_TEST_ADMIN_DSN when set. Every test gets a fresh database.
#pragma once

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include <pqxx/pqxx>

#include "sinks/postgres/migrations.h"

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

inline long long count(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  return tx.exec(sql)[0][0].as<long long>();
}

}  // namespace crm_test
