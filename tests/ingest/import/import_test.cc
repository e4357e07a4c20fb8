// `crm-ingest import` end to end, as an operator runs it, against a real PostgreSQL.
#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <gtest/gtest.h>
#include <zlib.h>

#include <sys/stat.h>

#include "support/child_process.h"
#include "support/run_command.h"
#include "support/scratch.h"
#include "support/test_db.h"

namespace fs = std::filesystem;
using crm_test::run_ingest;
using crm_test::scratch;

namespace {

std::string sample() { return std::string(CRM_SOURCE_DIR) + "/deploy/sample/events.ndjson"; }

long long q(const std::string& dsn, const std::string& sql) { return crm_test::count(dsn, sql); }

// The events stored (of both kinds), dead letters aside.
long long stored_events(const std::string& dsn) {
  return q(dsn, "SELECT count(*) FROM communications") + q(dsn, "SELECT count(*) FROM customer_touchpoints");
}

// crm-ingest ARGS (as the private server's superuser): its exit code and its output (stdout and stderr).
struct run_result {
  int exit_code;
  std::string output;
};
run_result run(const std::string& args) {
  auto r = run_ingest(args);
  return {r.status, r.out};
}

const char* metrics_recount_diff =
    "SELECT count(*) FROM ("
    " (SELECT day, campaign_id, channel, status, event_count FROM communication_metrics"
    "  EXCEPT SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "  FROM communications GROUP BY 1, 2, 3, 4)"
    " UNION ALL"
    " (SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "  FROM communications GROUP BY 1, 2, 3, 4"
    "  EXCEPT SELECT day, campaign_id, channel, status, event_count FROM communication_metrics)) d";

// One superuser policy for every command that writes: import refuses a superuser connection (exit 2, a
// configuration mistake) unless allowed, like serve, consume and write.
TEST(Import, RefusesASuperuserConnectionUnlessAllowed) {
  auto dsn = crm_test::fresh_database("t_import_superuser");
  auto refused = run_ingest("import --no-progress --dsn '" + dsn + "' " + sample(), /*allow_superuser=*/false);
  EXPECT_EQ(refused.status, 2) << refused.out;
  EXPECT_NE(refused.out.find("refusing to import with a superuser PostgreSQL connection"), std::string::npos)
      << refused.out;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 0);
  auto allowed = run_ingest("import --no-progress --allow-superuser --dsn '" + dsn + "' " + sample(),
                            /*allow_superuser=*/false);
  EXPECT_EQ(allowed.status, 0) << allowed.out;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 12);
}

TEST(Import, SampleTwiceGivesTheSameRowsAndMetrics) {
  auto dsn = crm_test::fresh_database("t_import_sample");
  auto first = run_ingest("import --no-progress --dsn '" + dsn + "' " + sample());
  ASSERT_EQ(first.status, 0) << first.out;
  const auto comms = q(dsn, "SELECT count(*) FROM communications");
  const auto touches = q(dsn, "SELECT count(*) FROM customer_touchpoints");
  const auto rejected = q(dsn, "SELECT count(*) FROM rejected_events");
  const auto metric_sum = q(dsn, "SELECT sum(event_count) FROM communication_metrics");
  EXPECT_EQ(comms, 12);
  EXPECT_EQ(touches, 8);
  EXPECT_EQ(rejected, 8);
  EXPECT_EQ(metric_sum, comms);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
  EXPECT_NE(first.out.find("read 29 records"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("20 inserted, 1 duplicates, 8 rejected"), std::string::npos) << first.out;

  auto second = run_ingest("import --no-progress --dsn '" + dsn + "' " + sample());
  ASSERT_EQ(second.status, 0) << second.out;
  EXPECT_NE(second.out.find("0 inserted, 21 duplicates, 8 rejected"), std::string::npos) << second.out;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), comms);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM customer_touchpoints"), touches);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events"), rejected);
  EXPECT_EQ(q(dsn, "SELECT sum(event_count) FROM communication_metrics"), metric_sum);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
}

// Issue 15: import reports success only once its batches are safe on the cluster. The private PostgreSQL is
// told it needs a standby (--confirm-min-standbys 1, as a replicated primary whose standbys are gone): the
// rows commit but are never confirmed, so after --confirm-timeout the import exits with code 6 and names
// the batches that may need a re-run; the re-run (confirmed at COMMIT on a single PostgreSQL) is a no-op.
TEST(Import, UnconfirmedBatchesExitWithTheirOwnCodeAndNameWhatToRerun) {
  auto dsn = crm_test::fresh_database("t_import_unconfirmed");
  auto waited = run("import --no-progress --confirm-min-standbys 1 --confirm-timeout 1 --dsn '" + dsn + "' " + sample());
  EXPECT_EQ(waited.exit_code, 6) << waited.output;
  EXPECT_NE(waited.output.find("did not confirm"), std::string::npos) << waited.output;
  EXPECT_NE(waited.output.find("import:" + sample() + " lines 1-"), std::string::npos)
      << "the batch to re-run is named:\n" << waited.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 12) << "committed, only not confirmed";

  auto again = run("import --no-progress --dsn '" + dsn + "' " + sample());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("0 inserted, 21 duplicates"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("confirmed by the cluster: 0 of"), std::string::npos)
      << "nothing waits on a single PostgreSQL:\n" << again.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 12);
  EXPECT_EQ(q(dsn, "SELECT sum(event_count) FROM communication_metrics"), 12);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);

  // --confirm commit: the primary's COMMIT is enough (the behaviour before), whatever the standbys.
  auto commit = run("import --no-progress --confirm commit --confirm-min-standbys 1 --confirm-timeout 1 --dsn '" + dsn +
                    "' " + sample());
  EXPECT_EQ(commit.exit_code, 0) << commit.output;
}

TEST(Import, EveryInvalidLineIsDeadLetteredWithFileLineAndReason) {
  auto dsn = crm_test::fresh_database("t_import_rejects");
  auto r = run_ingest("import --no-progress --dsn '" + dsn + "' " + sample());
  ASSERT_EQ(r.status, 0) << r.out;
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  std::set<int> lines;
  for (const auto& row : tx.exec("SELECT source, reason, raw FROM rejected_events")) {
    auto source = row[0].as<std::string>();
    auto colon = source.rfind(':');
    ASSERT_NE(colon, std::string::npos) << source;
    EXPECT_EQ(source.substr(0, colon), sample());
    lines.insert(std::stoi(source.substr(colon + 1)));
    EXPECT_FALSE(row[1].as<std::string>().empty());
    EXPECT_FALSE(row[2].as<std::string>().empty());
  }
  EXPECT_EQ(lines, (std::set<int>{10, 12, 23, 24, 26, 27, 28, 29}));
  auto reason_of = [&](int line) {
    return tx.exec("SELECT reason FROM rejected_events WHERE source = " + tx.quote(sample() + ":" + std::to_string(line)))[0][0]
        .as<std::string>();
  };
  EXPECT_NE(reason_of(10).find("status"), std::string::npos);
  EXPECT_NE(reason_of(12).find("phone"), std::string::npos);
  EXPECT_NE(reason_of(26).find("occurred_at"), std::string::npos);
  EXPECT_NE(reason_of(27).find("email"), std::string::npos);
  EXPECT_NE(reason_of(29).find("kind"), std::string::npos);
}

// From a review: a file name that is not UTF-8 went raw into the ledger's source and the dead letters'
// "file:line", PostgreSQL refused the text (22021) and the whole import failed (exit 3, nothing stored). The
// name is kept with its bad bytes written as \xNN.
TEST(Import, AFileNameThatIsNotUtf8IsKeptEscaped) {
  auto dsn = crm_test::fresh_database("t_import_bad_name");
  const fs::path file = scratch("import-bad-name") / "ok\xffname.ndjson";
  std::ofstream(file) << R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent","email":"a@b.co","provider_message_id":"bad-name-1"})"
                      << "\n" << R"({"kind":"communication","channel":"fax"})" << "\n";
  auto r = run("import --no-progress --dsn '" + dsn + "' " + crm_test::shell_quote(file.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'bad-name-1'"), 1);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events WHERE source LIKE '%ok\\\\xFFname.ndjson:2'"), 1);
}

// From a review: import and rejected replay took any --default-region ("gb", "XX", "") and then dead-lettered
// every national number. They refuse it before connecting, as config check refuses the setting.
TEST(Import, AnUnknownDefaultRegionIsRefusedBeforeAnythingIsRead) {
  for (const char* command : {"import --no-progress", "rejected replay"}) {
    for (const char* region : {"gb", "XX", "''"}) {
      const std::string file = std::string(command).rfind("import", 0) == 0 ? " " + sample() : "";
      auto r = run(std::string(command) + " --default-region " + region + " --dsn postgresql://127.0.0.1:1/x" + file);
      EXPECT_EQ(r.exit_code, 2) << command << " " << region << ": " << r.output;
      EXPECT_NE(r.output.find("--default-region: must be a region of phone numbering"), std::string::npos) << r.output;
    }
  }
}

TEST(Import, GzipAndJsonArrayInput) {
  auto dsn = crm_test::fresh_database("t_import_gz_array");
  auto dir = scratch("gz");
  auto path = (dir / "events.json.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb");
  std::string body = "[\n";
  for (int i = 0; i < 1000; ++i) {
    body += (i ? ",\n" : "") + std::string(R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z",)") +
            R"("channel":"sms","status":"delivered","provider":"twilio","provider_message_id":"SM)" +
            std::to_string(i) + R"(","phone":"+14155552671","campaign_id":7})";
  }
  body += ",\n{\"kind\":\"communication\"}\n]\n";
  gzwrite(gz, body.data(), static_cast<unsigned>(body.size()));
  gzclose(gz);
  auto r = run_ingest("import --no-progress --dsn '" + dsn + "' " + path);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications WHERE channel = 'sms' AND campaign_id = 7"), 1000);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events"), 1);
  EXPECT_EQ(q(dsn, "SELECT event_count FROM communication_metrics WHERE campaign_id = 7"), 1000);
}

TEST(Import, UnreadableFileFailsTheRunButTheOthersAreImported) {
  auto dsn = crm_test::fresh_database("t_import_missing_file");
  auto r = run_ingest("import --no-progress --dsn '" + dsn + "' /nonexistent/events.ndjson " + sample());
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("cannot open /nonexistent/events.ndjson"), std::string::npos) << r.out;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 12);
}

TEST(Import, TruncatedGzipIsAnError) {
  auto dsn = crm_test::fresh_database("t_import_truncated_gz");
  auto dir = scratch("truncgz");
  auto path = (dir / "cut.ndjson.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb");
  std::ifstream in(sample());
  std::string body((std::istreambuf_iterator<char>(in)), {});
  for (int i = 0; i < 20; ++i) gzwrite(gz, body.data(), static_cast<unsigned>(body.size()));
  gzclose(gz);
  fs::resize_file(path, fs::file_size(path) / 2);
  auto r = run_ingest("import --no-progress --dsn '" + dsn + "' " + path);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("cannot read"), std::string::npos) << r.out;
}

// The records before the cut are stored, and the one the cut falls in is a dead letter with what was read of it:
// nothing of what could be read is dropped.
TEST(Import, TheRecordATruncatedGzipCutsIsDeadLettered) {
  const auto path = (scratch("truncgz2") / "cut.ndjson.gz").string();
  std::string body;
  for (int i = 0; i < 3000; ++i) {
    body += R"({"kind":"communication","occurred_at":"2026-03-01T10:00:00Z","channel":"sms","direction":"outbound",)"
            R"("status":"sent","provider":"twilio","provider_event_id":"cut-)" +
            std::to_string(i) + R"(","campaign_id":9})" + "\n";
  }
  gzFile gz = gzopen(path.c_str(), "wb0");  // stored blocks: the cut falls where the test puts it
  gzwrite(gz, body.data(), static_cast<unsigned>(body.size()));
  gzclose(gz);
  fs::resize_file(path, fs::file_size(path) / 2);
  const auto dsn = crm_test::fresh_database("t_import_truncated_gz_tail");
  // What zlib gives of the cut file: complete lines, then part of one.
  std::string read;
  gz = gzopen(path.c_str(), "rb");
  char buf[65536];
  for (int n; (n = gzread(gz, buf, sizeof buf)) > 0;) read.append(buf, static_cast<std::size_t>(n));
  gzclose(gz);
  const auto complete = static_cast<long long>(std::count(read.begin(), read.end(), '\n'));
  const std::string tail = read.substr(read.rfind('\n') + 1);
  ASSERT_GT(complete, 100);
  ASSERT_FALSE(tail.empty()) << "the cut fell between two records; the test needs it inside one";

  auto r = run_ingest("import --no-progress --dsn '" + dsn + "' " + path);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications WHERE campaign_id = 9"), complete);
  ASSERT_EQ(q(dsn, "SELECT count(*) FROM rejected_events"), 1);
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  auto row = tx.exec("SELECT raw, reason FROM rejected_events")[0];
  EXPECT_EQ(row[0].as<std::string>(), tail);
  EXPECT_NE(row[1].as<std::string>().find("cut short by an error reading the file (cannot read "), std::string::npos)
      << row[1].as<std::string>();
}

TEST(Import, UnreachableDatabaseExitsWithDatabaseError) {
  auto r = run_ingest("import --no-progress --retry-for 1 --dsn 'postgresql://crm@127.0.0.1:1/x?connect_timeout=1' " +
               sample());
  EXPECT_EQ(r.status, 3) << r.out;
  EXPECT_NE(r.out.find("error"), std::string::npos) << r.out;
}

TEST(Import, UnmigratedDatabaseIsRefusedWithAdvice) {
  auto dsn = crm_test::fresh_database("t_import_unmigrated", false);
  auto r = run_ingest("import --no-progress --dsn '" + dsn + "' " + sample());
  EXPECT_EQ(r.status, 3) << r.out;
  EXPECT_NE(r.out.find("crm-ingest migrate"), std::string::npos) << r.out;
}

// gen_events ARGS into DIR/gen.ndjson: its path and the number of unique events in it (as gen_events counts them).
struct generated_file {
  std::string path;
  long long unique = 0;
};
generated_file generate(const fs::path& dir, const std::string& args) {
  generated_file g{(dir / "gen.ndjson").string()};
  auto gen = crm_test::run_command(std::string(GEN_EVENTS_EXE) + " " + args + " 2>&1 > " + g.path);
  EXPECT_EQ(gen.status, 0) << gen.out;
  auto unique_pos = gen.out.find("records, ");
  EXPECT_NE(unique_pos, std::string::npos) << gen.out;
  if (gen.status == 0 && unique_pos != std::string::npos) g.unique = std::stoll(gen.out.substr(unique_pos + 9));
  return g;
}

TEST(Import, GeneratedFileWithTwoWritersStoresEveryUniqueEventOnce) {
  auto dsn = crm_test::fresh_database("t_import_generated");
  const auto [path, unique] = generate(scratch("gen"), "--count 60000 --seed 7 --duplicates 0.05 --invalid 0.02");
  ASSERT_GT(unique, 0);
  auto r = run_ingest("import --no-progress --writers 2 --batch-rows 5000 --summary json --dsn '" + dsn + "' " + path);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(stored_events(dsn), unique);
  EXPECT_EQ(stored_events(dsn) + q(dsn, "SELECT count(*) FROM rejected_events"),
            q(dsn, "SELECT sum(communications_inserted + touchpoints_inserted) FROM ingest_batches") +
                q(dsn, "SELECT count(*) FROM rejected_events"));
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
  EXPECT_NE(r.out.find("\"read\":60000"), std::string::npos) << r.out;
  // Everything lands in monthly partitions, nothing in the defaults.
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications_default"), 0);
  // A second run of the same file changes nothing.
  auto again = run_ingest("import --no-progress --writers 2 --summary json --dsn '" + dsn + "' " + path);
  ASSERT_EQ(again.status, 0) << again.out;
  EXPECT_NE(again.out.find("\"inserted\":0,"), std::string::npos) << again.out;
  EXPECT_EQ(stored_events(dsn), unique);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
}

// Issue 16, item 3: values the database refuses are refused at the edge. A file where 1 % of the records carry
// such a value (numeric(20,6) overflow, a metadata number jsonb cannot hold, a key text over PostgreSQL's
// 2704-byte index row) stores every good record in its own batch transaction: the writer never splits a
// batch (no ledger row of a part, no "splitting" warning, no row dead-lettered with the database's reason),
// and each bad record is dead-lettered by the normalizer with its field named.
TEST(Import, ValuesTheDatabaseRefusesAreDeadLetteredWithoutSplittingBatches) {
  auto dsn = crm_test::fresh_database("t_import_domains");
  auto dir = scratch("domains");
  const auto path = (dir / "mixed.ndjson").string();
  std::mt19937_64 rng(16);
  auto random_hex = [&](std::size_t n) {  // incompressible for PostgreSQL's pglz: the index row stays long
    std::string s;
    while (s.size() < n) s.append(fmt::format("{:016x}", rng()));
    s.resize(n);
    return s;
  };
  const std::vector<std::pair<std::string, std::string>> bad_kinds = {
      {"conversion_value", R"({"kind":"touchpoint","touch_type":"conversion","lead_id":{lead},"occurred_at":{t},"conversion_value":1e15})"},
      {"conversion_value", R"({"kind":"touchpoint","touch_type":"conversion","lead_id":{lead},"occurred_at":{t},"conversion_value":99999999999999.95})"},
      {"conversion_value", R"({"kind":"touchpoint","touch_type":"conversion","lead_id":{lead},"occurred_at":{t},"conversion_value":1e14})"},
      {"metadata", R"({"kind":"communication","channel":"email","status":"sent","email":"m{lead}@example.com","occurred_at":{t},"metadata":{"n":1{zeros}}})"},
      {"anonymous_id", R"({"kind":"touchpoint","touch_type":"page_view","occurred_at":{t},"anonymous_id":"{hex}"})"},
      {"ab_test_id", R"({"kind":"communication","channel":"email","status":"delivered","email":"x{lead}@example.com","occurred_at":{t},"ab_test_id":"{hex}","variant":"B"})"},
  };
  const std::string zeros(131072, '0');  // 1 and 131072 zeros: one digit more than numeric holds
  const int total = 3000;
  int bad = 0;
  std::map<std::string, int> bad_by_field;
  {
    std::ofstream out(path);
    for (int i = 0; i < total; ++i) {
      const long long t = 1780000000LL + i * 37;  // 2026-05-28 onwards, seconds since the epoch
      if (i % 100 == 50) {
        const auto& [field, shape] = bad_kinds[static_cast<std::size_t>(bad) % bad_kinds.size()];
        std::string line = shape;
        auto put = [&](const std::string& key, const std::string& value) {
          for (auto at = line.find(key); at != std::string::npos; at = line.find(key)) line.replace(at, key.size(), value);
        };
        put("{lead}", std::to_string(100000 + i));
        put("{t}", std::to_string(t));
        put("{zeros}", zeros);
        put("{hex}", random_hex(3000));
        out << line << "\n";
        ++bad;
        ++bad_by_field[field];
      } else if (i % 3 == 0) {
        out << fmt::format(R"({{"kind":"touchpoint","touch_type":"conversion","lead_id":{},"occurred_at":{},)"
                           R"("conversion_value":{}.5,"landing_url":"https://shop.example/?utm_source=news&utm_campaign=c{}"}})",
                           1 + i % 50, t, i, i % 7)
            << "\n";
      } else if (i % 3 == 1) {
        out << fmt::format(R"({{"kind":"touchpoint","touch_type":"page_view","anonymous_id":"v{}","occurred_at":{},)"
                           R"("ab_test_id":"t{}","variant":"A"}})",
                           i % 40, t, i % 3)
            << "\n";
      } else {
        out << fmt::format(R"({{"kind":"communication","channel":"email","status":"delivered","lead_id":{},)"
                           R"("email":"u{}@example.com","occurred_at":{},"provider_event_id":"e{}","ab_test_id":"t1","variant":"B"}})",
                           1 + i % 50, i, t, i)
            << "\n";
      }
    }
  }
  ASSERT_EQ(bad, total / 100);
  auto r = run("import --no-progress --batch-rows 500 --summary json --dsn '" + dsn + "' " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 4000);
  const int good = total - bad;
  EXPECT_NE(r.output.find(fmt::format(R"("read":{},"inserted":{},"duplicates":0,"rejected":{})", total, good, bad)),
            std::string::npos)
      << r.output.substr(0, 4000);
  EXPECT_EQ(stored_events(dsn), good);
  // Zero batch splits: every ledger row is a whole batch, and nothing was refused by the database.
  EXPECT_EQ(r.output.find("splitting it"), std::string::npos) << r.output.substr(0, 4000);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM ingest_batches WHERE source_position LIKE '%(part %' "
                   "OR source_position LIKE '%(refused row)%'"),
            0);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events WHERE reason LIKE 'database refused%'"), 0);
  // Each bad record dead-lettered at the edge, its field named.
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events"), bad);
  for (const auto& [field, n] : bad_by_field) {
    EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events WHERE reason LIKE '" + field + ":%'"), n) << field;
  }
}

}  // namespace

// SIGTERM (a supervisor's stop, Ctrl-C's SIGINT alike) ends an import in order: it stops reading, writes what it
// read and says up to which record everything is written, exit 128 + the signal; the same import run again
// completes the file with nothing stored twice. Before, the signal killed it where it stood (exit 143, no word of
// how far it got).
TEST(Import, AStopSignalEndsTheImportInOrderAndARerunCompletesIt) {
  auto dsn = crm_test::fresh_database("t_import_sigterm");
  auto dir = scratch("sigterm");
  const auto [path, unique] = generate(dir, "--count 300000 --seed 11 --duplicates 0.02 --invalid 0.01");
  ASSERT_GT(unique, 0);
  const auto stored = [&] {
    return stored_events(dsn);
  };
  {
    crm_test::child imp({CRM_INGEST_EXE, "import", "--no-progress", "--allow-superuser", "--batch-rows", "2000",
                         "--dsn", dsn, path},
                        dir / "out1", dir / "err1");
    // Stopped mid-file, once batches commit (a signal before the reading starts ends the process as before).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (q(dsn, "SELECT count(*) FROM ingest_batches") < 3 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(imp.running()) << "the import ended before it was stopped";
    imp.signal(SIGTERM);
    const auto code = imp.wait_for(std::chrono::seconds(120));
    const std::string err = crm_test::read_file(dir / "err1");
    ASSERT_TRUE(code.has_value()) << err;
    EXPECT_EQ(*code, 128 + SIGTERM) << err;
    const std::string said = "interrupted by SIGTERM: every record up to " + path + ":";
    const auto at = err.find(said);
    ASSERT_NE(at, std::string::npos) << err;
    const long long line = std::stoll(err.substr(at + said.size()));
    EXPECT_LT(stored(), unique) << "stopped before the file's end";
    // Everything up to that line is in the ledger, nothing after it.
    EXPECT_EQ(q(dsn, "SELECT max(substring(source_position from '^lines [0-9]+-([0-9]+)')::bigint) FROM ingest_batches"), line)
        << err;
    EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events WHERE substring(source from ':([0-9]+)$')::bigint > " +
                         std::to_string(line)),
              0);
  }
  auto rerun = run_ingest("import --no-progress --batch-rows 2000 --summary json --dsn '" + dsn + "' " + path);
  ASSERT_EQ(rerun.status, 0) << rerun.out;
  EXPECT_NE(rerun.out.find("\"interrupted\":false,\"resume_after\":\"" + path + ":"), std::string::npos) << rerun.out;
  EXPECT_EQ(stored(), unique);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
}

// A dead letter's id is of its source ("file:line") and text: the same file named another way (`./`, `//`) stored
// its dead letters again on each import. The source is the file's absolute path now.
TEST(Import, TheSameFileNamedAnotherWayStoresItsDeadLettersOnce) {
  auto dsn = crm_test::fresh_database("t_import_spelling");
  const std::string dir = fs::path(sample()).parent_path().string();
  for (const std::string& name : {sample(), dir + "/./events.ndjson", dir + "//events.ndjson"}) {
    auto r = run_ingest("import --no-progress --dsn '" + dsn + "' " + name);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events"), 8) << name;
  }
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events WHERE source LIKE " + crm_test::shell_quote(sample() + ":%")), 8);
}

namespace {

// A FIFO in `dir` and the lines of `count` generated events (for the tests of a stop while an import reads a pipe).
struct fifo_input {
  fs::path fifo;
  std::vector<std::string> lines;
};
fifo_input make_fifo(const fs::path& dir, int count) {
  fifo_input in{dir / "events.fifo", {}};
  EXPECT_EQ(::mkfifo(in.fifo.c_str(), 0600), 0);
  const auto [path, unique] = generate(dir, "--count " + std::to_string(count) + " --seed 5 --duplicates 0 --invalid 0");
  EXPECT_EQ(unique, count);
  std::ifstream file(path);
  for (std::string line; std::getline(file, line);) in.lines.push_back(line + "\n");
  return in;
}

// A fresh database, scratch(name), a FIFO there with the lines of `count` events, and an import reading it.
struct fifo_import {
  std::string dsn;
  fs::path dir;
  fifo_input in;
  crm_test::child imp;
};
fifo_import start_fifo_import(const std::string& database, const std::string& name, int count) {
  auto dsn = crm_test::fresh_database(database);
  auto dir = scratch(name);
  auto in = make_fifo(dir, count);
  return {dsn, dir, in,
          crm_test::child({CRM_INGEST_EXE, "import", "--no-progress", "--allow-superuser", "--dsn", dsn, in.fifo.string()},
                          dir / "out", dir / "err")};
}

// Opens the FIFO (once the import opens its end) and writes its first five lines; the pipe stays open.
std::ofstream send_five(const fifo_input& in) {
  std::ofstream pipe(in.fifo);
  for (std::size_t i = 0; i < 5; ++i) pipe << in.lines[i];
  pipe.flush();
  return pipe;
}

// Waits up to `limit` for an import sent SIGTERM to end, with 128 + SIGTERM (`late` says what it means when it does
// not end); `err` is what it printed there.
void expect_sigterm_exit(fifo_import& f, std::chrono::seconds limit, const std::string& late, std::string& err) {
  const auto code = f.imp.wait_for(limit);
  err = crm_test::read_file(f.dir / "err");
  ASSERT_TRUE(code.has_value()) << late << err;
  EXPECT_EQ(*code, 128 + SIGTERM) << err;
}

// ... and it says every record up to the fifth is written, and those five are stored.
void expect_stopped_after_five(fifo_import& f, std::chrono::seconds limit, const std::string& late) {
  std::string err;
  ASSERT_NO_FATAL_FAILURE(expect_sigterm_exit(f, limit, late, err));
  EXPECT_NE(err.find("every record up to " + f.in.fifo.string() + ":5 is written"), std::string::npos) << err;
  EXPECT_EQ(stored_events(f.dsn), 5);
}

// Waits until `n` events are stored or `limit` has passed.
void wait_for_events(const std::string& dsn, long long n, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (stored_events(dsn) < n && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace

// Reading a pipe (here a FIFO), bytes the pipe delivers after a stop are not read (they were imported: "read 8
// records" after a stop at 5). The import ends at the stop; the writer then meets a closed pipe (SIGPIPE ignored).
TEST(Import, BytesAPipeDeliversAfterAStopAreNotRead) {
  auto f = start_fifo_import("t_import_sigterm_pipe", "sigterm-pipe", 8);
  auto pipe = send_five(f.in);
  // The five are written (a pipe's batch goes after the linger: it waited out the 60 s here), then the stop.
  wait_for_events(f.dsn, 5, std::chrono::seconds(60));
  ASSERT_EQ(stored_events(f.dsn), 5) << crm_test::read_file(f.dir / "err");
  f.imp.signal(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto sigpipe = std::signal(SIGPIPE, SIG_IGN);
  for (std::size_t i = 5; i < f.in.lines.size(); ++i) pipe << f.in.lines[i];
  pipe.close();
  std::signal(SIGPIPE, sigpipe);
  expect_stopped_after_five(f, std::chrono::seconds(60), "");
}

// A pipe that stays open and delivers nothing (a producer gone quiet): a stop ends the import at once, the records
// before it written. The import waited for the pipe's next bytes, for ever when none came (a systemd stop then waited
// for its timeout and killed it).
TEST(Import, AStopEndsTheImportOfAnIdlePipeAtOnce) {
  auto f = start_fifo_import("t_import_sigterm_idle_pipe", "sigterm-idle-pipe", 8);
  auto pipe = send_five(f.in);  // and the pipe stays open, idle
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the import has read the five
  f.imp.signal(SIGTERM);
  expect_stopped_after_five(f, std::chrono::seconds(3), "the import still waits for the pipe 3 s after SIGTERM:\n");
}

// A FIFO no writer has opened yet: the import waited in its open; a stop ends it at once, nothing read.
TEST(Import, AStopEndsTheImportOfAFifoNoWriterOpened) {
  auto f = start_fifo_import("t_import_sigterm_no_writer", "sigterm-no-writer", 1);
  // The reader thread runs (the signal thread took over before it started): it is at the FIFO.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (crm_test::command_output("cat /proc/" + std::to_string(f.imp.pid()) + "/task/*/comm 2>/dev/null; true")
                 .find("crm-import-read") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  f.imp.signal(SIGTERM);
  std::string err;
  ASSERT_NO_FATAL_FAILURE(
      expect_sigterm_exit(f, std::chrono::seconds(3), "the import still waits for a writer 3 s after SIGTERM:\n", err));
  EXPECT_NE(err.find("interrupted by SIGTERM: no record was read"), std::string::npos) << err;
}

// A producer that goes quiet with the pipe open: the records it sent are written after the batch's linger (200 ms),
// while the import still reads the pipe. They waited for the pipe's next bytes, its end or a stop.
TEST(Import, RecordsOfAQuietPipeAreWrittenAfterTheLinger) {
  auto f = start_fifo_import("t_import_quiet_pipe", "quiet-pipe", 8);
  auto pipe = send_five(f.in);  // and the pipe stays open, idle
  wait_for_events(f.dsn, 5, std::chrono::milliseconds(2200));
  EXPECT_EQ(stored_events(f.dsn), 5) << "not written 2.2 s after the pipe went quiet";
  ASSERT_TRUE(f.imp.running()) << crm_test::read_file(f.dir / "err");
  for (std::size_t i = 5; i < f.in.lines.size(); ++i) pipe << f.in.lines[i];
  pipe.close();
  const auto code = f.imp.wait_for(std::chrono::seconds(60));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << crm_test::read_file(f.dir / "err");
  const std::string out = crm_test::read_file(f.dir / "out");
  EXPECT_NE(out.find("read 8 records"), std::string::npos) << out;
  EXPECT_NE(out.find(": 8 inserted, 0 duplicates, 0 rejected"), std::string::npos) << out;
  EXPECT_EQ(stored_events(f.dsn), 8);
}
