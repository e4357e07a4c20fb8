// The attribution models and the A/B unit rules, on hand-computed cases, against the real functions of
// schemas/0002_attribution.sql in a real PostgreSQL (touchpoints inserted directly, then a recompute).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "sinks/postgres/attribution.h"
#include "support/test_db.h"

namespace {

namespace pg = crm::sinks::postgres;

// T = the conversion time used throughout.
constexpr const char* T = "2026-10-15 00:00:00+00";

class AttributionModels : public ::testing::Test {
 protected:
  void SetUp() override {
    // One database per test: ctest runs the tests of this file in parallel processes.
    std::string name = std::string("t_am_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    dsn_ = crm_test::fresh_database(name.substr(0, 63));
    conn_ = std::make_unique<pqxx::connection>(dsn_);
  }

  // Inserts a touchpoint `days_before` T (negative = after). Returns its id.
  std::string touch(long lead, double days_before, const std::string& type, const std::string& channel_group,
                    double value = 0, const std::string& test = "", const std::string& variant = "",
                    const std::string& anonymous = "") {
    pqxx::work tx(*conn_);
    auto opt = [](bool set, const std::string& v) { return set ? v.c_str() : static_cast<const char*>(nullptr); };
    const std::string lead_s = std::to_string(lead), value_s = std::to_string(value),
                      campaign_s = std::to_string(++campaign_);
    auto id = tx.exec_params(
                    "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, anonymous_id,"
                    " touch_type, channel_group, campaign_id, conversion_value, ab_test_id, variant)"
                    " VALUES (gen_random_uuid(), $1::timestamptz - make_interval(secs => $2::float8 * 86400), now(),"
                    " $3::bigint, $4, $5, $6, $7::bigint, $8::numeric, $9, $10) RETURNING touchpoint_id::text",
                    T, days_before, opt(lead > 0, lead_s), opt(!anonymous.empty(), anonymous), type, channel_group,
                    campaign_s, opt(type == "conversion", value_s), opt(!test.empty(), test),
                    opt(!variant.empty(), variant))[0][0]
                  .as<std::string>();
    tx.commit();
    return id;
  }

  void recompute() { pg::recompute_analytics(*conn_, {}); }

  // model -> touchpoint id ("" = no touchpoint) -> (credit, revenue_credit), for one conversion.
  using model_credits = std::map<std::string, std::map<std::string, std::pair<double, double>>>;
  model_credits credits(const std::string& conversion) {
    model_credits out;
    pqxx::read_transaction tx(*conn_);
    for (const auto& r : tx.exec_params("SELECT model, coalesce(touchpoint_id::text, ''), credit::float8,"
                                        " revenue_credit::float8, channel_group FROM attribution_credits"
                                        " WHERE conversion_id = $1::uuid",
                                        conversion)) {
      out[r[0].as<std::string>()][r[1].as<std::string>()] = {r[2].as<double>(), r[3].as<double>()};
    }
    return out;
  }

  // Lead 1 converts at T for `value`; after a recompute, the credits of that conversion.
  model_credits conversion_credits(double value) {
    auto c = touch(1, 0, "conversion", "Direct", value);
    recompute();
    return credits(c);
  }

  // Every model's credits of every conversion sum to exactly 1 (numeric, not approximately).
  void expect_exact_sums() {
    EXPECT_EQ(crm_test::count(dsn_, "SELECT count(*) FROM (SELECT conversion_id, model FROM attribution_credits"
                                    " GROUP BY 1, 2 HAVING sum(credit) <> 1) x"),
              0);
    EXPECT_EQ(crm_test::count(dsn_, "SELECT count(*) FROM (SELECT c.touchpoint_id FROM customer_touchpoints c"
                                    " CROSS JOIN (VALUES ('first_touch'), ('last_touch'), ('linear'), ('time_decay'),"
                                    " ('position_based'), ('last_non_direct')) m(model)"
                                    " WHERE c.touch_type = 'conversion' AND NOT EXISTS (SELECT 1 FROM"
                                    " attribution_credits a WHERE a.conversion_id = c.touchpoint_id"
                                    " AND a.model = m.model)) x"),
              0);
  }

  // Every one of the six models gives `conversion` one row: all the credit (1) and all of `value` to
  // `touchpoint`.
  void expect_all_credit_to(const std::string& conversion, const std::string& touchpoint, double value) {
    auto got = credits(conversion);
    ASSERT_EQ(got.size(), 6u);
    for (const auto& [model, rows] : got) {
      ASSERT_EQ(rows.size(), 1u) << model;
      EXPECT_EQ(rows.begin()->first, touchpoint) << model;
      EXPECT_DOUBLE_EQ(rows.begin()->second.first, 1.0) << model;
      EXPECT_DOUBLE_EQ(rows.begin()->second.second, value) << model;
    }
  }

  std::string dsn_;
  std::unique_ptr<pqxx::connection> conn_;
  long campaign_ = 0;
};

TEST_F(AttributionModels, OneTouchGetsEverything) {
  auto a = touch(1, 1, "page_view", "Paid Search");
  auto c = touch(1, 0, "conversion", "Direct", 80);
  recompute();
  ASSERT_NO_FATAL_FAILURE(expect_all_credit_to(c, a, 80));
  expect_exact_sums();
}

TEST_F(AttributionModels, TwoTouches) {
  auto a = touch(1, 14, "ad_click", "Paid Search");
  auto b = touch(1, 7, "page_view", "Direct");
  auto got = conversion_credits(90);
  EXPECT_EQ(got["first_touch"].size(), 1u);
  EXPECT_DOUBLE_EQ(got["first_touch"][a].first, 1);
  EXPECT_EQ(got["last_touch"].size(), 1u);
  EXPECT_DOUBLE_EQ(got["last_touch"][b].first, 1);
  EXPECT_DOUBLE_EQ(got["linear"][a].first, 0.5);
  EXPECT_DOUBLE_EQ(got["linear"][b].first, 0.5);
  EXPECT_DOUBLE_EQ(got["position_based"][a].first, 0.5);
  EXPECT_DOUBLE_EQ(got["position_based"][b].first, 0.5);
  // Half-life 7 days: weights 2^-2 and 2^-1, normalized: 1/3 and 2/3.
  EXPECT_NEAR(got["time_decay"][a].first, 1.0 / 3, 1e-12);
  EXPECT_NEAR(got["time_decay"][b].first, 2.0 / 3, 1e-12);
  EXPECT_NEAR(got["time_decay"][b].second, 60.0, 1e-9);
  // The last touch is Direct: last_non_direct goes back to the ad click.
  EXPECT_EQ(got["last_non_direct"].size(), 1u);
  EXPECT_DOUBLE_EQ(got["last_non_direct"][a].first, 1);
  expect_exact_sums();
}

TEST_F(AttributionModels, FourTouchesPositionAndDecay) {
  auto a = touch(1, 21, "email_click", "Email");
  auto b = touch(1, 14, "page_view", "Direct");
  auto c2 = touch(1, 7, "ad_click", "Paid Social");
  auto d = touch(1, 1, "page_view", "Direct");
  auto got = conversion_credits(100);
  EXPECT_DOUBLE_EQ(got["first_touch"][a].first, 1);
  EXPECT_DOUBLE_EQ(got["last_touch"][d].first, 1);
  EXPECT_DOUBLE_EQ(got["last_non_direct"][c2].first, 1);
  for (const auto& id : {a, b, c2, d}) EXPECT_DOUBLE_EQ(got["linear"][id].first, 0.25);
  // 40% first, 40% last, 20% shared by the two in the middle.
  EXPECT_DOUBLE_EQ(got["position_based"][a].first, 0.4);
  EXPECT_DOUBLE_EQ(got["position_based"][b].first, 0.1);
  EXPECT_DOUBLE_EQ(got["position_based"][c2].first, 0.1);
  EXPECT_DOUBLE_EQ(got["position_based"][d].first, 0.4);
  EXPECT_DOUBLE_EQ(got["position_based"][d].second, 40.0);
  // 2^(-(T - t)/7d) for t = T-21d, T-14d, T-7d, T-1d, normalized.
  const double w[] = {std::pow(2, -3.0), std::pow(2, -2.0), std::pow(2, -1.0), std::pow(2, -1.0 / 7)};
  const double sum = w[0] + w[1] + w[2] + w[3];
  const std::string ids[] = {a, b, c2, d};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(got["time_decay"][ids[i]].first, w[i] / sum, 1e-11) << i;
  expect_exact_sums();
}

TEST_F(AttributionModels, ThreeWayLinearSumsToExactlyOne) {
  touch(1, 3, "page_view", "Referral");
  touch(1, 2, "page_view", "Referral");
  touch(1, 1, "page_view", "Referral");
  auto got = conversion_credits(10);
  ASSERT_EQ(got["linear"].size(), 3u);
  for (const auto& [id, cr] : got["linear"]) EXPECT_NEAR(cr.first, 1.0 / 3, 1e-12);
  // Position-based with n = 3: the middle one alone shares 20%.
  std::vector<double> pb;
  for (const auto& [id, cr] : got["position_based"]) pb.push_back(cr.first);
  std::sort(pb.begin(), pb.end());
  EXPECT_DOUBLE_EQ(pb[0], 0.2);
  EXPECT_DOUBLE_EQ(pb[1], 0.4);
  EXPECT_DOUBLE_EQ(pb[2], 0.4);
  expect_exact_sums();
}

TEST_F(AttributionModels, EmptyPathGivesOneDirectRowWithoutTouchpoint) {
  touch(1, 31, "page_view", "Paid Search");    // older than the 30-day lookback
  touch(1, 0, "page_view", "Paid Search");     // at T: not before T
  touch(1, -1, "page_view", "Paid Search");    // after T
  touch(1, 2, "experiment_exposure", "Direct", 0, "t", "A");  // exposures are not touches
  touch(2, 1, "page_view", "Email");           // another lead
  auto c = touch(1, 0, "conversion", "Direct", 25);
  recompute();
  ASSERT_NO_FATAL_FAILURE(expect_all_credit_to(c, "", 25));  // "": the row without touchpoint
  EXPECT_EQ(crm_test::count(dsn_, "SELECT count(*) FROM attribution_credits WHERE touchpoint_id IS NULL"
                                  " AND channel_group = 'Direct'"),
            6);
  expect_exact_sums();
}

TEST_F(AttributionModels, LookbackBoundaryAndEarlierConversions) {
  auto edge = touch(1, 30, "page_view", "Email");        // exactly T - 30 days: inside
  touch(1, 30.0001, "page_view", "Email");               // just before: outside
  auto prev = touch(1, 3, "conversion", "Direct", 5);   // an earlier conversion is not a touch
  auto got = conversion_credits(10);
  ASSERT_EQ(got["linear"].size(), 1u);
  EXPECT_DOUBLE_EQ(got["linear"][edge].first, 1);
  EXPECT_EQ(credits(prev)["linear"].count(edge), 1u);
  expect_exact_sums();
}

TEST_F(AttributionModels, AllDirectLastNonDirectFallsBackToLastTouch) {
  touch(1, 5, "page_view", "Direct");
  auto last = touch(1, 2, "page_view", "Direct");
  auto got = conversion_credits(10);
  ASSERT_EQ(got["last_non_direct"].size(), 1u);
  EXPECT_DOUBLE_EQ(got["last_non_direct"][last].first, 1);
}

TEST_F(AttributionModels, AnonymousVisitorsHaveTheirOwnPaths) {
  auto a = touch(0, 2, "page_view", "Organic Search", 0, "", "", "visitor-1");
  touch(0, 1, "page_view", "Paid Search", 0, "", "", "visitor-2");
  auto c = touch(0, 0, "conversion", "Direct", 10, "", "", "visitor-1");
  recompute();
  auto got = credits(c);
  ASSERT_EQ(got["linear"].size(), 1u);
  EXPECT_DOUBLE_EQ(got["linear"][a].first, 1);
}

TEST_F(AttributionModels, SettingsChangeWithARecompute) {
  auto a = touch(1, 20, "page_view", "Email");
  auto c = touch(1, 0, "conversion", "Direct", 10);
  pg::recompute_analytics(*conn_, {10, 1});
  EXPECT_EQ(credits(c)["linear"].count(a), 0u);  // 20 days > 10-day lookback
  auto r = pg::recompute_analytics(*conn_, {30, 7});
  EXPECT_EQ(r.lookback, "30 days");
  EXPECT_EQ(credits(c)["linear"].count(a), 1u);
}

TEST_F(AttributionModels, DailyAggregateEqualsTheSumOfCredits) {
  touch(1, 20, "page_view", "Email");
  touch(1, 2, "ad_click", "Paid Search");
  touch(1, 0, "conversion", "Direct", 10);
  touch(2, 0.5, "page_view", "Email");
  touch(2, -0.5, "conversion", "Direct", 7.5);
  recompute();
  EXPECT_GT(crm_test::count(dsn_, "SELECT count(*) FROM campaign_attribution_daily"), 0);
  EXPECT_EQ(crm_test::count(
                dsn_,
                "SELECT count(*) FROM ((SELECT day, model, campaign_id, utm_source, utm_medium, utm_campaign,"
                " channel_group, conversions, revenue FROM campaign_attribution_daily) EXCEPT"
                " (SELECT (conversion_occurred_at AT TIME ZONE 'UTC')::date, model, campaign_id, utm_source,"
                " utm_medium, utm_campaign, channel_group, sum(credit), sum(revenue_credit) FROM attribution_credits"
                " GROUP BY 1, 2, 3, 4, 5, 6, 7)) x"),
            0);
}

// A/B units: the first exposure fixes the variant, another variant contaminates, conversions count after the
// first exposure and inside the window, once per unit for the rate, all of them for revenue.
TEST_F(AttributionModels, AbTestUnits) {
  // lead 1: A, converts twice inside the window (10 + 5) -> converted, revenue 15
  touch(1, 10, "experiment_exposure", "Direct", 0, "t", "A");
  touch(1, 9, "conversion", "Direct", 10);
  touch(1, 8, "experiment_exposure", "Direct", 0, "t", "A");  // same variant again: still clean
  touch(1, 5, "conversion", "Direct", 5);
  // lead 2: B; a conversion before exposure and one after the 30-day window do not count
  touch(2, 40, "conversion", "Direct", 99);
  touch(2, 35, "experiment_exposure", "Direct", 0, "t", "B");
  touch(2, 4, "conversion", "Direct", 99);
  // lead 3: B then A -> contaminated (counted under B, outside the statistics)
  touch(3, 6, "experiment_exposure", "Direct", 0, "t", "B");
  touch(3, 5, "experiment_exposure", "Direct", 0, "t", "A");
  touch(3, 1, "conversion", "Direct", 50);
  // anonymous visitor: A, converts for 20
  touch(0, 3, "experiment_exposure", "Direct", 0, "t", "A", "v9");
  touch(0, 2, "conversion", "Direct", 20, "", "", "v9");
  recompute();
  pqxx::read_transaction tx(*conn_);
  auto rows = tx.exec("SELECT variant, units, converted_units, revenue_sum::float8, revenue_sum_squares::float8,"
                      " contaminated_units FROM ab_test_variant_stats WHERE ab_test_id = 't' ORDER BY variant");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][0].as<std::string>(), "A");
  EXPECT_EQ(rows[0][1].as<int>(), 2);
  EXPECT_EQ(rows[0][2].as<int>(), 2);
  EXPECT_DOUBLE_EQ(rows[0][3].as<double>(), 35);
  EXPECT_DOUBLE_EQ(rows[0][4].as<double>(), 15 * 15 + 20 * 20);
  EXPECT_EQ(rows[0][5].as<int>(), 0);
  EXPECT_EQ(rows[1][0].as<std::string>(), "B");
  EXPECT_EQ(rows[1][1].as<int>(), 1);
  EXPECT_EQ(rows[1][2].as<int>(), 0);
  EXPECT_DOUBLE_EQ(rows[1][3].as<double>(), 0);
  EXPECT_EQ(rows[1][5].as<int>(), 1);
}

}  // namespace
