#include "transform/stats/ab_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <fmt/format.h>

#include "transform/text/json_text.h"

namespace crm::transform::ab {

namespace {

double log_beta(double a, double b) { return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b); }

// P(X > Y), X ~ Beta(a1, b1), Y ~ Beta(a2, b2): sum over i < a1 (Evan Miller's closed form).
double prob_greater_sum(std::uint64_t a1, std::uint64_t b1, std::uint64_t a2, std::uint64_t b2) {
  const double A2 = static_cast<double>(a2), B1 = static_cast<double>(b1), B2 = static_cast<double>(b2);
  const double lb2 = log_beta(A2, B2);
  double total = 0;
  for (std::uint64_t i = 0; i < a1; ++i) {
    const double I = static_cast<double>(i);
    total += std::exp(log_beta(A2 + I, B1 + B2) - std::log(B1 + I) - log_beta(1 + I, B1) - lb2);
  }
  return total;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt::format("{:.10g}", v);
}
std::string num(const std::optional<double>& v) { return v ? num(*v) : "null"; }

std::string cell(const std::optional<double>& v, const char* f = "{:.4f}") {
  return v && std::isfinite(*v) ? fmt::format(fmt::runtime(f), *v) : "-";
}

}  // namespace

variant_summary summarize(const variant_counts& c) {
  variant_summary s;
  s.variant = c.variant;
  s.units = c.units;
  s.conversions = c.conversions;
  s.contaminated = c.contaminated;
  s.revenue = c.revenue;
  const double n = static_cast<double>(c.units);
  if (c.units > 0) {
    s.rate = static_cast<double>(c.conversions) / n;
    s.revenue_per_unit = c.revenue / n;
  }
  if (c.units > 1) {
    double var = (c.revenue_squares - c.revenue * c.revenue / n) / (n - 1);
    s.revenue_per_unit_sd = std::sqrt(std::max(0.0, var));
  }
  return s;
}

z_test two_proportion_z(std::uint64_t x1, std::uint64_t n1, std::uint64_t x2, std::uint64_t n2) {
  z_test r;
  if (n1 == 0 || n2 == 0) return r;
  const double N1 = static_cast<double>(n1), N2 = static_cast<double>(n2);
  const double p1 = static_cast<double>(x1) / N1, p2 = static_cast<double>(x2) / N2;
  const double p = static_cast<double>(x1 + x2) / (N1 + N2);
  const double se = std::sqrt(p * (1 - p) * (1 / N1 + 1 / N2));
  if (!(se > 0)) return r;
  r.z = (p1 - p2) / se;
  r.p_value = 2 * boost::math::cdf(boost::math::complement(boost::math::normal(), std::fabs(r.z)));
  r.defined = true;
  return r;
}

t_test welch(double mean1, double var1, double n1, double mean2, double var2, double n2) {
  t_test r;
  if (n1 < 2 || n2 < 2) return r;
  const double v1 = var1 / n1, v2 = var2 / n2;
  const double se2 = v1 + v2;
  if (!(se2 > 0)) return r;
  r.t = (mean1 - mean2) / std::sqrt(se2);
  r.df = se2 * se2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1));
  r.p_value = 2 * boost::math::cdf(boost::math::complement(boost::math::students_t(r.df), std::fabs(r.t)));
  r.defined = true;
  return r;
}

double prob_beta_greater(std::uint64_t a1, std::uint64_t b1, std::uint64_t a2, std::uint64_t b2) {
  // The sum has a1 terms; P(X > Y) = 1 - P(Y > X) for continuous X, Y: sum over the shorter side.
  double p = a1 <= a2 ? prob_greater_sum(a1, b1, a2, b2) : 1 - prob_greater_sum(a2, b2, a1, b1);
  return std::clamp(p, 0.0, 1.0);
}

srm_result chi_square_gof(const std::vector<std::uint64_t>& observed, const std::vector<double>& weights) {
  srm_result r;
  const std::size_t k = observed.size();
  if (k < 2) return r;
  double total = 0, wsum = 0;
  for (auto o : observed) total += static_cast<double>(o);
  for (std::size_t i = 0; i < k; ++i) wsum += weights.empty() ? 1.0 : weights[i];
  if (total <= 0 || wsum <= 0) return r;
  r.df = static_cast<int>(k) - 1;
  for (std::size_t i = 0; i < k; ++i) {
    const double e = total * (weights.empty() ? 1.0 : weights[i]) / wsum;
    const double o = static_cast<double>(observed[i]);
    if (e <= 0) {
      if (o > 0) r.chi2 = std::numeric_limits<double>::infinity();
      continue;
    }
    r.chi2 += (o - e) * (o - e) / e;
  }
  r.p_value = std::isfinite(r.chi2)
                  ? boost::math::cdf(boost::math::complement(boost::math::chi_squared(r.df), r.chi2))
                  : 0.0;
  r.flagged = r.p_value < 0.001;
  return r;
}

cuped_sums conversion_sums(const variant_counts& v) {
  const double converted = static_cast<double>(v.conversions);  // y is 0 or 1: sum y^2 = sum y
  return {static_cast<double>(v.units), converted, converted, v.pre_conversions, v.pre_conversions_squares,
          v.pre_conversions_cross};
}

cuped_sums revenue_sums(const variant_counts& v) {
  return {static_cast<double>(v.units), v.revenue, v.revenue_squares, v.pre_revenue, v.pre_revenue_squares,
          v.pre_revenue_cross};
}

report analyze(const std::string& test_id, std::vector<variant_counts> variants, std::string control,
               const std::map<std::string, double>& weights, const sequential_options& sequential) {
  report r;
  r.test_id = test_id;
  r.sequential = sequential;
  std::sort(variants.begin(), variants.end(),
            [](const variant_counts& a, const variant_counts& b) { return a.variant < b.variant; });
  if (variants.empty()) return r;
  auto ctl = std::find_if(variants.begin(), variants.end(),
                          [&](const variant_counts& v) { return v.variant == control; });
  if (ctl == variants.end()) ctl = variants.begin();
  r.control = ctl->variant;
  for (const auto& v : variants) r.variants.push_back(summarize(v));
  const variant_summary c = summarize(*ctl);
  const double z975 = boost::math::quantile(boost::math::normal(), 0.975);
  for (const auto& v : variants) {
    if (v.variant == ctl->variant) continue;
    const variant_summary s = summarize(v);
    comparison cmp;
    cmp.variant = v.variant;
    cmp.control = c.variant;
    cmp.abs_lift = s.rate - c.rate;
    if (c.rate > 0) cmp.rel_lift = cmp.abs_lift / c.rate;
    double se = 0;
    if (s.units > 0) se += s.rate * (1 - s.rate) / static_cast<double>(s.units);
    if (c.units > 0) se += c.rate * (1 - c.rate) / static_cast<double>(c.units);
    se = std::sqrt(se);
    cmp.ci95_low = cmp.abs_lift - z975 * se;
    cmp.ci95_high = cmp.abs_lift + z975 * se;
    if (auto z = two_proportion_z(v.conversions, v.units, ctl->conversions, ctl->units); z.defined) {
      cmp.z = z.z;
      cmp.p_value = z.p_value;
    }
    auto t = welch(s.revenue_per_unit, s.revenue_per_unit_sd * s.revenue_per_unit_sd, static_cast<double>(s.units),
                   c.revenue_per_unit, c.revenue_per_unit_sd * c.revenue_per_unit_sd, static_cast<double>(c.units));
    if (t.defined) {
      cmp.revenue_t = t.t;
      cmp.revenue_df = t.df;
      cmp.revenue_p_value = t.p_value;
    }
    cmp.prob_beat_control = prob_beta_greater(1 + v.conversions, 1 + v.units - v.conversions, 1 + ctl->conversions,
                                              1 + ctl->units - ctl->conversions);
    const double both = static_cast<double>(s.units + c.units);
    cmp.sequential = always_valid(cmp.abs_lift, se, both, sequential);
    const double revenue_se =
        s.units > 1 && c.units > 1
            ? std::sqrt(s.revenue_per_unit_sd * s.revenue_per_unit_sd / static_cast<double>(s.units) +
                        c.revenue_per_unit_sd * c.revenue_per_unit_sd / static_cast<double>(c.units))
            : 0.0;
    cmp.revenue_sequential = always_valid(s.revenue_per_unit - c.revenue_per_unit, revenue_se, both, sequential);
    cmp.cuped_conversion = cuped(conversion_sums(v), conversion_sums(*ctl));
    cmp.cuped_revenue = cuped(revenue_sums(v), revenue_sums(*ctl));
    r.comparisons.push_back(cmp);
  }
  std::vector<std::uint64_t> observed;
  std::vector<double> w;
  for (const auto& v : variants) {
    observed.push_back(v.units + v.contaminated);
    if (!weights.empty()) {
      auto it = weights.find(v.variant);
      w.push_back(it == weights.end() ? 0.0 : it->second);
    }
  }
  r.srm = chi_square_gof(observed, w);
  return r;
}

namespace {

// Appends `open`, then each item written by write(item), comma-separated, then ']'.
template <typename T, typename F>
void append_array(std::string& out, std::string_view open, const std::vector<T>& items, F&& write) {
  out.append(open);
  for (const T& item : items) {
    if (&item != items.data()) out.push_back(',');
    write(item);
  }
  out.push_back(']');
}

void append_sequential(std::string& out, const comparison& c, const sequential_options& o) {
  const sequential_result& cv = c.sequential;
  const sequential_result& rv = c.revenue_sequential;
  auto p = [](const sequential_result& x) { return x.defined ? num(x.p_value) : "null"; };
  auto lo = [](const sequential_result& x) { return x.defined ? num(x.ci_low) : "null"; };
  auto hi = [](const sequential_result& x) { return x.defined ? num(x.ci_high) : "null"; };
  out.append(",\"sequential\":{\"method\":");
  append_json_string(out, sequential_method);
  out.append(fmt::format(",\"alpha\":{},\"tuning_units\":{},\"mixture_rho\":{},\"p_value\":{},\"ci_low\":{},"
                         "\"ci_high\":{},\"revenue_p_value\":{},\"revenue_ci_low\":{},\"revenue_ci_high\":{}}}",
                         num(o.alpha), num(o.tuning_units), num(normal_mixture_rho(o.tuning_units, o.alpha)), p(cv),
                         lo(cv), hi(cv), p(rv), lo(rv), hi(rv)));
}

void append_cuped(std::string& out, const cuped_result& c, std::string_view covariate) {
  out.append(fmt::format("{{\"covariate\":\"{}\",\"available\":{}", covariate, c.available ? "true" : "false"));
  if (!c.available) {
    out.append(",\"reason\":");
    append_json_string(out, c.reason);
    out.push_back('}');
    return;
  }
  out.append(fmt::format(",\"theta\":{},\"variant_mean\":{},\"control_mean\":{},\"abs_lift\":{},\"std_error\":{},"
                         "\"df\":{},\"ci95_low\":{},\"ci95_high\":{},\"p_value\":{},\"raw_std_error\":{},"
                         "\"variance_reduction\":{}}}",
                         num(c.theta), num(c.variant_mean), num(c.control_mean), num(c.diff), num(c.std_error),
                         num(c.df), num(c.ci95_low), num(c.ci95_high), num(c.p_value), num(c.raw_std_error),
                         num(c.variance_reduction)));
}

}  // namespace

std::string to_json(const report& r) {
  std::string out = "{\"test_id\":";
  append_json_string(out, r.test_id);
  out.append(",\"control\":");
  append_json_string(out, r.control);
  append_array(out, ",\"variants\":[", r.variants, [&](const variant_summary& v) {
    out.append("{\"variant\":");
    append_json_string(out, v.variant);
    out.append(fmt::format(",\"units\":{},\"conversions\":{},\"rate\":{},\"revenue\":{},\"revenue_per_unit\":{},"
                           "\"revenue_per_unit_sd\":{},\"contaminated_units\":{}}}",
                           v.units, v.conversions, num(v.rate), num(v.revenue), num(v.revenue_per_unit),
                           num(v.revenue_per_unit_sd), v.contaminated));
  });
  append_array(out, ",\"comparisons\":[", r.comparisons, [&](const comparison& c) {
    out.append("{\"variant\":");
    append_json_string(out, c.variant);
    out.append(",\"control\":");
    append_json_string(out, c.control);
    out.append(fmt::format(",\"abs_lift\":{},\"rel_lift\":{},\"ci95_low\":{},\"ci95_high\":{},\"z\":{},\"p_value\":{},"
                           "\"revenue_t\":{},\"revenue_df\":{},\"revenue_p_value\":{},\"prob_beat_control\":{}}}",
                           num(c.abs_lift), num(c.rel_lift), num(c.ci95_low), num(c.ci95_high), num(c.z),
                           num(c.p_value), num(c.revenue_t), num(c.revenue_df), num(c.revenue_p_value),
                           num(c.prob_beat_control)));
    out.pop_back();  // the comparison's closing brace: the sequential and CUPED objects follow
    append_sequential(out, c, r.sequential);
    out.append(",\"cuped\":{\"conversion\":");
    append_cuped(out, c.cuped_conversion, "pre_conversions");
    out.append(",\"revenue\":");
    append_cuped(out, c.cuped_revenue, "pre_revenue");
    out.append("}}");
  });
  out.append(fmt::format(",\"srm\":{{\"chi2\":{},\"df\":{},\"p_value\":{},\"flagged\":{}}}}}", num(r.srm.chi2),
                         r.srm.df, num(r.srm.p_value), r.srm.flagged ? "true" : "false"));
  return out;
}

std::string to_table(const report& r) {
  std::string out = fmt::format("A/B test {} (control {})\n", r.test_id, r.control);
  out.append(fmt::format("{:<16} {:>10} {:>11} {:>8} {:>14} {:>12} {:>12} {:>12}\n", "variant", "units",
                         "conversions", "rate", "revenue", "rev/unit", "rev/unit sd", "contaminated"));
  for (const auto& v : r.variants) {
    out.append(fmt::format("{:<16} {:>10} {:>11} {:>8.4f} {:>14.2f} {:>12.4f} {:>12.4f} {:>12}\n", v.variant, v.units,
                           v.conversions, v.rate, v.revenue, v.revenue_per_unit, v.revenue_per_unit_sd,
                           v.contaminated));
  }
  if (!r.comparisons.empty()) {
    out.append(fmt::format("\n{:<16} {:>9} {:>9} {:>21} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n", "vs control",
                           "abs lift", "rel lift", "95% CI (abs)", "z", "p", "rev t", "rev df", "rev p", "P(beat)"));
    for (const auto& c : r.comparisons) {
      out.append(fmt::format("{:<16} {:>9.4f} {:>9} {:>21} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8.4f}\n", c.variant,
                             c.abs_lift, cell(c.rel_lift), fmt::format("[{:.4f}, {:.4f}]", c.ci95_low, c.ci95_high),
                             cell(c.z, "{:.3f}"), cell(c.p_value), cell(c.revenue_t, "{:.3f}"),
                             cell(c.revenue_df, "{:.1f}"), cell(c.revenue_p_value), c.prob_beat_control));
    }
  }
  if (!r.comparisons.empty()) {
    out.append(fmt::format("\nalways valid, safe to read at any look: {}, alpha {:g}, tuned for {:g} units\n",
                           sequential_method, r.sequential.alpha, r.sequential.tuning_units));
    out.append(fmt::format("{:<16} {:>8} {:>21} {:>8} {:>25}\n", "vs control", "p", "conf. sequence (abs)", "rev p",
                           "rev conf. sequence"));
    auto p = [](const sequential_result& x) { return x.defined ? fmt::format("{:.4f}", x.p_value) : "-"; };
    auto cs = [](const sequential_result& x, int digits) {
      return x.defined ? fmt::format("[{:.{}f}, {:.{}f}]", x.ci_low, digits, x.ci_high, digits) : "-";
    };
    for (const auto& c : r.comparisons) {
      out.append(fmt::format("{:<16} {:>8} {:>21} {:>8} {:>25}\n", c.variant, p(c.sequential), cs(c.sequential, 4),
                             p(c.revenue_sequential), cs(c.revenue_sequential, 2)));
    }
    out.append("\nCUPED (pre-exposure covariate, theta pooled over variant and control)\n");
    out.append(fmt::format("{:<16} {:<11} {:>9} {:>10} {:>23} {:>8} {:>10}\n", "vs control", "metric", "theta",
                           "adj. lift", "95% CI", "p", "var. red."));
    for (const auto& c : r.comparisons) {
      for (const auto& [metric, x, digits] : {std::tuple{"conversion", &c.cuped_conversion, 4},
                                              std::tuple{"revenue", &c.cuped_revenue, 2}}) {
        if (!x->available) {
          out.append(fmt::format("{:<16} {:<11} not available: {}\n", c.variant, metric, x->reason));
          continue;
        }
        out.append(fmt::format("{:<16} {:<11} {:>9.4f} {:>10.{}f} {:>23} {:>8.4f} {:>9.1f}%\n", c.variant, metric,
                               x->theta, x->diff, digits,
                               fmt::format("[{:.{}f}, {:.{}f}]", x->ci95_low, digits, x->ci95_high, digits),
                               x->p_value, 100 * x->variance_reduction));
      }
    }
  }
  out.append(fmt::format("\nsample ratio: chi2 {:.4f}, df {}, p {:.4g}{}\n", r.srm.chi2, r.srm.df, r.srm.p_value,
                         r.srm.flagged ? "  MISMATCH (p < 0.001)" : ""));
  return out;
}

}  // namespace crm::transform::ab
