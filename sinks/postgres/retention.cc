#include "sinks/postgres/retention.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "sinks/postgres/connection.h"

namespace crm::sinks::postgres {

namespace fs = std::filesystem;

namespace {

constexpr const char* comment_prefix = "crm-ingest retain: detached from ";

// The libpq connection parameters of `dsn` as PG* environment variables (PGHOST, PGPASSWORD, ...), so
// pg_dump gets them without the password showing in its command line.
std::vector<std::string> libpq_environment(const std::string& dsn) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    std::string msg = err ? err : "unparsable connection string";
    if (err) PQfreemem(err);
    throw retention_error("cannot read the connection string for pg_dump: " + msg);
  }
  std::vector<std::string> env;
  for (auto* o = opts; o->keyword; ++o) {
    if (o->val && *o->val && o->envvar) env.push_back(std::string(o->envvar) + "=" + o->val);
  }
  PQconninfoFree(opts);
  return env;
}

// Runs argv with `extra_env` added; feeds its standard output to `on_line` line by line (when given).
// Returns the exit status (-1 when it could not be started).
int run_process(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                const std::function<void(std::string_view)>& on_line) {
  int out[2] = {-1, -1};
  if (on_line && pipe2(out, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    for (const auto& e : extra_env) putenv(const_cast<char*>(e.c_str()));
    if (on_line) dup2(out[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  if (on_line) {
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    char* line = nullptr;
    std::size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
      std::string_view l(line, static_cast<std::size_t>(n));
      if (!l.empty() && l.back() == '\n') l.remove_suffix(1);
      on_line(l);
    }
    std::free(line);
    std::fclose(f);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Counts the data rows of `table` in a custom-format dump by restoring it as text.
long long rows_in_dump(const retention_options& o, const fs::path& file, const std::string& table) {
  long long rows = 0;
  bool in_copy = false, seen = false;
  int rc = run_process({o.pg_restore, "--data-only", "--file=-", file.string()}, {}, [&](std::string_view l) {
    if (in_copy) {
      if (l == "\\.") in_copy = false;
      else ++rows;
    } else if (l.rfind("COPY ", 0) == 0 && l.find(table) != std::string_view::npos) {
      in_copy = seen = true;
    }
  });
  if (rc != 0) throw retention_error("pg_restore could not read " + file.string() + " (exit " + std::to_string(rc) + ")");
  if (!seen) throw retention_error(file.string() + " holds no data of " + table);
  return rows;
}

void fsync_path(const fs::path& p, bool directory) {
  int fd = ::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) throw retention_error("cannot open " + p.string() + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw retention_error("fsync " + p.string() + ": " + std::strerror(errno));
}

// Runs `sql` in its own transaction with a short lock_timeout, retrying while the lock is not granted.
void exec_with_lock_retries(pqxx::connection& conn, const retention_options& o, const std::vector<std::string>& sql) {
  for (int attempt = 1;; ++attempt) {
    try {
      pqxx::work tx(conn);
      tx.exec("SET LOCAL lock_timeout = " + sql_literal(tx, std::to_string(o.lock_timeout.count()) + "ms"));
      for (const auto& s : sql) tx.exec(s);
      tx.commit();
      return;
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != "55P03" || attempt >= o.lock_attempts) throw;
      spdlog::warn("Waiting for a table lock held by other sessions. attempt={} statement={}", attempt, sql.front());
      std::this_thread::sleep_for(o.lock_timeout);
    }
  }
}

struct detached_table {
  std::string name;
  std::string parent;
};

}  // namespace

int parse_keep(const std::string& text) {
  std::size_t used = 0;
  long n = 0;
  try {
    n = std::stol(text, &used);
  } catch (...) {
    used = 0;
  }
  std::string unit = used ? text.substr(used) : "";
  if (used == 0 || n < 1 || (unit != "mo" && unit != "y")) {
    throw std::invalid_argument("--keep takes a number of months or years, e.g. 13mo or 2y; got \"" + text + "\"");
  }
  long months = unit == "y" ? n * 12 : n;
  if (months > 1200) throw std::invalid_argument("--keep " + text + " is more than 100 years");
  return static_cast<int>(months);
}

retention_result retain_partitions(const retention_options& o) {
  retention_result res;
  pqxx::connection conn(o.dsn);
  {
    pqxx::nontransaction tx(conn);
    tx.exec("SET application_name = 'crm-ingest partitions retain'");
    if (!tx.exec("SELECT pg_try_advisory_lock(hashtext('crm_partitions_retain'))")[0][0].as<bool>()) {
      res.lock_busy = true;
      return res;
    }
    res.cutoff = tx.exec_params("SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') - "
                                "make_interval(months => $1), 'YYYY-MM-DD')",
                                o.keep_months - 1)[0][0]
                     .as<std::string>();
  }
  const std::string cutoff_ts = "(" + sql_literal(conn, res.cutoff) + "::timestamp AT TIME ZONE 'UTC')";

  // 1. Finish detaches left pending by DETACH ... CONCURRENTLY.
  {
    pqxx::nontransaction tx(conn);
    auto pending = tx.exec(
        "SELECT p.relname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhdetachpending "
        "AND p.relname IN ('communications', 'customer_touchpoints') AND pg_table_is_visible(p.oid)");
    for (const auto& row : pending) {
      std::string parent = row[0].as<std::string>(), child = row[1].as<std::string>();
      if (o.dry_run) continue;
      spdlog::info("Finalizing a pending detach. partition={}", child);
      pqxx::nontransaction fin(conn);
      fin.exec("ALTER TABLE " + fin.quote_name(parent) + " DETACH PARTITION " + fin.quote_name(child) + " FINALIZE");
    }
  }

  // 2. Detach the monthly partitions that end on or before the cutoff (never the DEFAULT ones, whose bound
  // has no FROM/TO).
  struct candidate {
    std::string child, parent, from, to;
  };
  std::vector<candidate> to_detach;
  // The cutoff the writers refuse older events by (schemas/0017_retention_cutoff.sql): raised, never lowered.
  const std::string record_cutoff =
      "INSERT INTO retention_cutoff (cutoff, keep_months) VALUES (" + sql_literal(conn, res.cutoff) + "::date, " +
      std::to_string(o.keep_months) +
      ") ON CONFLICT (one) DO UPDATE SET cutoff = EXCLUDED.cutoff, keep_months = EXCLUDED.keep_months, set_at = now()"
      " WHERE retention_cutoff.cutoff < EXCLUDED.cutoff";
  {
    pqxx::nontransaction tx(conn);
    auto r = tx.exec(
        "SELECT c.relname, p.relname, b[1], b[2] FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent, "
        "LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS b "
        "WHERE p.relname IN ('communications', 'customer_touchpoints') AND pg_table_is_visible(p.oid) "
        "AND NOT i.inhdetachpending AND b IS NOT NULL AND b[2]::timestamptz <= " + cutoff_ts +
        " ORDER BY b[1]::timestamptz, p.relname");
    for (const auto& row : r) {
      to_detach.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                           row[3].as<std::string>()});
    }
  }
  for (const auto& c : to_detach) {
    if (o.dry_run) {
      res.would_drop.push_back(c.child);
      continue;
    }
    std::string comment = std::string(comment_prefix) + c.parent + " [" + c.from + ", " + c.to + ")";
    // The cutoff in the detach's own transaction: no moment when a month is gone and its events are not refused.
    exec_with_lock_retries(conn, o,
                           {"ALTER TABLE " + conn.quote_name(c.parent) + " DETACH PARTITION " + conn.quote_name(c.child),
                            "COMMENT ON TABLE " + conn.quote_name(c.child) + " IS " + sql_literal(conn, comment),
                            record_cutoff});
    spdlog::info("Detached a partition before the retention cutoff. partition={} cutoff={}", c.child, res.cutoff);
    res.detached.push_back(c.child);
  }
  // Nothing detached (or months dropped by a run older than the cutoff's record): the run's cutoff stands all the same.
  if (!o.dry_run && res.detached.empty()) exec_with_lock_retries(conn, o, {record_cutoff});

  // 3. Archive (optionally) and drop every table this or an earlier run detached.
  std::vector<detached_table> detached;
  {
    pqxx::nontransaction tx(conn);
    auto r = tx.exec(
        "SELECT c.relname, substring(obj_description(c.oid, 'pg_class') FROM '^" + std::string(comment_prefix) +
        "([a-z_]+) ') FROM pg_class c WHERE c.relkind = 'r' AND pg_table_is_visible(c.oid) AND NOT c.relispartition "
        "AND obj_description(c.oid, 'pg_class') LIKE " + sql_literal(tx, std::string(comment_prefix) + "%") +
        " ORDER BY c.relname");
    for (const auto& row : r) detached.push_back({row[0].as<std::string>(), row[1].as<std::string>()});
  }
  if (!o.dry_run && !o.archive_dir.empty()) fs::create_directories(o.archive_dir);
  for (const auto& t : detached) {
    if (o.dry_run) {
      res.would_drop.push_back(t.name);
      continue;
    }
    long long rows = 0;
    std::string schema;
    {
      pqxx::nontransaction tx(conn);
      rows = tx.exec("SELECT count(*) FROM " + tx.quote_name(t.name))[0][0].as<long long>();
      schema = tx.exec("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = " +
                       sql_literal(tx, t.name) + "::regclass")[0][0]
                   .as<std::string>();
    }
    if (!o.archive_dir.empty()) {
      fs::path final_file = fs::path(o.archive_dir) / (t.name + ".dump");
      bool have = false;
      if (fs::exists(final_file)) {
        // An earlier run archived it and stopped before the drop: check the file, don't trust it blindly.
        try {
          have = rows_in_dump(o, final_file, t.name) == rows;
        } catch (const retention_error& e) {
          spdlog::warn("An existing archive is unreadable; writing it again. file={} error={}", final_file.string(),
                       e.what());
        }
      }
      if (!have) {
        fs::path partial = final_file;
        partial += ".partial";
        fs::remove(partial);
        int rc = run_process({o.pg_dump, "--format=custom", "--no-owner", "--table=" + schema + "." + t.name,
                              "--file=" + partial.string()},
                             libpq_environment(o.dsn), {});
        if (rc != 0) {
          throw retention_error("pg_dump of " + t.name + " failed (exit " + std::to_string(rc) +
                                "); the partition stays detached and is retried by the next run");
        }
        long long dumped = rows_in_dump(o, partial, t.name);
        if (dumped != rows) {
          throw retention_error("the archive of " + t.name + " holds " + std::to_string(dumped) + " rows, the table " +
                                std::to_string(rows) + "; the partition stays detached");
        }
        fsync_path(partial, false);
        fs::rename(partial, final_file);
        fsync_path(final_file.parent_path(), true);
      }
      spdlog::info("Archived a detached partition and verified it. partition={} rows={} file={}", t.name, rows,
                   final_file.string());
      res.archived.push_back(final_file.string());
    }
    exec_with_lock_retries(conn, o, {"DROP TABLE " + conn.quote_name(t.name)});
    spdlog::info("Dropped a partition past retention. partition={} parent={} rows={}", t.name, t.parent, rows);
    res.dropped.push_back(t.name);
    res.rows_dropped += rows;
  }

  // 4. The DEFAULT partitions: report, never touch.
  {
    pqxx::nontransaction tx(conn);
    res.default_rows_before_cutoff =
        tx.exec("SELECT (SELECT count(*) FROM communications_default WHERE occurred_at < " + cutoff_ts +
                ") + (SELECT count(*) FROM customer_touchpoints_default WHERE occurred_at < " + cutoff_ts + ")")[0][0]
            .as<long long>();
    if (res.default_rows_before_cutoff > 0) {
      spdlog::warn(
          "The DEFAULT partitions hold rows older than the retention cutoff; they are left in place. rows={} "
          "cutoff={} advice=create_the_month_partitions_and_move_them_or_delete_them_deliberately",
          res.default_rows_before_cutoff, res.cutoff);
    }
    res.recorded_cutoff = tx.exec("SELECT coalesce(to_char(max(cutoff), 'YYYY-MM-DD'), '') FROM retention_cutoff")[0][0]
                              .as<std::string>();
    tx.exec("SELECT pg_advisory_unlock(hashtext('crm_partitions_retain'))");
  }
  return res;
}

}  // namespace crm::sinks::postgres
