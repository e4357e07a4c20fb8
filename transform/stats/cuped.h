// CUPED, "Controlled-experiment Using Pre-Experiment Data": Deng, Xu, Kohavi and Walker, "Improving the
// Sensitivity of Online Controlled Experiments by Utilizing Pre-Experiment Data", WSDM 2013. Each unit's
// metric y is adjusted by its pre-exposure covariate x, y - theta (x - mean x), with theta = Cov(x, y) /
// Var(x) pooled over both arms of the comparison (section 3.2 of the paper; gbstats' compute_theta does the
// same); the difference of the adjusted means estimates the same lift as the raw difference, with variance
// reduced by about rho^2 = Corr(x, y)^2. Interval and p-value: Welch's t on the adjusted per-unit variances
// (Var y + theta^2 Var x - 2 theta Cov(x, y), sample (n - 1) variances), as gbstats' TwoSidedTTest does on
// its RegressionAdjustedStatistic. From per-arm sufficient statistics only; pure functions, no I/O.
#pragma once

#include <string>

namespace crm::transform::ab {

// One arm's sums over its units: n, sum y, sum y^2, sum x, sum x^2, sum x*y.
struct cuped_sums {
  double n = 0, y = 0, y2 = 0, x = 0, x2 = 0, xy = 0;
};

struct cuped_result {
  bool available = false;
  std::string reason;                 // why not available ("no pre-exposure data", ...); empty when available
  double theta = 0;                   // pooled Cov(x, y) / Var(x)
  double variant_mean = 0, control_mean = 0;  // adjusted means: mean y - theta (mean x - pooled mean x)
  double variant_var = 0, control_var = 0;    // adjusted per-unit sample variances
  double diff = 0;                    // variant - control, adjusted
  double std_error = 0, df = 0;       // of diff; Welch-Satterthwaite degrees of freedom
  double ci95_low = 0, ci95_high = 0, p_value = 1;
  double raw_std_error = 0;           // of the unadjusted difference
  double variance_reduction = 0;      // 1 - std_error^2 / raw_std_error^2 (about Corr(x, y)^2)
};

// theta = (pooled sum xy - sum x sum y / n) / (pooled sum x^2 - (sum x)^2 / n); 0 when x has no variance.
double cuped_theta(const cuped_sums& a, const cuped_sums& b);

// CUPED of variant against control. Not available (with a reason) when every covariate sum is 0 (no
// pre-exposure data), when x has no variance over both arms, when an arm has fewer than 2 units, or when
// the adjusted difference has no variance.
cuped_result cuped(const cuped_sums& variant, const cuped_sums& control);

}  // namespace crm::transform::ab
