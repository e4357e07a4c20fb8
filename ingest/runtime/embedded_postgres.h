// The embedded default database: a private PostgreSQL 15 under a data directory, started on a free
// loopback port by deploy/local-postgres.sh. Used when no DSN is given.
#pragma once

#include <stdexcept>
#include <string>

namespace crm::ingest {

// The embedded database could not be found, started or stopped (exit code 3).
class embedded_postgres_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ${CRM_INGEST_DATA_DIR} if set, else /var/lib/crm-ingest/postgres for root, else
// ${XDG_DATA_HOME:-~/.local/share}/crm-ingest/postgres.
std::string default_embedded_data_dir();

// Where local-postgres.sh is: ${CRM_INGEST_LOCAL_PG_SCRIPT}, the source tree it was built from, or
// ../share/crm-ingest/ beside the executable.
std::string local_postgres_script();

// Runs `local-postgres.sh ACTION DIR` and returns what it printed (the DSN for start/status).
// Throws embedded_postgres_error with the script's output when it fails.
std::string local_postgres(const std::string& action, const std::string& data_dir);

}  // namespace crm::ingest
