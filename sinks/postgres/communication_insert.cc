#include "sinks/postgres/communication_insert.h"

#include "sinks/postgres/attribution.h"
#include "sinks/postgres/copy_encoder.h"
#include "sinks/postgres/mix64.h"

#include <algorithm>
#include <cstring>

#include <libpq-fe.h>

namespace crm::sinks::postgres {

namespace {

// libpqxx 6.4 offers no public way to send pre-encoded COPY data; its large-object class exposes the
// transaction's libpq connection to subclasses, which is all we need.
struct raw_connection_access : pqxx::largeobject {
  static PGconn* of(const pqxx::dbtransaction& tx) { return pqxx::largeobject::raw_connection(tx); }
};

[[noreturn]] void throw_from_result(PGconn* conn, PGresult* res, const std::string& query) {
  std::string msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string sqlstate = state ? state : "";
  if (res) PQclear(res);
  if (PQstatus(conn) == CONNECTION_BAD) throw pqxx::broken_connection(msg);
  throw pqxx::sql_error(msg, query, sqlstate.empty() ? nullptr : sqlstate.c_str());
}

// Days since 1970-01-01 of a UTC timestamp: `(occurred_at AT TIME ZONE 'UTC')::date`.
std::int32_t utc_day(transform::timestamp_us us) noexcept {
  constexpr std::int64_t day_us = 86400LL * 1000000;
  std::int64_t d = us / day_us;
  if (us % day_us < 0) --d;
  return static_cast<std::int32_t>(d);
}

// One element of a PostgreSQL array literal: NULL when empty, else double-quoted with \ and " escaped.
void append_element(std::string& out, std::string_view s) {
  if (out.size() > 1) out.push_back(',');
  if (s.empty()) {
    out.append("NULL");
    return;
  }
  out.push_back('"');
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out.push_back('\\');
    out.push_back(ch);
  }
  out.push_back('"');
}

void append_number(std::string& out, std::int64_t v, bool zero_is_null) {
  if (out.size() > 1) out.push_back(',');
  if (zero_is_null && v == 0) {
    out.append("NULL");
    return;
  }
  out.append(std::to_string(v));
}

}  // namespace

std::string communications_copy_target() {
  return std::string("communications (") + communication_columns + ")";
}

std::string communications_insert_statement(const char* stage, bool maintain_analytics) {
  return std::string("WITH ins AS (INSERT INTO communications (") + communication_columns + ") SELECT " +
         communication_columns + " FROM " + stage + " s" +
         // No event time from the source (occurred_at = receipt): a retry of the same event has a
         // later occurred_at, so look for the event_id near it, not for the exact key.
         " WHERE NOT s.occurred_at_is_receipt_time OR NOT EXISTS (SELECT 1 FROM communications c"
         " WHERE c.event_id = s.event_id AND c.occurred_at >= s.occurred_at - interval '7 days'"
         " AND c.occurred_at <= s.occurred_at + interval '1 day')"
         " ON CONFLICT DO NOTHING"
         " RETURNING occurred_at, campaign_id, campaign_ref, channel, status, ab_test_id, variant),"
         // The rows this statement inserted, one by one, and those the batch copied directly, counted by key.
         " tally AS (SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, campaign_id, campaign_ref, channel,"
         " status, ab_test_id, variant, 1::bigint AS n FROM ins"
         " UNION ALL SELECT date '1970-01-01' + days, campaign_id, campaign_ref, channel, status, ab_test_id,"
         " variant, n FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],"
         " $7::text[], $8::bigint[]) AS u(days, campaign_id, campaign_ref, channel, status, ab_test_id, variant, n)),"
         " agg AS (SELECT day, campaign_id, channel, status, min(campaign_ref) AS campaign_ref, sum(n)::bigint AS n"
         " FROM tally GROUP BY 1, 2, 3, 4)" +
         // PostgreSQL runs the data-modifying CTEs last to first: communication_metrics rows are locked
         // before ab_test_message_counts rows, in the order earlier releases used too.
         ab_message_counts(maintain_analytics) +
         ", bump AS (INSERT INTO communication_metrics AS m (day, campaign_id, channel, status, event_count,"
         " campaign_ref)"
         " SELECT day, campaign_id, channel, status, n, campaign_ref FROM agg"
         " ORDER BY day, campaign_id, channel, status"
         " ON CONFLICT ON CONSTRAINT communication_metrics_key"
         " DO UPDATE SET event_count = m.event_count + EXCLUDED.event_count)"
         " SELECT count(*) FROM ins";
}

void metric_tally::add(const transform::communication& c) {
  const std::int32_t day = utc_day(c.occurred_at);
  const auto channel = transform::to_string(c.channel_);
  const auto status = transform::to_string(c.status);
  key_.clear();
  key_.append(reinterpret_cast<const char*>(&day), sizeof day);
  key_.append(reinterpret_cast<const char*>(&c.campaign_id), sizeof c.campaign_id);
  // Lengths first: no separator is needed, whatever the strings hold.
  for (std::string_view s : {std::string_view(channel), std::string_view(status), c.campaign_ref, c.ab_test_id,
                             c.variant}) {
    const auto n = static_cast<std::uint32_t>(s.size());
    key_.append(reinterpret_cast<const char*>(&n), sizeof n);
    key_.append(s);
  }
  auto it = groups_.find(key_);
  if (it == groups_.end()) {
    group g;
    g.day = day;
    g.campaign_id = c.campaign_id;
    g.campaign_ref = c.campaign_ref;
    g.channel = channel;
    g.status = status;
    g.ab_test_id = c.ab_test_id;
    g.variant = c.variant;
    it = groups_.emplace(key_, std::move(g)).first;
  }
  ++it->second.rows;
}

std::array<std::string, 8> metric_tally::params() const {
  std::array<std::string, 8> p;
  for (auto& s : p) s = "{";
  for (const auto& [key, g] : groups_) {
    append_number(p[0], g.day, false);
    append_number(p[1], g.campaign_id, true);
    append_element(p[2], g.campaign_ref);
    append_element(p[3], g.channel);
    append_element(p[4], g.status);
    append_element(p[5], g.ab_test_id);
    append_element(p[6], g.variant);
    append_number(p[7], static_cast<std::int64_t>(g.rows), false);
  }
  for (auto& s : p) s.push_back('}');
  return p;
}

bool may_copy_communications(pqxx::dbtransaction& tx) {
  if (tx.exec("SELECT to_regclass('communications') IS NOT NULL")[0][0].as<bool>() == false) return false;
  tx.exec("LOCK TABLE ONLY communications IN ROW EXCLUSIVE MODE");  // what the COPY takes anyway
  return tx
      .exec("SELECT NOT row_security_active('communications') AND NOT EXISTS (SELECT 1 FROM pg_trigger"
            " WHERE NOT tgisinternal AND tgrelid IN (SELECT relid FROM pg_partition_tree('communications')))")[0][0]
      .as<bool>();
}

std::uint64_t recent_keys::fingerprint(const transform::uuid& id, transform::timestamp_us at) noexcept {
  std::uint64_t a, b;
  std::memcpy(&a, id.data(), 8);
  std::memcpy(&b, id.data() + 8, 8);
  return mix64(a ^ (b * 0x9E3779B97F4A7C15ULL) ^ (static_cast<std::uint64_t>(at) * 0xC2B2AE3D27D4EB4FULL)) |
         1;  // never 0, the empty slot
}

std::vector<std::size_t> stored_already(pqxx::dbtransaction& tx, std::span<const transform::communication> all,
                                        const std::vector<std::uint32_t>& rows) {
  constexpr std::uint32_t uuid_oid = 2950, timestamptz_oid = 1184;
  copy_encoder ids, times;  // binary arrays: the elements are COPY fields
  ids.array_header(uuid_oid, static_cast<std::uint32_t>(rows.size()));
  times.array_header(timestamptz_oid, static_cast<std::uint32_t>(rows.size()));
  for (auto i : rows) {
    ids.uuid(all[i].event_id);
    times.timestamp(all[i].occurred_at);
  }
  // LATERAL … LIMIT 1: a nested loop of index probes (with run-time partition pruning) whatever the estimates.
  const std::string query =
      "SELECT u.i FROM unnest($1::uuid[], $2::timestamptz[]) WITH ORDINALITY AS u(event_id, occurred_at, i),"
      " LATERAL (SELECT 1 FROM communications c WHERE c.event_id = u.event_id AND c.occurred_at = u.occurred_at"
      " LIMIT 1) x ORDER BY u.i";
  const char* values[2] = {ids.buffer().data(), times.buffer().data()};
  const int lengths[2] = {static_cast<int>(ids.buffer().size()), static_cast<int>(times.buffer().size())};
  const int formats[2] = {1, 1};
  PGconn* conn = raw_connection_access::of(tx);
  PGresult* res = PQexecParams(conn, query.c_str(), 2, nullptr, values, lengths, formats, 0);
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) throw_from_result(conn, res, query);
  std::vector<std::size_t> found;
  found.reserve(static_cast<std::size_t>(PQntuples(res)));
  for (int r = 0; r < PQntuples(res); ++r) found.push_back(std::strtoull(PQgetvalue(res, r, 0), nullptr, 10) - 1);
  PQclear(res);
  return found;
}

std::uint64_t copy_into(pqxx::dbtransaction& tx, const std::string& target, const std::string& rows) {
  PGconn* conn = raw_connection_access::of(tx);
  const std::string query = "COPY " + target + " FROM STDIN (FORMAT binary)";
  PGresult* res = PQexec(conn, query.c_str());
  if (!res || PQresultStatus(res) != PGRES_COPY_IN) throw_from_result(conn, res, query);
  PQclear(res);
  constexpr std::size_t piece = 1 << 20;
  for (std::size_t pos = 0; pos < rows.size(); pos += piece) {
    int n = static_cast<int>(std::min(piece, rows.size() - pos));
    if (PQputCopyData(conn, rows.data() + pos, n) != 1) throw_from_result(conn, nullptr, query);
  }
  if (PQputCopyEnd(conn, nullptr) != 1) throw_from_result(conn, nullptr, query);
  std::uint64_t stored = 0;
  PGresult* bad = nullptr;
  while ((res = PQgetResult(conn)) != nullptr) {
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      if (!bad) {
        bad = res;
        continue;
      }
    } else {
      stored = std::strtoull(PQcmdTuples(res), nullptr, 10);
    }
    PQclear(res);
  }
  if (bad) throw_from_result(conn, bad, query);
  return stored;
}

}  // namespace crm::sinks::postgres
