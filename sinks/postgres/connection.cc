#include "sinks/postgres/connection.h"

#include <algorithm>

namespace crm::sinks::postgres {

std::string_view to_string(failure_kind k) noexcept {
  switch (k) {
    case failure_kind::reconnect: return "reconnect";
    case failure_kind::in_doubt: return "in_doubt";
    case failure_kind::data: return "data";
    case failure_kind::fatal: return "fatal";
  }
  return "unknown";
}

namespace {

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

failure classify_sqlstate(const std::string& state, const std::string& msg) {
  auto cls = state.substr(0, 2);
  if (cls == "08" || state == "57P01" || state == "57P02" || state == "57P03" || state == "25006" ||
      state == "40001" || state == "40P01" || cls == "53" || state == "57014" || state == "55P03" ||
      state == "58000" || state == "58030") {
    return {failure_kind::reconnect, state, msg};
  }
  if (cls == "22" || cls == "23") return {failure_kind::data, state, msg};
  return {failure_kind::fatal, state.empty() ? "sql_error" : state, msg};
}

}  // namespace

failure classify(const std::exception& e) {
  const std::string msg = e.what();
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e)) return {failure_kind::in_doubt, "in_doubt", msg};
  if (dynamic_cast<const pqxx::deadlock_detected*>(&e)) return {failure_kind::reconnect, "40P01", msg};
  if (dynamic_cast<const pqxx::serialization_failure*>(&e)) return {failure_kind::reconnect, "40001", msg};
  if (dynamic_cast<const pqxx::statement_completion_unknown*>(&e)) {
    return {failure_kind::in_doubt, "statement_completion_unknown", msg};
  }
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e)) return {failure_kind::reconnect, "rollback", msg};
  if (dynamic_cast<const not_primary*>(&e)) return {failure_kind::reconnect, "not_primary", msg};
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) {
    // Connection-time refusals that no retry can fix.
    if (contains(msg, "password authentication failed") || contains(msg, "no pg_hba.conf entry") ||
        (contains(msg, "database \"") && contains(msg, "does not exist")) ||
        (contains(msg, "role \"") && contains(msg, "does not exist")) || contains(msg, "invalid connection option") ||
        contains(msg, "missing \"=\" after") || contains(msg, "invalid URI")) {
      return {failure_kind::fatal, "connect_refused", msg};
    }
    return {failure_kind::reconnect, "broken_connection", msg};
  }
  if (auto* s = dynamic_cast<const pqxx::sql_error*>(&e)) return classify_sqlstate(s->sqlstate(), msg);
  return {failure_kind::fatal, "exception", msg};
}

std::unique_ptr<pqxx::connection> connect_primary(const std::string& dsn, std::string_view application_name) {
  auto conn = std::make_unique<pqxx::connection>(dsn);
  pqxx::nontransaction tx(*conn);
  tx.exec_params("SELECT set_config('application_name', $1, false)", std::string(application_name));
  // Timestamps are written with an explicit +00 offset; UTC keeps date_trunc and ::date in UTC too.
  tx.exec("SET TIME ZONE 'UTC'");
  auto r = tx.exec("SELECT pg_is_in_recovery()");
  if (r[0][0].as<bool>()) {
    throw not_primary("the server at " + redact_dsn(dsn) + " is a replica (pg_is_in_recovery() = true)");
  }
  return conn;
}

backoff::backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap)
    : base_(base), cap_(cap), rng_(std::random_device{}()) {}

std::chrono::milliseconds backoff::next() {
  const unsigned shift = std::min(attempt_, 20u);
  ++attempt_;
  auto raw = base_.count() * (std::int64_t{1} << shift);
  auto capped = std::min<std::int64_t>(raw, cap_.count());
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(capped) * jitter(rng_)));
}

std::string redact_dsn(std::string_view dsn) {
  std::string s(dsn);
  // URI form: scheme://user:password@host...
  if (auto scheme = s.find("://"); scheme != std::string::npos) {
    auto at = s.find('@', scheme + 3);
    auto colon = s.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) s.replace(colon + 1, at - colon - 1, "***");
  }
  // key=value form (also in a URI's query string): password=...
  for (std::size_t pos = 0; (pos = s.find("password", pos)) != std::string::npos;) {
    std::size_t eq = pos + 8;
    while (eq < s.size() && s[eq] == ' ') ++eq;
    if (eq >= s.size() || s[eq] != '=') {
      pos += 8;
      continue;
    }
    std::size_t start = eq + 1;
    while (start < s.size() && s[start] == ' ') ++start;
    std::size_t end = start;
    if (end < s.size() && s[end] == '\'') {
      end = s.find('\'', end + 1);
      end = end == std::string::npos ? s.size() : end + 1;
    } else {
      while (end < s.size() && s[end] != ' ' && s[end] != '&') ++end;
    }
    s.replace(start, end - start, "***");
    pos = start + 3;
  }
  return s;
}

}  // namespace crm::sinks::postgres
