// What a primary says about its standbys, and whether a commit is safe on the cluster (the
// design is sinks/postgres/confirmation.md). One query reads it (read_replication_status) on the session
// whose numbers it compares; the verdicts are pure functions of it, so they are tested on tables of
// statuses without a cluster.
//
// Thread ownership: the status belongs to whoever read it and the functions are pure; replication_memory is shared
// by a write path's threads (see there).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <pqxx/pqxx>

namespace crm::sinks::postgres {

// A WAL position (pg_lsn) as a number; "16/B374D848" -> 0x16B374D848.
using lsn_t = std::uint64_t;
// Parses PostgreSQL's "X/Y" text form; nullopt when it is not one.
std::optional<lsn_t> parse_lsn(std::string_view text) noexcept;
std::string format_lsn(lsn_t lsn);

// Which primary's WAL a position belongs to: positions are compared only within one. The timeline alone is not
// enough: two servers can be promoted to the same timeline number from the same parent with different histories
// (one while the other was down, then the other after the first died). They are different postmasters, so their
// start times differ; a primary that restarted (crash recovery) counts as another one too, which only costs a
// ledger lookup.
struct primary_identity {
  std::uint32_t timeline = 0;   // the primary's WAL timeline (0: unknown)
  std::int64_t started_us = 0;  // pg_postmaster_start_time(), microseconds since the epoch
  bool operator==(const primary_identity&) const = default;
};

struct replication_status {
  bool in_recovery = false;  // not a primary (a demoted one, or a replica): nothing below is meaningful
  lsn_t insert_lsn = 0;      // pg_current_wal_insert_lsn(): at or after the end of every commit made so far
  std::uint32_t timeline = 0;  // the primary's WAL timeline: a promotion always starts a new one
  std::int64_t started_us = 0;  // the postmaster's start (primary_identity)
  // Physical standbys (not logical WAL senders) in state streaming or catchup.
  int standbys = 0;
  int synchronous = 0;  // of them, sync_state = 'sync'
  // WAL senders whose state and positions this role may not read (no pg_read_all_stats).
  int hidden = 0;
  lsn_t all_flushed = 0;                 // the lowest flush position of the standbys (0: none reported yet)
  std::optional<lsn_t> sync_flushed;     // the lowest flush position of the synchronous ones
  int slots = 0;                         // physical replication slots (a replicated cluster has them)
  std::string synchronous_standby_names;
  std::string synchronous_commit;        // this session's

  // Unknown ({0, 0}) on a server in recovery.
  primary_identity identity() const noexcept {
    return in_recovery ? primary_identity{} : primary_identity{timeline, started_us};
  }
};

// postgres.confirm and postgres.confirm_min_standbys.
struct confirm_policy {
  // false: the primary's COMMIT is enough (postgres.confirm = commit, positions released at COMMIT).
  bool wait_for_standbys = true;
  // How many standbys must have flushed a commit under asynchronous replication; -1 = auto: 1 when the
  // primary has a physical replication slot, a standby or synchronous_standby_names, else 0 (a single
  // PostgreSQL); replication_memory keeps it at 1 once a write path has seen any of them.
  int min_standbys = -1;
};

// confirm_min_standbys = auto, remembered: once a write path has seen the cluster replicated (a standby, seen or
// hidden, a physical replication slot, a synchronous_standby_names), a status showing none of them (a primary right
// after a failover whose other members are down, before Patroni made their slots) still requires one standby,
// instead of confirming every commit with no copy anywhere. Set once, never cleared (a cluster whose replicas are
// removed for good needs confirm_min_standbys = 0 or a restart).
// Thread ownership: one per write path (its confirmer's), used by every writer thread (confirmer::committed) and by
// the confirmer's thread: the flag is atomic.
class replication_memory {
 public:
  // The policy to judge `s` by: `p` with `auto` resolved to 1 standby once a replicated cluster was seen (in `s`
  // or before).
  confirm_policy policy_for(const replication_status& s, confirm_policy p) noexcept;

 private:
  std::atomic<bool> replicated_{false};
};

enum class replication_mode {
  standalone,    // no standby and none expected: a COMMIT is safe
  asynchronous,  // standbys, none synchronous: wait until they have flushed a commit
  synchronous,   // a synchronous standby: a COMMIT that returned is safe
};
// Every mode's name, in the enum's order (to_string; metric labels).
inline constexpr std::string_view replication_mode_names[] = {"standalone", "asynchronous", "synchronous"};
std::string_view to_string(replication_mode m) noexcept;

enum class verdict {
  confirmed,  // safe on the cluster: the source may release its position
  waiting,    // not yet: ask again later
  blind,      // standbys exist whose positions this role cannot read: never assumed safe
};
std::string_view to_string(verdict v) noexcept;

// Reads the status on `tx`'s session (one query; a few rows of pg_stat_replication).
replication_status read_replication_status(pqxx::transaction_base& tx);

int required_standbys(const replication_status& s, const confirm_policy& p) noexcept;
replication_mode mode_of(const replication_status& s, const confirm_policy& p) noexcept;

// A commit at `lsn` made on this status's timeline, at any time before the status was read.
verdict confirmation_of(const replication_status& s, const confirm_policy& p, lsn_t lsn) noexcept;

// The commit this session has just made (read right after its COMMIT returned; its position is
// s.insert_lsn). `waited`: the COMMIT was this session's own and returned without a notice, so it did wait for
// the synchronous standbys (a wait cut short by pg_cancel_backend returns success with a WARNING; a
// terminated one leaves the commit in doubt, settled from the ledger: not `waited`). With `waited`, a synchronous
// standby and a synchronous_commit that waits for it, the COMMIT itself was the confirmation: nothing waits a
// second time. Otherwise positions decide (confirmation_of), as for any commit.
verdict confirmation_at_commit(const replication_status& s, const confirm_policy& p, bool waited) noexcept;

// One line for the logs: "replication=asynchronous timeline=9 standbys=2 synchronous=0 slots=2 ...".
std::string describe(const replication_status& s, const confirm_policy& p);

}  // namespace crm::sinks::postgres
