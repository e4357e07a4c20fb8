// What the direct COPY's tests (communication_insert_test.cc, touchpoint_insert_test.cc) look at: which path
// stored a batch's rows, and what the writer reports of its probes.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "sinks/postgres/writer_observer.h"
#include "support/test_db.h"

namespace crm_test {

// Rows of `table` that the staging statement of the batch at `position` inserted. The direct COPY runs inside a
// savepoint, so its rows carry the subtransaction's id as their xmin, while rows the staging statement inserted
// carry the transaction's own id, the one the batch's ledger row carries too.
inline long long staged_rows(const std::string& dsn, const std::string& table, const std::string& position) {
  return count(dsn, "SELECT count(*) FROM " + table + " WHERE xmin = (SELECT xmin FROM ingest_batches"
                    " WHERE source_position = '" + position + "')");
}

// The two queries return the same rows, as many times each (EXCEPT ALL both ways).
inline void expect_same_rows(const std::string& dsn, const std::string& a, const std::string& b) {
  EXPECT_EQ(count(dsn, "SELECT count(*) FROM (" + a + " EXCEPT ALL " + b + ") x"), 0) << a;
  EXPECT_EQ(count(dsn, "SELECT count(*) FROM (" + b + " EXCEPT ALL " + a + ") x"), 0) << b;
}

// What the writer reports of the probes before its direct COPYs into `table` and of COPYs that met a stored row.
// Called on the writer's thread; read once its write() returned.
struct probe_counter : crm::sinks::postgres::writer_observer {
  explicit probe_counter(std::string t) : table(std::move(t)) {}
  std::string table;
  std::size_t probes = 0, probed_rows = 0, conflicts = 0;
  void rows_probed(const char* t, std::size_t rows) override {
    if (table != t) return;
    ++probes;
    probed_rows += rows;
  }
  void copy_met_stored_row(const char* t) override {
    if (table == t) ++conflicts;
  }
};

}  // namespace crm_test
