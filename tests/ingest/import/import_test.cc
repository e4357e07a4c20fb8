// `crm-ingest import` end to end, as an operator runs it, against a real PostgreSQL.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>
#include <zlib.h>

#include "support/test_db.h"

namespace fs = std::filesystem;

namespace {

struct run_result {
  int exit_code;
  std::string output;  // stdout + stderr
};

run_result shell(const std::string& cmd_line, bool merge_stderr = true) {
  std::string cmd = cmd_line + (merge_stderr ? " 2>&1" : "");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// The test cluster's role is a superuser, which every command that writes refuses unless allowed.
run_result run(const std::string& args) {
  return shell("CRM_INGEST_POSTGRES_ALLOW_SUPERUSER=true " + std::string(CRM_INGEST_EXE) + " " + args);
}

std::string sample() { return std::string(CRM_SOURCE_DIR) + "/deploy/sample/events.ndjson"; }

fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("crm-import-test-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

long long q(const std::string& dsn, const std::string& sql) { return crm_test::count(dsn, sql); }

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
  auto refused = shell(std::string(CRM_INGEST_EXE) + " import --no-progress --dsn '" + dsn + "' " + sample());
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("refusing to import with a superuser PostgreSQL connection"), std::string::npos)
      << refused.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 0);
  auto allowed = shell(std::string(CRM_INGEST_EXE) + " import --no-progress --allow-superuser --dsn '" + dsn + "' " +
                       sample());
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 12);
}

TEST(Import, SampleTwiceGivesTheSameRowsAndMetrics) {
  auto dsn = crm_test::fresh_database("t_import_sample");
  auto first = run("import --no-progress --dsn '" + dsn + "' " + sample());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto comms = q(dsn, "SELECT count(*) FROM communications");
  const auto touches = q(dsn, "SELECT count(*) FROM customer_touchpoints");
  const auto rejected = q(dsn, "SELECT count(*) FROM rejected_events");
  const auto metric_sum = q(dsn, "SELECT sum(event_count) FROM communication_metrics");
  EXPECT_EQ(comms, 12);
  EXPECT_EQ(touches, 8);
  EXPECT_EQ(rejected, 8);
  EXPECT_EQ(metric_sum, comms);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
  EXPECT_NE(first.output.find("read 29 records"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("20 inserted, 1 duplicates, 8 rejected"), std::string::npos) << first.output;

  auto second = run("import --no-progress --dsn '" + dsn + "' " + sample());
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("0 inserted, 21 duplicates, 8 rejected"), std::string::npos) << second.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), comms);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM customer_touchpoints"), touches);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events"), rejected);
  EXPECT_EQ(q(dsn, "SELECT sum(event_count) FROM communication_metrics"), metric_sum);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
}

TEST(Import, EveryInvalidLineIsDeadLetteredWithFileLineAndReason) {
  auto dsn = crm_test::fresh_database("t_import_rejects");
  auto r = run("import --no-progress --dsn '" + dsn + "' " + sample());
  ASSERT_EQ(r.exit_code, 0) << r.output;
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

TEST(Import, GzipAndJsonArrayInput) {
  auto dsn = crm_test::fresh_database("t_import_gz_array");
  auto dir = temp_dir("gz");
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
  auto r = run("import --no-progress --dsn '" + dsn + "' " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications WHERE channel = 'sms' AND campaign_id = 7"), 1000);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM rejected_events"), 1);
  EXPECT_EQ(q(dsn, "SELECT event_count FROM communication_metrics WHERE campaign_id = 7"), 1000);
}

TEST(Import, UnreadableFileFailsTheRunButTheOthersAreImported) {
  auto dsn = crm_test::fresh_database("t_import_missing_file");
  auto r = run("import --no-progress --dsn '" + dsn + "' /nonexistent/events.ndjson " + sample());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot open /nonexistent/events.ndjson"), std::string::npos) << r.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications"), 12);
}

TEST(Import, TruncatedGzipIsAnError) {
  auto dsn = crm_test::fresh_database("t_import_truncated_gz");
  auto dir = temp_dir("truncgz");
  auto path = (dir / "cut.ndjson.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb");
  std::ifstream in(sample());
  std::string body((std::istreambuf_iterator<char>(in)), {});
  for (int i = 0; i < 20; ++i) gzwrite(gz, body.data(), static_cast<unsigned>(body.size()));
  gzclose(gz);
  fs::resize_file(path, fs::file_size(path) / 2);
  auto r = run("import --no-progress --dsn '" + dsn + "' " + path);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot read"), std::string::npos) << r.output;
}

TEST(Import, UnreachableDatabaseExitsWithDatabaseError) {
  auto r = run("import --no-progress --retry-for 1 --dsn 'postgresql://crm@127.0.0.1:1/x?connect_timeout=1' " +
               sample());
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("error"), std::string::npos) << r.output;
}

TEST(Import, UnmigratedDatabaseIsRefusedWithAdvice) {
  auto dsn = crm_test::fresh_database("t_import_unmigrated", false);
  auto r = run("import --no-progress --dsn '" + dsn + "' " + sample());
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("crm-ingest migrate"), std::string::npos) << r.output;
}

TEST(Import, GeneratedFileWithTwoWritersStoresEveryUniqueEventOnce) {
  auto dsn = crm_test::fresh_database("t_import_generated");
  auto dir = temp_dir("gen");
  auto path = (dir / "gen.ndjson").string();
  auto gen = shell(std::string(GEN_EVENTS_EXE) + " --count 60000 --seed 7 --duplicates 0.05 --invalid 0.02 2>&1 > " +
                       path,
                   false);
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  auto unique_pos = gen.output.find("records, ");
  ASSERT_NE(unique_pos, std::string::npos) << gen.output;
  long long unique = std::stoll(gen.output.substr(unique_pos + 9));
  auto r = run("import --no-progress --writers 2 --batch-rows 5000 --summary json --dsn '" + dsn + "' " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications") + q(dsn, "SELECT count(*) FROM customer_touchpoints"),
            unique);
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications") + q(dsn, "SELECT count(*) FROM customer_touchpoints") +
                q(dsn, "SELECT count(*) FROM rejected_events"),
            q(dsn, "SELECT sum(communications_inserted + touchpoints_inserted) FROM ingest_batches") +
                q(dsn, "SELECT count(*) FROM rejected_events"));
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
  EXPECT_NE(r.output.find("\"read\":60000"), std::string::npos) << r.output;
  // Everything lands in monthly partitions, nothing in the defaults.
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications_default"), 0);
  // A second run of the same file changes nothing.
  auto again = run("import --no-progress --writers 2 --summary json --dsn '" + dsn + "' " + path);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("\"inserted\":0,"), std::string::npos) << again.output;
  EXPECT_EQ(q(dsn, "SELECT count(*) FROM communications") + q(dsn, "SELECT count(*) FROM customer_touchpoints"),
            unique);
  EXPECT_EQ(q(dsn, metrics_recount_diff), 0);
}

}  // namespace
