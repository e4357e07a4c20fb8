// The one database start-up of every command that writes (serve, serve's drainer, consume, write,
// import, rejected replay): connect, check the role against the one superuser policy, check that the
// schema is current (or migrate the embedded database), create the partitions of the window. Runs once,
// on the command's main thread, before any writer starts; exceptions are fine here (start-up).
//
// Superuser policy: a command that writes events refuses a superuser connection (a bug or a crafted
// request could then reach every table and the server's files) unless allow_superuser is set
// (postgres.allow_superuser, CRM_INGEST_POSTGRES_ALLOW_SUPERUSER, --allow-superuser). The embedded
// private database is exempt: it is this process's own.
#pragma once

#include <stdexcept>
#include <string>

#include "sinks/postgres/migrations.h"
#include "sinks/postgres/retry_policy.h"

namespace crm::sinks::postgres {

struct startup_options {
  std::string dsn;
  std::string command;     // a verb for messages: "serve", "import", "consume", "write", "replay dead letters"
  std::string activity = "writing";  // "importing": "Waiting for the database before importing"
  bool embedded = false;   // the private database: migrate it, exempt from the superuser policy
  bool allow_superuser = false;
  bool ensure_partitions = true;
  partition_window window;
  // Reachability: wait for the database under `wait` (import, replay), or not at all (serve, consume,
  // write: their source holds the data and the writers wait for the database themselves).
  bool wait_until_reachable = false;
  retry_policy wait = retry_policy::for_at_most(std::chrono::seconds(120));
};

enum class startup_outcome {
  ready,        // connected, role and schema checked
  unreachable,  // not reachable now (only without wait_until_reachable, or when `wait` ran out: thrown)
};

// Refused by the superuser policy.
class superuser_refused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws superuser_refused, migration_error (an unmigrated or edited schema) or a libpqxx error (a
// refusal no retry can fix, or the database stayed unreachable longer than `wait`).
startup_outcome start_database(const startup_options& options);

// True when the session's role is a superuser.
bool is_superuser(pqxx::connection& conn);

}  // namespace crm::sinks::postgres
