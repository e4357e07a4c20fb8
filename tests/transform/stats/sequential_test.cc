// The always-valid (normal-mixture mSPRT / confidence sequence) results against two independent reference
// implementations, and a simulation of repeated peeking.
//
// confseq: Steven Howard's C++ library of the Howard et al. (2021) boundaries, v0.0.11, commit
// 70b1ef30aef08ad459815ea87fc25248f8b15178, src/confseq/uniform_boundaries.h: TwoSidedNormalMixture::best_rho,
// normal_log_mixture(s, v, v_opt, alpha_opt, is_one_sided = false) and normal_mixture_bound(v, alpha, v_opt,
// alpha_opt, is_one_sided = false), compiled with g++ 12 and printed with %.17g.
// gbstats: GrowthBook's Python statistics package 0.8.0 (growthbook/growthbook, packages/stats, commit
// 8f1db4456915a8e7b7faf23d5632ca7219d2f469), SequentialTwoSidedTTest with SequentialConfig(difference_type=
// "absolute"), run with Debian's NumPy 1.24 / SciPy 1.10 and printed with repr(). Its own unit test
// (tests/frequentist/test_tests.py, TestSequentialTTest.test_sequential_test_runs_prop) publishes the
// relative-lift interval rounded to 5 decimals; that vector is checked to its 5 decimals as well.
#include <cmath>
#include <cstdint>

#include <gtest/gtest.h>

#include "transform/stats/ab_stats.h"
#include "transform/stats/sequential.h"

namespace {

namespace ab = crm::transform::ab;

ab::variant_counts arm(const char* name, std::uint64_t units, std::uint64_t conversions, double revenue = 0,
                       double revenue_squares = 0) {
  ab::variant_counts v;
  v.variant = name;
  v.units = units;
  v.conversions = conversions;
  v.revenue = revenue;
  v.revenue_squares = revenue_squares;
  return v;
}

TEST(AbSequential, NormalMixtureMatchesConfseq) {
  struct row { double s, v, v_opt, alpha, rho, log_mixture, bound; };
  const row rows[] = {
      {10, 100, 5000, 0.05, 630.02804896281702, -0.0051687889841568746, 66.943886170660392},
      {250, 6461, 5000, 0.05, 630.02804896281702, 3.1965667158455089, 244.23708701388099},
      {-40, 1000, 1000, 0.1, 158.0063490685053, -0.30506746339596336, 87.403412021091597},
      {3, 20, 5000, 0.05, 630.02804896281702, -0.0087028086361020818, 62.569434626045116},
  };
  for (const row& r : rows) {
    const double rho = ab::normal_mixture_rho(r.v_opt, r.alpha);
    EXPECT_NEAR(rho, r.rho, 1e-9 * r.rho);
    EXPECT_NEAR(ab::normal_mixture_log_lr(r.s, r.v, rho), r.log_mixture, 1e-9);
    EXPECT_NEAR(ab::normal_mixture_boundary(r.v, rho, r.alpha), r.bound, 1e-9);
  }
}

// Control 1396/3000, variant 2422/3461: the counts of gbstats' test_sequential_test_runs_prop.
TEST(AbSequential, ConversionMatchesGbstats) {
  const auto r = ab::analyze("t", {arm("A", 3000, 1396), arm("B", 3461, 2422)}, "A", {});
  ASSERT_EQ(r.comparisons.size(), 1u);
  const auto& s = r.comparisons[0].sequential;
  ASSERT_TRUE(s.defined);
  EXPECT_NEAR(s.estimate, 0.23446441298276027, 1e-12);
  EXPECT_NEAR(s.std_error, 0.011984665588422325, 1e-12);
  EXPECT_EQ(s.units, 6461);
  EXPECT_NEAR(s.ci_low, 0.19804879693925878, 1e-9);
  EXPECT_NEAR(s.ci_high, 0.2708800290262618, 1e-9);
  EXPECT_NEAR(s.p_value / 6.300128463364595e-76, 1, 1e-9);
  // gbstats' rho is on the standard-deviation scale: rho_gb = 1 / sqrt(rho) = 0.03984006677137368.
  EXPECT_NEAR(1 / std::sqrt(s.rho), 0.03984006677137368, 1e-12);

  // The published vector (relative lift, 5 decimals): expected 0.50386, ci (0.40098, 0.60675), with the
  // delta-method standard error of the ratio that gbstats uses.
  const double ma = 1396.0 / 3000, mb = 2422.0 / 3461;
  const double va = ma * (1 - ma), vb = mb * (1 - mb);
  const double rel = mb / ma - 1;
  const double se = std::sqrt(vb / (3461 * ma * ma) + va * mb * mb / (3000 * ma * ma * ma * ma));
  EXPECT_NEAR(se, 0.03386, 5e-6);
  const auto p = ab::always_valid(rel, se, 6461);
  EXPECT_NEAR(p.ci_low, 0.40098, 5e-6);
  EXPECT_NEAR(p.ci_high, 0.60675, 5e-6);
  EXPECT_NEAR(p.ci_low, 0.4009784966859415, 1e-9);  // gbstats, unrounded
  EXPECT_NEAR(p.ci_high, 0.6067482066783576, 1e-9);
}

// 100/1000 vs 130/1000: a lift the fixed-horizon z-test calls significant (p = 0.033) that the always-valid
// p-value does not yet (gbstats: 0.37893150758579747).
TEST(AbSequential, SmallTestMatchesGbstats) {
  const auto r = ab::analyze("t", {arm("A", 1000, 100), arm("B", 1000, 130)}, "A", {});
  const auto& c = r.comparisons.at(0);
  ASSERT_TRUE(c.p_value);
  EXPECT_LT(*c.p_value, 0.05);
  ASSERT_TRUE(c.sequential.defined);
  EXPECT_NEAR(c.sequential.p_value, 0.37893150758579747, 1e-9);
  EXPECT_NEAR(c.sequential.ci_low, -0.014517962102267787, 1e-9);
  EXPECT_NEAR(c.sequential.ci_high, 0.07451796210226778, 1e-9);
}

// Revenue sums of gbstats' test_sequential_test_runs (tuning parameter 1000), absolute difference:
// (-0.17908917909394972, 0.6478425124272831), p = 1.
TEST(AbSequential, RevenueMatchesGbstats) {
  const auto r = ab::analyze("t", {arm("A", 3000, 10, 1396.87, 52377.9767), arm("B", 3461, 10, 2422.7, 134698.29)},
                             "A", {}, {.alpha = 0.05, .tuning_units = 1000});
  const auto& s = r.comparisons.at(0).revenue_sequential;
  ASSERT_TRUE(s.defined);
  EXPECT_NEAR(s.estimate, 0.23437666666666668, 1e-12);
  EXPECT_NEAR(s.std_error, 0.12983081254184736, 1e-12);
  EXPECT_NEAR(s.ci_low, -0.17908917909394972, 1e-9);
  EXPECT_NEAR(s.ci_high, 0.6478425124272831, 1e-9);
  EXPECT_EQ(s.p_value, 1.0);
  EXPECT_EQ(s.tuning_units, 1000);
  // No variance (nobody converted, no revenue): no always-valid result rather than a made-up one.
  const auto none = ab::analyze("t", {arm("A", 10, 0), arm("B", 10, 0)}, "A", {});
  EXPECT_FALSE(none.comparisons.at(0).sequential.defined);
  EXPECT_FALSE(none.comparisons.at(0).revenue_sequential.defined);
  EXPECT_NE(ab::to_json(none).find("\"p_value\":null,\"ci_low\":null"), std::string::npos);
}

// splitmix64 (Steele, Lea, Flood 2014): a fixed stream, the same on every platform.
struct rng {
  std::uint64_t state;
  double uniform() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<double>((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
  }
  std::uint64_t conversions(int units, double p) {
    std::uint64_t x = 0;
    for (int i = 0; i < units; ++i) x += uniform() < p ? 1 : 0;
    return x;
  }
};

struct peeking { double fixed_rate = 0, sequential_rate = 0, sequential_positive_rate = 0; };

// `experiments` experiments, each looked at `looks` times, every `step` units per arm; conversion rates
// p_control and p_variant. A look "rejects" when p <= 0.05; an experiment counts once if any look rejects.
peeking simulate(int experiments, int looks, int step, double p_control, double p_variant, std::uint64_t seed) {
  rng g{seed};
  int fixed = 0, sequential = 0, positive = 0;
  for (int e = 0; e < experiments; ++e) {
    std::uint64_t xa = 0, xb = 0, n = 0;
    bool fixed_hit = false, sequential_hit = false, positive_hit = false;
    for (int look = 0; look < looks; ++look) {
      xa += g.conversions(step, p_control);
      xb += g.conversions(step, p_variant);
      n += static_cast<std::uint64_t>(step);
      const auto z = ab::two_proportion_z(xb, n, xa, n);
      fixed_hit |= z.defined && z.p_value <= 0.05;
      const double N = static_cast<double>(n), pa = static_cast<double>(xa) / N, pb = static_cast<double>(xb) / N;
      const auto s = ab::always_valid(pb - pa, std::sqrt(pa * (1 - pa) / N + pb * (1 - pb) / N), 2 * N);
      if (!s.defined) continue;
      // The p-value and the confidence sequence are the same test: p <= alpha exactly when 0 is outside.
      EXPECT_EQ(s.p_value <= 0.05, s.ci_low > 0 || s.ci_high < 0) << "look " << look << " of experiment " << e;
      sequential_hit |= s.p_value <= 0.05;
      positive_hit |= s.ci_low > 0;
    }
    fixed += fixed_hit;
    sequential += sequential_hit;
    positive += positive_hit;
  }
  return {static_cast<double>(fixed) / experiments, static_cast<double>(sequential) / experiments,
          static_cast<double>(positive) / experiments};
}

// A/A: 1000 experiments at a 10% conversion rate, 50 looks of 100 more units per arm each (up to 5000 an
// arm). Peeking at the fixed-horizon z-test finds "significance" in far more than 5% of them; the
// always-valid p-value stays at or below 5% (plus a Monte Carlo margin: sd of a 5% rate over 1000 is 0.7%).
TEST(AbSequential, AlwaysValidUnderRepeatedPeeking) {
  const peeking r = simulate(1000, 50, 100, 0.10, 0.10, 20240601);
  EXPECT_GT(r.fixed_rate, 0.15) << "fixed-horizon false positives under peeking";
  EXPECT_LE(r.sequential_rate, 0.05 + 0.015) << "always-valid false positives under peeking";
  RecordProperty("fixed_rate", std::to_string(r.fixed_rate));
  RecordProperty("sequential_rate", std::to_string(r.sequential_rate));
}

// Power: 10% against 13% is found (and found positive) in most experiments by 5000 units an arm.
TEST(AbSequential, DetectsARealEffect) {
  const peeking r = simulate(200, 50, 100, 0.10, 0.13, 77);
  EXPECT_GT(r.sequential_rate, 0.8);
  EXPECT_EQ(r.sequential_positive_rate, r.sequential_rate);  // never the wrong sign
  RecordProperty("sequential_rate", std::to_string(r.sequential_rate));
}

}  // namespace
