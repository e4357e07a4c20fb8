// The analytics stage (sinks/postgres/analytics_stage.h) on its own: a database it cannot reach makes it fail,
// back off and report a growing lag (so the alert on the lag fires), and the writers' wakes do not cut its backoff
// short; against the real database it applies a backlog a catch_up() waits for.
#include "sinks/postgres/analytics_stage.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

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
// the test makes them), a batch's backlog row as a writer records it, and one stage run as the stage's role.
std::string database_without_autovacuum(const std::string& name) {
  auto dsn = crm_test::fresh_database(name);
  crm_test::execute(dsn, "DO $$ DECLARE t regclass; BEGIN FOR t IN SELECT relid FROM pg_partition_tree("
                         "'customer_touchpoints') WHERE isleaf UNION ALL SELECT unnest(ARRAY['identity_claims', "
                         "'identity_links', 'attribution_credits', 'ab_test_units']::regclass[]) LOOP "
                         "EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', t); END LOOP; END $$");
  return dsn;
}

void record_backlog(pqxx::nontransaction& s, const std::string& touchpoints_query) {
  s.exec("INSERT INTO analytics_backlog (batch_id, touchpoints, touchpoint_id, occurred_at, lead_id, anonymous_id, "
         "touch_type, ab_test_id, variant, tenant_id) "
         "SELECT gen_random_uuid(), count(*), array_agg(touchpoint_id), array_agg(occurred_at), array_agg(lead_id), "
         "array_agg(anonymous_id), array_agg(touch_type), array_agg(ab_test_id), array_agg(variant), "
         "array_agg(tenant_id) FROM (" + touchpoints_query + ") t");
}

struct stage_run_result {
  long long touchpoints = 0;
  long long index_fetches = 0;  // rows fetched through indexes from the touchpoint partitions by the run
};

// Visitor v<k> of 2,000, two months back, a minute apart: a fifth of the touchpoints carry a lead, one in 33 is a
// conversion.
void pooled_touchpoints(pqxx::nontransaction& s, int from, int to) {
  s.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, lead_id, "
         "anonymous_id, touch_type) SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months' "
         "+ g * interval '1 minute', now(), 'Direct', CASE WHEN g % 5 = 0 THEN g % 2000 + 1 END, 'v' || g % 2000, "
         "CASE WHEN g % 33 = 0 THEN 'conversion' ELSE 'page_view' END FROM generate_series(" +
         std::to_string(from) + ", " + std::to_string(to) + ") g");
}

// crm_analytics_apply_batch() alone (no statistics step) on the touchpoints `new_touchpoints` selects (FROM ...), in
// the session's working tables; returns the rows it fetched through indexes from the touchpoint partitions.
long long apply_batch_fetches(pqxx::nontransaction& s, const std::string& new_touchpoints) {
  s.exec("SELECT crm_analytics_session()");
  s.exec("BEGIN");
  s.exec("INSERT INTO crm_new_touchpoints (touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, "
         "tenant_id) SELECT touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, '' " + new_touchpoints);
  auto fetches = [&s] { return touchpoint_index_fetches(s); };
  const auto before = fetches();
  s.exec("SELECT crm_analytics_apply_batch()");
  const auto fetched = fetches() - before;
  s.exec("COMMIT");
  return fetched;
}

// As analytics_stage::run_once does: the statistics step in a transaction of its own, then the run.
stage_run_result stage_run_as_writer(pqxx::nontransaction& s, const std::string& dsn) {
  if (crm_test::count(dsn, "SELECT count(*) FROM pg_roles WHERE rolname = 'crm_ingest_writer'") == 1) {
    s.exec("SET ROLE crm_ingest_writer");  // the stage's role, which may not ANALYZE the tables itself
  }
  s.exec("SELECT crm_analytics_statistics()");
  s.exec("BEGIN ISOLATION LEVEL READ COMMITTED");
  auto fetches = [&s] { return touchpoint_index_fetches(s); };
  const auto before = fetches();
  stage_run_result r;
  r.touchpoints = s.exec1("SELECT touchpoints FROM crm_analytics_stage_run(256, 100000)")[0].as<long long>();
  r.index_fetches = fetches() - before;
  s.exec("COMMIT");
  s.exec("RESET ROLE");
  return r;
}

// One stage run as the writer that takes `touchpoints` and fetches fewer than `fetch_bound` rows through indexes.
void expect_stage_run(pqxx::nontransaction& s, const std::string& dsn, long long touchpoints, long long fetch_bound) {
  const auto run = stage_run_as_writer(s, dsn);
  EXPECT_EQ(run.touchpoints, touchpoints);
  EXPECT_LT(run.index_fetches, fetch_bound) << "rows fetched through indexes by the run";
}

// 0020: a partition filled faster than autovacuum analyzes it is analyzed before the stage's run is planned. Without statistics the planner read an anonymous visitor's path through the partition's path-
// touchpoint index (`lead_id IS NULL` as its condition): every anonymous-only touchpoint of the lookback window, once
// per conversion. Counted as rows fetched through indexes by one stage run (as the stage's role), not timed: 200
// conversions of anonymous visitors over 20,000 anonymous page views fetched 4 million rows before, 2,400 now.
TEST(AnalyticsStage, APartitionWithoutStatisticsIsAnalyzedBeforeTheRunIsPlanned) {
  const auto dsn = database_without_autovacuum("t_stage_statistics");
  pqxx::connection c(dsn);
  pqxx::nontransaction s(c);
  const std::string touchpoints =
      "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, anonymous_id, "
      "touch_type) SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months'";
  s.exec(touchpoints + " + g * interval '1 minute', now(), 'Direct', 'v' || g % 2000, 'page_view' "
         "FROM generate_series(1, 20000) g");
  s.exec(touchpoints + " + interval '15 days' + g * interval '1 minute', now(), 'Direct', 'v' || g, 'conversion' "
         "FROM generate_series(0, 199) g");
  record_backlog(s, "SELECT * FROM customer_touchpoints WHERE touch_type = 'conversion'");
  const std::string partition =
      s.exec1("SELECT DISTINCT tableoid::regclass::text FROM customer_touchpoints")[0].as<std::string>();
  const std::string analyzed =
      "SELECT count(*) FROM pg_class WHERE oid = '" + partition + "'::regclass AND reltuples >= 0";
  ASSERT_EQ(crm_test::count(dsn, analyzed), 0);
  // Each conversion's path (its visitor's page views of the window: 10) and the lookups around it.
  expect_stage_run(s, dsn, 200, 100000);
  EXPECT_EQ(crm_test::count(dsn, analyzed), 1);
  // Every conversion was credited to its visitor's last page view (last touch).
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT conversion_id) FROM attribution_credits "
                                 "WHERE model = 'last_touch' AND credit = 1 AND touchpoint_id IS NOT NULL"),
            200);
}

// 0020: a partition analyzed at its first rows and grown since is analyzed again before the run is planned. With
// the statistics of its first touchpoint (anonymous: every row's lead "is NULL"), the late-data probe of 2,000 new
// anonymous page views read each visitor's conversions through the leads' index, every anonymous-only touchpoint of
// the window per probe: 4.75 million rows fetched through indexes before, 22,600 now.
TEST(AnalyticsStage, APartitionThatGrewSinceItsStatisticsIsAnalyzedAgainBeforeTheRunIsPlanned) {
  const auto dsn = database_without_autovacuum("t_stage_grown_partition");
  pqxx::connection c(dsn);
  pqxx::nontransaction s(c);
  pooled_touchpoints(s, 1, 1);
  s.exec("ANALYZE customer_touchpoints");  // its first touchpoint
  pooled_touchpoints(s, 2, 20000);
  // A batch of the partition's first 2,000 anonymous page views, applied after its conversions were credited.
  record_backlog(s, "SELECT * FROM customer_touchpoints WHERE lead_id IS NULL AND touch_type = 'page_view' "
                    "ORDER BY occurred_at LIMIT 2000");
  s.exec("UPDATE attribution_watermark SET credited_until = 'infinity'");
  s.exec("SELECT pg_stat_force_next_flush()");  // this session's inserts reach the shared counters, as writers' do
  expect_stage_run(s, dsn, 2000, 200000);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM pg_class WHERE relname LIKE 'customer\\_touchpoints\\_%' "
                                 "AND relkind = 'r' AND reltuples >= 19000"),
            1);
}

// 0020 in the stage itself (analytics_stage, as serve, consume and import run it): the statistics step runs before
// its runs and, when it cannot (here the stage's role lacks the grant), the stage applies the backlog all the same.
TEST(AnalyticsStage, TheStageAnalyzesAGrownPartitionAndAppliesTheBacklogEvenWithoutTheStatisticsStep) {
  const auto dsn = database_without_autovacuum("t_stage_statistics_step");
  crm_test::execute(crm_test::admin_dsn(),
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 't_stage_role') THEN "
                    "CREATE ROLE t_stage_role LOGIN IN ROLE crm_ingest_writer; END IF; END $$");
  const auto scheme = dsn.find("://") + 3;
  pg::analytics_stage_options o;
  o.dsn = dsn.substr(0, scheme) + "t_stage_role" + dsn.substr(dsn.find('@'));
  o.idle_poll = 60s;
  pqxx::connection c(dsn);
  pqxx::nontransaction s(c);
  auto conversions = [&s](int from, int to) {  // anonymous visitors' conversions after 20,000 page views
    s.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, anonymous_id, "
           "touch_type) SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months' + interval '15 days' "
           "+ g * interval '1 minute', now(), 'Direct', 'v' || g, 'conversion' FROM generate_series(" +
           std::to_string(from) + ", " + std::to_string(to) + ") g");
    record_backlog(s, "SELECT * FROM customer_touchpoints WHERE touch_type = 'conversion' AND anonymous_id IN (SELECT "
                      "'v' || g FROM generate_series(" + std::to_string(from) + ", " + std::to_string(to) + ") g)");
  };
  s.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, anonymous_id, "
         "touch_type) SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months' + g * interval "
         "'1 minute', now(), 'Direct', 'v' || g % 2000, 'page_view' FROM generate_series(1, 20000) g");
  const std::string analyzed = "SELECT count(*) FROM pg_class WHERE relname LIKE 'customer\\_touchpoints\\_%' "
                               "AND relkind = 'r' AND reltuples >= 20000";
  const std::string credited = "SELECT count(DISTINCT conversion_id) FROM attribution_credits "
                               "WHERE model = 'last_touch' AND credit = 1 AND touchpoint_id IS NOT NULL";
  s.exec("REVOKE EXECUTE ON FUNCTION crm_analytics_statistics() FROM crm_ingest_writer");
  conversions(0, 99);
  {
    pg::analytics_stage stage(o);
    ASSERT_TRUE(stage.catch_up(60s, 60s)) << stage.last_error();
  }
  EXPECT_EQ(crm_test::count(dsn, credited), 100);
  EXPECT_EQ(crm_test::count(dsn, analyzed), 0);  // without the grant, no statistics step
  s.exec("GRANT EXECUTE ON FUNCTION crm_analytics_statistics() TO crm_ingest_writer");
  conversions(100, 199);
  {
    pg::analytics_stage stage(o);
    ASSERT_TRUE(stage.catch_up(60s, 60s)) << stage.last_error();
  }
  EXPECT_EQ(crm_test::count(dsn, credited), 200);
  EXPECT_EQ(crm_test::count(dsn, analyzed), 1);
}

// 0020: the statistics step waits for no one: a table another session holds (autovacuum's lock: SHARE UPDATE
// EXCLUSIVE) is left for a later run and the others are analyzed; while a partition is being created or detached
// (the parent held ACCESS EXCLUSIVE) the step does nothing. Each within its 100 ms lock timeout, without an error.
TEST(AnalyticsStage, TheStatisticsStepLeavesLockedTablesForALaterRun) {
  const auto dsn = database_without_autovacuum("t_stage_statistics_locks");
  pqxx::connection c(dsn), holder(dsn);
  pqxx::nontransaction s(c);
  s.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, channel_group, anonymous_id, "
         "touch_type) SELECT gen_random_uuid(), date_trunc('month', now()) - interval '2 months' + g * interval "
         "'1 minute', now(), 'Direct', 'v' || g, 'page_view' FROM generate_series(1, 5000) g");
  s.exec("INSERT INTO identity_links (tenant, anonymous_id, lead_id, linked_at, link_touchpoint_id, claims, "
         "anonymous_touchpoints) SELECT '', 'v' || g, g, now(), gen_random_uuid(), 1, true "
         "FROM generate_series(1, 5000) g");
  s.exec("SELECT pg_stat_force_next_flush()");  // the inserts reach the change counters before any analyze
  const std::string partition =
      s.exec1("SELECT DISTINCT tableoid::regclass::text FROM customer_touchpoints")[0].as<std::string>();
  auto statistics = [&s] {
    const auto t0 = std::chrono::steady_clock::now();
    const int n = s.exec1("SELECT crm_analytics_statistics()")[0].as<int>();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    return n;
  };
  {
    pqxx::work h(holder);
    h.exec("LOCK TABLE customer_touchpoints IN ACCESS EXCLUSIVE MODE");
    EXPECT_EQ(statistics(), 0);
  }
  {
    pqxx::work h(holder);
    h.exec("LOCK TABLE " + partition + " IN SHARE UPDATE EXCLUSIVE MODE");
    EXPECT_EQ(statistics(), 1);  // identity_links
  }
  EXPECT_EQ(statistics(), 1);  // the partition, once free
  EXPECT_EQ(statistics(), 0);  // nothing grew since
}

// 0020: an anonymous visitor's touchpoints are read through its own index whatever the plan was made for. The stage
// keeps its plans for up to 10 s (0011); one made while a partition held 300 touchpoints estimated every index at
// one row, and the smallest won: the partial index of conversions with `lead_id IS NULL` as its condition. Run
// after an import grew the partition to 20,000, each probe read every anonymous conversion of the window. Here
// without the stage's statistics step (crm_analytics_apply_batch alone), so only the query's shape decides.
// Counted as rows fetched through indexes for 2,000 probes: 918,000 before, 24,000 now.
TEST(AnalyticsStage, AnAnonymousVisitorsTouchpointsAreReadThroughItsOwnIndexWhateverThePlanWasMadeFor) {
  const auto dsn = database_without_autovacuum("t_stage_anonymous_branch");
  pqxx::connection c(dsn);
  pqxx::nontransaction s(c);
  auto touchpoints = [&s](int from, int to) { pooled_touchpoints(s, from, to); };
  auto run = [&s](const std::string& new_touchpoints) { return apply_batch_fetches(s, new_touchpoints); };
  touchpoints(1, 300);
  s.exec("ANALYZE customer_touchpoints");
  s.exec("UPDATE attribution_watermark SET credited_until = 'infinity'");  // every probe looks for conversions
  run("FROM customer_touchpoints, generate_series(1, 8) WHERE lead_id IS NULL AND touch_type = 'page_view' "
      "LIMIT 2000");  // plans the stage's statements for 300 touchpoints
  touchpoints(301, 20000);
  const auto fetched = run("FROM customer_touchpoints WHERE lead_id IS NULL AND touch_type = 'page_view' "
                           "ORDER BY occurred_at LIMIT 2000");
  EXPECT_LT(fetched, 200000) << "rows fetched through indexes by the run";
}

// 0020: the index of a lead's touchpoints holds leads' touchpoints only, so that it cannot serve an anonymous
// visitor's. With the statistics of a partition's first touchpoint the planner took it (`lead_id IS NULL` as its
// condition) for the probes of 2,000 new anonymous page views after the partition grew to 20,000: 33.8 million rows
// fetched through indexes with the subquery above alone, 4.75 million before 0020, 22,600 now.
TEST(AnalyticsStage, TheLeadIndexServesNoAnonymousVisitorWhateverTheStatistics) {
  const auto dsn = database_without_autovacuum("t_stage_lead_index");
  pqxx::connection c(dsn);
  pqxx::nontransaction s(c);
  pooled_touchpoints(s, 1, 1);
  s.exec("ANALYZE customer_touchpoints");
  pooled_touchpoints(s, 2, 20000);
  s.exec("UPDATE attribution_watermark SET credited_until = 'infinity'");
  EXPECT_LT(apply_batch_fetches(s, "FROM customer_touchpoints WHERE lead_id IS NULL AND touch_type = 'page_view' "
                                   "ORDER BY occurred_at LIMIT 2000"),
            200000)
      << "rows fetched through indexes by the run";
}

}  // namespace
