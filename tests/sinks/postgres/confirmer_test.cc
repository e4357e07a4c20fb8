// The confirmer (sinks/postgres/confirmer.h) against a real single PostgreSQL (the `postgres` fixture):
// a commit there is confirmed at once; a part whose primary is unknown is looked up in the ledger —
// present, it is confirmed; missing (or only partly there), it goes back to be written again; a part that
// needs standbys that do not exist waits and is reported as waiting. The failover cases (a batch the
// promoted replica lacks) run on the Patroni cluster in tests/fault.
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "sinks/postgres/confirmer.h"
#include "support/test_db.h"

namespace {

namespace pg = crm::sinks::postgres;
using namespace std::chrono_literals;

crm::transform::uuid id_of(unsigned n) {
  crm::transform::uuid id{};
  std::memcpy(id.data(), &n, sizeof n);
  id[6] = 0x40;
  id[8] = 0x80;
  return id;
}

// What the confirmer reported, from its thread.
struct reports {
  std::mutex mu;
  std::set<std::uint64_t> confirmed, missing;
  bool wait_for(const std::set<std::uint64_t>& c, const std::set<std::uint64_t>& m, std::chrono::milliseconds limit) {
    for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
      {
        std::lock_guard lock(mu);
        if (confirmed == c && missing == m) return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    std::lock_guard lock(mu);
    return confirmed == c && missing == m;
  }
};

pg::confirmer_options options_for(const std::string& dsn, reports& r, pg::confirm_policy policy = {}) {
  pg::confirmer_options o;
  o.dsn = dsn;
  o.policy = policy;
  o.on_confirmed = [&r](std::uint64_t p) {
    std::lock_guard lock(r.mu);
    r.confirmed.insert(p);
  };
  o.on_missing = [&r](std::uint64_t p) {
    std::lock_guard lock(r.mu);
    r.missing.insert(p);
  };
  return o;
}

// Commits a ledger row for `id` and returns the status read right after, on the same session.
pg::replication_status commit_ledger_row(pqxx::connection& c, const crm::transform::uuid& id) {
  {
    pqxx::work tx(c);
    tx.exec_params("INSERT INTO ingest_batches (batch_id, source, source_position, communications_in,"
                   " communications_inserted, touchpoints_in, touchpoints_inserted, rejected)"
                   " VALUES ($1::uuid, 'confirmer test', '1', 0, 0, 0, 0, 0)",
                   crm::transform::to_string(id));
    tx.commit();
  }
  pqxx::nontransaction tx(c);
  return pg::read_replication_status(tx);
}

class Confirmer : public ::testing::Test {
 protected:
  void SetUp() override {
    dsn_ = crm_test::fresh_database(std::string("confirmer_") +
                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string dsn_;
};

TEST_F(Confirmer, ASinglePostgresConfirmsAtCommitAndKeepsNothing) {
  reports r;
  pg::confirmer c(options_for(dsn_, r));
  pqxx::connection conn(dsn_);
  const auto s = commit_ledger_row(conn, id_of(1));
  EXPECT_EQ(c.committed(1, {id_of(1)}, 100, s, true), pg::verdict::confirmed);
  EXPECT_EQ(c.stats().parts, 0u);
  EXPECT_TRUE(c.wait_idle(0ms));
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(r.wait_for({}, {}, 0ms)) << "a part confirmed at commit is not reported again";
}

// After a reconnection (here: parts whose primary is unknown) the ledger of the primary reached decides:
// present -> confirmed against its standbys (none: at once); missing, or only some of a split part's
// transactions there (a partial tail) -> written again.
TEST_F(Confirmer, ThePrimarysLedgerDecidesAboutPartsCommittedElsewhere) {
  pqxx::connection conn(dsn_);
  commit_ledger_row(conn, id_of(10));
  commit_ledger_row(conn, id_of(11));
  reports r;
  pg::confirmer c(options_for(dsn_, r));
  c.committed_blind(1, {id_of(10)}, 100);             // there
  c.committed_blind(2, {id_of(20)}, 200);             // lost with the old primary
  c.committed_blind(3, {id_of(11), id_of(21)}, 300);  // split part: first half there, second lost
  EXPECT_TRUE(r.wait_for({1}, {2, 3}, 10s)) << "confirmed " << r.confirmed.size() << " missing " << r.missing.size();
  EXPECT_TRUE(c.wait_idle(1s));
  EXPECT_EQ(c.stats().parts, 0u);
}

// A replicated primary (here simulated by requiring a standby) whose standbys are gone: nothing is
// confirmed, and the waiting parts are visible (count, bytes, age).
TEST_F(Confirmer, PartsWaitWhileTheRequiredStandbysAreMissing) {
  reports r;
  pg::confirmer c(options_for(dsn_, r, {true, 1}));
  pqxx::connection conn(dsn_);
  const auto s = commit_ledger_row(conn, id_of(30));
  EXPECT_EQ(c.committed(7, {id_of(30)}, 1234, s, true), pg::verdict::waiting);
  EXPECT_FALSE(c.wait_idle(300ms));
  const auto st = c.stats();
  EXPECT_EQ(st.parts, 1u);
  EXPECT_EQ(st.bytes, 1234u);
  EXPECT_GE(st.oldest_seconds, 0.3);
  EXPECT_EQ(c.waiting(), std::vector<std::uint64_t>{7});
  EXPECT_TRUE(r.wait_for({}, {}, 0ms));
}

// Two servers can be promoted to the same timeline number from the same parent, with different histories (one while
// the other was down, then the other once the first died). A part committed on the other one (same timeline, another
// postmaster) is looked up in this primary's ledger instead of being confirmed by this primary's positions: missing
// here, it goes back to be written again; present, it is confirmed.
TEST_F(Confirmer, APartOfAnotherServerOnTheSameTimelineIsLookedUpInTheLedger) {
  reports r;
  pg::confirmer c(options_for(dsn_, r, {true, 0}));
  pqxx::connection conn(dsn_);
  auto elsewhere = commit_ledger_row(conn, id_of(60));  // id 60 is here too; id 61 never was
  elsewhere.started_us -= 1000000;                      // the other server of this timeline
  elsewhere.standbys = 1;
  elsewhere.all_flushed = 0;  // its standby had not flushed them: not confirmed at commit
  EXPECT_EQ(c.committed(11, {id_of(60)}, 10, elsewhere, true), pg::verdict::waiting);
  EXPECT_EQ(c.committed(12, {id_of(61)}, 10, elsewhere, true), pg::verdict::waiting);
  EXPECT_TRUE(r.wait_for({11}, {12}, 10s)) << "confirmed " << r.confirmed.size() << " missing " << r.missing.size();
  EXPECT_TRUE(c.wait_idle(1s));
}

// confirm_min_standbys = auto remembers a replicated cluster: once a commit's status showed a standby and a slot, a
// later status showing neither (a primary right after a failover whose other members are down: this server) still
// requires a standby; the part waits instead of being confirmed with no copy anywhere.
TEST_F(Confirmer, AutoKeepsRequiringAStandbyOnceTheClusterWasSeenReplicated) {
  reports r;
  pg::confirmer c(options_for(dsn_, r));  // auto
  pqxx::connection conn(dsn_);
  auto replicated = commit_ledger_row(conn, id_of(50));
  replicated.standbys = 1;
  replicated.slots = 1;
  replicated.all_flushed = replicated.insert_lsn;  // its standby has it
  EXPECT_EQ(c.committed(9, {id_of(50)}, 10, replicated, true), pg::verdict::confirmed);
  const auto alone = commit_ledger_row(conn, id_of(51));  // the real server: no standby, no slot
  ASSERT_EQ(alone.standbys + alone.slots, 0);
  EXPECT_EQ(c.committed(10, {id_of(51)}, 10, alone, true), pg::verdict::waiting)
      << "a replicated cluster's commit confirmed with no standby to copy it";
  EXPECT_FALSE(c.wait_idle(300ms)) << "the confirmer's own reading of this server confirmed it";
  EXPECT_TRUE(r.wait_for({}, {}, 0ms));
  EXPECT_EQ(c.waiting(), std::vector<std::uint64_t>{10});
}

// A part committed on a newer timeline than the server the confirmer reaches (an isolated old primary
// still answering) is never confirmed there.
TEST_F(Confirmer, AnOlderPrimaryNeverConfirmsACommitOfANewerTimeline) {
  reports r;
  pg::confirmer c(options_for(dsn_, r));  // this server alone would confirm anything of its own timeline
  pqxx::connection conn(dsn_);
  auto s = commit_ledger_row(conn, id_of(40));
  s.timeline += 1;
  s.standbys = 1;
  s.all_flushed = 0;  // the newer primary's standby had not flushed it: not confirmed at commit
  EXPECT_EQ(c.committed(8, {id_of(40)}, 10, s, true), pg::verdict::waiting);
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(r.wait_for({}, {}, 0ms));
  EXPECT_EQ(c.stats().parts, 1u);
}

}  // namespace
