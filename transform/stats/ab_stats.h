// A/B-test statistics from per-variant sufficient statistics (units, converted units, revenue sum and sum
// of squares): conversion rate, revenue per unit, lift with a Wald interval, the pooled two-proportion
// z-test, Welch's t-test on revenue per unit, the Bayesian probability to beat control (Beta posteriors)
// and the sample-ratio-mismatch chi-square test; the always-valid (sequential) p-value and confidence
// sequence of both lifts (sequential.h) and CUPED on each unit's pre-exposure covariate (cuped.h). Pure
// functions, no I/O; distributions from Boost.Math.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "transform/stats/cuped.h"
#include "transform/stats/sequential.h"

namespace crm::transform::ab {

struct variant_counts {
  std::string variant;
  std::uint64_t units = 0;            // clean units (not contaminated)
  std::uint64_t conversions = 0;      // converted clean units
  double revenue = 0;                 // sum of revenue per clean unit
  double revenue_squares = 0;         // sum of squared revenue per clean unit
  std::uint64_t contaminated = 0;     // units exposed to more than one variant
  // CUPED covariates, over the same clean units: x = the unit's conversions before its first exposure
  // (pre_conversions = sum x, _squares = sum x^2, _cross = sum x * converted) and x = its revenue before
  // its first exposure (pre_revenue = sum x, _squares = sum x^2, _cross = sum x * the unit's revenue).
  // All 0 = no pre-exposure data: CUPED is reported as not available.
  double pre_conversions = 0, pre_conversions_squares = 0, pre_conversions_cross = 0;
  double pre_revenue = 0, pre_revenue_squares = 0, pre_revenue_cross = 0;
};

struct variant_summary {
  std::string variant;
  std::uint64_t units = 0, conversions = 0, contaminated = 0;
  double rate = 0;                    // conversions / units (0 when no units)
  double revenue = 0;
  double revenue_per_unit = 0;        // mean
  double revenue_per_unit_sd = 0;     // sample standard deviation (n - 1)
};

struct comparison {
  std::string variant, control;
  double abs_lift = 0;                // rate - control rate
  std::optional<double> rel_lift;     // abs_lift / control rate; none when the control rate is 0
  double ci95_low = 0, ci95_high = 0; // unpooled Wald interval of abs_lift
  std::optional<double> z, p_value;   // pooled two-proportion z-test; none when undefined
  std::optional<double> revenue_t, revenue_df, revenue_p_value;  // Welch; none when undefined
  double prob_beat_control = 0.5;     // P(p_variant > p_control), Beta(1 + x, 1 + n - x) posteriors
  sequential_result sequential;       // always valid, on abs_lift (unpooled Bernoulli standard error)
  sequential_result revenue_sequential;  // always valid, on the revenue-per-unit difference (Welch's se)
  cuped_result cuped_conversion;      // x = pre-exposure conversions
  cuped_result cuped_revenue;         // x = pre-exposure revenue
};

struct srm_result {
  double chi2 = 0;
  int df = 0;
  double p_value = 1;
  bool flagged = false;               // p_value < 0.001
};

struct report {
  std::string test_id, control;
  std::vector<variant_summary> variants;
  std::vector<comparison> comparisons;
  srm_result srm;
  sequential_options sequential;      // the options the sequential results were computed with
};

variant_summary summarize(const variant_counts& c);

// Two-sided p-value of the pooled two-proportion z-test, and its z.
struct z_test { double z = 0, p_value = 1; bool defined = false; };
z_test two_proportion_z(std::uint64_t x1, std::uint64_t n1, std::uint64_t x2, std::uint64_t n2);

// Welch's unequal-variance t-test of mean1 - mean2 (sample variances var1, var2).
struct t_test { double t = 0, df = 0, p_value = 1; bool defined = false; };
t_test welch(double mean1, double var1, double n1, double mean2, double var2, double n2);

// P(X > Y) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2) with integer parameters (exact sum; Evan Miller,
// "Formulas for Bayesian A/B Testing", 2015).
double prob_beta_greater(std::uint64_t a1, std::uint64_t b1, std::uint64_t a2, std::uint64_t b2);

// Chi-square goodness of fit of `observed` against `weights` (any positive scale; empty = equal).
srm_result chi_square_gof(const std::vector<std::uint64_t>& observed, const std::vector<double>& weights);

// The whole report; variants are listed by name. `control` empty (or unknown) = the first variant by name.
// `weights` by variant name (empty = equal; a variant without a weight expects no units, so any unit of it
// is a mismatch). The SRM test counts every assigned unit, clean and contaminated. `sequential`: alpha and
// mixture tuning of the always-valid results.
report analyze(const std::string& test_id, std::vector<variant_counts> variants, std::string control,
               const std::map<std::string, double>& weights, const sequential_options& sequential = {});

// The CUPED sums of one variant for a metric (y = converted with x = pre-exposure conversions, or y = revenue
// with x = pre-exposure revenue).
cuped_sums conversion_sums(const variant_counts& v);
cuped_sums revenue_sums(const variant_counts& v);

std::string to_json(const report& r);
std::string to_table(const report& r);

}  // namespace crm::transform::ab
