#include "transform/stats/cuped.h"

#include <algorithm>
#include <cmath>

#include <boost/math/distributions/students_t.hpp>

#include "transform/stats/ab_stats.h"

namespace crm::transform::ab {

namespace {

// Sample (n - 1) covariance of two sums over n units.
double sample_cov(double n, double sum_a, double sum_b, double sum_ab) { return (sum_ab - sum_a * sum_b / n) / (n - 1); }

bool no_covariate(const cuped_sums& s) { return s.x == 0 && s.x2 == 0 && s.xy == 0; }

}  // namespace

double cuped_theta(const cuped_sums& a, const cuped_sums& b) {
  const double n = a.n + b.n;
  if (n < 2) return 0;
  const double x = a.x + b.x, y = a.y + b.y;
  const double var_x = a.x2 + b.x2 - x * x / n;
  if (!(var_x > 0)) return 0;
  return (a.xy + b.xy - x * y / n) / var_x;
}

cuped_result cuped(const cuped_sums& variant, const cuped_sums& control) {
  cuped_result r;
  if (no_covariate(variant) && no_covariate(control)) {
    r.reason = "no pre-exposure data";
    return r;
  }
  if (variant.n < 2 || control.n < 2) {
    r.reason = "fewer than 2 units in an arm";
    return r;
  }
  const double n = variant.n + control.n;
  const double x = variant.x + control.x;
  if (!(variant.x2 + control.x2 - x * x / n > 0)) {
    r.reason = "the covariate has no variance";
    return r;
  }
  r.theta = cuped_theta(variant, control);
  const double pooled_x = x / n;
  double raw_se2 = 0, se2 = 0;
  auto arm = [&](const cuped_sums& s, double& mean, double& var) {
    const double var_y = sample_cov(s.n, s.y, s.y, s.y2);
    const double var_x = sample_cov(s.n, s.x, s.x, s.x2);
    const double cov = sample_cov(s.n, s.x, s.y, s.xy);
    mean = s.y / s.n - r.theta * (s.x / s.n - pooled_x);
    var = std::max(0.0, var_y + r.theta * r.theta * var_x - 2 * r.theta * cov);
    raw_se2 += std::max(0.0, var_y) / s.n;
    se2 += var / s.n;
  };
  arm(variant, r.variant_mean, r.variant_var);
  arm(control, r.control_mean, r.control_var);
  r.diff = r.variant_mean - r.control_mean;
  r.std_error = std::sqrt(se2);
  r.raw_std_error = std::sqrt(raw_se2);
  const t_test t = welch(r.variant_mean, r.variant_var, variant.n, r.control_mean, r.control_var, control.n);
  if (!t.defined) {
    r.reason = "no variance after adjustment";
    return r;
  }
  r.df = t.df;
  r.p_value = t.p_value;
  const double q = boost::math::quantile(boost::math::students_t(t.df), 0.975);
  r.ci95_low = r.diff - q * r.std_error;
  r.ci95_high = r.diff + q * r.std_error;
  r.variance_reduction = raw_se2 > 0 ? 1 - se2 / raw_se2 : 0;
  r.available = true;
  return r;
}

}  // namespace crm::transform::ab
