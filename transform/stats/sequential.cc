#include "transform/stats/sequential.h"

#include <algorithm>
#include <cmath>

namespace crm::transform::ab {

double normal_mixture_rho(double v_opt, double alpha) {
  const double l = 2 * std::log(1 / alpha);
  return v_opt / (l + std::log1p(l));
}

double normal_mixture_log_lr(double s, double v, double rho) {
  return 0.5 * std::log(rho / (v + rho)) + s * s / (2 * (v + rho));
}

double normal_mixture_boundary(double v, double rho, double alpha) {
  return std::sqrt((v + rho) * (std::log1p(v / rho) + 2 * std::log(1 / alpha)));
}

sequential_result always_valid(double estimate, double std_error, double units, const sequential_options& o) {
  sequential_result r;
  r.estimate = estimate;
  r.std_error = std_error;
  r.units = units;
  r.alpha = o.alpha;
  r.tuning_units = o.tuning_units;
  if (!(o.alpha > 0 && o.alpha < 1) || !(o.tuning_units > 0)) return r;
  r.rho = normal_mixture_rho(o.tuning_units, o.alpha);
  if (!(std_error > 0) || !(units > 0) || !std::isfinite(estimate)) return r;
  // Standardised: per-unit variance sigma^2 = n se^2, so the running sum of the standardised differences is
  // s = n * estimate / sigma = sqrt(n) * estimate / se at intrinsic time v = n.
  const double root_n = std::sqrt(units);
  const double s = root_n * estimate / std_error;
  r.p_value = std::min(1.0, std::exp(-normal_mixture_log_lr(s, units, r.rho)));
  const double half = normal_mixture_boundary(units, r.rho, o.alpha) * std_error / root_n;
  r.ci_low = estimate - half;
  r.ci_high = estimate + half;
  r.defined = true;
  return r;
}

}  // namespace crm::transform::ab
