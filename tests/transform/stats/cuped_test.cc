// CUPED (Deng, Xu, Kohavi, Walker, WSDM 2013) against a reference implementation and the definition.
//
// Reference: GrowthBook's gbstats 0.8.0 (growthbook/growthbook, packages/stats, commit
// 8f1db4456915a8e7b7faf23d5632ca7219d2f469): TwoSidedTTest(FrequentistConfig(difference_type="absolute")) on
// two RegressionAdjustedStatistic(post_statistic=SampleMeanStatistic(...), pre_statistic=SampleMeanStatistic
// (...), post_pre_sum_of_products=..., theta=None) (theta pooled by compute_theta), run with Debian's NumPy
// 1.24 / SciPy 1.10 and printed with repr(); the unadjusted standard errors from the same TwoSidedTTest on
// the post statistics alone. The revenue sums are those of gbstats' test_sequential_test_runs_ra with sums
// of products 5000 (control) and 7500 (variant) instead of 1.
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "transform/stats/ab_stats.h"
#include "transform/stats/cuped.h"

namespace {

namespace ab = crm::transform::ab;

ab::variant_counts arm(const char* name, std::uint64_t units, std::uint64_t conversions) {
  ab::variant_counts v;
  v.variant = name;
  v.units = units;
  v.conversions = conversions;
  return v;
}

// gbstats' numbers for one comparison (variance_reduction from its adjusted and unadjusted standard errors).
struct gbstats_numbers { double theta, diff, std_error, df, ci95_low, ci95_high, raw_std_error; };

void expect_gbstats(const ab::cuped_result& c, const gbstats_numbers& g) {
  ASSERT_TRUE(c.available) << c.reason;
  EXPECT_NEAR(c.theta, g.theta, 1e-9);
  EXPECT_NEAR(c.diff, g.diff, 1e-9);
  EXPECT_NEAR(c.std_error, g.std_error, 1e-9);
  EXPECT_NEAR(c.df, g.df, 1e-6);
  EXPECT_NEAR(c.ci95_low, g.ci95_low, 1e-9);
  EXPECT_NEAR(c.ci95_high, g.ci95_high, 1e-9);
  EXPECT_NEAR(c.raw_std_error, g.raw_std_error, 1e-9);
  const double ratio = g.std_error / g.raw_std_error;
  EXPECT_NEAR(c.variance_reduction, 1 - ratio * ratio, 1e-9);
  // The adjusted means keep the pooled level: mean y - theta (mean x - pooled mean x).
  EXPECT_NEAR(c.variant_mean - c.control_mean, c.diff, 1e-12);
}

TEST(AbCuped, RevenueMatchesGbstats) {
  ab::variant_counts a = arm("A", 3000, 100), b = arm("B", 3461, 100);
  std::tie(a.revenue, a.revenue_squares, a.pre_revenue, a.pre_revenue_squares, a.pre_revenue_cross) =
      std::tuple{1396.87, 52377.9767, 16.87, 527.9767, 5000.0};
  std::tie(b.revenue, b.revenue_squares, b.pre_revenue, b.pre_revenue_squares, b.pre_revenue_cross) =
      std::tuple{2422.7, 134698.29, 22.7, 1348.29, 7500.0};
  const auto r = ab::analyze("t", {a, b}, "A", {});
  const auto& c = r.comparisons.at(0).cuped_revenue;
  expect_gbstats(c, {6.650557194086927, 0.22815530516352084, 0.0934734630218924, 4295.339037810617,
                     0.04489904540285783, 0.41141156492418385, 0.12983081254184736});
  EXPECT_NEAR(c.control_var, 2.8925098927142514, 1e-9);
  EXPECT_NEAR(c.variant_var, 26.902762523056886, 1e-9);
  EXPECT_NEAR(c.p_value, 0.014692600841235803, 1e-9);
}

// Conversion: y = converted (0/1, so sum y^2 = sum y), x = pre-exposure conversion counts (sum 1500 / 1700,
// squares 2400 / 2700, cross 900 / 1300); gbstats gets the same sums as SampleMeanStatistic.
TEST(AbCuped, ConversionMatchesGbstats) {
  ab::variant_counts a = arm("A", 3000, 1396), b = arm("B", 3461, 2422);
  std::tie(a.pre_conversions, a.pre_conversions_squares, a.pre_conversions_cross) = std::tuple{1500, 2400, 900};
  std::tie(b.pre_conversions, b.pre_conversions_squares, b.pre_conversions_cross) = std::tuple{1700, 2700, 1300};
  const auto r = ab::analyze("t", {a, b}, "A", {});
  const auto& c = r.comparisons.at(0).cuped_conversion;
  expect_gbstats(c, {0.08791295886152585, 0.23523914434516324, 0.011862996565292924, 6173.730600055791,
                     0.21198353906412784, 0.2584947496261986, 0.011986551043984474});
  EXPECT_LT(c.p_value, 1e-12);  // gbstats prints 0.0
  // No revenue covariate in this test: revenue CUPED is not available, conversion CUPED is.
  EXPECT_FALSE(r.comparisons.at(0).cuped_revenue.available);
}

// A constructed test of 2 x 2000 units, y = 2 x + noise with the same distribution in both arms: the
// variance reduction is about rho^2, rho the pooled correlation of x and y; the adjusted difference, its
// standard error and theta equal a two-pass computation over the units themselves.
TEST(AbCuped, ReductionIsAboutRhoSquared) {
  std::vector<double> x[2], y[2];
  std::uint64_t state = 12345;
  auto noise = [&] {  // a linear congruential stream, uniform on [-3, 3)
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) * 0x1.0p-53 * 6 - 3;
  };
  ab::cuped_sums sums[2];
  for (int a = 0; a < 2; ++a) {
    for (int i = 0; i < 2000; ++i) {
      const double xi = static_cast<double>((i * 37 + a * 11) % 101) / 10;
      const double yi = 2 * xi + noise() + (a == 1 ? 0.3 : 0);  // the variant lifts y by 0.3
      x[a].push_back(xi);
      y[a].push_back(yi);
      sums[a].n += 1;
      sums[a].x += xi;
      sums[a].x2 += xi * xi;
      sums[a].y += yi;
      sums[a].y2 += yi * yi;
      sums[a].xy += xi * yi;
    }
  }
  // Two passes over the pooled units: means, then centred products.
  double mx = 0, my = 0;
  for (int a = 0; a < 2; ++a)
    for (std::size_t i = 0; i < x[a].size(); ++i) mx += x[a][i], my += y[a][i];
  mx /= 4000;
  my /= 4000;
  double sxx = 0, syy = 0, sxy = 0;
  for (int a = 0; a < 2; ++a)
    for (std::size_t i = 0; i < x[a].size(); ++i)
      sxx += (x[a][i] - mx) * (x[a][i] - mx), syy += (y[a][i] - my) * (y[a][i] - my),
          sxy += (x[a][i] - mx) * (y[a][i] - my);
  const double theta = sxy / sxx, rho2 = sxy * sxy / (sxx * syy);
  double mean[2], var[2];
  for (int a = 0; a < 2; ++a) {
    std::vector<double> adj;
    for (std::size_t i = 0; i < x[a].size(); ++i) adj.push_back(y[a][i] - theta * (x[a][i] - mx));
    double m = 0, v = 0;
    for (double d : adj) m += d;
    m /= static_cast<double>(adj.size());
    for (double d : adj) v += (d - m) * (d - m);
    mean[a] = m;
    var[a] = v / static_cast<double>(adj.size() - 1);
  }
  const auto c = ab::cuped(sums[1], sums[0]);
  ASSERT_TRUE(c.available) << c.reason;
  EXPECT_NEAR(c.theta, theta, 1e-9);
  EXPECT_NEAR(c.variant_mean, mean[1], 1e-9);
  EXPECT_NEAR(c.control_mean, mean[0], 1e-9);
  EXPECT_NEAR(c.std_error, std::sqrt(var[0] / 2000 + var[1] / 2000), 1e-9);
  EXPECT_GT(rho2, 0.8);
  EXPECT_NEAR(c.variance_reduction, rho2, 0.01);
  EXPECT_LT(c.ci95_low, 0.3);
  EXPECT_GT(c.ci95_high, 0.3);
}

TEST(AbCuped, NotAvailableWithoutCovariate) {
  const auto r = ab::analyze("t", {arm("A", 1000, 100), arm("B", 1000, 130)}, "A", {});
  const auto& c = r.comparisons.at(0);
  EXPECT_FALSE(c.cuped_conversion.available);
  EXPECT_EQ(c.cuped_conversion.reason, "no pre-exposure data");
  EXPECT_FALSE(c.cuped_revenue.available);
  const auto json = ab::to_json(r);
  EXPECT_NE(json.find("\"cuped\":{\"conversion\":{\"covariate\":\"pre_conversions\",\"available\":false,\"reason\":"
                      "\"no pre-exposure data\"},\"revenue\":{\"covariate\":\"pre_revenue\",\"available\":false"),
            std::string::npos)
      << json;
  EXPECT_EQ(json.find("\"theta\""), std::string::npos);  // no number for what was not computed
  EXPECT_NE(ab::to_table(r).find("conversion  not available: no pre-exposure data"), std::string::npos);
  // Every unit had exactly one pre-exposure conversion: the covariate has no variance.
  auto a = arm("A", 10, 1), b = arm("B", 10, 2);
  a.pre_conversions = a.pre_conversions_squares = 10;
  b.pre_conversions = b.pre_conversions_squares = 10;
  b.pre_conversions_cross = 2;
  a.pre_conversions_cross = 1;
  const auto flat = ab::cuped(ab::conversion_sums(b), ab::conversion_sums(a));
  EXPECT_FALSE(flat.available);
  EXPECT_EQ(flat.reason, "the covariate has no variance");
  EXPECT_FALSE(ab::cuped({1, 1, 1, 1, 1, 1}, {1, 0, 0, 2, 4, 0}).available);  // one unit an arm
}

TEST(AbCuped, ReportCarriesSequentialAndCuped) {
  auto a = arm("A", 1000, 100), b = arm("B", 1000, 130);
  a.pre_conversions = 150, a.pre_conversions_squares = 210, a.pre_conversions_cross = 40;
  b.pre_conversions = 160, b.pre_conversions_squares = 220, b.pre_conversions_cross = 50;
  const auto r = ab::analyze("t", {a, b}, "A", {}, {.alpha = 0.1, .tuning_units = 2000});
  const auto json = ab::to_json(r);
  for (const char* key :
       {"\"sequential\":{\"method\":\"normal-mixture mSPRT (Johari et al. 2022; Howard et al. 2021)\"",
        "\"alpha\":0.1", "\"tuning_units\":2000", "\"mixture_rho\"", "\"ci_low\"", "\"ci_high\"",
        "\"revenue_p_value\":null", "\"revenue_ci_low\":null", "\"revenue_ci_high\":null",
        "\"cuped\":{\"conversion\":{\"covariate\":\"pre_conversions\",\"available\":true,\"theta\"",
        "\"variant_mean\"", "\"control_mean\"", "\"std_error\"", "\"df\"", "\"raw_std_error\"",
        "\"variance_reduction\"", "\"prob_beat_control\"", "\"srm\":{"}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
  }
  EXPECT_NE(json.find(",\"sequential\":"), std::string::npos);
  EXPECT_EQ(json.back(), '}');
  const auto table = ab::to_table(r);
  EXPECT_NE(table.find("always valid, safe to read at any look"), std::string::npos) << table;
  EXPECT_NE(table.find("CUPED"), std::string::npos);
  EXPECT_NE(table.find("revenue     not available"), std::string::npos) << table;
  EXPECT_NE(table.find("sample ratio"), std::string::npos);
}

}  // namespace
