// Holds every committed batch part of one write path that is not yet safe on the cluster, and tells the
// write path when it is (on_confirmed) or when the current primary's ledger lacks it after a failover
// (on_missing: write it again, with the same batch ids). The design: sinks/postgres/confirmation.md.
//
// A writer reports each commit with the replication status it read on its own session right after COMMIT
// returned (replication_status.h). A commit that is safe at once (a single PostgreSQL, a synchronous
// standby) is never stored. The others wait here; the confirmer's thread, with a session of its own to
// the primary, reads the status every `interval` while any wait and confirms the parts whose position the
// standbys have flushed. A part committed on another primary (another identity: another timeline, or another
// server on the same timeline; or a commit whose status could not be read because the connection broke after
// COMMIT) counts for nothing on the current one: its batch ids are looked up in the current primary's ledger;
// present, it waits for this primary's standbys from this primary's current position; missing, it goes back to
// the write path.
//
// Threads: one confirmer thread owns the status session and calls on_confirmed / on_missing / on_primary
// (never under the confirmer's lock; the write path's handlers must be thread-safe). committed(),
// committed_blind(), stats(), waiting() and wait_idle() may be called from any thread. Nothing here blocks a
// writer: a commit is recorded in O(1) under a mutex; when the parts pile up, the write path bounds them
// (its own limit on unconfirmed bytes) and stops taking batches from its source.
#pragma once

#include <boost/noncopyable.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sinks/postgres/replication_status.h"
#include "transform/canonical/canonical_event.h"

namespace crm::sinks::postgres {

struct confirmer_options {
  std::string dsn;
  std::string application_name = "crm-ingest confirm";
  confirm_policy policy;
  // How often the status is read while parts wait.
  std::chrono::milliseconds interval{10};
  std::chrono::milliseconds backoff_cap{1000};
  // On the confirmer thread. `part` is the write path's own key for a part.
  std::function<void(std::uint64_t part)> on_confirmed;
  std::function<void(std::uint64_t part)> on_missing;
  // The confirmer reached a primary of a new identity (start-up, or after a failover): for the log line.
  std::function<void(const replication_status&)> on_primary;
  // After each round while parts wait, and once when none is left (for the write path's gauges).
  std::function<void()> after_round;
};

struct unconfirmed_stats {
  std::size_t parts = 0;
  std::size_t bytes = 0;
  double oldest_seconds = 0;  // age of the oldest unconfirmed part (0: none)
};

class confirmer : boost::noncopyable {  // owns a thread
 public:
  explicit confirmer(confirmer_options options);
  ~confirmer();

  // A writer committed `part` (the ledger ids of its transactions) and read `at_commit` on the same session
  // right after COMMIT returned; `waited`: as commit_point::waited. Returns confirmation_at_commit(): `confirmed`
  // means safe now, and the part is not kept (no on_confirmed follows); otherwise the part waits for on_confirmed
  // or on_missing.
  verdict committed(std::uint64_t part, std::vector<transform::uuid> batch_ids, std::size_t bytes,
                    const replication_status& at_commit, bool waited);
  // The COMMIT returned but the status could not be read (the connection broke right after): the part's
  // primary is unknown, so it is looked up in the ledger of the primary the confirmer reaches next.
  void committed_blind(std::uint64_t part, std::vector<transform::uuid> batch_ids, std::size_t bytes);

  // The policy a status is judged by: the configured one, `auto` remembering a replicated cluster
  // (replication_memory). Any thread.
  confirm_policy policy_for(const replication_status& s) noexcept { return memory_.policy_for(s, options_.policy); }

  unconfirmed_stats stats() const;
  // The parts still waiting, oldest first.
  std::vector<std::uint64_t> waiting() const;
  // Until nothing waits, or `timeout`; true when nothing waits.
  bool wait_idle(std::chrono::milliseconds timeout);

 private:
  struct pending {
    std::vector<transform::uuid> ids;
    std::size_t bytes = 0;
    lsn_t lsn = 0;
    primary_identity primary;  // {0, 0}: unknown (look it up)
    std::chrono::steady_clock::time_point committed;
  };

  void run();
  // One round on the session: status, ledger lookups for foreign parts, confirmations; fills the parts to
  // report (outside the lock). Returns true when standbys exist whose positions this role cannot read.
  bool round(std::vector<std::uint64_t>& confirmed, std::vector<std::uint64_t>& missing);

  confirmer_options options_;
  replication_memory memory_;  // shared by the writers' threads and the confirmer's (atomic)
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::map<std::uint64_t, pending> parts_;  // guarded by mu_
  std::uint32_t newest_timeline_ = 0;        // the newest timeline a writer committed on (guarded by mu_)
  bool stop_ = false;
  // Owned by the confirmer thread.
  std::unique_ptr<pqxx::connection> conn_;
  primary_identity session_primary_;
  std::thread thread_;
};

}  // namespace crm::sinks::postgres
