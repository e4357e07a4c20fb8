// Helpers of the `crm-ingest rejected replay` tests: dead letters put in place, rows counted, the command run.
#pragma once

#include <string>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "support/run_command.h"
#include "support/test_db.h"

namespace crm_test::replay {

inline const std::string exe = CRM_INGEST_EXE;

inline void add_rejection(const std::string& dsn, const std::string& source, const std::string& reason,
                          const std::string& raw, const std::string& received_at = "2026-11-02T09:16:00Z", const std::string& tenant = "") {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  tx.exec_params("INSERT INTO rejected_events (rejection_id, received_at, source, reason, raw, tenant_id) "
                 "VALUES (gen_random_uuid(), $1, $2, $3, $4, NULLIF($5, ''))",
                 received_at, source, reason, raw, tenant);
  tx.commit();
}

// Rows of `from`: a table, and a WHERE clause when wanted.
inline long long rows(const std::string& dsn, const std::string& from) {
  return crm_test::count(dsn, "SELECT count(*) FROM " + from);
}

inline void exec(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  tx.exec(sql);
  tx.commit();
}

inline crm_test::command_result replay(const std::string& dsn, const std::string& args = "") {
  // The test cluster's role is a superuser, which every command that writes refuses unless allowed.
  return crm_test::run_command(exe + " --log-level warn rejected replay --allow-superuser --dsn " +
                               crm_test::shell_quote(dsn) + " " + args);
}

// Runs replay with `args` into `r`: it must succeed and report `summary`.
inline void replay_reports(const std::string& dsn, const std::string& args, const std::string& summary,
                           crm_test::command_result& r) {
  r = replay(dsn, args);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(summary), std::string::npos) << r.out;
}

}  // namespace crm_test::replay
