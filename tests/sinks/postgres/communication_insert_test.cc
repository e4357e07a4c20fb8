// The communications part of the batch transaction (sinks/postgres/communication_insert.h) against a real
// PostgreSQL: rows with an event time COPYed straight into the table, the metric upkeep of those rows, rows stored
// already left out, and the staging path for a role Row Level Security applies to.
//
// Which path stored a row shows in its xmin: the direct COPY runs inside a savepoint, so its rows carry the
// subtransaction's id, while rows the staging statement inserted carry the transaction's own id, the one the
// ledger row of the batch carries too.
#include "sinks/postgres/writer.h"

#include <atomic>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "support/event_ids.h"
#include "support/test_db.h"
#include "direct_copy_checks.h"
#include "writer_options.h"

namespace pg = crm::sinks::postgres;
namespace tf = crm::transform;

namespace {

using crm_test::id_of;
using crm_test::nov_2026;
constexpr tf::timestamp_us day = crm_test::day_us;
constexpr tf::timestamp_us hour = 3600LL * 1000000;

// References and A/B names that an array literal must quote: quotes, backslashes, commas, braces, spaces, the
// word NULL, and non-ASCII text.
const char* const refs[] = {"C-\"quoted\"", "C\\back\\slash", "C,comma", "{C}", "NULL", "Kampagne Größe"};
const char* const variants[] = {"A", "b \"2\"", "c\\d", "NULL"};

tf::communication comm(std::uint64_t n, tf::timestamp_us at) {
  tf::communication c;
  c.event_id = id_of(n);
  c.occurred_at = at;
  c.received_at = nov_2026 + 30 * day;
  c.channel_ = n % 5 ? tf::channel::email : tf::channel::sms;
  c.status = n % 3 ? tf::comm_status::delivered : tf::comm_status::opened;
  c.provider = "test";
  c.email = "lead@example.com";
  c.phone = "+4915112345678";
  switch (n % 4) {
    case 0: break;  // no campaign
    case 1: c.campaign_id = 7; break;
    default:  // a campaign the CRM names: the derived key is negative
      c.campaign_ref = refs[n % 6];
      c.campaign_id = -1 - static_cast<std::int64_t>(n % 6);
  }
  if (n % 7 < 4) {
    c.ab_test_id = n % 2 ? "subject \"line\"" : "t,1";
    c.variant = variants[n % 4];
  }
  return c;
}

// Rows of the batch at `position` that the staging statement inserted (see the file's comment).
long long staged_rows(const std::string& dsn, const std::string& position) {
  return crm_test::staged_rows(dsn, "communications", position);
}

using crm_test::writer_options_for;
auto opts = writer_options_for;

// A writer's options whose observer counts the probes before direct COPYs into communications.
pg::writer_options observed(const std::string& dsn, std::shared_ptr<crm_test::probe_counter>& seen) {
  seen = std::make_shared<crm_test::probe_counter>("communications");
  auto o = opts(dsn);
  o.observer = seen;
  return o;
}

// Events `from` to `to` (every `step`-th), each on one of five days of November.
tf::event_batch events(std::uint64_t from, std::uint64_t to, std::uint64_t step = 1) {
  tf::event_batch b;
  for (std::uint64_t i = from; i < to; i += step) b.communications.push_back(comm(i, nov_2026 + (i % 5) * day));
  return b;
}

// Writes `b` as one batch with a writer of its own; it must insert `inserted` rows, and the metrics must equal a
// recount of the stored rows.
void write_expecting(const std::string& dsn, const tf::event_batch& b, const std::string& position,
                     std::uint64_t inserted) {
  pg::writer w(opts(dsn));
  EXPECT_EQ(w.write(b, {"test", position}).communications_inserted, inserted);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(communications_inserted) FROM ingest_batches"),
            static_cast<long long>(inserted));
  crm_test::expect_metrics_equal_recount(dsn);
}

TEST(CommunicationInsert, RowsWithAnEventTimeAreCopiedIntoTheTableWithTheirMetrics) {
  auto dsn = crm_test::fresh_database("t_comm_direct");
  tf::event_batch b, receipt;
  // Across a month's end (the COPY fills one buffer per partition).
  for (std::uint64_t i = 0; i < 600; ++i) b.communications.push_back(comm(i, nov_2026 - day + (i % 9) * 5 * hour));
  for (std::uint64_t i = 600; i < 640; ++i) {  // no event time from the source: the window search
    receipt.communications.push_back(comm(i, nov_2026 + (i % 3) * day));
    receipt.communications.back().occurred_at_is_receipt_time = true;
  }
  pg::writer w(opts(dsn));
  auto r = w.write(b, {"test", "timed"});
  EXPECT_EQ(r.communications_inserted, 600u);
  EXPECT_EQ(staged_rows(dsn, "timed"), 0) << "the rows with an event time were not copied directly";
  // A part with a row without an event time is staged whole.
  receipt.communications.push_back(comm(700, nov_2026 + 2 * day));
  EXPECT_EQ(w.write(receipt, {"test", "receipt"}).communications_inserted, 41u);
  EXPECT_EQ(staged_rows(dsn, "receipt"), 41);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 641);
  crm_test::expect_metrics_equal_recount(dsn);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), 641);
  // Every reference and variant came through its array literal as it was written.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT campaign_ref) FROM communication_metrics"), 6);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communication_metrics WHERE campaign_ref = 'NULL'"),
            crm_test::count(dsn, "SELECT count(DISTINCT ((occurred_at AT TIME ZONE 'UTC')::date, channel, status))"
                                 " FROM communications WHERE campaign_ref = 'NULL'"));
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communication_metrics WHERE campaign_ref = 'Kampagne Größe'"),
            crm_test::count(dsn, "SELECT count(DISTINCT ((occurred_at AT TIME ZONE 'UTC')::date, channel, status))"
                                 " FROM communications WHERE campaign_ref = 'Kampagne Größe'"));
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT variant) FROM ab_test_message_counts"), 4);
}

TEST(CommunicationInsert, RowsStoredAlreadyAreLeftOutAndCountedAsDuplicates) {
  auto dsn = crm_test::fresh_database("t_comm_direct_stored");
  std::shared_ptr<crm_test::probe_counter> seen;
  pg::writer w(observed(dsn, seen));
  const auto first = events(0, 300, 2);
  {
    // Stored by another writer (another process, or before a restart): `w` has no hint of them.
    pg::writer other(opts(dsn));
    EXPECT_EQ(other.write(first, {"test", "first"}).communications_inserted, 150u);
  }

  // Every second event stored already, spread over the batch's key order: the COPY meets a stored row, is rolled
  // back, the part is probed whole, and the 150 others are copied.
  const auto second = events(0, 300);
  auto r = w.write(second, {"test", "second"});
  EXPECT_EQ(r.communications_inserted, 150u);
  EXPECT_EQ(r.duplicates(), 150u);
  EXPECT_EQ(staged_rows(dsn, "second"), 0) << "the new rows were not copied directly";
  EXPECT_EQ(seen->conflicts, 1u);
  EXPECT_EQ(seen->probed_rows, 300u);

  // From now on every part is probed before its COPY, until four in a row come clean.
  for (std::uint64_t k = 0; k < 4; ++k) {
    EXPECT_EQ(w.write(events(300 + 25 * k, 325 + 25 * k), {"test", "clean " + std::to_string(k)}).communications_inserted,
              25u);
  }
  EXPECT_EQ(seen->probes, 5u);
  EXPECT_EQ(seen->probed_rows, 400u);
  EXPECT_EQ(w.write(events(400, 425), {"test", "clean 4"}).communications_inserted, 25u);
  EXPECT_EQ(seen->probes, 5u) << "a fifth clean part was still probed";

  // Keys this writer sent are probed before the COPY (a hint), without a failed COPY first; new rows among them are
  // copied, and a part it sent before inserts nothing.
  EXPECT_EQ(w.write(events(375, 475), {"test", "mixed"}).communications_inserted, 50u);
  EXPECT_EQ(staged_rows(dsn, "mixed"), 0);
  EXPECT_EQ(seen->probed_rows, 450u);
  EXPECT_EQ(w.write(first, {"test", "again"}).communications_inserted, 0u);
  EXPECT_EQ(w.write(second, {"test", "again 2"}).communications_inserted, 0u);
  EXPECT_EQ(seen->conflicts, 1u) << "a COPY met a row the writer had sent itself";

  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 475);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM (SELECT event_id, occurred_at FROM communications"
                                 " GROUP BY 1, 2 HAVING count(*) > 1) d"),
            0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(event_count) FROM communication_metrics"), 475);
  crm_test::expect_metrics_equal_recount(dsn);
  // The ledger says what each batch inserted.
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(communications_inserted) FROM ingest_batches"), 475);
}

// A stream that repeats rows the writer sent itself (redeliveries, in-input duplicates across batches) after one
// COPY met a row it had no hint of: the hint names the repeats, so the parts that follow are clean although they
// hold stored rows, and after four of them only the hinted rows are probed again. (Counting every stored row
// found kept the writer probing every row of every part for as long as the repeats went on: on 1M generated
// events with 1 % duplicates, 2.3 s of the writers' 9.4 s of PostgreSQL's CPU.)
TEST(CommunicationInsert, RepeatsTheHintNamesDoNotKeepTheWriterProbingWholeParts) {
  auto dsn = crm_test::fresh_database("t_comm_direct_repeats");
  std::shared_ptr<crm_test::probe_counter> seen;
  pg::writer w(observed(dsn, seen));
  EXPECT_EQ(pg::writer(opts(dsn)).write(events(0, 1), {"test", "elsewhere"}).communications_inserted, 1u);
  EXPECT_EQ(w.write(events(0, 100), {"test", "met"}).communications_inserted, 99u);
  EXPECT_EQ(seen->conflicts, 1u);
  EXPECT_EQ(std::pair(seen->probes, seen->probed_rows), std::pair(std::size_t{1}, std::size_t{100}));

  // Each part: 90 new rows and 10 this writer sent before. Probed whole (100 rows) while the writer probes first.
  std::uint64_t next = 100;
  auto part = [&](int k) {
    auto b = events(next, next + 90);
    const auto repeats = events(next - 64, next, 7);
    b.communications.insert(b.communications.end(), repeats.communications.begin(), repeats.communications.end());
    next += 90;
    auto r = w.write(b, {"test", "repeats " + std::to_string(k)});
    EXPECT_EQ(std::pair(r.communications_inserted, r.duplicates()), std::pair(std::uint64_t{90}, std::uint64_t{10}));
  };
  for (int k = 0; k < 4; ++k) part(k);
  EXPECT_EQ(std::pair(seen->probes, seen->probed_rows), std::pair(std::size_t{5}, std::size_t{500}))
      << "(probes, rows probed) after the four parts that follow the conflict";
  part(4);
  part(5);
  EXPECT_EQ(std::pair(seen->probes, seen->probed_rows), std::pair(std::size_t{7}, std::size_t{520}))
      << "the parts after four clean ones were still probed whole";
  EXPECT_EQ(seen->conflicts, 1u) << "a COPY met a row the writer had sent itself";
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 640);
  crm_test::expect_metrics_equal_recount(dsn);
}

// While another session stores rows of the parts a writer gets (a replay elsewhere), the writer keeps probing every
// row first, even when a part holds a row the database refuses: the attempts of its split did not commit, so their
// rows are not the writer's own and do not make the halves clean. (When the hint learnt a part's keys as it sent
// them, the halves' probes found only "named" rows, the writer stopped probing first after four halves, and the next
// part's COPY met a row stored elsewhere.)
TEST(CommunicationInsert, AnAttemptThatDidNotCommitLeavesTheWriterProbingFirst) {
  auto dsn = crm_test::fresh_database("t_comm_direct_split");
  std::shared_ptr<crm_test::probe_counter> seen;
  pg::writer w(observed(dsn, seen));
  pg::writer other(opts(dsn));
  EXPECT_EQ(other.write(events(0, 1), {"test", "elsewhere"}).communications_inserted, 1u);
  EXPECT_EQ(w.write(events(0, 100), {"test", "met"}).communications_inserted, 99u);
  ASSERT_EQ(seen->conflicts, 1u);

  // Every row of the next part but one is stored elsewhere; that one the database refuses (jsonb, 22P02): the part
  // is split down to it, and every half but the last holds rows stored elsewhere.
  auto elsewhere = events(100, 200);
  elsewhere.communications.erase(elsewhere.communications.begin() + 55);
  EXPECT_EQ(other.write(elsewhere, {"test", "elsewhere 2"}).communications_inserted, 99u);
  auto bad = events(100, 200);
  bad.communications[55].metadata = "{not json";
  const auto r = w.write(bad, {"test", "refused"});
  EXPECT_EQ(std::pair(r.communications_inserted, r.refused_by_database), std::pair(std::uint64_t{0}, std::uint64_t{1}));
  EXPECT_EQ(r.duplicates(), 99u);

  EXPECT_EQ(other.write(events(200, 300, 10), {"test", "elsewhere 3"}).communications_inserted, 10u);
  EXPECT_EQ(w.write(events(200, 300), {"test", "after"}).communications_inserted, 90u);
  EXPECT_EQ(seen->conflicts, 1u) << "a COPY met a row stored elsewhere after the split";
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 299);
  crm_test::expect_metrics_equal_recount(dsn);
}

// A retry without an event time (E at its receipt, R) and the event with its own time (E at T, R < T < R + 1 day)
// in one part: both are stored, as the staging statement alone decided before the direct COPY existed (the
// window search must not see the part's own rows).
TEST(CommunicationInsert, APartWithARowWithoutAnEventTimeIsDecidedInOneStatement) {
  auto dsn = crm_test::fresh_database("t_comm_direct_window");
  tf::event_batch b;
  b.communications.push_back(comm(1, nov_2026 + 5 * hour));
  b.communications.back().occurred_at_is_receipt_time = true;
  b.communications.push_back(comm(1, nov_2026 + 9 * hour));
  b.communications.push_back(comm(2, nov_2026 + 9 * hour));
  write_expecting(dsn, b, "window", 3);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 3);
}

// A trigger of the database's that changes rows, created while the writer is connected: the metrics count what was
// stored (the staging statement's RETURNING), not what was sent.
TEST(CommunicationInsert, ATriggerOnTheTableSendsEveryRowThroughTheStagingStatement) {
  auto dsn = crm_test::fresh_database("t_comm_direct_trigger");
  pg::writer w(opts(dsn));
  tf::event_batch before, after;
  for (std::uint64_t i = 0; i < 90; ++i) (i < 45 ? before : after).communications.push_back(comm(i, nov_2026 + i * hour));
  EXPECT_EQ(w.write(before, {"test", "before"}).communications_inserted, 45u);
  EXPECT_EQ(staged_rows(dsn, "before"), 0);
  crm_test::execute(dsn, "CREATE FUNCTION t_relabel() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                         " IF NEW.status = 'opened' THEN NEW.status := 'clicked'; END IF; RETURN NEW; END $$;"
                         " CREATE TRIGGER t_relabel BEFORE INSERT ON communications FOR EACH ROW EXECUTE FUNCTION t_relabel()");
  EXPECT_EQ(w.write(after, {"test", "after"}).communications_inserted, 45u);
  EXPECT_EQ(staged_rows(dsn, "after"), 45);
  // A third of each batch was sent as opened: the second batch's are stored as clicked.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE status = 'opened'"), 15);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE status = 'clicked'"), 15);
  crm_test::expect_metrics_equal_recount(dsn);
}

// The writer connects to a database `migrate` has not run on yet (a start-up check that reaches the server first).
TEST(CommunicationInsert, AWriterConnectsBeforeTheSchemaExists) {
  auto dsn = crm_test::fresh_database("t_comm_direct_unmigrated", /*migrated=*/false);
  pg::writer w(opts(dsn));
  EXPECT_NO_THROW(w.connect());
}

// Two writers of different processes with overlapping parts across a month's end, one of them held up by a third
// session's uncommitted row. In key order, a COPY inserts the December rows of its buffer before the November
// ones while the staging statement or another COPY goes key by key: the two writers deadlocked and one batch was
// replayed. By month, then key, every writer takes the index entries in one order, and both write at once.
TEST(CommunicationInsert, WritersOfOverlappingPartsAcrossAMonthsEndDoNotDeadlock) {
  auto dsn = crm_test::fresh_database("t_comm_direct_order");
  const auto [a, b] = crm_test::overlapping_batches(
      [](tf::event_batch& batch, std::uint64_t n, tf::timestamp_us at) { batch.communications.push_back(comm(n, at)); });
  // Event 2, uncommitted: writer A waits for it.
  EXPECT_EQ(crm_test::expect_writers_do_not_deadlock(
                dsn, a, b,
                "INSERT INTO communications (event_id, occurred_at, received_at, channel, status) VALUES ('" +
                    tf::to_string(id_of(2)) + "', '2026-11-05 00:00:00+00', now(), 'email', 'sent')"),
            5u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 5);
  crm_test::expect_metrics_equal_recount(dsn);
}

// The same event without an event time, written by two writers at once (two serve processes behind one load
// balancer, each receiving the provider's callback and its retry): each part's window search ran before the other
// committed and missed its row, whose key differs (another receipt time), so both were stored. Writer A holds its
// uncommitted copy (a third session's lock on the ledger holds it before its COMMIT) while writer B writes the
// retry; the event must be stored once.
TEST(CommunicationInsert, TwoWritersOfOneEventWithoutAnEventTimeStoreItOnce) {
  auto dsn = crm_test::fresh_database("t_comm_receipt_race");
  tf::event_batch a, b;
  a.communications.push_back(comm(1, nov_2026 + 5 * hour));
  b.communications.push_back(comm(1, nov_2026 + 5 * hour + 1500));  // the retry, received 1.5 ms later
  for (auto* batch : {&a, &b}) batch->communications.back().occurred_at_is_receipt_time = true;
  b.communications.push_back(comm(2, nov_2026 + 6 * hour));
  EXPECT_EQ(crm_test::expect_writers_do_not_deadlock(dsn, a, b, "LOCK TABLE ingest_batches IN SHARE MODE"), 2u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE event_id = '" + tf::to_string(id_of(1)) +
                                     "'"),
            1);
  crm_test::expect_metrics_equal_recount(dsn);
}

// A full batch of events without an event time (batch_rows' default, 20,000 callbacks): the locks on their ids fit
// PostgreSQL's lock table (one per id needed 20,000 entries, more than the server holds: "out of shared memory",
// and the batch would have been retried for ever).
TEST(CommunicationInsert, AFullBatchOfEventsWithoutAnEventTimeIsWritten) {
  auto dsn = crm_test::fresh_database("t_comm_receipt_many");
  tf::event_batch b;
  for (std::uint64_t i = 0; i < 20000; ++i) {
    b.communications.push_back(comm(i, nov_2026 + i * 1000));
    b.communications.back().occurred_at_is_receipt_time = true;
  }
  write_expecting(dsn, b, "many", 20000);
}

TEST(CommunicationInsert, ARoleRowLevelSecurityAppliesToStagesEveryRowAndOneThatBypassesItCopies) {
  auto dsn = crm_test::fresh_database("t_comm_direct_roles");
  crm_test::execute(crm_test::admin_dsn(),
                    "DO $$ BEGIN"
                    " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 't_direct_rls') THEN"
                    "  CREATE ROLE t_direct_rls LOGIN IN ROLE crm_ingest_writer; END IF;"
                    " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 't_direct_bypass') THEN"
                    "  CREATE ROLE t_direct_bypass LOGIN BYPASSRLS IN ROLE crm_ingest_writer; END IF;"
                    // Whatever an interrupted run left.
                    " ALTER ROLE t_direct_rls NOBYPASSRLS; ALTER ROLE t_direct_bypass BYPASSRLS; END $$");
  auto as = [&](const std::string& user) {
    const auto scheme = dsn.find("://") + 3;
    return dsn.substr(0, scheme) + user + dsn.substr(dsn.find('@'));
  };
  tf::event_batch b1, b2;
  for (std::uint64_t i = 0; i < 200; ++i) (i < 100 ? b1 : b2).communications.push_back(comm(i, nov_2026 + i * hour));
  pg::writer limited(opts(as("t_direct_rls")));
  EXPECT_EQ(limited.write(b1, {"test", "limited"}).communications_inserted, 100u);
  EXPECT_EQ(staged_rows(dsn, "limited"), 100);
  pg::writer bypassing(opts(as("t_direct_bypass")));
  EXPECT_EQ(bypassing.write(b2, {"test", "bypassing"}).communications_inserted, 100u);
  EXPECT_EQ(staged_rows(dsn, "bypassing"), 0);
  EXPECT_EQ(bypassing.write(b1, {"test", "bypassing again"}).communications_inserted, 0u);
  // Row Level Security applies to the role from now on, in the middle of the writer's session: COPY is refused
  // (0A000), and the part is staged instead of failing.
  crm_test::execute(crm_test::admin_dsn(), "ALTER ROLE t_direct_bypass NOBYPASSRLS");
  tf::event_batch b3;
  for (std::uint64_t i = 200; i < 250; ++i) b3.communications.push_back(comm(i, nov_2026 + i * hour));
  EXPECT_EQ(bypassing.write(b3, {"test", "no longer bypassing"}).communications_inserted, 50u);
  EXPECT_EQ(staged_rows(dsn, "no longer bypassing"), 50);
  crm_test::execute(crm_test::admin_dsn(), "ALTER ROLE t_direct_bypass BYPASSRLS");
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 250);
  crm_test::expect_metrics_equal_recount(dsn);
}

}  // namespace
