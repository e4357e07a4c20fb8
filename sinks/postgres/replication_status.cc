#include "sinks/postgres/replication_status.h"

#include <charconv>

#include <fmt/format.h>

namespace crm::sinks::postgres {

std::optional<lsn_t> parse_lsn(std::string_view text) noexcept {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size()) return std::nullopt;
  std::uint32_t hi = 0, lo = 0;
  auto a = std::from_chars(text.data(), text.data() + slash, hi, 16);
  auto b = std::from_chars(text.data() + slash + 1, text.data() + text.size(), lo, 16);
  if (a.ec != std::errc() || a.ptr != text.data() + slash || b.ec != std::errc() || b.ptr != text.data() + text.size()) {
    return std::nullopt;
  }
  return (static_cast<lsn_t>(hi) << 32) | lo;
}

std::string format_lsn(lsn_t lsn) {
  return fmt::format("{:X}/{:X}", static_cast<std::uint32_t>(lsn >> 32), static_cast<std::uint32_t>(lsn));
}

namespace {
constexpr std::string_view verdict_names[] = {"confirmed", "waiting", "blind"};

// The name of enum value `v` in `names` (in the enum's order); "unknown" for a value outside the enum.
template <class E, std::size_t N>
std::string_view name_of(E v, const std::string_view (&names)[N]) noexcept {
  const auto i = static_cast<std::size_t>(v);
  return i < N ? names[i] : std::string_view("unknown");
}
}  // namespace

std::string_view to_string(replication_mode m) noexcept { return name_of(m, replication_mode_names); }

std::string_view to_string(verdict v) noexcept { return name_of(v, verdict_names); }

namespace {

// Physical standbys only: a logical WAL sender is bound to a database (pg_stat_activity.datname) and can
// never be promoted. A row whose state is NULL is one this role may not see (pg_read_all_stats missing).
// A standby that has not reported a flush position yet counts as having flushed nothing.
// On a server in recovery the WAL functions would fail: they are not called there.
constexpr const char* status_sql = R"(
WITH s AS (
  SELECT r.state, r.sync_state, r.flush_lsn
    FROM pg_stat_replication r JOIN pg_stat_activity a ON a.pid = r.pid
   WHERE a.datname IS NULL AND (r.state IS NULL OR r.state IN ('streaming', 'catchup'))),
 v AS (SELECT * FROM s WHERE state IS NOT NULL)
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,
       (SELECT count(*) FROM v),
       (SELECT count(*) FROM v WHERE sync_state = 'sync'),
       (SELECT count(*) FROM s WHERE state IS NULL),
       (SELECT CASE WHEN bool_or(flush_lsn IS NULL) THEN '0/0'::pg_lsn ELSE min(flush_lsn) END FROM v)::text,
       (SELECT CASE WHEN bool_or(flush_lsn IS NULL) THEN '0/0'::pg_lsn ELSE min(flush_lsn) END
          FROM v WHERE sync_state = 'sync')::text,
       (SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical'),
       current_setting('synchronous_standby_names'),
       current_setting('synchronous_commit'),
       (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint
)";

lsn_t lsn_or_zero(const pqxx::field& f) {
  if (f.is_null()) return 0;
  return parse_lsn(f.c_str()).value_or(0);
}

// A standby (seen or hidden), a physical slot or a synchronous standby configured: the cluster has replicas.
bool shows_replicas(const replication_status& s) noexcept {
  return s.slots > 0 || s.standbys > 0 || s.hidden > 0 || !s.synchronous_standby_names.empty();
}

bool commit_waits_for_standby(const replication_status& s) noexcept {
  return s.synchronous_commit == "on" || s.synchronous_commit == "remote_write" ||
         s.synchronous_commit == "remote_apply";
}

}  // namespace

replication_status read_replication_status(pqxx::transaction_base& tx) {
  // Prepared once per session: planned afresh, this join of the statistics views cost ~3 ms of the server's CPU
  // after every commit, several times its execution. (Registering the same definition again is a no-op.)
  tx.conn().prepare("crm_replication_status", status_sql);
  const auto row = tx.exec_prepared("crm_replication_status")[0];
  replication_status s;
  s.in_recovery = row[0].as<bool>();
  if (!s.in_recovery) {
    s.insert_lsn = lsn_or_zero(row[1]);
    s.timeline = static_cast<std::uint32_t>(std::stoul(row[2].c_str(), nullptr, 16));
  }
  s.standbys = row[3].as<int>();
  s.synchronous = row[4].as<int>();
  s.hidden = row[5].as<int>();
  s.all_flushed = lsn_or_zero(row[6]);
  if (!row[7].is_null()) s.sync_flushed = lsn_or_zero(row[7]);
  s.slots = row[8].as<int>();
  s.synchronous_standby_names = row[9].c_str();
  s.synchronous_commit = row[10].c_str();
  s.started_us = row[11].as<std::int64_t>();
  return s;
}

int required_standbys(const replication_status& s, const confirm_policy& p) noexcept {
  if (p.min_standbys >= 0) return p.min_standbys;
  return shows_replicas(s) ? 1 : 0;
}

confirm_policy replication_memory::policy_for(const replication_status& s, confirm_policy p) noexcept {
  if (p.min_standbys >= 0) return p;
  if (!s.in_recovery && shows_replicas(s)) replicated_.store(true, std::memory_order_relaxed);
  if (replicated_.load(std::memory_order_relaxed)) p.min_standbys = 1;
  return p;
}

replication_mode mode_of(const replication_status& s, const confirm_policy& p) noexcept {
  if (s.synchronous > 0) return replication_mode::synchronous;
  if (s.standbys == 0 && s.hidden == 0 && required_standbys(s, p) == 0) return replication_mode::standalone;
  return replication_mode::asynchronous;
}

verdict confirmation_of(const replication_status& s, const confirm_policy& p, lsn_t lsn) noexcept {
  if (!p.wait_for_standbys) return verdict::confirmed;
  if (s.in_recovery) return verdict::waiting;
  if (s.hidden > 0) return verdict::blind;
  // A synchronous standby has it: under Patroni's synchronous_mode only a synchronous standby is promoted.
  if (s.sync_flushed && *s.sync_flushed >= lsn) return verdict::confirmed;
  const int required = required_standbys(s, p);
  if (s.standbys < required) return verdict::waiting;
  if (s.standbys == 0) return verdict::confirmed;  // nothing required, nobody to wait for: standalone
  return s.all_flushed >= lsn ? verdict::confirmed : verdict::waiting;
}

verdict confirmation_at_commit(const replication_status& s, const confirm_policy& p, bool waited) noexcept {
  if (!p.wait_for_standbys) return verdict::confirmed;
  if (waited && !s.in_recovery && s.synchronous > 0 && commit_waits_for_standby(s)) return verdict::confirmed;
  return confirmation_of(s, p, s.insert_lsn);
}

std::string describe(const replication_status& s, const confirm_policy& p) {
  if (s.in_recovery) return "replication=none (the server is in recovery: not a primary)";
  return fmt::format(
      "replication={} timeline={} standbys={} synchronous={} slots={} synchronous_standby_names='{}' "
      "synchronous_commit={} required_standbys={}{}{}",
      to_string(mode_of(s, p)), s.timeline, s.standbys, s.synchronous, s.slots, s.synchronous_standby_names,
      s.synchronous_commit, required_standbys(s, p), p.wait_for_standbys ? "" : " confirm=commit",
      s.hidden > 0 ? fmt::format(" hidden_standbys={}", s.hidden) : std::string());
}

}  // namespace crm::sinks::postgres
