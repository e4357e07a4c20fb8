// A/B statistics against published reference values and hand-computed cases; each reference names its
// source. Values quoted to more digits than the source prints were recomputed with SciPy 1.10
// (scipy.stats.ttest_ind(equal_var=False), chisquare, norm, and quad over beta.pdf * beta.cdf).
#include <cmath>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include "transform/stats/ab_stats.h"

namespace {

namespace ab = crm::transform::ab;

ab::variant_counts from_values(const std::string& name, const std::vector<double>& values) {
  ab::variant_counts v;
  v.variant = name;
  v.units = values.size();
  for (double x : values) {
    v.revenue += x;
    v.revenue_squares += x * x;
  }
  return v;
}

// Wikipedia, "Welch's t-test", Example 1: t = -2.46, df = 24.99, p = 0.021.
TEST(AbStats, WelchMatchesTheWikipediaExample) {
  const std::vector<double> a1 = {27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4};
  const std::vector<double> a2 = {27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4};
  auto s1 = ab::summarize(from_values("a1", a1));
  auto s2 = ab::summarize(from_values("a2", a2));
  EXPECT_NEAR(s1.revenue_per_unit, 20.82, 1e-12);
  EXPECT_NEAR(s1.revenue_per_unit_sd * s1.revenue_per_unit_sd, 7.867428571428573, 1e-9);
  auto t = ab::welch(s1.revenue_per_unit, s1.revenue_per_unit_sd * s1.revenue_per_unit_sd, 15, s2.revenue_per_unit,
                     s2.revenue_per_unit_sd * s2.revenue_per_unit_sd, 15);
  ASSERT_TRUE(t.defined);
  EXPECT_NEAR(t.t, -2.455356398286006, 1e-9);
  EXPECT_NEAR(t.df, 24.98852929023142, 1e-7);
  EXPECT_NEAR(t.p_value, 0.021378001462866985, 1e-9);
}

// Mendel's dihybrid pea counts 315/108/101/32 against 9:3:3:1, the textbook goodness-of-fit example
// (e.g. Agresti, "An Introduction to Categorical Data Analysis", 1.5): chi2 = 0.470, df = 3, p = 0.925.
TEST(AbStats, ChiSquareGoodnessOfFitMendel) {
  auto r = ab::chi_square_gof({315, 108, 101, 32}, {9, 3, 3, 1});
  EXPECT_NEAR(r.chi2, 0.4700239808153477, 1e-12);
  EXPECT_EQ(r.df, 3);
  EXPECT_NEAR(r.p_value, 0.925425895103616, 1e-9);
  EXPECT_FALSE(r.flagged);
}

TEST(AbStats, SampleRatioMismatchIsFlagged) {
  // 50/50 expected, 10000 vs 10500 observed: chi2 = 500^2/10250 * 2 = 12.195..., p = 4.8e-4 < 0.001.
  auto r = ab::chi_square_gof({10000, 10500}, {});
  EXPECT_NEAR(r.chi2, 2 * 250.0 * 250.0 / 10250.0, 1e-9);
  EXPECT_LT(r.p_value, 0.001);
  EXPECT_TRUE(r.flagged);
  // A variant nobody should get (weight 0) that got units: infinite mismatch.
  auto bad = ab::chi_square_gof({10, 10, 1}, {1, 1, 0});
  EXPECT_TRUE(bad.flagged);
}

// Pooled two-proportion z-test, hand-computed: 200/1000 vs 250/1000, p = 0.225,
// se = sqrt(0.225 * 0.775 * 0.002), z = -0.05 / se = -2.6774. Cross-check: z^2 equals Pearson's chi-square of
// the 2x2 table without continuity correction (7.16846), the identity R's prop.test(correct = FALSE) relies on.
TEST(AbStats, TwoProportionZ) {
  auto z = ab::two_proportion_z(200, 1000, 250, 1000);
  ASSERT_TRUE(z.defined);
  EXPECT_NEAR(z.z, -2.677397763008329, 1e-12);
  EXPECT_NEAR(z.z * z.z, 7.168458781362007, 1e-9);
  EXPECT_NEAR(z.p_value, 0.007419649261025687, 1e-12);
  EXPECT_FALSE(ab::two_proportion_z(0, 100, 0, 100).defined);  // no conversions at all: undefined
  EXPECT_FALSE(ab::two_proportion_z(0, 0, 1, 10).defined);
}

// P(X > Y) for Beta posteriors: Evan Miller, "Formulas for Bayesian A/B Testing" (closed form); checked
// by hand for Beta(2,1) vs Beta(1,1) (= 2/3) and by numerical integration for the others.
TEST(AbStats, ProbabilityToBeatControl) {
  EXPECT_NEAR(ab::prob_beta_greater(2, 1, 1, 1), 2.0 / 3, 1e-12);
  EXPECT_NEAR(ab::prob_beta_greater(1, 1, 1, 1), 0.5, 1e-12);
  EXPECT_NEAR(ab::prob_beta_greater(31, 71, 21, 81), 0.9476031033523694, 1e-9);
  EXPECT_NEAR(ab::prob_beta_greater(251, 751, 201, 801), 0.9962833291304382, 1e-9);
  // Symmetry: both orders (the sum runs over the smaller first parameter) agree.
  EXPECT_NEAR(ab::prob_beta_greater(21, 81, 31, 71), 1 - 0.9476031033523694, 1e-9);
}

TEST(AbStats, ReportPutsItTogether) {
  std::vector<ab::variant_counts> v(2);
  v[0].variant = "B";
  v[0].units = 1000;
  v[0].conversions = 250;
  v[0].revenue = 2500;
  v[0].revenue_squares = 250 * 100.0;  // 250 units of revenue 10
  v[1].variant = "A";
  v[1].units = 1000;
  v[1].conversions = 200;
  v[1].revenue = 2000;
  v[1].revenue_squares = 200 * 100.0;
  v[1].contaminated = 3;
  auto r = ab::analyze("t", v, "", {});
  EXPECT_EQ(r.control, "A");  // default: the first variant by name
  ASSERT_EQ(r.variants.size(), 2u);
  EXPECT_EQ(r.variants[0].variant, "A");
  ASSERT_EQ(r.comparisons.size(), 1u);
  const auto& c = r.comparisons[0];
  EXPECT_EQ(c.variant, "B");
  EXPECT_NEAR(c.abs_lift, 0.05, 1e-12);
  ASSERT_TRUE(c.rel_lift);
  EXPECT_NEAR(*c.rel_lift, 0.25, 1e-12);
  // Unpooled Wald: 0.05 +- 1.959963984540054 * sqrt(0.25*0.75/1000 + 0.2*0.8/1000).
  const double se = std::sqrt(0.25 * 0.75 / 1000 + 0.2 * 0.8 / 1000);
  EXPECT_NEAR(c.ci95_low, 0.05 - 1.959963984540054 * se, 1e-12);
  EXPECT_NEAR(c.ci95_high, 0.05 + 1.959963984540054 * se, 1e-12);
  EXPECT_NEAR(*c.z, 2.677397763008329, 1e-12);
  EXPECT_NEAR(c.prob_beat_control, ab::prob_beta_greater(251, 751, 201, 801), 1e-12);
  ASSERT_TRUE(c.revenue_t);
  EXPECT_GT(*c.revenue_t, 0);
  // SRM counts contaminated units too: 1000 vs 1003.
  EXPECT_NEAR(r.srm.chi2, 2 * 1.5 * 1.5 / 1001.5, 1e-12);
  EXPECT_FALSE(r.srm.flagged);
  // An explicit control, and JSON with the contract's keys.
  auto r2 = ab::analyze("t", v, "B", {{"A", 1}, {"B", 1}});
  EXPECT_EQ(r2.control, "B");
  auto json = ab::to_json(r);
  for (const char* key : {"\"test_id\"", "\"control\"", "\"variants\"", "\"variant\"", "\"units\"", "\"conversions\"",
                          "\"rate\"", "\"revenue\"", "\"revenue_per_unit\"", "\"revenue_per_unit_sd\"",
                          "\"comparisons\"", "\"abs_lift\"", "\"rel_lift\"", "\"ci95_low\"", "\"ci95_high\"", "\"z\"",
                          "\"p_value\"", "\"revenue_t\"", "\"revenue_df\"", "\"revenue_p_value\"",
                          "\"prob_beat_control\"", "\"srm\"", "\"chi2\"", "\"df\"", "\"flagged\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << " in " << json;
  }
}

}  // namespace
