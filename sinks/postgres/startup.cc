#include "sinks/postgres/startup.h"

#include <thread>

#include <spdlog/spdlog.h>

#include "sinks/postgres/connection.h"

namespace crm::sinks::postgres {

bool is_superuser(pqxx::connection& conn) {
  pqxx::nontransaction tx(conn);
  return tx.exec("SELECT current_setting('is_superuser')")[0][0].as<std::string>() == "on";
}

namespace {

void check_role(pqxx::connection& conn, const startup_options& o) {
  if (o.embedded || !is_superuser(conn)) return;
  if (o.allow_superuser) {
    spdlog::warn("Connected to PostgreSQL as a superuser (postgres.allow_superuser = true); use a role granted "
                 "crm_ingest_writer instead. command={} dsn={}",
                 o.command, redact_dsn(o.dsn));
    return;
  }
  throw superuser_refused("refusing to " + o.command + " with a superuser PostgreSQL connection (" +
                          redact_dsn(o.dsn) +
                          "): connect as a role granted crm_ingest_writer, or allow it with postgres.allow_superuser = "
                          "true (CRM_INGEST_POSTGRES_ALLOW_SUPERUSER=true, or --allow-superuser)");
}

}  // namespace

startup_outcome start_database(const startup_options& o) {
  backoff wait(std::chrono::milliseconds(200), std::chrono::milliseconds(1000));
  const auto started = std::chrono::steady_clock::now();
  for (int attempt = 1;; ++attempt) {
    try {
      pqxx::connection conn(o.dsn);
      check_role(conn, o);
      if (o.embedded) {
        auto r = migrate(conn, embedded_migrations(), o.window);
        for (const auto& name : r.applied) spdlog::info("Applied a migration. migration={}", name);
      } else {
        check_schema_current(conn, embedded_migrations());
        if (o.ensure_partitions) ensure_partitions(conn, o.window);
      }
      return startup_outcome::ready;
    } catch (const migration_error&) {
      throw;
    } catch (const superuser_refused&) {
      throw;
    } catch (const std::exception& e) {
      auto f = classify(e);
      if (f.kind == failure_kind::fatal) throw;
      if (!o.wait_until_reachable) {
        spdlog::warn("PostgreSQL is not reachable at start; the source keeps what arrives and the writers wait for "
                     "it. command={} dsn={} error={}",
                     o.command, redact_dsn(o.dsn), e.what());
        return startup_outcome::unreachable;
      }
      auto waited = std::chrono::steady_clock::now() - started;
      if (!o.wait.may_retry(waited)) throw;
      auto delay = wait.next();
      spdlog::warn("Waiting for the database before {}. attempt={} waited_s={} reason={} error={}", o.activity, attempt, std::chrono::duration_cast<std::chrono::seconds>(waited).count(), f.reason, f.message);
      std::this_thread::sleep_for(delay);
    }
  }
}

}  // namespace crm::sinks::postgres
