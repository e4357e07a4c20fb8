// When a commit is safe on the cluster (sinks/postgres/replication_status.h): the verdicts over a table
// of primaries' statuses, and the status read from a real single PostgreSQL (the `postgres` fixture),
// which has no standby and must confirm at COMMIT. The same reading against the Patroni cluster, with
// synchronous and asynchronous replication and a lagging replica, is in tests/fault.
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "sinks/postgres/replication_status.h"
#include "support/test_db.h"

namespace {

namespace pg = crm::sinks::postgres;
using pg::verdict;

TEST(Lsn, ParsesAndFormatsPostgresTextForm) {
  EXPECT_EQ(pg::parse_lsn("0/0"), 0u);
  EXPECT_EQ(pg::parse_lsn("16/B374D848"), 0x16B374D848u);
  EXPECT_EQ(pg::parse_lsn("FFFFFFFF/FFFFFFFF"), ~0ull);
  EXPECT_EQ(pg::format_lsn(0x16B374D848u), "16/B374D848");
  for (const char* bad : {"", "/", "0/", "/0", "12", "0/G", "1/2/3", "0x1/2", " 1/2", "100000000/0"}) {
    EXPECT_FALSE(pg::parse_lsn(bad)) << bad;
  }
}

pg::replication_status status(int standbys, int synchronous, pg::lsn_t all_flushed, int slots,
                              std::optional<pg::lsn_t> sync_flushed = std::nullopt, int hidden = 0) {
  pg::replication_status s;
  s.insert_lsn = 1000;
  s.timeline = 1;
  s.standbys = standbys;
  s.synchronous = synchronous;
  s.all_flushed = all_flushed;
  s.sync_flushed = sync_flushed;
  s.slots = slots;
  s.hidden = hidden;
  s.synchronous_commit = "on";
  s.synchronous_standby_names = synchronous > 0 ? "node2" : "";
  return s;
}

struct verdict_case {
  const char* what;
  pg::replication_status s;
  pg::confirm_policy p;
  pg::lsn_t lsn;
  verdict later;      // confirmation_of(s, p, lsn)
  verdict at_commit;  // confirmation_at_commit(s, p, true), the commit at s.insert_lsn (1000), which waited
  pg::replication_mode mode;
};

TEST(Confirmation, VerdictsOverPrimaryStatuses) {
  const pg::confirm_policy standbys{};
  const pg::confirm_policy commit{false, -1};
  const pg::confirm_policy two{true, 2};
  const pg::confirm_policy none{true, 0};
  auto synchronous_remote_apply = status(2, 1, 400, 2, 1000);
  synchronous_remote_apply.synchronous_commit = "remote_apply";
  auto synchronous_local = status(2, 1, 400, 2, 400);
  synchronous_local.synchronous_commit = "local";  // the COMMIT did not wait for the standby
  auto recovering = status(0, 0, 0, 0);
  recovering.in_recovery = true;
  const verdict_case cases[] = {
      {"a single PostgreSQL: no standby, no slot", status(0, 0, 0, 0), standbys, 1000, verdict::confirmed,
       verdict::confirmed, pg::replication_mode::standalone},
      {"async, both standbys have it", status(2, 0, 1000, 2), standbys, 1000, verdict::confirmed,
       verdict::confirmed, pg::replication_mode::asynchronous},
      {"async, one standby lags", status(2, 0, 999, 2), standbys, 1000, verdict::waiting, verdict::waiting,
       pg::replication_mode::asynchronous},
      {"async, an older commit the lagging standby has", status(2, 0, 999, 2), standbys, 900, verdict::confirmed,
       verdict::waiting, pg::replication_mode::asynchronous},
      {"replicated cluster, every standby gone (an isolated old primary)", status(0, 0, 0, 2), standbys, 10,
       verdict::waiting, verdict::waiting, pg::replication_mode::asynchronous},
      {"... unless the operator requires none", status(0, 0, 0, 2), none, 10, verdict::confirmed,
       verdict::confirmed, pg::replication_mode::standalone},
      {"two standbys required, one streaming", status(1, 0, 2000, 2), two, 1000, verdict::waiting, verdict::waiting,
       pg::replication_mode::asynchronous},
      {"sync in force: the COMMIT was the confirmation", status(2, 1, 400, 2, 1000), standbys, 1000,
       verdict::confirmed, verdict::confirmed, pg::replication_mode::synchronous},
      {"sync in force, the async standby lagging: not waited for", status(2, 1, 400, 2, 1000), standbys, 1000,
       verdict::confirmed, verdict::confirmed, pg::replication_mode::synchronous},
      {"sync in force; an older commit from before it, the sync standby not there yet", status(2, 1, 400, 2, 500),
       standbys, 900, verdict::waiting, verdict::confirmed, pg::replication_mode::synchronous},
      {"remote_apply waits too", synchronous_remote_apply, standbys, 1000, verdict::confirmed, verdict::confirmed,
       pg::replication_mode::synchronous},
      {"synchronous_commit=local did not wait: compare positions", synchronous_local, standbys, 1000,
       verdict::waiting, verdict::waiting, pg::replication_mode::synchronous},
      {"standbys whose positions this role may not read", status(0, 0, 0, 2, std::nullopt, 2), standbys, 10,
       verdict::blind, verdict::blind, pg::replication_mode::asynchronous},
      {"confirm = commit: the COMMIT is enough", status(2, 0, 0, 2), commit, 1000, verdict::confirmed,
       verdict::confirmed, pg::replication_mode::asynchronous},
      {"a server in recovery confirms nothing", recovering, standbys, 10, verdict::waiting, verdict::waiting,
       pg::replication_mode::standalone},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(pg::to_string(pg::confirmation_of(c.s, c.p, c.lsn)), pg::to_string(c.later)) << c.what;
    EXPECT_EQ(pg::to_string(pg::confirmation_at_commit(c.s, c.p, true)), pg::to_string(c.at_commit)) << c.what;
    EXPECT_EQ(pg::to_string(pg::mode_of(c.s, c.p)), pg::to_string(c.mode)) << c.what;
  }
}

// A COMMIT whose wait for the synchronous standby was cut short (cancel, statement_timeout: success with a WARNING)
// or that was settled from the ledger (in doubt) proves nothing by a standby being synchronous: the synchronous
// standby's flushed position decides, as for any commit.
TEST(Confirmation, ACommitThatMayNotHaveWaitedIsJudgedByPositions) {
  const pg::confirm_policy standbys{};
  const auto behind = status(2, 1, 400, 2, 500);  // the synchronous standby has not flushed 1000
  EXPECT_EQ(pg::confirmation_at_commit(behind, standbys, true), verdict::confirmed);
  EXPECT_EQ(pg::confirmation_at_commit(behind, standbys, false), verdict::waiting);
  const auto has_it = status(2, 1, 400, 2, 1000);
  EXPECT_EQ(pg::confirmation_at_commit(has_it, standbys, false), verdict::confirmed);
  EXPECT_EQ(pg::confirmation_at_commit(status(2, 0, 1000, 2), standbys, false), verdict::confirmed);
  EXPECT_EQ(pg::confirmation_at_commit(behind, {false, -1}, false), verdict::confirmed) << "confirm = commit";
}

TEST(Confirmation, RequiredStandbysAutoIsOneForAReplicatedCluster) {
  EXPECT_EQ(pg::required_standbys(status(0, 0, 0, 0), {}), 0);
  EXPECT_EQ(pg::required_standbys(status(0, 0, 0, 1), {}), 1);
  EXPECT_EQ(pg::required_standbys(status(2, 0, 0, 0), {}), 1);  // standbys without slots
  EXPECT_EQ(pg::required_standbys(status(2, 0, 0, 2), {true, 2}), 2);
  auto configured_sync = status(0, 0, 0, 0);
  configured_sync.synchronous_standby_names = "node2";  // a synchronous standby expected, none attached now
  EXPECT_EQ(pg::required_standbys(configured_sync, {}), 1);
  EXPECT_EQ(pg::describe(status(2, 0, 0, 2), {}),
            "replication=asynchronous timeline=1 standbys=2 synchronous=0 slots=2 synchronous_standby_names='' "
            "synchronous_commit=on required_standbys=1");
}

// What `auto` remembers (replication_memory): a write path that saw standbys or slots keeps requiring one when a
// later status shows none (right after a failover whose other members are down); one that never saw any (a single
// PostgreSQL) requires none; a number is never overridden.
TEST(Confirmation, AutoRemembersAReplicatedCluster) {
  pg::replication_memory single;
  EXPECT_EQ(pg::required_standbys(status(0, 0, 0, 0), single.policy_for(status(0, 0, 0, 0), {})), 0);
  pg::replication_memory m;
  EXPECT_EQ(pg::required_standbys(status(2, 0, 0, 2), m.policy_for(status(2, 0, 0, 2), {})), 1);
  const auto alone = status(0, 0, 0, 0);
  EXPECT_EQ(pg::required_standbys(alone, m.policy_for(alone, {})), 1);
  EXPECT_EQ(pg::confirmation_of(alone, m.policy_for(alone, {}), 1000), verdict::waiting);
  EXPECT_EQ(pg::required_standbys(alone, m.policy_for(alone, {true, 0})), 0) << "the operator's number wins";
}

class SinglePostgres : public ::testing::Test {
 protected:
  void SetUp() override { dsn_ = crm_test::fresh_database("replication_status", false); }
  std::string dsn_;
};

// The embedded default: no replicas. A commit is confirmed by itself; nothing waits for standbys that do
// not exist.
TEST_F(SinglePostgres, ConfirmsACommitAtOnce) {
  pqxx::connection c(dsn_);
  {
    pqxx::work tx(c);
    tx.exec("CREATE TABLE t (v int)");
    tx.exec("INSERT INTO t VALUES (1)");
    tx.commit();
  }
  pqxx::nontransaction tx(c);
  const auto s = pg::read_replication_status(tx);
  EXPECT_FALSE(s.in_recovery);
  EXPECT_GT(s.insert_lsn, 0u);
  EXPECT_GE(s.timeline, 1u);
  EXPECT_EQ(s.standbys, 0);
  EXPECT_EQ(s.hidden, 0);
  EXPECT_EQ(s.slots, 0);
  EXPECT_EQ(pg::mode_of(s, {}), pg::replication_mode::standalone) << pg::describe(s, {});
  EXPECT_EQ(pg::confirmation_at_commit(s, {}, true), verdict::confirmed);
  EXPECT_EQ(pg::confirmation_at_commit(s, {}, false), verdict::confirmed);
  // The position is where the WAL is: a later read is not behind it.
  const auto again = pg::read_replication_status(tx);
  EXPECT_GE(again.insert_lsn, s.insert_lsn);
  // The primary's identity: its timeline and its postmaster's start, the same for every reading of one server.
  EXPECT_GT(s.started_us, 0);
  EXPECT_TRUE(again.identity() == s.identity());
}

// schemas/0004_confirmation.sql: the writer role may read the standbys' positions (the test server's
// migrating role is a superuser, so the grant is made, not skipped).
TEST(WriterRole, MayReadTheStandbysPositions) {
  const auto dsn = crm_test::fresh_database("replication_status_grant");
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM pg_roles WHERE rolname = 'crm_ingest_writer'"
                                 " AND pg_has_role('crm_ingest_writer', 'pg_read_all_stats', 'USAGE')"),
            1);
}

}  // namespace
