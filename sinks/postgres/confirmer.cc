#include "sinks/postgres/confirmer.h"

#include <pthread.h>
#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "sinks/postgres/connection.h"

namespace crm::sinks::postgres {

namespace {

// A newer timeline than the session's was committed on: this session is on an old primary (isolated, not
// yet demoted). Retried through a reconnect, with backoff.
class stale_primary : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace

confirmer::confirmer(confirmer_options options) : options_(std::move(options)) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "crm-confirm");
    run();
  });
}

confirmer::~confirmer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

verdict confirmer::committed(std::uint64_t part, std::vector<transform::uuid> batch_ids, std::size_t bytes,
                             const replication_status& at_commit, bool waited) {
  const verdict v = confirmation_at_commit(at_commit, policy_for(at_commit), waited);
  if (v == verdict::confirmed) return v;
  {
    std::lock_guard lock(mu_);
    const primary_identity primary = at_commit.identity();
    newest_timeline_ = std::max(newest_timeline_, primary.timeline);
    parts_[part] = pending{std::move(batch_ids), bytes, at_commit.insert_lsn, primary, std::chrono::steady_clock::now()};
  }
  cv_.notify_all();
  return v;
}

void confirmer::committed_blind(std::uint64_t part, std::vector<transform::uuid> batch_ids, std::size_t bytes) {
  {
    std::lock_guard lock(mu_);
    parts_[part] = pending{std::move(batch_ids), bytes, 0, {}, std::chrono::steady_clock::now()};
  }
  cv_.notify_all();
}

unconfirmed_stats confirmer::stats() const {
  std::lock_guard lock(mu_);
  unconfirmed_stats s;
  s.parts = parts_.size();
  auto oldest = std::chrono::steady_clock::time_point::max();
  for (const auto& [k, p] : parts_) {
    s.bytes += p.bytes;
    oldest = std::min(oldest, p.committed);
  }
  if (!parts_.empty()) s.oldest_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - oldest).count();
  return s;
}

std::vector<std::uint64_t> confirmer::waiting() const {
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, p] : parts_) all.emplace_back(p.committed, k);
  }
  std::sort(all.begin(), all.end());
  std::vector<std::uint64_t> out;
  for (const auto& [t, k] : all) out.push_back(k);
  return out;
}

bool confirmer::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, timeout, [&] { return parts_.empty(); });
}

void confirmer::run() {
  backoff delay(std::chrono::milliseconds(100), options_.backoff_cap);
  auto last_complaint = std::chrono::steady_clock::time_point{};
  // Say at start what replication the primary has (later: whenever this session reaches a new primary).
  try {
    conn_ = connect_primary(options_.dsn, options_.application_name);
    pqxx::nontransaction tx(*conn_);
    const auto s = read_replication_status(tx);
    session_primary_ = s.identity();
    spdlog::info("Batches are released once they are safe on the cluster. {}", describe(s, policy_for(s)));
    if (s.hidden > 0 && options_.policy.wait_for_standbys) {
      spdlog::error("The role sees standbys but not their positions (pg_stat_replication.flush_lsn is NULL), so no "
                    "batch can be confirmed: GRANT pg_read_all_stats TO crm_ingest_writer "
                    "(schemas/0004_confirmation.sql), or set postgres.confirm = commit.");
    }
    if (options_.on_primary) options_.on_primary(s);
  } catch (const std::exception& e) {
    conn_.reset();
    spdlog::debug("The confirmer could not read the replication status at start (it tries again when batches wait). "
                  "error={}",
                  e.what());
  }
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, options_.interval, [&] { return stop_ || !parts_.empty(); });
      if (stop_) return;
      if (parts_.empty()) continue;
    }
    std::vector<std::uint64_t> confirmed, missing;
    try {
      if (round(confirmed, missing) && std::chrono::steady_clock::now() - last_complaint > std::chrono::seconds(10)) {
        last_complaint = std::chrono::steady_clock::now();
        spdlog::error("Batches cannot be confirmed: the role sees standbys but not their positions "
                      "(pg_stat_replication.flush_lsn is NULL); sources keep their positions. GRANT pg_read_all_stats TO "
                      "crm_ingest_writer (schemas/0004_confirmation.sql), or set postgres.confirm = commit.");
      }
      delay.reset();
    } catch (const std::exception& e) {
      // Any failure (the primary went away, a failover, a stale old primary): a new session, later. The parts
      // stay; the next primary decides about them.
      conn_.reset();
      session_primary_ = {};
      const auto now = std::chrono::steady_clock::now();
      if (now - last_complaint > std::chrono::seconds(10)) {
        last_complaint = now;
        const auto s = stats();
        spdlog::warn("Cannot read the primary's replication status; unconfirmed batches keep their sources' positions. "
                     "unconfirmed_parts={} unconfirmed_bytes={} error={}",
                     s.parts, s.bytes, e.what());
      }
      std::this_thread::sleep_for(delay.next());
      continue;
    }
    for (auto p : missing) {
      if (options_.on_missing) options_.on_missing(p);
    }
    for (auto p : confirmed) {
      if (options_.on_confirmed) options_.on_confirmed(p);
    }
    if (!confirmed.empty() || !missing.empty()) {
      std::lock_guard lock(mu_);
      if (parts_.empty()) idle_cv_.notify_all();
    }
    if (options_.after_round) options_.after_round();
  }
}

bool confirmer::round(std::vector<std::uint64_t>& confirmed, std::vector<std::uint64_t>& missing) {
  if (!conn_) conn_ = connect_primary(options_.dsn, options_.application_name);
  pqxx::nontransaction tx(*conn_);
  auto s = read_replication_status(tx);
  if (s.in_recovery) throw not_primary("the confirmer's session is on a server in recovery");
  const confirm_policy policy = policy_for(s);
  const primary_identity primary = s.identity();
  if (primary != session_primary_) {
    session_primary_ = primary;
    spdlog::info("Confirming batches against a primary. {}", describe(s, policy));
    if (options_.on_primary) options_.on_primary(s);
  }
  // Parts committed elsewhere: on another (older) timeline, on another server promoted to this timeline number (its
  // history is not this one's), or unknown.
  std::vector<std::pair<std::uint64_t, std::vector<transform::uuid>>> foreign;
  {
    std::lock_guard lock(mu_);
    if (newest_timeline_ > s.timeline) {
      throw stale_primary("a writer committed on timeline " + std::to_string(newest_timeline_) +
                          ", newer than this session's " + std::to_string(s.timeline));
    }
    for (const auto& [k, p] : parts_) {
      if (p.primary != primary) foreign.emplace_back(k, p.ids);
    }
  }
  if (!foreign.empty()) {
    std::string ids = "{";
    for (const auto& [k, list] : foreign) {
      for (const auto& id : list) {
        if (ids.size() > 1) ids += ',';
        ids += transform::to_string(id);
      }
    }
    ids += '}';
    std::set<std::string> present;
    for (const auto& row : tx.exec_params("SELECT batch_id::text FROM ingest_batches WHERE batch_id = ANY($1::uuid[])", ids)) {
      present.insert(row[0].c_str());
    }
    // What is present now is at or before the position read after the lookup.
    const lsn_t now = parse_lsn(tx.exec("SELECT pg_current_wal_insert_lsn()::text")[0][0].c_str()).value_or(~lsn_t{0});
    std::size_t found = 0;
    {
      std::lock_guard lock(mu_);
      for (const auto& [k, list] : foreign) {
        auto it = parts_.find(k);
        if (it == parts_.end()) continue;
        const bool all_there = std::all_of(list.begin(), list.end(),
                                           [&](const transform::uuid& id) { return present.count(transform::to_string(id)) > 0; });
        if (all_there) {
          it->second.primary = primary;
          it->second.lsn = now;
          ++found;
        } else {
          missing.push_back(k);
          parts_.erase(it);
        }
      }
    }
    spdlog::log(missing.empty() ? spdlog::level::info : spdlog::level::warn,
                "Looked up unconfirmed batches in the ledger of the primary on timeline {}: {} present (confirmed "
                "against its standbys from now on), {} missing (written again).",
                s.timeline, found, missing.size());
  }
  std::lock_guard lock(mu_);
  bool blind = false;
  for (auto it = parts_.begin(); it != parts_.end();) {
    const verdict v = it->second.primary == primary ? confirmation_of(s, policy, it->second.lsn)
                                                         : verdict::waiting;
    blind = blind || v == verdict::blind;
    if (v == verdict::confirmed) {
      confirmed.push_back(it->first);
      it = parts_.erase(it);
    } else {
      ++it;
    }
  }
  return blind;
}

}  // namespace crm::sinks::postgres
