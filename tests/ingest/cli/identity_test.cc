// Identity stitching (schemas/0008_identity.sql): anonymous visitors identified as leads — by identify events or
// by any touchpoint carrying both ids — arriving before, between and after the touchpoints, exposures and
// conversions they stitch together. Every order, batching and number of writers (and concurrent processes)
// gives the tables a recompute gives; the hand-computed cases show what the stitching means; one visitor claimed
// by two leads goes to the first link and is counted. Through `crm-ingest import` and `crm-ingest report`.
#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bench/synthetic_events.h"
#include "ingest/cli/analytics_tables.h"
#include "sinks/postgres/migrations.h"
#include "support/scratch.h"
#include "support/test_db.h"

namespace {

using namespace analytics_tables;
using synthetic_events::iso8601;

// Visitors who browse anonymously, are exposed to tests and convert — some as visitors, some after being
// identified — and leads that identify them: an identify event or a form submit carrying both ids, at a random
// time (before, between or after the visitor's other events), sometimes twice, sometimes by a second lead
// (a contested visitor). About 2% of the lines repeat an earlier one.
std::vector<event> generate_identities(int leads, int visitors, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<event> out;
  const std::int64_t start = 1785542400;  // 2026-08-01
  const std::int64_t span = 60 * 86400;
  const char* channels[] = {
      R"("utm_source":"google","utm_medium":"cpc","utm_campaign":"c1","campaign_id":1)",
      R"("utm_source":"facebook","utm_medium":"paid_social","utm_campaign":"c2","campaign_id":2)",
      R"("utm_source":"newsletter","utm_medium":"email","utm_campaign":"c3","campaign_id":3)",
      R"("referrer":"https://partner-blog.example.org/post")",
      R"("landing_url":"https://shop.example.com/")",
  };
  auto at = [&] { return start + static_cast<std::int64_t>(rng() % span); };
  auto touch = [&](const std::string& who, const char* type, std::int64_t when, const std::string& extra) {
    out.push_back({when, fmt::format(R"({{"kind":"touchpoint","touchpoint_id":"{}","occurred_at":"{}",{},"touch_type":"{}"{}}})",
                                     uuid(rng), iso8601(when), who, type, extra)});
  };
  auto lead_of = [&](int k) { return fmt::format(R"("lead_id":{})", 1 + k % leads); };
  for (int v = 0; v < visitors; ++v) {
    const std::string anon = fmt::format(R"("anonymous_id":"v-{}")", v);
    for (int i = 0, n = static_cast<int>(rng() % 6); i < n; ++i) {
      touch(anon, rng() % 2 ? "page_view" : "ad_click", at(), std::string(",") + channels[rng() % std::size(channels)]);
    }
    if (rng() % 3 == 0) {
      touch(anon, "conversion", at(), fmt::format(R"(,"conversion_type":"purchase","conversion_value":{})", rng() % 200));
    }
    if (rng() % 3 == 0) {
      touch(anon, "experiment_exposure", at(), fmt::format(R"(,"ab_test_id":"t-s","variant":"{}")", rng() % 2 ? "A" : "B"));
    }
    const int lead = static_cast<int>(rng() % leads);
    switch (rng() % 6) {
      case 0: break;  // never identified
      case 1:         // identified twice by the same lead
        touch(lead_of(lead) + "," + anon, "identify", at(), "");
        touch(lead_of(lead) + "," + anon, "identify", at(), "");
        break;
      case 2:  // a form submit carrying both ids (on the lead's path itself)
        touch(lead_of(lead) + "," + anon, "form_submit", at(), std::string(",") + channels[rng() % 3]);
        break;
      case 3:  // contested: two leads claim the visitor
        touch(lead_of(lead) + "," + anon, "identify", at(), "");
        touch(lead_of(lead + 1) + "," + anon, "identify", at(), "");
        break;
      default: touch(lead_of(lead) + "," + anon, "identify", at(), ""); break;
    }
  }
  for (int l = 0; l < leads; ++l) {
    const std::string who = lead_of(l);
    for (int i = 0, n = static_cast<int>(rng() % 4); i < n; ++i) {
      touch(who, "email_click", at(), std::string(",") + channels[rng() % std::size(channels)]);
    }
    for (int i = 0, n = static_cast<int>(rng() % 3); i < n; ++i) {
      touch(who, "conversion", at(), fmt::format(R"(,"conversion_type":"purchase","conversion_value":{}.{:02})",
                                                 rng() % 300, rng() % 100));
    }
    if (rng() % 3 == 0) {
      touch(who, "experiment_exposure", at(), fmt::format(R"(,"ab_test_id":"t-s","variant":"{}")", rng() % 2 ? "A" : "B"));
    }
  }
  repeat_some(out, rng);
  return out;
}

TEST(Identity, AnyOrderAnyBatchingAnyWritersGivesTheRecomputedStitchedTables) {
  auto dir = crm_test::scratch("identity-orders");
  auto events = generate_identities(300, 1500, 17);
  // Reversed: every identify event arrives before the earlier touchpoints it stitches.
  write_orders(dir, events, 23);

  auto a = imported("t_ident_a", dir / "time.ndjson", 1, 1000);
  auto b = imported("t_ident_b", dir / "shuffled.ndjson", 3, 41);
  auto c = imported("t_ident_c", dir / "reversed.ndjson", 2, 257);
  // Three processes at once, each with its own writers and analytics stage.
  auto d = crm_test::fresh_database("t_ident_d");
  std::vector<std::thread> procs;
  for (int k = 0; k < 3; ++k) {
    procs.emplace_back([&, k] { import(d, dir / fmt::format("shard{}.ndjson", k), 2, 60); });
  }
  for (auto& p : procs) p.join();

  auto da = dump(a);
  ASSERT_GT(rows(da, "identity_links"), 800);
  EXPECT_GT(crm_test::count(a, "SELECT count(*) FROM identity_links WHERE claims > 1"), 100);
  EXPECT_GT(crm_test::count(a, "SELECT count(DISTINCT conversion_id) FROM attribution_credits WHERE stitched"), 200);
  EXPECT_GT(crm_test::count(a, "SELECT count(*) FROM ab_test_units WHERE unit LIKE 'lead:%' AND anonymous_id IS NOT NULL"),
            20);  // units whose first exposure was a visitor's, before it was identified
  for (const auto& dsn : {a, b, c, d}) expect_invariants(dsn);
  expect_same(da, dump(b), "in time order vs shuffled, 3 writers, batches of 41");
  expect_same(da, dump(c), "in time order vs reversed, 2 writers, batches of 257");
  expect_same(da, dump(d), "in time order vs three concurrent imports");

  expect_replay_and_recompute_change_nothing(da, a, c, dir / "shuffled.ndjson");
}

// One text value (NULL as "NULL").
std::string text(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? "NULL" : r[0][0].as<std::string>();
}

std::string tp(int n, const std::string& when, const std::string& fields) {
  return fmt::format(R"({{"kind":"touchpoint","touchpoint_id":"00000000-0000-4000-8000-{:012}","occurred_at":"{}",{}}})",
                     n, when, fields) + "\n";
}

std::string credit(const std::string& dsn, int conversion, const std::string& model, int touchpoint) {
  return text(dsn, fmt::format(
      "SELECT coalesce(string_agg(trim_scale(credit)::text || '/' || trim_scale(revenue_credit)::text || '/' ||"
      " coalesce(lead_id::text, '-') || '/' || stitched::text, ','), '-') FROM attribution_credits"
      " WHERE conversion_id = '00000000-0000-4000-8000-{:012}' AND model = '{}'"
      " AND touchpoint_id = '00000000-0000-4000-8000-{:012}'", conversion, model, touchpoint));
}

// A visitor clicks an ad and a social post, is identified, clicks an e-mail as the lead and converts; the
// visitor itself converts too. Hand-computed: first touch = the ad (stitched), linear thirds; the visitor's
// conversion is the lead's. Then an earlier identify by another lead arrives late: first link wins, so the
// visitor moves to that lead and both leads' conversions are re-attributed — each once.
TEST(Identity, AnonymousTouchpointsJoinTheLeadAndTheFirstLinkWins) {
  auto dir = crm_test::scratch("identity-cases");
  const std::string ad = R"("utm_source":"google","utm_medium":"cpc","utm_campaign":"c1","campaign_id":1)";
  {
    std::ofstream f(dir / "first.ndjson");
    f << tp(1, "2026-09-01T10:00:00Z", R"("anonymous_id":"a1","touch_type":"ad_click",)" + ad)
      << tp(2, "2026-09-02T10:00:00Z", R"("anonymous_id":"a1","touch_type":"page_view","utm_source":"facebook","utm_medium":"paid_social","campaign_id":2)")
      << tp(3, "2026-09-02T12:00:00Z", R"("anonymous_id":"a1","touch_type":"experiment_exposure","ab_test_id":"t-x","variant":"B")")
      << tp(4, "2026-09-04T10:00:00Z", R"("lead_id":7,"touch_type":"email_click","utm_source":"newsletter","utm_medium":"email","campaign_id":3)")
      << tp(5, "2026-09-05T10:00:00Z", R"("lead_id":7,"touch_type":"conversion","conversion_value":90)")
      << tp(6, "2026-09-05T11:00:00Z", R"("anonymous_id":"a1","touch_type":"conversion","conversion_value":30)");
    std::ofstream g(dir / "identify.ndjson");
    g << tp(7, "2026-09-03T10:00:00Z", R"("anonymous_id":"a1","lead_id":7,"touch_type":"identify")");
    std::ofstream h(dir / "earlier-claim.ndjson");
    h << tp(8, "2026-09-01T09:00:00Z", R"("anonymous_id":"a1","lead_id":9,"touch_type":"identify")")
      << tp(9, "2026-09-06T10:00:00Z", R"("lead_id":9,"touch_type":"conversion","conversion_value":12)");
  }
  auto dsn = imported("t_ident_cases", dir / "first.ndjson", 1, 10);
  // Not identified yet: the lead's path is its e-mail click alone, the visitor converts on its own path.
  EXPECT_EQ(credit(dsn, 5, "first_touch", 4), "1/90/7/false");
  EXPECT_EQ(credit(dsn, 6, "first_touch", 1), "1/30/-/false");
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ab_test_units WHERE unit = 'anon:a1' AND converted"), 1);

  import(dsn, dir / "identify.ndjson", 1, 10);
  // Stitched: the lead's path is ad, social, e-mail (the identify itself is not a touch).
  EXPECT_EQ(credit(dsn, 5, "first_touch", 1), "1/90/7/true");
  EXPECT_EQ(credit(dsn, 5, "last_touch", 4), "1/90/7/false");
  EXPECT_EQ(credit(dsn, 5, "linear", 2), "0.333333333333/29.99999999997/7/true");
  EXPECT_EQ(credit(dsn, 5, "linear", 4), "0.333333333334/30.00000000006/7/false");
  // The visitor's own conversion is the lead's (stitched), on the same path.
  EXPECT_EQ(credit(dsn, 6, "first_touch", 1), "1/30/7/true");
  EXPECT_EQ(credit(dsn, 6, "last_touch", 4), "1/30/7/true");
  // A/B: the visitor's exposure makes the lead's unit, converted by both conversions (90 + 30).
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ab_test_units WHERE unit = 'anon:a1'"), 0);
  EXPECT_EQ(text(dsn, "SELECT variant || '/' || converted::text || '/' || trim_scale(revenue)::text ||"
                                " '/' || anonymous_id FROM ab_test_units WHERE ab_test_id = 't-x' AND unit = 'lead:7'"),
            "B/true/120/a1");
  auto r = run("report attribution --model first_touch --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("identity: 2 conversions attributed through stitching; 1 visitors linked to a lead, 0 of"),
            std::string::npos) << r.out;

  // Lead 9 identified the visitor an hour before its first touch: the first link wins, lead 7 loses the visitor.
  import(dsn, dir / "earlier-claim.ndjson", 1, 10);
  EXPECT_EQ(text(dsn, "SELECT lead_id || '/' || claims FROM identity_links WHERE anonymous_id = 'a1'"), "9/2");
  EXPECT_EQ(credit(dsn, 5, "first_touch", 4), "1/90/7/false");
  EXPECT_EQ(credit(dsn, 5, "first_touch", 1), "-");
  EXPECT_EQ(credit(dsn, 6, "first_touch", 1), "1/30/9/true");
  EXPECT_EQ(credit(dsn, 6, "last_touch", 2), "1/30/9/true");  // lead 7's e-mail click is not lead 9's
  EXPECT_EQ(credit(dsn, 9, "first_touch", 1), "1/12/9/true");
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE model = 'linear'"
                                 " AND conversion_id = '00000000-0000-4000-8000-000000000009'"), 2);
  EXPECT_EQ(text(dsn, "SELECT string_agg(unit || '/' || converted::text || '/' || trim_scale(revenue)::text,"
                                " ',' ORDER BY unit) FROM ab_test_units WHERE ab_test_id = 't-x'"),
            "lead:9/true/42");
  r = run("report attribution --model first_touch --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("identity: 2 conversions attributed through stitching; 1 visitors linked to a lead, 1 of"),
            std::string::npos) << r.out;

  // Exactly once: replaying everything changes nothing, and a recompute gives the same tables.
  auto before = dump(dsn);
  for (const char* f : {"identify.ndjson", "first.ndjson", "earlier-claim.ndjson"}) import(dsn, dir / f, 1, 10);
  expect_same(before, dump(dsn), "after replaying every file");
  r = run("report attribution --recompute --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  expect_same(before, dump(dsn), "incremental vs recomputed");
  expect_invariants(dsn);
}

// ---- The stage itself on crafted sequences: batches committed as a writer commits them (rows and their
// analytics_backlog row in one transaction), applied by crm_analytics_stage_run() as the stage thread does,
// then compared with a recompute.
struct row {
  int n;
  std::string at;  // time of day on 2026-09-01, "HH:MM"
  std::optional<long long> lead;
  std::string anonymous, type, tenant, test, variant, value, source;
};

// `tenants`: the backlog row carries the touchpoints' tenants, as this release's writers record them (0009);
// without, it is the row of an earlier release's writer, whose tenants the stage looks up.
// `apply`: then run the stage once, as the stage thread does, and expect it to apply this many batches (0: no run).
void commit_batch(const std::string& dsn, const std::vector<row>& rows, bool tenants = true, int apply = 1) {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  std::string values;
  for (const row& r : rows) {
    auto text = [&](const std::string& v) { return v.empty() ? std::string("NULL") : tx.quote(v); };
    values += fmt::format("{}('00000000-0000-4000-8000-{:012}', '2026-09-01 {}:00+00', now(), {}, {}, '{}', {}, {}, {},"
                          " {}, {}, {}, {}, {})",
                          values.empty() ? "" : ",", r.n, r.at, r.lead ? std::to_string(*r.lead) : "NULL",
                          text(r.anonymous), r.type, r.source.empty() ? "'Direct'" : "'Referral'", text(r.tenant),
                          text(r.test), text(r.variant), r.value.empty() ? "NULL" : r.value,
                          r.type == "conversion" ? "'USD'" : "NULL", r.type == "conversion" ? "true" : "false",
                          text(r.source));
  }
  tx.exec("WITH ins AS (INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, anonymous_id,"
          " touch_type, channel_group, tenant_id, ab_test_id, variant, conversion_value, currency, is_conversion,"
          " utm_source) VALUES " + values + " RETURNING *)"
          " INSERT INTO analytics_backlog (batch_id, touchpoints, touchpoint_id, occurred_at, lead_id, anonymous_id,"
          " touch_type, ab_test_id, variant, tenant_id) SELECT gen_random_uuid(), count(*), array_agg(touchpoint_id),"
          " array_agg(occurred_at), array_agg(lead_id), array_agg(anonymous_id), array_agg(touch_type),"
          " array_agg(ab_test_id), array_agg(variant), " + std::string(tenants ? "array_agg(tenant_id)" : "NULL") +
          " FROM ins");
  tx.commit();
  if (apply == 0) return;
  pqxx::work stage(c);
  stage.exec("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
  auto applied = stage.exec("SELECT busy, batches FROM crm_analytics_stage_run(100, 1000000)")[0];
  ASSERT_FALSE(applied[0].as<bool>());
  ASSERT_EQ(applied[1].as<int>(), apply);
  stage.commit();
}

void expect_recompute_agrees(const std::string& dsn, const std::string& what) {
  auto kept = dump(dsn);
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec("SELECT crm_analytics_recompute()");
    tx.commit();
  }
  expect_same(kept, dump(dsn), what);
  expect_invariants(dsn);
}

// A late, earlier claim moves a visitor's pre-exposure conversion from one unit to another of the same variant:
// only the CUPED sums of squares change, and they must (they did not while unchanged sums skipped the row).
TEST(Identity, AMovedPreExposureConversionKeepsTheCupedSquares) {
  auto dsn = crm_test::fresh_database("t_ident_squares");
  commit_batch(dsn, {{1, "10:00", 7, "", "experiment_exposure", "", "X", "A", "", ""},
                     {2, "10:00", 8, "", "experiment_exposure", "", "X", "A", "", ""},
                     {3, "09:00", {}, "a1", "conversion", "", "", "", "5", ""},
                     {4, "09:00", {}, "a2", "conversion", "", "", "", "3", ""},
                     {5, "08:00", 8, "a2", "identify", "", "", "", "", ""},
                     {6, "08:30", 7, "a1", "identify", "", "", "", "", ""}});
  EXPECT_EQ(text(dsn, "SELECT pre_conversions_squares || '/' || trim_scale(pre_revenue_squares) FROM ab_test_variant_stats"),
            "2/34");
  commit_batch(dsn, {{7, "07:00", 8, "a1", "identify", "", "", "", "", ""}});
  EXPECT_EQ(text(dsn, "SELECT pre_conversions_squares || '/' || trim_scale(pre_revenue_squares) FROM ab_test_variant_stats"),
            "4/64");  // lead 8: 2 conversions (5 + 3), lead 7: none
  expect_recompute_agrees(dsn, "after the visitor moved");
}

// The same anonymous id in two tenants: linking it in one takes that tenant's touchpoints off the other tenant's
// (unlinked) visitor's path, whose conversion is re-attributed.
// Once with the tenants in the backlog rows, once with rows of an earlier release (tenants looked up), and once
// with both kinds in one stage run.
void link_in_one_tenant(const std::string& name, bool first_tenants, bool second_tenants, bool one_run) {
  SCOPED_TRACE(name);
  auto dsn = crm_test::fresh_database(name);
  commit_batch(dsn, {{1, "10:00", {}, "a1", "conversion", "T1", "", "", "100", ""},
                     {2, "09:00", {}, "a1", "page_view", "T2", "", "", "", "google"},
                     {4, "09:30", {}, "a2", "page_view", "", "", "", "", "bing"}},
               first_tenants, one_run ? 0 : 1);
  if (!one_run) {
    EXPECT_EQ(text(dsn, "SELECT utm_source FROM attribution_credits WHERE model = 'first_touch'"), "google");
  }
  commit_batch(dsn, {{3, "08:00", 9, "a1", "identify", "T2", "", "", "", ""},
                     {5, "08:00", 6, "a2", "identify", "", "", "", "", ""}},
               second_tenants, one_run ? 2 : 1);
  EXPECT_EQ(text(dsn, "SELECT coalesce(utm_source, '-') || '/' || channel_group FROM attribution_credits"
                      " WHERE model = 'first_touch'"), "-/Direct");
  // Each link in its visitor's tenant ('' = none): a1 in T2 only, a2 without a tenant.
  EXPECT_EQ(text(dsn, "SELECT string_agg(tenant || ':' || anonymous_id || '>' || lead_id, ',' ORDER BY anonymous_id)"
                      " FROM identity_links"), "T2:a1>9,:a2>6");
  expect_recompute_agrees(dsn, "after the link in T2");
}

TEST(Identity, ALinkInOneTenantReattributesTheOtherTenantsVisitor) {
  link_in_one_tenant("t_ident_tenants", true, true, false);
  link_in_one_tenant("t_ident_tenants_old", false, false, false);
  link_in_one_tenant("t_ident_tenants_mixed", false, true, true);
}

// A database with events from before identity stitching: the migration rebuilds the tables once, so the
// stage continues from what a recompute gives (the visitor's page view joins the lead's earlier conversion).
TEST(Identity, TheMigrationRebuildsTheTablesOfEarlierEvents) {
  auto dsn = crm_test::fresh_database("t_ident_upgrade", false);
  {
    pqxx::connection c(dsn);
    crm::sinks::postgres::migrate(c, crm_test::migrations_before(8), {3, 3});
    pqxx::work tx(c);
    tx.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, anonymous_id,"
            " touch_type, channel_group, utm_source, conversion_value, currency, is_conversion) VALUES"
            " ('00000000-0000-4000-8000-000000000001', '2026-09-01 07:00+00', now(), NULL, 'a1', 'page_view',"
            "  'Referral', 'bing', NULL, NULL, false),"
            " ('00000000-0000-4000-8000-000000000002', '2026-09-01 08:00+00', now(), 7, 'a1', 'form_submit',"
            "  'Referral', 'google', NULL, NULL, false),"
            " ('00000000-0000-4000-8000-000000000003', '2026-09-01 12:00+00', now(), 7, NULL, 'conversion',"
            "  'Direct', NULL, 100, 'USD', true)");
    tx.exec("SELECT crm_analytics_recompute()");
    tx.commit();
  }
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM attribution_credits WHERE model = 'linear'"), 1);
  {
    pqxx::connection c(dsn);
    crm::sinks::postgres::migrate(c, crm::sinks::postgres::embedded_migrations(), {3, 3});
  }
  EXPECT_EQ(text(dsn, "SELECT lead_id || '/' || claims FROM identity_links WHERE anonymous_id = 'a1'"), "7/1");
  EXPECT_EQ(text(dsn, "SELECT string_agg(utm_source || '/' || trim_scale(credit) || '/' || stitched, ','"
                      " ORDER BY utm_source) FROM attribution_credits WHERE model = 'linear'"),
            "bing/0.5/true,google/0.5/false");
  expect_recompute_agrees(dsn, "after the upgrade");
}

// The report's "visitors linked" are the links (visitors with anonymous touchpoints, whose paths a claim changes),
// not every claimed visitor: a device two leads submitted forms from, with no anonymous touchpoint, was reported
// "1 visitors linked to a lead, 1 of them claimed by more than one lead" with nothing linked.
TEST(Identity, TheReportCountsLinksApartFromClaims) {
  auto dir = crm_test::scratch("identity-report");
  {
    std::ofstream f(dir / "claims.ndjson");
    f << tp(1, "2026-09-01T10:00:00Z", R"("anonymous_id":"dev-1","lead_id":700,"touch_type":"form_submit")")
      << tp(2, "2026-09-01T11:00:00Z", R"("anonymous_id":"dev-1","lead_id":701,"touch_type":"form_submit")");
  }
  auto dsn = imported("t_ident_report", dir / "claims.ndjson", 1, 10);
  auto r = run("report attribution --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("0 visitors linked to a lead, 0 of them claimed by more than one lead (the first link won); 1 "
                       "visitors claimed by a lead in all"),
            std::string::npos)
      << r.out;
}

// An identify event without both ids is refused with its reason and kept as a dead letter.
TEST(Identity, IdentifyWithoutBothIdsIsDeadLettered) {
  auto dir = crm_test::scratch("identity-bad");
  {
    std::ofstream f(dir / "bad.ndjson");
    f << tp(1, "2026-09-01T10:00:00Z", R"("anonymous_id":"a1","touch_type":"identify")")
      << tp(2, "2026-09-01T10:00:00Z", R"("lead_id":4,"touch_type":"identify")");
  }
  auto dsn = crm_test::fresh_database("t_ident_bad");
  auto r = run("import --no-progress --dsn '" + dsn + "' " + (dir / "bad.ndjson").string());
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE reason LIKE 'lead_id: missing (touch_type"
                                 " identify links an anonymous_id to a lead_id%'"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE reason LIKE 'anonymous_id: missing%'"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 0);
}

}  // namespace
