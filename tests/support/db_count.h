// Counting queries on any PostgreSQL the tests reach (the `postgres` fixture's or the Patroni cluster's).
#pragma once

#include <string>

#include <pqxx/pqxx>

namespace crm_test {

// The single number `sql` returns.
inline long long count(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  return tx.exec(sql)[0][0].as<long long>();
}

// The single number `sql` returns for $1 = `param`.
inline long long count(const std::string& dsn, const std::string& sql, const std::string& param) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  return tx.exec_params(sql, param)[0][0].as<long long>();
}

}  // namespace crm_test
