// Always-valid inference for the difference of two means (conversion rate, revenue per unit): the two-sided
// normal-mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Always
// Valid Inference: Continuous Monitoring of A/B Tests", Operations Research 70(3), 2022, whose inversion is
// the two-sided normal-mixture confidence sequence of Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform,
// nonparametric, nonasymptotic confidence sequences", Annals of Statistics 49(2), 2021 (their two-sided
// normal-mixture boundary), used in its asymptotic (plug-in variance) form,
// Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic
// confidence sequences", Annals of Statistics 2024 (arXiv:2103.06476, eq. 9), as GrowthBook's gbstats does.
//
// The p-value and the confidence sequence are valid at every look at once: however often the report is
// read, and whenever it is stopped, P(some look has p <= alpha | no effect) <= alpha, and the sequence of
// intervals covers the true lift at all looks simultaneously with probability >= 1 - alpha (asymptotically,
// as the variance is estimated). Pure functions, no I/O.
#pragma once

namespace crm::transform::ab {

// The method's name as reports print it (README: transform/stats/README.md).
inline constexpr const char* sequential_method = "normal-mixture mSPRT (Johari et al. 2022; Howard et al. 2021)";

struct sequential_options {
  double alpha = 0.05;
  // The mixture tuning parameter, as a number of units (both arms together): the mixture precision is
  // chosen so that the boundary is tightest when the test has this many units (Howard et al. 2021; the same
  // parametrisation as gbstats' sequential_tuning_parameter, whose default 5000 is kept here). The
  // sequence stays valid for any value; a value near the units the test will have at its decision is the
  // narrowest there, and the width is flat around it, flatter above than below (alpha 0.05): at ten times
  // the tuning units the interval is 7% wider than the narrowest normal mixture there, at a hundred times
  // 17%, at a tenth 27%, at a hundredth 3x. 5000 units is an e-mail campaign test of a few thousand
  // recipients an arm; a test expected to be much larger should say so (--tuning-units).
  double tuning_units = 5000;
};

// The mixture precision rho that minimises the two-sided normal-mixture boundary at intrinsic time v_opt
// for level alpha: v_opt / (2 log(1/alpha) + log(1 + 2 log(1/alpha))) (confseq's
// TwoSidedNormalMixture::best_rho; Waudby-Smith et al., arXiv:2103.06476v7 eq. 161).
double normal_mixture_rho(double v_opt, double alpha);

// log of the two-sided normal-mixture martingale (the mSPRT likelihood ratio with a normal mixing
// distribution) at sum s and intrinsic time v: 1/2 log(rho / (v + rho)) + s^2 / (2 (v + rho)).
double normal_mixture_log_lr(double s, double v, double rho);

// The two-sided boundary on |s|: sqrt((v + rho) (log(1 + v / rho) + 2 log(1/alpha))); it is crossed with
// probability <= alpha over all v.
double normal_mixture_boundary(double v, double rho, double alpha);

struct sequential_result {
  bool defined = false;               // false when the standard error is 0 or there are no units
  double estimate = 0;                // the difference of means (variant - control)
  double std_error = 0;               // its plug-in standard error
  double units = 0;                   // both arms' units: the intrinsic time
  double rho = 0;                     // the mixture precision (standardised scale, per unit)
  double p_value = 1;                 // always-valid p-value of "no difference": min(1, 1 / likelihood ratio)
  double ci_low = 0, ci_high = 0;     // the confidence sequence at this look
  double alpha = 0.05, tuning_units = 0;
};

// The always-valid p-value and confidence sequence of a difference `estimate` whose standard error is
// `std_error`, from `units` units of both arms. On the standardised scale s = sqrt(n) * estimate / se at
// time v = n (per-unit variance 1); the half-width is boundary(n) * se / sqrt(n).
sequential_result always_valid(double estimate, double std_error, double units, const sequential_options& o = {});

}  // namespace crm::transform::ab
