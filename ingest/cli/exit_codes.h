// crm-ingest's exit codes, one per cause, stable for scripts and supervisors (README "Exit codes").
// Each failure is classified where its dependency is used (sinks/postgres/startup.h, the durable log's
// open_error, kafka_error) and mapped here, at the edge, by exit_code_for().
#pragma once

#include <exception>

namespace crm::ingest::cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_input = 1;      // import: a file could not be read (the others were imported)
inline constexpr int exit_usage = 2;      // bad command line or configuration (including a refused superuser role)
inline constexpr int exit_database = 3;   // the database refused, or stayed unreachable longer than the retry policy
inline constexpr int exit_local_log = 4;  // the durable local log could not be opened, read or written
inline constexpr int exit_kafka = 5;      // the Kafka client could not be created, configured or subscribed
inline constexpr int exit_internal = 70;  // anything else: a bug (EX_SOFTWARE); the message says what

// Prints "error: ..." for `e` on stderr and returns its exit code.
int exit_code_for(const std::exception& e);

}  // namespace crm::ingest::cli
