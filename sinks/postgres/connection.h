// PostgreSQL connection set-up and failure classification: the one boundary where libpqxx errors are
// caught and turned into a decision (reconnect and replay, settle from the ledger, split, give up).
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include <pqxx/pqxx>

namespace crm::sinks::postgres {

enum class failure_kind {
  reconnect,  // connection lost, server shutting down, read-only (demoted primary), deadlock...: replay
  in_doubt,   // connection lost during COMMIT: settle from the ledger
  data,       // the rows themselves were refused: split the batch
  fatal,      // configuration or schema problem: retrying cannot help
};

struct failure {
  failure_kind kind;
  std::string reason;   // short, stable label for metrics/logs: "broken_connection", "25006", ...
  std::string message;  // the server's or library's words
};

failure classify(const std::exception& e);

std::string_view to_string(failure_kind k) noexcept;

// Thrown by connect_primary when the server is reachable but not a primary.
class not_primary : public pqxx::broken_connection {
 public:
  using pqxx::broken_connection::broken_connection;
};

// Opens a connection and checks that the session is on a writable primary (pg_is_in_recovery()).
std::unique_ptr<pqxx::connection> connect_primary(const std::string& dsn, std::string_view application_name);

// Counts the notices (NOTICE, WARNING...) the server sends on one connection, such as the WARNING of a COMMIT whose
// wait for the synchronous standbys was cut short. Registered with the connection while it lives: destroy it first.
// Thread ownership: the connection's thread (libpq calls it while that thread reads a result).
class notice_counter : public pqxx::errorhandler {
 public:
  explicit notice_counter(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char[]) noexcept override {
    ++count_;
    return true;
  }
  std::uint64_t count() const noexcept { return count_; }

 private:
  std::uint64_t count_ = 0;
};

// Capped, jittered exponential backoff: min(cap, base * 2^n) * U(0.5, 1].
class backoff {
 public:
  backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap);
  std::chrono::milliseconds next();
  void reset() noexcept { attempt_ = 0; }

 private:
  std::chrono::milliseconds base_, cap_;
  unsigned attempt_ = 0;
  std::mt19937_64 rng_;
};

// 'text' as an SQL string literal, escaped by libpq for this connection (pqxx's quote() builds the same
// string by concatenation, which GCC 12 at -O3 misreads as an overlapping copy, -Wrestrict).
template <typename Escaper>
std::string sql_literal(Escaper& c, std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('\'');
  out.append(c.esc(text.data(), text.size()));
  out.push_back('\'');
  return out;
}

// Removes a password from a DSN before it is logged.
std::string redact_dsn(std::string_view dsn);

}  // namespace crm::sinks::postgres
