#include "ingest/cli/cli.h"

#include <atomic>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "ingest/cli/database_target.h"
#include "ingest/cli/exit_codes.h"
#include "sinks/kafka/kafka_error.h"
#include "ingest/cli/rates_commands.h"
#include "ingest/cli/report.h"
#include "ingest/cli/kafka_commands.h"
#include "ingest/cli/serve.h"
#include "ingest/config/settings.h"
#include "ingest/runtime/embedded_postgres.h"
#include "ingest/runtime/signals.h"
#include "transform/text/json_text.h"
#include "ingest/import/import_pipeline.h"
#include "ingest/observability/logging.h"
#include "ingest/replay/replay.h"
#include "ingest/observability/writer_metrics.h"
#include "sinks/postgres/connection.h"
#include "sinks/postgres/migrations.h"
#include "sinks/postgres/retention.h"
#include "sinks/postgres/startup.h"
#include "sinks/postgres/writer.h"
#include "sinks/spool/durable_log.h"

namespace crm::ingest::cli {

namespace {

namespace pg = crm::sinks::postgres;


void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("crm-ingest");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

// --default-region: a region libphonenumber reads national numbers in, as normalize.default_region must be.
const CLI::Validator phone_region(
    [](std::string& v) -> std::string {
      return transform::is_phone_region(v) ? "" : "must be a region of phone numbering, two upper-case letters (ISO "
                                                  "3166, e.g. US, GB), got \"" + v + "\"";
    },
    "REGION");

// --since / --until of `rejected replay`: refused before the database is reached (a usage error, exit 2).
const CLI::Validator replay_time(
    [](std::string& v) -> std::string {
      try {
        (void)utc_time_bound(v);
        return "";
      } catch (const std::invalid_argument& e) {
        return e.what();
      }
    },
    "TIME");

// --max-record-bytes: the largest record the normalizer takes (import, rejected replay).
void add_max_record_bytes(CLI::App& cmd, std::size_t& bytes) {
  cmd.add_option("--max-record-bytes", bytes, "Largest accepted JSON object; bigger ones are rejected")
      ->default_val(1 << 20)
      ->check(CLI::Range(256, 64 << 20));
}

std::string human_duration(double s) {
  if (s < 0) s = 0;
  auto t = static_cast<long>(s + 0.5);
  return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
}

int run_migrate(database_target& db) {
  std::string dsn = db.resolve(false);
  pqxx::connection conn(dsn);
  auto r = pg::migrate(conn, pg::embedded_migrations(), {db.months_back, db.months_ahead});
  for (const auto& name : r.applied) std::cout << "applied " << name << "\n";
  std::cout << "schema version " << r.schema_version << " (" << r.applied.size() << " applied now, "
            << pg::embedded_migrations().size() << " known); " << r.partitions_created << " partitions created\n";
  return exit_ok;
}

struct import_args {
  database_target db;
  std::vector<std::string> files;
  std::string format = "auto";
  std::string summary = "text";
  bool no_progress = false;
  bool no_attribution = false;
  int retry_for = 120;
  int confirm_timeout = 300;
  std::string confirm = "standbys";
  int confirm_min_standbys = -1;
  ingest::import_options opt;
};

int run_import_command(import_args& a) {
  if (a.format == "ndjson") a.opt.format = transform::input_format::ndjson;
  else if (a.format == "json") a.opt.format = transform::input_format::json_array;
  else a.opt.format = transform::input_format::auto_detect;
  a.opt.files = a.files;
  a.opt.write.writer.retry = pg::retry_policy::from_seconds(a.retry_for);
  a.opt.confirm_timeout = std::chrono::seconds(a.confirm_timeout);
  a.opt.write.confirm.wait_for_standbys = a.confirm != "commit";
  a.opt.write.confirm.min_standbys = a.confirm_min_standbys;
  a.opt.write.writer.application_name = "crm-ingest import";
  a.opt.write.writer.maintain_analytics = !a.no_attribution;
  const bool embedded = a.db.embedded();
  a.opt.write.writer.dsn = a.db.resolve(false);  // start_database() migrates the embedded one
  // Wait (visibly) while the database is unreachable, as during a failover; fail fast, with advice, on
  // an unmigrated database, a superuser role, or a refusal no retry can fix.
  pg::startup_options so;
  so.dsn = a.opt.write.writer.dsn;
  so.command = "import";
  so.activity = "importing";
  so.embedded = embedded;
  so.allow_superuser = a.db.allow_superuser;
  so.ensure_partitions = false;  // the writers create the months they meet
  so.window = {a.db.months_back, a.db.months_ahead};
  so.wait_until_reachable = true;
  so.wait = a.opt.write.writer.retry;
  pg::start_database(so);

  // SIGTERM/SIGINT: stop reading, write what was read and wait for it as at the end; a second one exits at once.
  // The stop also wakes a read waiting for a pipe's next bytes (stop_event's descriptor).
  runtime::stop_event stop;
  runtime::signal_waiter signals(/*reload=*/false, /*second_stop_exits=*/true);
  signals.start([&stop](int sig) {
    spdlog::warn("{}: the import stops after the records read so far are written (a second signal stops it now).",
                 runtime::signal_name(sig));
    stop.set();
  });
  a.opt.stop = &stop.flag();
  a.opt.stop_fd = stop.fd();

  auto failover = std::make_shared<ingest::writer_failover_stats>();
  a.opt.write.writer.observer = failover;
  const bool tty = !a.no_progress && isatty(STDERR_FILENO);
  const auto started = std::chrono::steady_clock::now();
  auto progress = [&](const ingest::import_progress& p) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    double rate = secs > 0 ? static_cast<double>(p.records_written) / secs : 0;
    std::string eta = "--:--:--";
    if (p.bytes_total > 0 && p.bytes_consumed > 0) {
      double frac = static_cast<double>(p.bytes_consumed) / static_cast<double>(p.bytes_total);
      if (frac > 0.001) eta = human_duration(secs / frac - secs);
      std::fprintf(stderr, "\r%12llu read %12llu written %9.0f events/s %5.1f%% ETA %s ",
                   static_cast<unsigned long long>(p.records_read),
                   static_cast<unsigned long long>(p.records_written), rate, 100.0 * std::min(1.0, frac),
                   eta.c_str());
    } else {
      std::fprintf(stderr, "\r%12llu read %12llu written %9.0f events/s ",
                   static_cast<unsigned long long>(p.records_read),
                   static_cast<unsigned long long>(p.records_written), rate);
    }
    std::fflush(stderr);
  };
  auto s = ingest::run_import(a.opt, tty ? std::function<void(const ingest::import_progress&)>(progress)
                                         : std::function<void(const ingest::import_progress&)>());
  if (tty) std::fprintf(stderr, "\n");

  const double rate = s.seconds > 0 ? static_cast<double>(s.records_read) / s.seconds : 0;
  if (a.summary == "json") {
    std::string resume_after;  // the file's name as the ledger has it (valid UTF-8)
    transform::append_json_string(resume_after, s.resume_after);
    std::cout << fmt::format(
        "{{\"read\":{},\"inserted\":{},\"duplicates\":{},\"rejected\":{},\"batches\":{},\"seconds\":{:.3f},"
        "\"records_per_second\":{:.0f},\"files_failed\":{},\"database_failed\":{},\"confirm_waited_batches\":{},"
        "\"confirm_wait_max_seconds\":{:.3f},\"final_confirm_seconds\":{:.3f},\"confirm_timed_out\":{},"
        "\"analytics_current\":{},\"analytics_wait_seconds\":{:.3f},\"interrupted\":{},\"resume_after\":{}}}\n",
        s.records_read, s.inserted, s.duplicates, s.rejected, s.batches, s.seconds, rate, s.files_failed,
        s.database_failed ? "true" : "false", s.batches_confirm_waited, s.confirm_wait_max_seconds,
        s.final_confirm_seconds, s.confirm_timed_out ? "true" : "false", s.analytics_current ? "true" : "false",
        s.analytics_wait_seconds, s.interrupted ? "true" : "false", resume_after);
  } else {
    std::cout << fmt::format(
        "read {} records in {:.2f} s ({:.0f}/s): {} inserted, {} duplicates, {} rejected, {} batches\n",
        s.records_read, s.seconds, rate, s.inserted, s.duplicates, s.rejected, s.batches);
    if (embedded) std::cout << "database: " << a.opt.write.writer.dsn << "\n";
  }
  if (failover->retries() > 0) spdlog::warn("The import rode out database failures. {}", failover->summary());
  if (a.summary != "json" && a.opt.write.confirm.wait_for_standbys) {
    std::cout << fmt::format("confirmed by the cluster: {} of {} batches waited for the standbys (longest {:.3f} s), "
                             "{:.3f} s after the last commit\n",
                             s.batches_confirm_waited, s.batches, s.confirm_wait_max_seconds, s.final_confirm_seconds);
  }
  for (const auto& e : s.errors) std::cerr << "error: " << e << "\n";
  if (s.database_failed) return exit_database;
  if (s.confirm_timed_out) {
    std::cerr << fmt::format("error: written, but the standbys did not confirm these batches within {} s (they may be "
                             "lost if the primary fails now); re-run the import of these files (it is safe: ids make "
                             "it a no-op for what is stored):\n",
                             a.confirm_timeout);
    for (const auto& u : s.unconfirmed) std::cerr << "  " << u << "\n";
    return exit_unconfirmed;
  }
  if (s.interrupted) {
    std::cerr << fmt::format("interrupted by {}: {}; run the same import again to go on (what is stored counts as "
                             "duplicates)\n",
                             runtime::signal_name(signals.received()),
                             s.resume_after.empty()
                                 ? std::string("no record was read")
                                 : "every record up to " + s.resume_after +
                                       " is written (stored, a duplicate or dead-lettered)");
    return 128 + signals.received();
  }
  if (s.files_failed) return exit_input;
  return exit_ok;
}

// --config and --data-dir of the commands that run from a configuration file (serve, consume, write).
void add_config_options(CLI::App& cmd, std::string& config_file, std::string& data_dir,
                        const std::string& config_help) {
  cmd.add_option("--config", config_file, config_help)->check(CLI::ExistingFile);
  cmd.add_option("--data-dir", data_dir, "Data directory of the embedded PostgreSQL (when postgres.dsn is empty)");
}

}  // namespace

int exit_code_for(const std::exception& e) {
  auto say = [&](int code, std::string_view what) {
    std::cerr << "error: " << what << e.what() << "\n";
    return code;
  };
  if (dynamic_cast<const config::config_error*>(&e)) return say(exit_usage, "");
  if (dynamic_cast<const pg::superuser_refused*>(&e)) return say(exit_usage, "");
  if (dynamic_cast<const std::invalid_argument*>(&e)) return say(exit_usage, "invalid configuration: ");
  if (dynamic_cast<const sinks::spool::open_error*>(&e)) return say(exit_local_log, "the local log: ");
  if (dynamic_cast<const sinks::kafka::kafka_error*>(&e)) return say(exit_kafka, "");
  if (dynamic_cast<const pg::migration_error*>(&e)) return say(exit_database, "");
  if (dynamic_cast<const pg::write_error*>(&e)) return say(exit_database, "the database refused: ");
  if (dynamic_cast<const pqxx::failure*>(&e)) return say(exit_database, "the database refused: ");
  if (dynamic_cast<const embedded_postgres_error*>(&e)) return say(exit_database, "");
  return say(exit_internal, "");
}

int run(int argc, char** argv) {
  CLI::App app{
      "crm-ingest: communication events and marketing touchpoints from webhooks, Kafka and files into "
      "PostgreSQL, exactly once.",
      "crm-ingest"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "crm-ingest 0.1.0");
  std::string log_level = "info";
  setup_logging(log_level);
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off")
      ->default_str("info")
      ->each([](const std::string& l) { spdlog::set_level(spdlog::level::from_str(l)); })
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--log-format", "Log format on stderr: text or json (serve reads logging.format instead)")
      ->check(CLI::IsMember({"text", "json"}))
      ->each([](const std::string& f) { set_log_format(f); });
  int exit_code = exit_ok;

  // migrate
  database_target migrate_db;
  auto* migrate_cmd = app.add_subcommand(
      "migrate",
      "Apply the schema migrations (forward-only, idempotent, checksummed) and create the monthly partitions");
  migrate_db.add_options(*migrate_cmd);
  migrate_cmd->callback([&] { exit_code = run_migrate(migrate_db); });

  // import
  import_args imp;
  auto* import_cmd = app.add_subcommand(
      "import",
      "Import canonical events from NDJSON or JSON-array files (.gz too, '-' for stdin), exactly once. Exit codes: "
      "0 done, 1 a file could not be read, 2 usage or configuration (a superuser role), 3 the database refused or "
      "stayed unreachable, 6 written but not confirmed by the standbys within --confirm-timeout (the batches named "
      "may need a re-run; re-running is safe)");
  imp.db.add_options(*import_cmd);
  imp.db.add_superuser_option(*import_cmd);
  import_cmd->add_option("files", imp.files, "Files to import ('-' reads standard input)")->required();
  import_cmd->add_option("--format", imp.format, "Input format; auto looks at the first byte ('[' = JSON array)")
      ->default_str("auto")
      ->check(CLI::IsMember({"auto", "ndjson", "json"}));
  import_cmd->add_option("--writers", imp.opt.write.writers, "Writer connections to PostgreSQL")
      ->default_val(2)
      ->check(CLI::Range(1, 64));
  import_cmd->add_option("--batch-rows", imp.opt.write.batch.rows, "Records per batch (one transaction each)")
      ->default_val(20000)
      ->check(CLI::Range(1, 10000000));
  import_cmd->add_option("--batch-bytes", imp.opt.write.batch.bytes, "Normalized bytes per batch")
      ->default_val(16 << 20)
      ->check(CLI::Range(1 << 10, 1 << 30));
  import_cmd->add_option("--retry-for", imp.retry_for,
                         "Seconds a batch keeps retrying while the database is unreachable (0 = for ever)")
      ->default_val(120)
      ->check(CLI::Range(0, 86400 * 7));
  import_cmd->add_option("--confirm-timeout", imp.confirm_timeout,
                         "Seconds a written batch may wait for the standbys to have it (asynchronous replication) "
                         "before the import stops with exit code 6 (0 = for ever)")
      ->default_val(300)
      ->check(CLI::Range(0, 86400 * 7));
  import_cmd->add_option("--confirm", imp.confirm,
                         "When a batch counts as imported: standbys = once it is safe on the cluster, commit = "
                         "once the primary committed it")
      ->default_str("standbys")
      ->check(CLI::IsMember({"standbys", "commit"}));
  import_cmd->add_option("--confirm-min-standbys", imp.confirm_min_standbys,
                         "Under asynchronous replication, how many standbys must have flushed a batch (besides every "
                         "standby that is streaming); -1 = 1 when the primary has a physical replication slot, a "
                         "standby or synchronous_standby_names, or showed one since the start, else 0 "
                         "(postgres.confirm_min_standbys)")
      ->default_val(-1)
      ->check(CLI::Range(-1, 64));
  import_cmd->add_option("--default-region", imp.opt.normalize.default_region,
                         "Region for phone numbers without a country code (ISO 3166 alpha-2)")
      ->default_val("US")
      ->check(phone_region);
  add_max_record_bytes(*import_cmd, imp.opt.normalize.max_record_bytes);
  import_cmd->add_flag("--no-progress", imp.no_progress, "Do not draw the progress line on a terminal");
  import_cmd->add_flag("--no-attribution", imp.no_attribution,
                       "Do not maintain the attribution and A/B-test tables while importing (they go stale until "
                       "`report attribution --recompute`)");
  import_cmd->add_option("--summary", imp.summary, "Summary format")
      ->default_str("text")
      ->check(CLI::IsMember({"text", "json"}));
  import_cmd->callback([&] { exit_code = run_import_command(imp); });

  // partitions
  auto* parts_cmd = app.add_subcommand("partitions", "Manage the monthly partitions");
  parts_cmd->require_subcommand(1);
  database_target parts_db;
  auto* ensure_cmd = parts_cmd->add_subcommand("ensure", "Create the monthly partitions of the window ahead of time");
  parts_db.add_options(*ensure_cmd);
  ensure_cmd->callback([&] {
    pqxx::connection conn(parts_db.resolve(true));
    int n = pg::ensure_partitions(conn, {parts_db.months_back, parts_db.months_ahead});
    std::cout << n << " partitions created\n";
  });

  database_target retain_db;
  pg::retention_options retain_opt;
  std::string retain_keep;
  auto* retain_cmd = parts_cmd->add_subcommand(
      "retain",
      "Detach the monthly partitions older than --keep, archive each with pg_dump (verified) when --archive is "
      "given, then drop it. One run at a time (advisory lock); a run that died is finished by the next. The cutoff is "
      "recorded with the detach: events older than it are refused (dead-lettered) from then on. The DEFAULT "
      "partitions are never modified, only reported");
  retain_db.add_options(*retain_cmd, false);
  retain_cmd->add_option("--keep", retain_keep, "How much to keep: the current month and the months before, e.g. 13mo or 2y")
      ->required();
  retain_cmd->add_option("--archive", retain_opt.archive_dir,
                         "Directory for the pg_dump archives (NAME.dump, custom format) of the dropped partitions");
  retain_cmd->add_flag("--dry-run", retain_opt.dry_run, "Print what would be detached and dropped; change nothing");
  int retain_lock_timeout_ms = 5000;
  retain_cmd->add_option("--lock-timeout-ms", retain_lock_timeout_ms,
                         "Longest wait for a table lock per attempt (5 attempts); writers wait at most this long")
      ->default_val(5000)
      ->check(CLI::Range(10, 600000));
  retain_cmd->callback([&] {
    retain_opt.keep_months = pg::parse_keep(retain_keep);
    retain_opt.lock_timeout = std::chrono::milliseconds(retain_lock_timeout_ms);
    retain_opt.dsn = retain_db.resolve(true);
    auto r = pg::retain_partitions(retain_opt);
    if (r.lock_busy) {
      spdlog::warn("Another `partitions retain` holds the lock; nothing done.");
      std::cout << "another run holds the lock; nothing done\n";
      return;
    }
    for (const auto& n : r.would_drop) std::cout << "would detach and drop " << n << "\n";
    for (const auto& f : r.archived) std::cout << "archived " << f << "\n";
    for (const auto& n : r.dropped) std::cout << "dropped " << n << "\n";
    std::cout << "cutoff " << r.cutoff << ": " << r.dropped.size() << " partitions dropped (" << r.rows_dropped
              << " rows), " << r.default_rows_before_cutoff << " rows before the cutoff in the DEFAULT partitions (kept)\n";
    if (!r.recorded_cutoff.empty()) {
      std::cout << "retention cutoff " << r.recorded_cutoff << ": events older than it are refused (dead-lettered)\n";
    }
  });

  // rejected
  auto* rejected_cmd = app.add_subcommand("rejected", "Work with the dead-letter table rejected_events");
  rejected_cmd->require_subcommand(1);
  database_target replay_db;
  replay_options replay_opt;
  auto* replay_cmd = rejected_cmd->add_subcommand(
      "replay",
      "Re-normalize dead letters with the current rules (after a fix) and write the ones that now pass, exactly "
      "once; they are marked replayed (or deleted with --delete), the still-failing ones are kept");
  replay_db.add_options(*replay_cmd, false);
  replay_db.add_superuser_option(*replay_cmd);
  replay_cmd->add_option("--source", replay_opt.source_like, "Only rows whose source is LIKE this pattern, e.g. 'POST /v1/webhooks/sendgrid%'");
  replay_cmd->add_option("--reason", replay_opt.reason_like, "Only rows whose reason is LIKE this pattern, e.g. 'phone:%'");
  replay_cmd->add_option("--since", replay_opt.since,
                         "Only rows received at or after this time (e.g. 2026-11-01T00:00:00Z; a date or a time "
                         "without an offset is read in UTC)")
      ->check(replay_time);
  replay_cmd->add_option("--until", replay_opt.until, "Only rows received before this time (as --since)")
      ->check(replay_time);
  replay_cmd->add_option("--limit", replay_opt.limit, "Examine at most this many rows (0 = all)")->default_val(0);
  replay_cmd->add_option("--default-region", replay_opt.normalize.default_region,
                         "Region for phone numbers without a country code (ISO 3166 alpha-2)")
      ->default_val("US")
      ->check(phone_region);
  add_max_record_bytes(*replay_cmd, replay_opt.normalize.max_record_bytes);
  replay_cmd->add_flag("--delete", replay_opt.remove, "Delete replayed rows instead of setting replayed_at");
  replay_cmd->add_flag("--dry-run", replay_opt.dry_run, "Count what would pass; write nothing");
  replay_cmd->callback([&] {
    const bool embedded = replay_db.embedded();
    replay_opt.dsn = replay_db.resolve(false);  // start_database() migrates the embedded one
    pg::startup_options so;
    so.dsn = replay_opt.dsn;
    so.command = "replay dead letters";
    so.activity = "replaying dead letters";
    so.embedded = embedded;
    so.allow_superuser = replay_db.allow_superuser;
    so.ensure_partitions = false;
    so.wait_until_reachable = true;
    pg::start_database(so);
    auto r = replay_rejected(replay_opt);
    std::cout << fmt::format(
        "examined {}: {} now pass ({} events inserted, {} already stored), {} still failing, {} not replayable{}{}\n",
        r.examined, r.replayed, r.inserted, r.duplicates, r.still_failing, r.not_replayable,
        r.refused > 0 ? fmt::format(", {} refused by the database (kept as they were)", r.refused) : std::string(),
        replay_opt.dry_run ? " (dry run: nothing written)" : "");
    for (const auto& [reason, n] : r.still_failing_reasons) std::cout << "  still failing " << n << ": " << reason << "\n";
    for (const auto& [reason, n] : r.refused_reasons) std::cout << "  refused " << n << ": " << reason << "\n";
  });

  // local-db
  auto* local_cmd = app.add_subcommand(
      "local-db", "Start, stop or locate the embedded private PostgreSQL (the default when no DSN is given)");
  local_cmd->require_subcommand(1);
  std::string local_dir = default_embedded_data_dir();
  for (const char* action : {"start", "stop", "status"}) {
    auto* c = local_cmd->add_subcommand(action, std::string(action) + " the embedded PostgreSQL");
    c->add_option("--data-dir", local_dir, "Its data directory")->default_str(local_dir);
    c->callback([&, action] {
      std::string out = local_postgres(action, local_dir);
      if (std::string(action) == "status" && out.empty()) {
        std::cout << "not running\n";
        exit_code = exit_database;
        return;
      }
      if (!out.empty()) std::cout << out << "\n";
    });
  }

  // serve
  serve_args serve;
  auto* serve_cmd = app.add_subcommand(
      "serve",
      "Run the webhook collector: provider endpoints and POST /v1/events, acknowledged once durable in the local "
      "log, drained into PostgreSQL exactly once");
  add_config_options(*serve_cmd, serve.config_file, serve.data_dir,
                     "TOML configuration (see `crm-ingest config reference`)");
  serve_cmd->add_option("--log", serve.log,
                        "Where accepted requests go before PostgreSQL: local (the durable local log, drained here) or "
                        "kafka (appended to kafka.log_topic and acknowledged after the delivery report; `crm-ingest "
                        "write` processes write them)")
      ->default_str("local")
      ->check(CLI::IsMember({"local", "kafka"}));
  serve_cmd->callback([&] { exit_code = run_serve(serve); });

  // consume, write
  kafka_args consume_args, write_args;
  const auto add_kafka_command = [&](const char* name, const char* description, kafka_args& args,
                                     int (*run_command)(const kafka_args&)) {
    auto* cmd = app.add_subcommand(name, description);
    add_config_options(*cmd, args.config_file, args.data_dir, "TOML configuration ([kafka], [postgres])");
    cmd->callback([&exit_code, &args, run_command] { exit_code = run_command(args); });
  };
  add_kafka_command("consume",
                    "Consume the [kafka] topics in the consumer group kafka.group into PostgreSQL, exactly once; "
                    "offsets are committed after the batch holding them. Runs until SIGTERM/SIGINT",
                    consume_args, run_consume);
  add_kafka_command("write",
                    "The writer of the scale-out topology: consume kafka.log_topic (appended by `serve --log "
                    "kafka`) in the consumer group kafka.log_group and COPY into PostgreSQL, exactly once. Runs "
                    "until SIGTERM/SIGINT",
                    write_args, run_write);

  // config
  auto* config_cmd = app.add_subcommand("config", "Check or print the TOML configuration of `serve`");
  config_cmd->require_subcommand(1);
  std::string config_file;
  auto* check_cmd = config_cmd->add_subcommand(
      "check", "Validate a configuration file (and the CRM_INGEST_* environment) and explain every mistake");
  check_cmd->add_option("file", config_file, "The TOML file")->required();
  check_cmd->callback([&] {
    try {
      auto cfg = config::settings::load(config_file);
      // What serve builds from the settings (its callers' credentials, every webhook source's check) and what it
      // warns about, as it would at start.
      const auto warnings = check_serve_settings(cfg);
      for (const auto& w : warnings) std::cerr << "warning: " << w << "\n";
      std::cout << "configuration is valid; effective settings:\n" << cfg.describe();
    } catch (const config::config_error& e) {
      std::cerr << e.what() << "\n";
      exit_code = exit_usage;
    }
  });
  config_cmd->add_subcommand("reference", "Print every setting with its description, default, bounds and variable")
      ->callback([] { std::cout << config::reference_toml(); });

  // report
  add_report_commands(app, exit_code);

  // rates
  add_rates_commands(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : exit_usage;
  } catch (const std::exception& e) {
    return exit_code_for(e);
  }
  return exit_code;
}

}  // namespace crm::ingest::cli
