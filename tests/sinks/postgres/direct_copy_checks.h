// What the direct COPY's tests (communication_insert_test.cc, touchpoint_insert_test.cc) and the counters' tests
// (metric_upkeep_test.cc) look at: which path stored a batch's rows, what the writer reports of its probes, two
// writers that must not deadlock, and the counters against a recount of the stored rows.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "sinks/postgres/writer.h"
#include "sinks/postgres/writer_observer.h"
#include "support/event_ids.h"
#include "support/test_db.h"
#include "writer_options.h"

namespace crm_test {

// Rows of `table` that the staging statement of the batch at `position` inserted. The direct COPY runs inside a
// savepoint, so its rows carry the subtransaction's id as their xmin, while rows the staging statement inserted
// carry the transaction's own id, the one the batch's ledger row carries too.
inline long long staged_rows(const std::string& dsn, const std::string& table, const std::string& position) {
  return count(dsn, "SELECT count(*) FROM " + table + " WHERE xmin = (SELECT xmin FROM ingest_batches"
                    " WHERE source_position = '" + position + "')");
}

// A query counting the rows query `a` returns more often than query `b` does.
inline std::string rows_missing_from(const std::string& b, const std::string& a) {
  return "SELECT count(*) FROM (" + a + " EXCEPT ALL " + b + ") x";
}

// The two queries return the same rows, as many times each (EXCEPT ALL both ways).
inline void expect_same_rows(const std::string& dsn, const std::string& a, const std::string& b) {
  EXPECT_EQ(count(dsn, rows_missing_from(b, a)), 0) << a;
  EXPECT_EQ(count(dsn, rows_missing_from(a, b)), 0) << b;
}

// The counters (communication_metrics, ab_test_message_counts) and a recount of the stored communications, in
// pairs.
inline const std::pair<const char*, const char*> counters_and_recounts[] = {
    {"SELECT day, campaign_id, channel, status, event_count, campaign_ref FROM communication_metrics",
     "SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*), min(campaign_ref)"
     " FROM communications GROUP BY 1, 2, 3, 4"},
    {"SELECT ab_test_id, variant, status, events FROM ab_test_message_counts",
     "SELECT ab_test_id, variant, status, count(*) FROM communications"
     " WHERE ab_test_id IS NOT NULL AND variant IS NOT NULL GROUP BY 1, 2, 3"},
};

// What the counters must hold: a recount from the stored rows, compared both ways.
inline void expect_metrics_equal_recount(const std::string& dsn) {
  for (auto [counted, recounted] : counters_and_recounts) expect_same_rows(dsn, counted, recounted);
}

// The same comparison in one statement (one snapshot): the rows on either side that the other lacks.
inline std::string counter_mismatches_query() {
  std::string q = "SELECT 0";
  for (auto [counted, recounted] : counters_and_recounts) {
    q += " + (" + rows_missing_from(recounted, counted) + ") + (" + rows_missing_from(counted, recounted) + ")";
  }
  return q;
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

// The batches of two writers with overlapping parts across November's end: A holds records 1 to 5, B records 3
// and 4; 1 and 4 are in December, 2 at 2026-11-05 00:00 UTC. `add(batch, n, at)` appends record n at time `at`.
template <class Add>
std::pair<crm::transform::event_batch, crm::transform::event_batch> overlapping_batches(Add add) {
  using crm::transform::timestamp_us;
  const timestamp_us dec = nov_2026 + 30 * day_us;
  crm::transform::event_batch a, b;
  for (auto [n, at] : {std::pair<std::uint64_t, timestamp_us>{1, dec + day_us}, {2, nov_2026 + 4 * day_us},
                       {3, nov_2026 + 4 * day_us}, {4, dec + 4 * day_us}, {5, nov_2026 + 5 * day_us}}) {
    add(a, n, at);
    if (n == 3 || n == 4) add(b, n, at);
  }
  return {std::move(a), std::move(b)};
}

// Writers A and B (two processes' writers) write `a` and `b` at once while a third session holds `hold` (an
// uncommitted insert of a row A must wait for) until both wait or B is done; then the hold is rolled back. Both
// batches must be written in one attempt each (a deadlock replays one). Returns the events both inserted.
inline std::uint64_t expect_writers_do_not_deadlock(const std::string& dsn, const crm::transform::event_batch& a,
                                                    const crm::transform::event_batch& b, const std::string& hold) {
  namespace pg = crm::sinks::postgres;
  pg::writer wa(writer_options_for(dsn)), wb(writer_options_for(dsn));
  wa.connect();
  wb.connect();
  auto waiting = [&] {
    return count(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND wait_event_type = 'Lock'");
  };
  auto until = [](auto done) {
    for (int i = 0; i < 100 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  pqxx::connection holder_conn(dsn);
  pqxx::work holder(holder_conn);
  holder.exec(hold);
  pg::batch_result ra, rb;
  std::atomic<bool> b_done{false};
  std::thread ta([&] { ra = wa.write(a, {"test", "A"}); });
  until([&] { return waiting() >= 1; });
  std::thread tb([&] {
    rb = wb.write(b, {"test", "B"});
    b_done = true;
  });
  until([&] { return b_done.load() || waiting() >= 2; });
  holder.abort();
  ta.join();
  tb.join();
  EXPECT_EQ(ra.attempts, 1u) << "writer A's batch was replayed (a deadlock)";
  EXPECT_EQ(rb.attempts, 1u) << "writer B's batch was replayed (a deadlock)";
  return ra.events_inserted() + rb.events_inserted();
}

}  // namespace crm_test
