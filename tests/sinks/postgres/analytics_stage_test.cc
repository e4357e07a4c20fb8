// The analytics stage (sinks/postgres/analytics_stage.h) on its own: a database it cannot reach makes it fail,
// back off and report a growing lag (so the alert on the lag fires), and the writers' wakes do not cut its backoff
// short; against the real database it applies a backlog a catch_up() waits for.
#include "sinks/postgres/analytics_stage.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/test_db.h"

namespace pg = crm::sinks::postgres;
using namespace std::chrono_literals;

namespace {

struct stage_observer : pg::writer_observer {
  std::atomic<int> failures{0};
  std::atomic<long long> applied_batches{0};
  std::mutex mu;
  double last_lag = -1;
  void analytics_failed(std::string_view) override { ++failures; }
  void analytics_lag(long long, double lag_seconds) override {
    std::lock_guard lock(mu);
    last_lag = lag_seconds;
  }
  void analytics_applied(std::size_t batches, std::uint64_t, double, std::span<const double>) override {
    applied_batches += static_cast<long long>(batches);
  }
  double lag() {
    std::lock_guard lock(mu);
    return last_lag;
  }
};

// Rows fetched through indexes from the touchpoint partitions by `tx`'s transaction so far.
long long touchpoint_index_fetches(pqxx::transaction_base& tx) {
  return tx.exec1("SELECT coalesce(sum(idx_tup_fetch), 0) FROM pg_stat_xact_user_tables "
                  "WHERE relname LIKE 'customer\\_touchpoints\\_%'")[0]
      .as<long long>();
}

TEST(AnalyticsStage, UnreachableDatabaseBacksOffWhateverTheWakesAndTheLagGrows) {
  auto obs = std::make_shared<stage_observer>();
  pg::analytics_stage_options o;
  o.dsn = "postgresql://crm@127.0.0.1:1/none?connect_timeout=1";
  o.backoff_base = 200ms;
  o.backoff_cap = 400ms;
  o.observer = obs;
  pg::analytics_stage stage(o);
  // Writers committing all the time: a wake every millisecond for 2 s.
  const auto until = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < until) {
    stage.wake();
    std::this_thread::sleep_for(1ms);
  }
  // With the backoff (200, 400, 400, ... ms) about 6 attempts fit in 2 s; without it, one per wake.
  EXPECT_GE(obs->failures.load(), 2);
  EXPECT_LE(obs->failures.load(), 10);
  EXPECT_GE(obs->lag(), 1.0);  // seconds since the first failure
  EXPECT_FALSE(stage.last_error().empty());
  EXPECT_FALSE(stage.catch_up(300ms, 100ms));
}

TEST(AnalyticsStage, CatchUpReturnsOnceTheBacklogCommittedBeforeItIsApplied) {
  auto dsn = crm_test::fresh_database("t_stage_catch_up");
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    // Two batches' backlog rows as a writer records them: a page view and the conversion it leads to.
    tx.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, touch_type, "
            "utm_source, utm_medium, utm_campaign, channel_group) VALUES "
            "('00000000-0000-4000-8000-000000000001', '2026-11-01T10:00:00Z', now(), 7, 'page_view', 'google', "
            "'cpc', 'c1', 'Paid Search'),"
            "('00000000-0000-4000-8000-000000000002', '2026-11-02T10:00:00Z', now(), 7, 'conversion', NULL, NULL, "
            "NULL, 'Direct')");
    tx.exec("INSERT INTO analytics_backlog (batch_id, touchpoints, touchpoint_id, occurred_at, lead_id, anonymous_id, "
            "touch_type, ab_test_id, variant) SELECT gen_random_uuid(), 1, ARRAY[touchpoint_id], ARRAY[occurred_at], "
            "ARRAY[lead_id], ARRAY[anonymous_id], ARRAY[touch_type], ARRAY[ab_test_id], ARRAY[variant] "
            "FROM customer_touchpoints ORDER BY occurred_at");
    tx.commit();
  }
  auto obs = std::make_shared<stage_observer>();
  pg::analytics_stage_options o;
  o.dsn = dsn;
  o.idle_poll = 60s;  // only a catch_up() (a wake) makes it run here
  o.observer = obs;
  pg::analytics_stage stage(o);
  ASSERT_TRUE(stage.catch_up(30s, 30s));
  EXPECT_EQ(obs->applied_batches.load(), 2);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM analytics_backlog"), 0);
  // Every model credits the page view with all of the conversion.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE touchpoint_id = "
                                 "'00000000-0000-4000-8000-000000000001' AND credit = 1"),
            6);
  EXPECT_EQ(obs->lag(), 0.0);
}

// The backlog's arrays are compressed with lz4 where the server was built with it (0009), with pglz otherwise.
TEST(AnalyticsStage, BacklogArraysAreCompressedWithLz4WhereTheServerHasIt) {
  auto dsn = crm_test::fresh_database("t_stage_lz4");
  const bool lz4 = crm_test::count(dsn, "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression'"
                                        " AND 'lz4' = ANY (enumvals)") == 1;
  const auto lz4_columns = crm_test::count(dsn, "SELECT count(*) FROM pg_attribute WHERE attrelid ="
                                                " 'analytics_backlog'::regclass AND attcompression = 'l'");
  EXPECT_EQ(lz4_columns, lz4 ? 8 : 0);
}

// Lead 7: a page view (i = 0), then 400 conversions a minute apart, all in the page view's lookback window.
constexpr const char* lead_with_400_conversions =
    "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, touch_type, utm_source, "
    "channel_group, conversion_value, currency) "
    "SELECT CASE WHEN i = 0 THEN '00000000-0000-4000-8000-000000000001'::uuid ELSE gen_random_uuid() END, "
    "timestamptz '2026-11-01T10:00:00Z' + CASE WHEN i = 0 THEN interval '0' ELSE interval '1 day' END "
    "+ i * interval '1 minute', now(), 7, CASE WHEN i = 0 THEN 'page_view' ELSE 'conversion' END, "
    "CASE WHEN i = 0 THEN 'google' END, CASE WHEN i = 0 THEN 'Paid Search' ELSE 'Direct' END, "
    "CASE WHEN i > 0 THEN 10 END, CASE WHEN i > 0 THEN 'USD' END FROM generate_series(0, 400) i";

// A conversion's path fetches the touchpoints a path can hold and no others (0010): a lead with hundreds of
// conversions in the lookback window made each of them fetch all the others through the lead index, work
// quadratic in one lead's conversions. Counted as rows fetched through indexes from the touchpoint partitions
// while one conversion's attribution is refreshed: the page view on its path and none of the other 399.
TEST(AnalyticsStage, AConversionsPathFetchesNoneOfItsLeadsOtherConversions) {
  pqxx::connection c(crm_test::fresh_database("t_stage_path_index"));
  pqxx::nontransaction(c).exec(lead_with_400_conversions);
  pqxx::nontransaction(c).exec("ANALYZE customer_touchpoints");
  pqxx::work tx(c);
  tx.exec("SELECT crm_analytics_session()");
  tx.exec("DELETE FROM crm_attr_todo");
  tx.exec("INSERT INTO crm_attr_todo (conversion_id, occurred_at) SELECT touchpoint_id, occurred_at "
          "FROM customer_touchpoints WHERE touch_type = 'conversion' ORDER BY occurred_at DESC LIMIT 1");
  const auto before = touchpoint_index_fetches(tx);
  tx.exec("SELECT crm_attribution_refresh()");
  const auto fetched = touchpoint_index_fetches(tx) - before;
  // The conversion's path: the page view, credited in full by every model.
  EXPECT_EQ(tx.exec1("SELECT count(*) FROM attribution_credits WHERE touchpoint_id = "
                     "'00000000-0000-4000-8000-000000000001' AND credit = 1")[0]
                .as<long long>(),
            6);
  EXPECT_GE(fetched, 1);  // the page view (the conversion itself may be found by a scan of the partition)
  EXPECT_LE(fetched, 10);  // without 0010's index: 401
}

// The stage's statements run through prepared statements of its session (0011): made once, and again only when
// their text or the run's size changed (or they aged). Before 0011 every run planned them all anew: 4.8 s of
// the stage's 6.5 s at 5,000 events/s.
TEST(AnalyticsStage, CachedStatementsArePreparedAgainOnlyWhenTheirTextOrSizeChanged) {
  pqxx::connection c(crm_test::fresh_database("t_stage_cached_plans"));
  pqxx::nontransaction s(c);
  s.exec("CREATE TEMP TABLE t_cached (a int)");
  auto run = [&s](const std::string& sql, long long size) {  // as the stage's functions call it
    s.exec("SELECT crm_execute_cached('crm_test_plan', " + s.quote(sql) + ", " + std::to_string(size) + ")");
  };
  auto prepared_at = [&s] {
    return s.exec1("SELECT prepare_time::text FROM pg_prepared_statements WHERE name = 'crm_test_plan'")[0]
        .as<std::string>();
  };
  auto rows = [&s](int a) {
    return s.exec1("SELECT count(*) FROM t_cached WHERE a = " + std::to_string(a))[0].as<long long>();
  };
  const std::string one = "INSERT INTO t_cached VALUES (1)", two = "INSERT INTO t_cached VALUES (2)";
  run(one, 10);
  const auto first = prepared_at();
  run(one, 10);
  run(one, 399);  // sizes under 100 count as 100: still within 4 x
  EXPECT_EQ(prepared_at(), first);
  EXPECT_EQ(rows(1), 3);
  run(one, 401);  // more than 4 x the size it was made for
  const auto second = prepared_at();
  EXPECT_NE(second, first);
  run(one, 101);  // 401 / 101 < 4
  EXPECT_EQ(prepared_at(), second);
  run(two, 101);  // another text
  EXPECT_NE(prepared_at(), second);
  EXPECT_EQ(rows(2), 1);
  // A run that fails keeps what it prepared (PREPARE is not undone) but not the setting: the next run must not
  // execute the rolled-back run's statement for its own.
  s.exec("BEGIN");
  run(one, 101);
  s.exec("ROLLBACK");
  run(two, 101);
  EXPECT_EQ(rows(1), 5);  // 1 + 1 + 1 + 1 + 1 before the rollback, none from the rolled-back run
  EXPECT_EQ(rows(2), 2);
  // A run that fails after preparing for its own, much larger size: the setting goes back, the statement does not.
  // The next run prepares again instead of using the plan made for the failed run's 100,000 rows.
  const auto before_failure = prepared_at();
  s.exec("BEGIN");
  run(two, 100000);
  const auto failed_run = prepared_at();
  s.exec("ROLLBACK");
  EXPECT_NE(failed_run, before_failure);
  run(two, 101);
  EXPECT_NE(prepared_at(), failed_run);
  EXPECT_EQ(rows(2), 3);
}

// 0012: the touchpoints of a lead's linked visitors are read from its links whatever the statistics say. A plan
// made while the statistics say no touchpoint is anonymous-only (here: analyzed before any was stored) drove that
// branch from a scan of every anonymous-only touchpoint, once per touchpoint of the run; when anonymous ones then
// arrive, the stage's kept plan (0011) read all of them again for every new touchpoint. Counted in buffer hits of
// the run's late-data statement, not timed: for 8,000 probes, 20.5 million (20 s) before, 48,000 now.
TEST(AnalyticsStage, LinkedVisitorsAreReadThroughTheLeadsLinksWhateverTheStatistics) {
  pqxx::connection c(crm_test::fresh_database("t_stage_stitched_plan"));
  pqxx::nontransaction s(c);
  const std::string touchpoints =
      "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, lead_id, anonymous_id, "
      "touch_type) "
      "SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months' + g * interval '4 minutes', now(), 'Direct', ";
  s.exec(touchpoints + "g % 10000 + 1, 'v' || g % 10000, 'page_view' FROM generate_series(1, 30000) g");
  s.exec("ANALYZE customer_touchpoints");
  auto run = [&s](const std::string& rows) {
    s.exec("DELETE FROM crm_new_touchpoints");
    s.exec("INSERT INTO crm_new_touchpoints (touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, tenant_id) "
           "SELECT touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, '' FROM customer_touchpoints "
           "WHERE lead_id IS NOT NULL ORDER BY occurred_at " + rows);
  };
  s.exec("SELECT crm_analytics_session()");  // its working tables are emptied at every commit: one run, one transaction
  s.exec("BEGIN");
  run("LIMIT 8000");
  s.exec("SELECT crm_analytics_apply_batch()");  // prepares the stage's statements
  s.exec("COMMIT");
  s.exec(touchpoints + "NULL, 'w' || g, 'page_view' FROM generate_series(1, 28000) g");
  s.exec("BEGIN");
  run("OFFSET 8000 LIMIT 8000");
  s.exec("DELETE FROM crm_attr_todo");
  std::string plan;
  for (const auto& row : s.exec("EXPLAIN (ANALYZE, BUFFERS) EXECUTE crm_stage_attr_todo")) plan += row[0].c_str() + std::string("\n");
  const auto at = plan.find("shared hit=");
  ASSERT_NE(at, std::string::npos) << plan;
  EXPECT_LT(std::stoll(plan.substr(at + 11)), 1000000) << plan;
  s.exec("ROLLBACK");
}

// For 0020's tests: a fresh database whose tables of the stage autovacuum leaves alone (their statistics are what
// the test makes them), touchpoints of pooled visitors, and the rows a stage run fetches through indexes from the
// touchpoint partitions.
std::string database_without_autovacuum(const std::string& name) {
  auto dsn = crm_test::fresh_database(name);
  crm_test::execute(dsn, "DO $$ DECLARE t regclass; BEGIN FOR t IN SELECT relid FROM pg_partition_tree("
                         "'customer_touchpoints') WHERE isleaf UNION ALL SELECT unnest(ARRAY['identity_claims', "
                         "'identity_links', 'attribution_credits', 'ab_test_units']::regclass[]) LOOP "
                         "EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', t); END LOOP; END $$");
  return dsn;
}

// Visitor v<k> of 2,000, two months back, a minute apart: a fifth of the touchpoints carry a lead, one in 33 is a
// conversion.
void pooled_touchpoints(pqxx::nontransaction& s, int from, int to) {
  s.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, lead_id, "
         "anonymous_id, touch_type) SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months' "
         "+ g * interval '1 minute', now(), 'Direct', CASE WHEN g % 5 = 0 THEN g % 2000 + 1 END, 'v' || g % 2000, "
         "CASE WHEN g % 33 = 0 THEN 'conversion' ELSE 'page_view' END FROM generate_series(" +
         std::to_string(from) + ", " + std::to_string(to) + ") g");
}

// crm_analytics_apply_batch() (a stage run's work) on the touchpoints `new_touchpoints` selects (FROM ...), in the
// session's working tables; returns the rows it fetched through indexes from the touchpoint partitions.
long long apply_batch_fetches(pqxx::nontransaction& s, const std::string& new_touchpoints) {
  s.exec("SELECT crm_analytics_session()");
  s.exec("BEGIN");
  s.exec("INSERT INTO crm_new_touchpoints (touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, "
         "ab_test_id, variant, tenant_id) SELECT touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, "
         "ab_test_id, variant, '' " + new_touchpoints);
  const auto before = touchpoint_index_fetches(s);
  s.exec("SELECT crm_analytics_apply_batch()");
  const auto fetched = touchpoint_index_fetches(s) - before;
  s.exec("COMMIT");
  return fetched;
}

// A run of the stored partition's first 2,000 anonymous page views, each probing its visitor's conversions of the
// window (every conversion counts as credited already): the rows it fetched through indexes.
long long anonymous_page_view_probes(pqxx::nontransaction& s) {
  s.exec("UPDATE attribution_watermark SET credited_until = 'infinity'");
  return apply_batch_fetches(s, "FROM customer_touchpoints WHERE lead_id IS NULL AND touch_type = 'page_view' "
                                "ORDER BY occurred_at LIMIT 2000");
}

// A database without autovacuum whose partition holds its first `first` pooled touchpoints, analyzed then: the
// statistics a partition has while an import or a new month has only begun to fill it.
struct partition_analyzed_small {
  partition_analyzed_small(const std::string& name, int first)
      : dsn(database_without_autovacuum(name)), c(dsn), s(c) {
    pooled_touchpoints(s, 1, first);
    s.exec("ANALYZE customer_touchpoints");
  }
  std::string dsn;
  pqxx::connection c;
  pqxx::nontransaction s;
};

// 0020: a partition without statistics (filled faster than autovacuum analyzes it) did not make the stage read an
// anonymous visitor's path through the partition's index of leads' path touchpoints (`lead_id IS NULL` as its
// condition): every anonymous-only touchpoint of the lookback window, once per conversion. Counted as rows fetched
// through indexes by one run, not timed: 200 conversions of anonymous visitors over 20,000 anonymous page views
// fetched 4 million rows before, 2,400 now.
TEST(AnalyticsStage, APartitionWithoutStatisticsReadsAnAnonymousVisitorsPathThroughItsOwnIndex) {
  const auto dsn = database_without_autovacuum("t_stage_no_statistics");
  pqxx::connection c(dsn);
  pqxx::nontransaction s(c);
  const std::string touchpoints =
      "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, anonymous_id, "
      "touch_type) SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months'";
  s.exec(touchpoints + " + g * interval '1 minute', now(), 'Direct', 'v' || g % 2000, 'page_view' "
         "FROM generate_series(1, 20000) g");
  s.exec(touchpoints + " + interval '15 days' + g * interval '1 minute', now(), 'Direct', 'v' || g, 'conversion' "
         "FROM generate_series(0, 199) g");
  ASSERT_EQ(crm_test::count(dsn, "SELECT count(*) FROM pg_stats WHERE tablename LIKE 'customer\\_touchpoints\\_%'"),
            0);
  // Each conversion's path (its visitor's page views of the window: 10) and the lookups around it.
  EXPECT_LT(apply_batch_fetches(s, "FROM customer_touchpoints WHERE touch_type = 'conversion'"), 100000)
      << "rows fetched through indexes by the run";
  // Each conversion credited to its visitor's last page view.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT conversion_id) FROM attribution_credits "
                                 "WHERE model = 'last_touch' AND credit = 1 AND touchpoint_id IS NOT NULL"),
            200);
}

// 0020: an anonymous visitor's touchpoints are read through its own index whatever the plan was made for. The stage
// keeps its plans for up to 10 s (0011); one made while a partition held 300 touchpoints estimated every index at
// one row, and the smallest won: the partial index of conversions with `lead_id IS NULL` as its condition. Run
// after an import grew the partition to 20,000, each probe read every anonymous conversion of the window. Counted
// as rows fetched through indexes for 2,000 probes: 910,000 before 0020 and with its index change alone, 24,000
// with its subquery (in the import that showed it: 7-52 million buffer hits in one run).
TEST(AnalyticsStage, AnAnonymousVisitorsTouchpointsAreReadThroughItsOwnIndexWhateverThePlanWasMadeFor) {
  partition_analyzed_small db("t_stage_anonymous_branch", 300);
  auto& s = db.s;
  s.exec("UPDATE attribution_watermark SET credited_until = 'infinity'");  // every probe looks for conversions
  apply_batch_fetches(s, "FROM customer_touchpoints, generate_series(1, 8) WHERE lead_id IS NULL AND "
                         "touch_type = 'page_view' LIMIT 2000");  // plans the stage's statements for 300 touchpoints
  pooled_touchpoints(s, 301, 20000);
  EXPECT_LT(anonymous_page_view_probes(s), 200000) << "rows fetched through indexes by the run";
}

// 0020: the index of a lead's touchpoints holds leads' touchpoints only, so that it cannot serve an anonymous
// visitor's. With the statistics of a partition's first touchpoint the planner took it (`lead_id IS NULL` as its
// condition) for the probes of 2,000 new anonymous page views after the partition grew to 20,000: 33.8 million rows
// fetched through indexes with 0020's subquery alone, 4.75 million before 0020, 22,600 now.
TEST(AnalyticsStage, TheLeadIndexServesNoAnonymousVisitorWhateverTheStatistics) {
  partition_analyzed_small db("t_stage_lead_index", 1);
  pooled_touchpoints(db.s, 2, 20000);
  EXPECT_LT(anonymous_page_view_probes(db.s), 200000) << "rows fetched through indexes by the run";
  EXPECT_EQ(crm_test::count(db.dsn, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                                    "'customer_touchpoints_lead_idx' AND indexdef LIKE '%WHERE (lead_id IS NOT NULL)'"),
            1);
}

// 0023: a unit's new exposures are merged into the row the stage left for the unit instead of being read again with
// all the unit's exposures (a lookup that no partition bound narrows: with a long history most of the A/B step).
// Lead 100007 has 400 exposures of test t-m to variant A. Run 1: an earlier exposure to B (it becomes the first and
// contaminates the unit) and a first exposure of lead 100008 (a unit without a row). Run 2: a later exposure to B of
// lead 100007 (the row's first exposure stays, and only the row says the unit is contaminated) and an earlier one of
// lead 100008 to its own variant (the first changes, the unit stays clean). Each run fetches none of the 400 (before
// 0023: all 401 in run 1); the units and the variant sums are what a recompute gives.
TEST(AnalyticsStage, NewExposuresAreMergedIntoTheirUnitsRowsWithoutReadingTheUnitsOtherExposures) {
  pqxx::connection c(crm_test::fresh_database("t_stage_ab_merge"));
  pqxx::nontransaction s(c);
  const auto id = [](int n) { return fmt::format("'00000000-0000-4000-8000-{:012}'", n); };
  // Exposures with ids `from`..`to`, `minutes` after the first of the 400 (an expression of g).
  const auto exposures = [&s](int from, int to, const std::string& minutes, int lead, const char* variant) {
    s.exec(fmt::format("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, "
                       "lead_id, touch_type, ab_test_id, variant) SELECT ('00000000-0000-4000-8000-' || lpad(g::text, "
                       "12, '0'))::uuid, date_trunc('month', now()) - interval '2 months' + ({}) * interval '1 minute', "
                       "now(), 'Direct', {}, 'experiment_exposure', 't-m', '{}' FROM generate_series({}, {}) g",
                       minutes, lead, variant, from, to));
  };
  pooled_touchpoints(s, 1, 20000);  // tables of a size the planner reads through indexes
  exposures(1, 400, "100 + g * 100", 100007, "A");
  s.exec("ANALYZE customer_touchpoints");
  s.exec("SELECT crm_analytics_recompute()");
  const auto run = [&](int from, int to) {
    return apply_batch_fetches(s, fmt::format("FROM customer_touchpoints WHERE touchpoint_id BETWEEN {} AND {}",
                                              id(from), id(to)));
  };
  const auto unit = [&s](const char* lead) {
    return s.exec1(fmt::format("SELECT concat_ws('/', variant, first_exposure_id, contaminated) FROM ab_test_units "
                               "WHERE unit = 'lead:{}'", lead))[0].as<std::string>();
  };
  exposures(1001, 1001, "0", 100007, "B");
  exposures(1002, 1002, "5000", 100008, "A");
  EXPECT_LE(run(1001, 1002), 10) << "rows fetched through indexes by run 1";
  EXPECT_EQ(unit("100007"), "B/00000000-0000-4000-8000-000000001001/t");
  EXPECT_EQ(unit("100008"), "A/00000000-0000-4000-8000-000000001002/f");
  exposures(1003, 1003, "3000", 100007, "B");
  exposures(1004, 1004, "4000", 100008, "A");
  EXPECT_LE(run(1003, 1004), 10) << "rows fetched through indexes by run 2";
  EXPECT_EQ(unit("100007"), "B/00000000-0000-4000-8000-000000001001/t");
  EXPECT_EQ(unit("100008"), "A/00000000-0000-4000-8000-000000001004/f");

  const std::string units = "SELECT string_agg(concat_ws('/', unit, variant, first_exposure_id, first_exposure_at, "
                            "contaminated, converted, revenue), ',' ORDER BY unit) FROM ab_test_units";
  const std::string sums = "SELECT string_agg(concat_ws('/', ab_test_id, variant, units, contaminated_units, "
                           "converted_units), ',' ORDER BY variant) FROM ab_test_variant_stats";
  const auto merged = s.exec1(units)[0].as<std::string>(), merged_sums = s.exec1(sums)[0].as<std::string>();
  s.exec("SELECT crm_analytics_recompute()");
  EXPECT_EQ(merged, s.exec1(units)[0].as<std::string>());
  EXPECT_EQ(merged_sums, s.exec1(sums)[0].as<std::string>());
}

}  // namespace
