// Attribution and A/B tables kept by the analytics stage: the same generated events imported in different orders,
// batchings and numbers of concurrent writers (late touchpoints included) give identical tables, equal to a
// recompute from scratch; replays change nothing. Through `crm-ingest import` and `crm-ingest report`.
#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bench/synthetic_events.h"
#include "ingest/cli/analytics_tables.h"
#include "support/http_client.h"
#include "support/run_command.h"
#include "support/scratch.h"
#include "support/serve_process.h"
#include "support/test_db.h"

namespace {

using synthetic_events::iso8601;

using namespace analytics_tables;

// Leads and anonymous visitors with paths, conversions, exposures (some contaminated) and A/B-tagged
// messages over three months; about 2% of the lines repeat an earlier one.
std::vector<event> generate(int leads, int visitors, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<event> out;
  const std::int64_t start = 1785542400;  // 2026-08-01
  const std::int64_t span = 90 * 86400;
  struct channel {
    const char* fields;
  };
  const channel channels[] = {
      {R"("utm_source":"google","utm_medium":"cpc","utm_campaign":"c1","campaign_id":1)"},
      {R"("utm_source":"facebook","utm_medium":"paid_social","utm_campaign":"c2","campaign_id":2)"},
      {R"("utm_source":"newsletter","utm_medium":"email","utm_campaign":"c3","campaign_id":3)"},
      {R"("referrer":"https://www.google.com/")"},
      {R"("referrer":"https://partner-blog.example.org/post")"},
      {R"("landing_url":"https://shop.example.com/")"},  // Direct
      {R"("landing_url":"https://shop.example.com/p/1")"},  // Direct
  };
  const char* types[] = {"page_view", "ad_click", "email_click", "form_submit", "call", "chat", "other"};
  for (int u = 0; u < leads + visitors; ++u) {
    const std::string who = u < leads ? fmt::format(R"("lead_id":{})", u + 1)
                                      : fmt::format(R"("anonymous_id":"visitor-{}")", u);
    const int touches = static_cast<int>(rng() % 9);
    std::int64_t last = start;
    for (int i = 0; i < touches; ++i) {
      std::int64_t at = start + static_cast<std::int64_t>(rng() % span);
      if (i > 0 && rng() % 10 == 0) at = last;  // equal times: the tie is broken by touchpoint_id
      last = at;
      out.push_back({at, fmt::format(R"({{"kind":"touchpoint","touchpoint_id":"{}","occurred_at":"{}",{},"touch_type":"{}",{}}})",
                                     uuid(rng), iso8601(at), who, types[rng() % std::size(types)],
                                     channels[rng() % std::size(channels)].fields)});
    }
    const int conversions = static_cast<int>(rng() % 3);
    for (int i = 0; i < conversions; ++i) {
      std::int64_t at = start + static_cast<std::int64_t>(rng() % span);
      out.push_back({at, fmt::format(R"({{"kind":"touchpoint","touchpoint_id":"{}","occurred_at":"{}",{},"touch_type":"conversion","conversion_type":"purchase","conversion_value":{}.{:02}}})",
                                     uuid(rng), iso8601(at), who, rng() % 300, rng() % 100)});
    }
    auto expose = [&](const char* test, const std::vector<const char*>& variants) {
      const char* v = variants[rng() % variants.size()];
      const int n = 1 + static_cast<int>(rng() % 2);
      for (int i = 0; i < n; ++i) {
        const char* w = rng() % 20 == 0 ? variants[rng() % variants.size()] : v;  // sometimes contaminated
        std::int64_t at = start + static_cast<std::int64_t>(rng() % span);
        out.push_back({at, fmt::format(R"({{"kind":"touchpoint","touchpoint_id":"{}","occurred_at":"{}",{},"touch_type":"experiment_exposure","ab_test_id":"{}","variant":"{}"}})",
                                       uuid(rng), iso8601(at), who, test, w)});
      }
    };
    if (rng() % 10 < 4) expose("t-1", {"A", "B"});
    if (rng() % 10 < 2) expose("t-2", {"A", "B", "C"});
    if (u < leads && rng() % 4 == 0) {
      const char* statuses[] = {"delivered", "opened", "clicked", "sent"};
      std::int64_t at = start + static_cast<std::int64_t>(rng() % span);
      out.push_back({at, fmt::format(R"({{"kind":"communication","event_id":"{}","occurred_at":"{}",{},"channel":"email","status":"{}","email":"l{}@example.com","ab_test_id":"t-1","variant":"{}"}})",
                                     uuid(rng), iso8601(at), who, statuses[rng() % 4], u, rng() % 2 ? "A" : "B")});
    }
  }
  repeat_some(out, rng);
  return out;
}

TEST(Attribution, AnyOrderAnyBatchingAnyWritersGivesTheRecomputedTables) {
  auto dir = crm_test::scratch("orders");
  auto events = generate(2000, 300, 7);
  write_orders(dir, events, 11);  // reversed: every touchpoint arrives after the conversions it belongs to

  auto a = imported("t_attr_a", dir / "time.ndjson", 1, 1000);
  auto b = imported("t_attr_b", dir / "shuffled.ndjson", 3, 97);
  auto c = imported("t_attr_c", dir / "reversed.ndjson", 2, 333);

  auto da = dump(a);
  ASSERT_GT(rows(da, "attribution_credits"), 10000);
  ASSERT_GT(rows(da, "ab_test_units"), 500);
  ASSERT_GT(rows(da, "ab_test_message_counts"), 4);
  expect_invariants(a);
  expect_invariants(b);
  expect_invariants(c);
  expect_same(da, dump(b), "in time order vs shuffled, 3 writers, batches of 97");
  expect_same(da, dump(c), "in time order vs reversed, 2 writers, batches of 333");

  expect_replay_and_recompute_change_nothing(da, a, c, dir / "shuffled.ndjson");
}

// The windows are computed in UTC whoever calls the analytics: a recompute (or `rates import`) from a session in
// Europe/Berlin took 30 days for 719 hours across the daylight-saving change and moved a conversion 29 days 23.5 h
// after its ad click to Direct (its A/B unit unconverted); the stage gave it back on its next touch of the lead.
TEST(Attribution, TheWindowsAreTheSameWhateverTheCallersTimeZone) {
  auto dir = crm_test::scratch("time-zone");
  std::ofstream(dir / "tz.ndjson")
      << R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-000000000001","occurred_at":"2026-03-01T12:30:00Z","touch_type":"ad_click","lead_id":101,"utm_source":"google","utm_medium":"cpc","utm_campaign":"spring","campaign_id":5})"
         "\n"
      << R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-000000000002","occurred_at":"2026-03-31T12:00:00Z","touch_type":"conversion","lead_id":101,"conversion_value":100})"
         "\n"
      << R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-000000000003","occurred_at":"2026-03-01T12:30:00Z","touch_type":"experiment_exposure","lead_id":102,"ab_test_id":"tz","variant":"A"})"
         "\n"
      << R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-000000000004","occurred_at":"2026-03-31T12:00:00Z","touch_type":"conversion","lead_id":102,"conversion_value":40})"
         "\n";
  auto dsn = crm_test::fresh_database("t_attr_time_zone");
  auto r = run("import --no-progress --dsn '" + dsn + "' " + (dir / "tz.ndjson").string());
  ASSERT_EQ(r.status, 0) << r.out;
  const auto stored = dump(dsn);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE model = 'linear' AND utm_campaign = "
                                 "'spring' AND credit = 1"),
            1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ab_test_units WHERE ab_test_id = 'tz' AND converted"), 1);
  for (const char* zone : {"Europe/Berlin", "America/New_York"}) {
    auto again = crm_test::run_command(std::string("PGTZ=") + zone +
                                       " CRM_INGEST_POSTGRES_ALLOW_SUPERUSER=true " CRM_INGEST_EXE
                                       " --log-level warn report attribution --recompute --dsn '" +
                                       dsn + "' 2>&1");
    ASSERT_EQ(again.status, 0) << again.out;
    expect_same(stored, dump(dsn), std::string("imported vs recomputed from a session in ") + zone);
  }
}

TEST(Attribution, LateTouchpointReattributesItsConversion) {
  auto dir = crm_test::scratch("late");
  {
    std::ofstream f(dir / "conversion.ndjson");
    f << R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-000000000001","occurred_at":"2026-10-15T00:00:00Z","lead_id":5,"touch_type":"conversion","conversion_value":100})"
      << "\n";
    std::ofstream g(dir / "late.ndjson");
    g << R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-000000000002","occurred_at":"2026-10-10T00:00:00Z","lead_id":5,"touch_type":"ad_click","utm_source":"google","utm_medium":"cpc","utm_campaign":"fall","campaign_id":7})"
      << "\n";
  }
  auto dsn = imported("t_attr_late", dir / "conversion.ndjson", 1, 10);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE touchpoint_id IS NULL"), 6);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM campaign_attribution_daily WHERE channel_group = 'Direct'"), 6);
  import(dsn, dir / "late.ndjson", 1, 10);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE touchpoint_id IS NULL"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE campaign_id = 7 AND credit = 1"), 6);
  // The emptied Direct rows are gone from the daily table, the campaign has the conversion and its revenue.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM campaign_attribution_daily WHERE channel_group = 'Direct'"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM campaign_attribution_daily WHERE campaign_id = 7"
                                 " AND conversions = 1 AND revenue = 100 AND day = '2026-10-15'"),
            6);
  auto before = dump(dsn);
  import(dsn, dir / "late.ndjson", 1, 10);  // a replay
  expect_same(before, dump(dsn), "after replaying the late touchpoint");

  auto report = run("report attribution --by campaign --model linear --format json --dsn '" + dsn + "'");
  ASSERT_EQ(report.status, 0) << report.out;
  EXPECT_NE(report.out.find(R"("campaign_id":7)"), std::string::npos) << report.out;
  EXPECT_NE(report.out.find(R"("revenue":100)"), std::string::npos) << report.out;
}

// From a review: the text reports printed what clients sent (utm values, variants) as it was, so an escape
// sequence in a campaign name retitled, cleared or re-coloured the operator's terminal. Control characters are
// written as \xNN / \u00NN in the tables (the JSON escapes them anyway).
TEST(Attribution, TextReportsDoNotPassControlCharactersToTheTerminal) {
  auto dir = crm_test::scratch("report-controls");
  {
    std::ofstream f(dir / "events.ndjson");
    f << R"({"kind":"touchpoint","occurred_at":"2026-10-10T00:00:00Z","lead_id":9,"touch_type":"ad_click","utm_source":"g\u001b]0;PWNED\u0007","utm_medium":"cpc\u001b[2J\u009b\nlinear fake-row"})"
      << "\n"
      << R"({"kind":"touchpoint","occurred_at":"2026-10-11T00:00:00Z","lead_id":9,"touch_type":"experiment_exposure","ab_test_id":"t-esc","variant":"A\u001b[31m"})"
      << "\n"
      << R"({"kind":"touchpoint","occurred_at":"2026-10-15T00:00:00Z","lead_id":9,"touch_type":"conversion","conversion_value":5})"
      << "\n";
  }
  auto dsn = imported("t_attr_report_controls", dir / "events.ndjson", 1, 10);
  auto r = run("report attribution --by source --model last_touch --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("g\\x1B]0;PWNED\\x07"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpc\\x1B[2J\\u009B\\x0Alinear fake-row"), std::string::npos) << r.out;
  auto t = run("report ab-test --test t-esc --dsn '" + dsn + "'");
  ASSERT_EQ(t.status, 0) << t.out;
  EXPECT_NE(t.out.find("A\\x1B[31m"), std::string::npos) << t.out;
  for (const auto* out : {&r.out, &t.out}) {
    EXPECT_EQ(out->find('\x1b'), std::string::npos);
    EXPECT_EQ(out->find('\x07'), std::string::npos);
    EXPECT_EQ(out->find("\xc2\x9b"), std::string::npos);
  }
}

// From a review: a campaign keyed by text that only touchpoints named showed as its derived key (a negative
// number beyond 2^53 in the JSON), and once registered in campaigns its reference went into the JSON unquoted
// ("campaign_id":C-42, not JSON). The reference is found on the touchpoints too, and is a JSON string.
TEST(Attribution, ACampaignReferenceIsShownAsTextAndTheJsonStaysJson) {
  auto dir = crm_test::scratch("report-campaign-ref");
  {
    std::ofstream f(dir / "events.ndjson");
    f << R"({"kind":"touchpoint","occurred_at":"2026-10-10T00:00:00Z","lead_id":9,"touch_type":"ad_click","campaign_id":"C-42","utm_campaign":"fall"})"
      << "\n"
      << R"({"kind":"touchpoint","occurred_at":"2026-10-11T00:00:00Z","lead_id":9,"touch_type":"ad_click","campaign_id":77,"utm_campaign":"fall"})"
      << "\n"
      << R"({"kind":"touchpoint","occurred_at":"2026-10-15T00:00:00Z","lead_id":9,"touch_type":"conversion","conversion_value":5})"
      << "\n";
  }
  auto dsn = imported("t_attr_report_campaign_ref", dir / "events.ndjson", 1, 10);
  const std::string cmd = "report attribution --by campaign --model linear --format json --dsn '" + dsn + "'";
  for (int registered = 0; registered < 2; ++registered) {
    auto r = run(cmd);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find(R"("campaign_id":"C-42")"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(R"("campaign_id":77,)"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(R"("campaign_id":C)"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(R"("campaign_id":-)"), std::string::npos) << r.out;
    if (registered == 0) {
      pqxx::connection c(dsn);
      pqxx::work tx(c);
      tx.exec("INSERT INTO campaigns (campaign_id, campaign_ref, name) VALUES (crm_ref_key('campaign', 'C-42'), 'C-42', 'Fall')");
      tx.commit();
    }
  }
}

// The late-data probe takes only the touchpoints before the latest credited conversion (schemas/0013's
// attribution_watermark). A conversion credited by a recompute, or by the stage before the upgrade that brought
// the bound, counts as well: a late touchpoint still re-attributes it.
TEST(Attribution, ALateTouchpointFindsConversionsCreditedByARecomputeOrBeforeTheUpgrade) {
  auto dir = crm_test::scratch("late-recomputed");
  {
    std::ofstream g(dir / "late.ndjson");
    g << R"({"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-000000000002","occurred_at":"2026-10-10T00:00:00Z","lead_id":5,"touch_type":"ad_click","utm_source":"google","utm_medium":"cpc","utm_campaign":"fall","campaign_id":7})"
      << "\n";
  }
  // Stored without the stage (no backlog row), credited by the recompute.
  auto store_and_recompute = [](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, touch_type,"
            " channel_group, conversion_value, currency, is_conversion) VALUES"
            " ('00000000-0000-4000-8000-000000000001', '2026-10-15 00:00+00', now(), 5, 'conversion', 'Direct', 100,"
            "  'USD', true)");
    tx.exec("SELECT crm_analytics_recompute()");
    tx.commit();
  };
  auto recomputed = crm_test::fresh_database("t_attr_late_recomputed");
  {
    pqxx::connection c(recomputed);
    store_and_recompute(c);
  }
  auto upgraded = crm_test::fresh_database("t_attr_late_upgraded", false);
  {
    pqxx::connection c(upgraded);
    crm::sinks::postgres::migrate(c, crm_test::migrations_before(13), {3, 3});
    store_and_recompute(c);
    crm::sinks::postgres::migrate(c, crm::sinks::postgres::embedded_migrations(), {3, 3});
  }
  for (const auto& [dsn, what] : {std::pair{recomputed, "credited by a recompute"},
                                  std::pair{upgraded, "credited before the upgrade"}}) {
    EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE touchpoint_id IS NULL"), 6) << what;
    import(dsn, dir / "late.ndjson", 1, 10);
    EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE touchpoint_id IS NULL"), 0) << what;
    EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE campaign_id = 7 AND credit = 1"), 6)
        << what;
    expect_invariants(dsn);
  }
}

TEST(Attribution, AbTestReportAndSwitchedOffMaintenance) {
  auto dir = crm_test::scratch("ab");
  write_file(dir / "events.ndjson", generate(400, 50, 3));
  auto dsn = crm_test::fresh_database("t_attr_ab");
  // Without maintenance the tables stay empty; a recompute fills them.
  auto r = run("import --no-progress --no-attribution --dsn '" + dsn + "' " + (dir / "events.ndjson").string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ab_test_units"), 0);
  r = run("report attribution --recompute --by channel_group --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("recomputed"), std::string::npos) << r.out;
  expect_invariants(dsn);
  EXPECT_GT(crm_test::count(dsn, "SELECT count(*) FROM ab_test_units"), 50);

  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec("INSERT INTO ab_tests (ab_test_id, variants, variant_weights, control_variant)"
            " VALUES ('t-2', ARRAY['A','B','C'], ARRAY[1,1,1]::float8[], 'B')");
    tx.commit();
  }
  auto j = run("report ab-test --test t-1 --format json --dsn '" + dsn + "'");
  ASSERT_EQ(j.status, 0) << j.out;
  for (const char* key : {R"("test_id":"t-1")", R"("control":"A")", R"("variant":"B")", R"("prob_beat_control")",
                          R"("srm":{"chi2")", R"("messages")", R"("sequential":{"method")",
                          // No pre-exposure sums are read from the database yet: CUPED says so.
                          R"("cuped":{"conversion":{"covariate":"pre_conversions","available":true)"}) {
    EXPECT_NE(j.out.find(key), std::string::npos) << key << " in " << j.out;
  }
  auto t = run("report ab-test --test t-2 --dsn '" + dsn + "'");
  ASSERT_EQ(t.status, 0) << t.out;
  EXPECT_NE(t.out.find("(control B)"), std::string::npos) << t.out;
  EXPECT_NE(run("report ab-test --test nope --dsn '" + dsn + "'").status, 0);
  EXPECT_EQ(run("report attribution --model nope --dsn '" + dsn + "'").status, 2);
}


// The analytics stage runs in every process that writes, one stage transaction at a time per database: three
// imports running at once (three stages, each applying whoever's backlog it finds) and a recompute in the middle
// of them leave the tables a recompute gives, and equal to one ordered import.
TEST(Attribution, ConcurrentProcessesAndARecomputeGiveTheRecomputedTables) {
  auto dir = crm_test::scratch("concurrent");
  auto events = generate(1200, 200, 21);
  write_orders(dir, events, 5);

  auto reference = imported("t_attr_conc_ref", dir / "time.ndjson", 1, 1000);
  auto dsn = crm_test::fresh_database("t_attr_conc");
  std::vector<crm_test::command_result> results(4);
  std::vector<std::thread> procs;
  for (int k = 0; k < 3; ++k) {
    procs.emplace_back([&, k] {
      results[k] = run(fmt::format("import --no-progress --writers 2 --batch-rows 50 --dsn '{}' {}", dsn,
                                   (dir / fmt::format("shard{}.ndjson", k)).string()));
    });
  }
  procs.emplace_back([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    results[3] = run("report attribution --recompute --format json --dsn '" + dsn + "'");
  });
  for (auto& p : procs) p.join();
  for (const auto& r : results) ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM analytics_backlog"), 0);
  expect_invariants(dsn);
  expect_same(dump(reference), dump(dsn), "one ordered import vs three concurrent imports and a recompute");
}

// serve keeps the tables current shortly after the rows (off the insert path): its stage applies every batch,
// its metrics say so, and the tables are what a recompute gives.
TEST(Attribution, ServeKeepsTheTablesCurrentShortlyAfterTheRows) {
  auto dir = crm_test::scratch("serve-analytics");
  auto events = generate(600, 100, 33);
  std::shuffle(events.begin(), events.end(), std::mt19937_64(9));
  auto dsn = crm_test::fresh_database("t_attr_serve");
  crm_test::serve_process srv(dsn, dir / "serve");
  srv.start();
  for (std::size_t i = 0; i < events.size(); i += 150) {
    std::string body;
    for (std::size_t j = i; j < std::min(events.size(), i + 150); ++j) body += events[j].line + "\n";
    auto r = crm_test::http_request(srv.port(), "POST", "/v1/events", body,
                                    {{"Content-Type", "application/x-ndjson"}});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  std::string exposition;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const long long stored = crm_test::count(dsn, "SELECT coalesce(sum(touchpoints_in + communications_in), 0)"
                                                  " FROM ingest_batches");
    exposition = crm_test::http_request(srv.port(), "GET", "/metrics").body;
    if (stored >= static_cast<long long>(events.size()) &&
        exposition.find("\ncrm_ingest_analytics_pending_batches 0") != std::string::npos &&
        crm_test::count(dsn, "SELECT count(*) FROM analytics_backlog") == 0) {
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << exposition;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(exposition.find("\ncrm_ingest_analytics_lag_seconds 0"), std::string::npos) << exposition;
  EXPECT_EQ(exposition.find("\ncrm_ingest_analytics_batches_total 0"), std::string::npos) << exposition;
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  auto incremental = dump(dsn);
  ASSERT_GT(rows(incremental, "attribution_credits"), 1000);
  expect_invariants(dsn);
  auto r = run("report attribution --recompute --format json --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  expect_same(incremental, dump(dsn), "serve's tables vs recomputed");
}

}  // namespace
