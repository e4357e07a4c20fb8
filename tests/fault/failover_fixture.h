// The fixture of the fault tests (failover_test.cc): a fresh database and serve configuration per scenario
// on the Patroni cluster (fixture `patroni_cluster`), the common scenario (serve + import, optionally consume,
// under load, one fault injected), the crash of a lagging leader, and the checks and measurements that follow.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fault_cluster.h"

namespace crm_fault {

// The scenario's pause: the longest gap between consecutive committed batches (ledger) after the
// fault, and when HAProxy routed to a primary again (first good probe after the last failed one).
// While HAProxy changes over, both nodes can be up in it for a moment (the new one is up at its first
// good check, the old one down after two failed ones) and connections alternate between them: a writer
// may reach the new primary while the probe still lands on the old node (and a failed probe takes
// seconds: HAProxy's connect retries). So a leader change is dated by Patroni's history, and where the
// leader stays, `first_routed_from` is the earliest moment it can have been reachable again: the start of
// the failed probe just before the first good one after the fault.
struct pause_report {
  double fault_at = 0;
  double last_write_before = 0, first_write_after = 0;
  double routed_at = 0;          // HAProxy reached a primary again (and no probe failed after)
  double first_routed_from = 0;  // a primary can have been reachable again from here (see above)
  double leader_changed_at = 0;  // Patroni's history (0: no leader change)
  int old_port = 0, new_port = 0;
};

// What a scenario lost: events acknowledged (HTTP 2xx), imported (exit 0) or consumed (offset committed)
// and not stored, and rows stored more than once.
struct loss_report {
  long long acked = 0, acked_lost = 0;
  long long imported = 0, imported_lost = 0;
  long long consumed = 0, consumed_lost = 0;
  long long duplicates = 0;
  long long lost() const { return acked_lost + imported_lost + consumed_lost; }
  std::string describe() const {
    return fmt::format("lost {} of {} acknowledged, {} of {} imported, {} of {} consumed; {} duplicated", acked_lost,
                       acked, imported_lost, imported, consumed_lost, consumed, duplicates);
  }
};

// What one scenario drives: load, duration, and the sources besides serve and import.
struct scenario_options {
  double load_s = 10;
  bool leader_changes = true;
  int seed = 0;
  int http_rate = 50;  // requests/s of 20 events
  int kafka_rate = 0;  // events/s through a Kafka topic and `crm-ingest consume` (0: none)
  // Results of imports the fault itself started (optional).
  std::function<std::vector<import_loop::run_result>()> late_imports;
};

// How a crash of the leader went: who was crashed, who took over, after how long.
struct crash_report {
  std::string old_leader, new_leader;
  bool promoted = false;
  double seconds = 0;  // from the crash until a new leader (or until the old one was started again)
  std::string before;  // WAL rate and replica lag just before
};

class Failover : public ::testing::Test {
 protected:
  // The replication mode the fixture's tests run in.
  virtual std::string replication() const { return "sync"; }
  // Patroni's maximum_lag_on_failover for the tests: 64 MiB (CRM_FAULT_MAX_LAG overrides), so that every
  // crash of a lagging leader promotes a replica, the case to prove. With production's 1 MiB
  // (deploy/templates/patroni.yml) Patroni promotes only when its last published leader position predates
  // the freeze (about half the rounds here) and otherwise waits for the crashed node.
  std::string max_lag() const { return fmt::format("{:.0f}", env_number("CRM_FAULT_MAX_LAG", 64 << 20)); }

  void SetUp() override;

  // A fresh database (owned by crm, every migration applied) and a fresh directory for a scenario;
  // `round` tells repetitions of one test apart.
  void prepare(const std::string& round);

  void TearDown() override;

  void record(const std::string& line);

  // The crash of a lagging leader (cluster.sh failover DIR LAG_S), then the wait for a promotion: a
  // leader other than the crashed one within 25 s (the leader key's ttl is 10 s). When no replica
  // qualifies (maximum_lag_on_failover), the crashed node is started again, as a host that reboots.
  crash_report crash_lagging_leader(double& fault_at);

  // From the ledger and the probes: the pause around the fault injected at `fault_at`.
  pause_report measure(double fault_at, const primary_probe& probe, bool leader_changes);

  void report(const std::string& scenario, const pause_report& r);

  // Every acknowledged, imported and consumed event exactly once; metrics and ledger agree with the rows.
  // Returns what was lost or doubled (for the report) besides asserting that nothing was.
  loss_report expect_exactly_once(const std::string& acked, std::size_t acked_count,
                                  const std::vector<import_loop::run_result>& imports,
                                  const std::string& kafka_prefix = "", long long kafka_produced = 0);

  // Until every acknowledged id is stored, or serve's log is drained (no durable bytes after its
  // checkpoint, twice in a row a second apart: what is missing then stays missing). Returns the missing.
  long long wait_drained(unsigned port, const std::string& ids, std::chrono::seconds timeout);

  // The common scenario: serve + import (+ consume) under load, `fault` at 3 s, load until `load_s`,
  // then the checks. Returns what was lost.
  loss_report run_scenario(const std::string& scenario, const scenario_options& o,
                           const std::function<void(double& fault_at)>& fault);

  // serve under HTTP load + import + consume; the leader's WAL senders frozen for its last moments, then
  // its host crashes (crash_lagging_leader). `rounds` times, each in a fresh database, with a summary of
  // how many rounds promoted a replica and how many lost events.
  void crash_of_lagging_leader(int rounds, int first_seed);

  cluster_dsns dsns_;
  std::string db_name_, dsn_, owner_dsn_;
  fs::path dir_, config_;
};

// The same scenarios with asynchronous replication (Patroni's default, synchronous_mode off).
class AsyncFailover : public Failover {
 protected:
  std::string replication() const override { return "async"; }
};

}  // namespace crm_fault
