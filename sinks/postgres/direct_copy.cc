#include "sinks/postgres/direct_copy.h"

#include "sinks/postgres/mix64.h"
#include "sinks/postgres/writer_observer.h"

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

}  // namespace

void append_array_text(std::string& out, std::string_view s) {
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

void append_array_number(std::string& out, std::int64_t v, bool zero_is_null) {
  if (out.size() > 1) out.push_back(',');
  if (zero_is_null && v == 0) {
    out.append("NULL");
    return;
  }
  out.append(std::to_string(v));
}

bool may_copy_into(pqxx::dbtransaction& tx, const char* table) {
  // The table's name as a parameter ($1::regclass), its identifier only in the LOCK.
  if (tx.exec_params("SELECT to_regclass($1) IS NOT NULL", table)[0][0].as<bool>() == false) return false;
  tx.exec(std::string("LOCK TABLE ONLY ") + table + " IN ROW EXCLUSIVE MODE");  // what the COPY takes anyway
  return tx
      .exec_params("WITH tree AS MATERIALIZED (SELECT relid FROM pg_partition_tree($1::regclass))"
                   " SELECT NOT row_security_active($1::regclass)"
                   " AND NOT EXISTS (SELECT 1 FROM pg_trigger"
                   " WHERE NOT tgisinternal AND tgrelid IN (SELECT relid FROM tree))"
                   " AND NOT EXISTS (SELECT 1 FROM pg_rewrite WHERE ev_type = '3'"
                   " AND ev_class IN (SELECT relid FROM tree))",
                   table)[0][0]
      .as<bool>();
}

std::uint64_t recent_keys::fingerprint(const row_key& k) noexcept {
  std::uint64_t a, b;
  std::memcpy(&a, k.id.data(), 8);
  std::memcpy(&b, k.id.data() + 8, 8);
  return mix64(a ^ (b * 0x9E3779B97F4A7C15ULL) ^ (static_cast<std::uint64_t>(k.at) * 0xC2B2AE3D27D4EB4FULL)) |
         1;  // never 0, the empty slot
}

std::vector<std::size_t> stored_already(pqxx::dbtransaction& tx, const char* table, const char* id_column,
                                        std::span<const row_key> keys) {
  constexpr std::uint32_t uuid_oid = 2950, timestamptz_oid = 1184;
  copy_encoder ids, times;  // binary arrays: the elements are COPY fields
  ids.array_header(uuid_oid, static_cast<std::uint32_t>(keys.size()));
  times.array_header(timestamptz_oid, static_cast<std::uint32_t>(keys.size()));
  for (const auto& k : keys) {
    ids.uuid(k.id);
    times.timestamp(k.at);
  }
  // LATERAL … LIMIT 1: a nested loop of index probes (with run-time partition pruning) whatever the estimates.
  const std::string query =
      std::string("SELECT u.i FROM unnest($1::uuid[], $2::timestamptz[]) WITH ORDINALITY AS u(id, occurred_at, i),"
                  " LATERAL (SELECT 1 FROM ") +
      table + " c WHERE c." + id_column + " = u.id AND c.occurred_at = u.occurred_at LIMIT 1) x ORDER BY u.i";
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

std::string touchpoints_copy_target() {
  return std::string("customer_touchpoints (") + touchpoint_columns + ")";
}

direct_copy::direct_copy(const char* table, const char* id_column, std::string target)
    : table_(table), id_column_(id_column), target_(std::move(target)) {}

// The positions of ask_ that a probe finds stored are dropped from idx_ (ask_ is a subsequence of it) and the
// rest re-encoded. Returns how many of the stored rows the hint had not named.
std::size_t direct_copy::leave_out_stored(pqxx::dbtransaction& tx, std::span<const row_key> keys,
                                          const encode_fn& encode) {
  ask_keys_.clear();
  for (auto k : ask_) ask_keys_.push_back(keys[k]);
  const auto stored = stored_already(tx, table_, id_column_, ask_keys_);
  if (stored.empty()) return 0;
  std::size_t unhinted = 0;
  for (auto s : stored) unhinted += hinted_[ask_[s]] ? 0 : 1;
  std::size_t kept = 0;
  for (std::size_t k = 0, s = 0; k < idx_.size(); ++k) {
    if (s < stored.size() && ask_[stored[s]] == idx_[k]) {
      ++s;
      continue;
    }
    idx_[kept++] = idx_[k];
  }
  idx_.resize(kept);
  probed_.clear();
  for (auto k : idx_) encode(k, probed_);
  sending_ = &probed_;
  return unhinted;
}

bool direct_copy::copy(pqxx::dbtransaction& tx, std::span<const row_key> keys, const recent_keys& recent,
                       writer_observer* obs, const encode_fn& encode, std::uint64_t& copied) {
  copied = 0;
  idx_.resize(keys.size());
  for (std::uint32_t k = 0; k < idx_.size(); ++k) idx_[k] = k;
  sending_ = &rows_;
  bool probed_all = false, conflicted = false;
  // The rows whose keys this writer committed lately, the likely duplicates (a hint: the unique index decides).
  ask_.clear();
  hinted_.assign(keys.size(), 0);
  for (auto k : idx_) {
    if (recent.seen(keys[k])) {
      ask_.push_back(k);
      hinted_[k] = 1;
    }
  }
  if (!probe_first_ && !ask_.empty()) {
    if (obs) obs->rows_probed(table_, ask_.size());
    leave_out_stored(tx, keys, encode);
  }
  for (;;) {
    if (probe_first_ && !probed_all) {
      probed_all = true;
      ask_ = idx_;
      if (obs) obs->rows_probed(table_, ask_.size());
      // A part is clean when the hint alone would have left out every stored row the probe found (and its own COPY
      // met none); after four clean parts in a row, the next ones probe only the rows the hint names.
      const bool unnamed = leave_out_stored(tx, keys, encode) > 0 || conflicted;
      clean_probes_ = unnamed ? 0 : clean_probes_ + 1;
      if (clean_probes_ >= 4) probe_first_ = false;
    }
    if (idx_.empty()) return true;
    tx.exec("SAVEPOINT crm_direct_copy");
    bool conflict = false, refused = false;
    try {
      copied = copy_into(tx, target_, sending_->finish());
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() == "23505") {
        conflict = true;  // unique_violation: a row is stored already
        if (obs) obs->copy_met_stored_row(table_);
      } else if (e.sqlstate() == "0A000") {
        refused = true;  // feature_not_supported: Row Level Security came to apply to the role since the check
      } else {
        throw;
      }
    }
    if (!conflict && !refused && copied == sending_->rows()) {
      tx.exec("RELEASE SAVEPOINT crm_direct_copy");
      return true;
    }
    copied = 0;
    tx.exec("ROLLBACK TO SAVEPOINT crm_direct_copy");
    if (conflict) {
      probe_first_ = true;  // ask first, from now on, until parts come clean
      clean_probes_ = 0;
      conflicted = true;
      if (!probed_all) continue;
    }
    // Stored by another session since the probe, a row a trigger of the database skipped, or COPY refused: the
    // staging path, whose ON CONFLICT and RETURNING say exactly what was inserted.
    return false;
  }
}

}  // namespace crm::sinks::postgres
