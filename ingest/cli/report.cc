#include "ingest/cli/report.h"

#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>

#include <fmt/format.h>
#include <pqxx/pqxx>

#include "ingest/cli/database_target.h"
#include "ingest/cli/exit_codes.h"
#include "sinks/postgres/analytics_stage.h"
#include "sinks/postgres/attribution.h"
#include "sinks/postgres/exchange_rates.h"
#include "sinks/postgres/queries.h"
#include "transform/stats/ab_stats.h"
#include "transform/text/json_text.h"

namespace crm::ingest::cli {

namespace {

namespace pg = crm::sinks::postgres;
namespace ab = crm::transform::ab;

struct attribution_args {
  database_target db;
  std::string model, from, to, by = "campaign", format = "table";
  bool recompute = false;
  int lookback_days = 0, half_life_days = 0;
};

struct ab_args {
  database_target db;
  std::string test, format = "table";
  ab::sequential_options sequential;
};

// A field of a text table: the tables show what clients sent (campaign names, variants), and a control
// character there would be a terminal's command (ESC sequences retitle, clear or re-colour it) or a forged row
// (a newline). C0 controls (newline and tab too), DEL and the C1 controls are written as \xNN / \u00NN.
std::string terminal_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x20 || b == 0x7F) {
      out += fmt::format("\\x{:02X}", b);
    } else if (b == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      out += fmt::format("\\u{:04X}", static_cast<unsigned char>(s[++i]));
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string json_str(const std::string& s) {
  std::string out;
  transform::append_json_string(out, s);
  return out;
}

// How fresh the attribution and A/B tables are (the analytics stage applies committed batches shortly after
// their commit): one line on stderr, so that stdout keeps the report itself.
pg::analytics_lag say_freshness(pqxx::connection& conn) {
  pg::analytics_lag l;
  try {
    l = pg::read_analytics_lag(conn);
  } catch (const pqxx::sql_error& e) {
    std::cerr << "analytics: freshness unknown (" << e.what() << ")\n";
    return l;
  }
  if (l.pending_batches == 0) {
    std::cerr << "analytics: current (every committed batch is applied)\n";
  } else {
    std::cerr << fmt::format("analytics: {} committed batches ({} touchpoints) not yet applied; the oldest was "
                             "committed {:.1f} s ago\n",
                             l.pending_batches, l.pending_touchpoints, l.lag_seconds);
  }
  return l;
}

// The reporting currency, and the conversions whose exchange rate is missing (their revenue is not in the
// report until the rate is loaded): one line on stderr. Returns the reporting currency.
std::string say_currency(pqxx::connection& conn, const std::string& from, const std::string& to) {
  const std::string currency = pg::read_reporting_currency(conn);
  const auto awaiting = pg::read_awaiting_rates(conn, from, to);
  long long n = 0;
  std::string detail;
  for (const auto& w : awaiting) {
    n += w.conversions;
    detail += fmt::format("{}{} {} from {} to {}", detail.empty() ? "" : ", ", w.currency.empty() ? "(none)" : w.currency,
                          w.conversions, w.first_day, w.last_day);
  }
  if (n == 0) {
    std::cerr << "revenue in " << currency << " (the reporting currency); every conversion has its exchange rate\n";
  } else {
    std::cerr << fmt::format("revenue in {} (the reporting currency); {} conversions awaiting an exchange rate, not "
                             "in the revenue until it is loaded (`crm-ingest rates import`): {}\n",
                             currency, n, detail);
  }
  return currency;
}

int run_attribution(attribution_args& a) {
  pqxx::connection conn(a.db.resolve(true));
  if (a.recompute) {
    pg::recompute_options o;
    if (a.lookback_days > 0) o.lookback_days = a.lookback_days;
    if (a.half_life_days > 0) o.half_life_days = a.half_life_days;
    auto r = pg::recompute_analytics(conn, o);
    std::cerr << fmt::format("recomputed: {} conversions, {} credit rows, {} A/B units (lookback {}, half-life {})\n",
                             r.conversions, r.credit_rows, r.ab_units, r.lookback, r.half_life);
  }
  say_freshness(conn);
  const auto ids = pg::read_identity_summary(conn);
  std::cerr << fmt::format("identity: {} conversions attributed through stitching; {} visitors linked to a lead, {} "
                           "of them claimed by more than one lead (the first link won); {} visitors claimed by a lead "
                           "in all (linked once they have anonymous touchpoints)\n",
                           ids.stitched_conversions, ids.linked_visitors, ids.contested_visitors,
                           ids.claimed_visitors);
  const std::string currency = say_currency(conn, a.from, a.to);
  const auto rows = pg::read_attribution(conn, a.by, a.model, a.from, a.to);
  auto text = [](const std::optional<std::string>& v) { return v ? *v : std::string(); };
  auto json_or_null = [&](const std::optional<std::string>& v) { return v ? json_str(*v) : std::string("null"); };
  if (a.format == "json") {
    std::string out = "[";
    bool first = true;
    for (const auto& row : rows) {
      if (!first) out.push_back(',');
      first = false;
      out.append("{\"model\":" + json_str(row.model));
      if (a.by == "campaign") {
        // A CRM's integer id as a number; a text reference (or a key no reference was found for) as a string.
        const bool integer = row.first && !row.first->empty() &&
                             row.first->find_first_not_of("0123456789") == std::string::npos;
        out.append(",\"campaign_id\":" + (!row.first ? std::string("null") : integer ? *row.first : json_str(*row.first)));
        out.append(",\"utm_campaign\":" + json_or_null(row.second));
      } else if (a.by == "source") {
        out.append(",\"utm_source\":" + json_or_null(row.first));
        out.append(",\"utm_medium\":" + json_or_null(row.second));
      } else {
        out.append(",\"channel_group\":" + json_str(text(row.first)));
      }
      out.append(",\"conversions\":" + row.conversions + ",\"revenue\":" + row.revenue + ",\"currency\":" +
                 json_str(currency) + ",\"awaiting_rate\":" + row.awaiting_rate + "}");
    }
    out.append("]\n");
    std::cout << out;
    return 0;
  }
  std::cout << fmt::format("{:<16} {:<24} {:<24} {:>18} {:>20}\n", "model", a.by == "campaign" ? "campaign_id" :
                           a.by == "source" ? "utm_source" : "channel_group",
                           a.by == "campaign" ? "utm_campaign" : a.by == "source" ? "utm_medium" : "", "conversions",
                           "revenue (" + currency + ")");
  for (const auto& row : rows) {
    std::cout << fmt::format("{:<16} {:<24} {:<24} {:>18} {:>20}\n", row.model, terminal_text(text(row.first)),
                             terminal_text(text(row.second)), row.conversions, row.revenue);
  }
  return 0;
}

int run_ab(ab_args& a) {
  pqxx::connection conn(a.db.resolve(true));
  const auto fresh = say_freshness(conn);
  auto data = pg::read_ab_test(conn, a.test);
  if (!data.problem.empty()) {
    std::cerr << "error: ab_tests row " << terminal_text(a.test) << ": " << terminal_text(data.problem)
              << " (fix the row; after changing its conversion_window, run report attribution --recompute)\n";
    return exit_usage;
  }
  std::vector<ab::variant_counts> variants;
  std::map<std::string, ab::variant_counts> by_name;
  for (const auto& v : data.variants) by_name[v].variant = v;
  for (auto& v : data.stats) by_name[v.variant] = v;
  const auto& msg = data.message_counts;
  if (by_name.empty() && msg.empty()) {
    std::cerr << "error: no A/B test " << a.test << ": no exposures, no messages and no ab_tests row\n";
    return 1;
  }
  for (auto& [name, v] : by_name) variants.push_back(v);
  auto r = ab::analyze(a.test, variants, data.control, data.weights, a.sequential);
  if (a.format == "json") {
    std::string out = ab::to_json(r);
    // Per-variant message counts (delivered/opened/clicked...), as an extra key.
    out.pop_back();
    out.append(",\"messages\":{");
    bool first = true;
    for (const auto& [variant, counts] : msg) {
      if (!first) out.push_back(',');
      first = false;
      out.append(json_str(variant) + ":{");
      bool f2 = true;
      for (const auto& [status, n] : counts) {
        if (!f2) out.push_back(',');
        f2 = false;
        out.append(json_str(status) + ":" + std::to_string(n));
      }
      out.push_back('}');
    }
    out.append("}");
    if (fresh.known) {
      out.append(fmt::format(",\"analytics\":{{\"pending_batches\":{},\"pending_touchpoints\":{},\"lag_seconds\":{:.3f}}}",
                             fresh.pending_batches, fresh.pending_touchpoints, fresh.lag_seconds));
    }
    out.append("}\n");
    std::cout << out;
  } else {
    // The names in the table are the data's: each written safe for a terminal before the table is laid out.
    r.test_id = terminal_text(r.test_id);
    r.control = terminal_text(r.control);
    for (auto& v : r.variants) v.variant = terminal_text(v.variant);
    for (auto& c : r.comparisons) {
      c.variant = terminal_text(c.variant);
      c.control = terminal_text(c.control);
    }
    std::cout << ab::to_table(r);
    if (!msg.empty()) {
      std::cout << fmt::format("\n{:<16} {:>10} {:>10} {:>10}\n", "messages", "delivered", "opened", "clicked");
      for (const auto& [variant, counts] : msg) {
        auto get = [&](const char* s) {
          auto it = counts.find(s);
          return it == counts.end() ? 0LL : it->second;
        };
        std::cout << fmt::format("{:<16} {:>10} {:>10} {:>10}\n", terminal_text(variant), get("delivered"),
                                 get("opened"), get("clicked"));
      }
    }
  }
  return 0;
}

}  // namespace

void add_report_commands(CLI::App& app, int& exit_code) {
  auto* report = app.add_subcommand("report", "Attribution and A/B-test reports");
  report->require_subcommand(1);

  auto attr = std::make_shared<attribution_args>();
  auto* attr_cmd = report->add_subcommand(
      "attribution", "Conversions and revenue credited per model and campaign, source or channel group, from "
                     "campaign_attribution_daily");
  attr->db.add_options(*attr_cmd, false);
  std::vector<std::string> models(std::begin(pg::attribution_models), std::end(pg::attribution_models));
  attr_cmd->add_option("--model", attr->model, "One model (default: all)")->check(CLI::IsMember(models));
  const CLI::Validator date_check(
      [](std::string& s) {
        return std::regex_match(s, std::regex(R"(\d{4}-\d{2}-\d{2})")) ? std::string()
                                                                      : "expected a date YYYY-MM-DD, got " + s;
      },
      "DATE");
  attr_cmd->add_option("--from", attr->from, "First day of conversion (UTC), inclusive")->check(date_check);
  attr_cmd->add_option("--to", attr->to, "Last day of conversion (UTC), inclusive")->check(date_check);
  attr_cmd->add_option("--by", attr->by, "Grouping")
      ->default_str("campaign")
      ->check(CLI::IsMember({"campaign", "source", "channel_group"}));
  attr_cmd->add_option("--format", attr->format, "Output format")
      ->default_str("table")
      ->check(CLI::IsMember({"table", "json"}));
  attr_cmd->add_flag("--recompute", attr->recompute,
                     "First rebuild every attribution and A/B table from the stored events (one transaction; "
                     "the analytics stage waits meanwhile; batches with communications wait only for the A/B message recount at "
                     "its end)");
  attr_cmd->add_option("--lookback-days", attr->lookback_days,
                       "With --recompute: store a new lookback window (default 30 days) before rebuilding")
      ->check(CLI::Range(1, 3650));
  attr_cmd->add_option("--half-life-days", attr->half_life_days,
                       "With --recompute: store a new time-decay half-life (default 7 days) before rebuilding")
      ->check(CLI::Range(1, 3650));
  attr_cmd->callback([attr, &exit_code] {
    if ((attr->lookback_days || attr->half_life_days) && !attr->recompute) {
      throw CLI::ValidationError("--lookback-days/--half-life-days", "need --recompute (every credit depends on them)");
    }
    exit_code = run_attribution(*attr);
  });

  auto abt = std::make_shared<ab_args>();
  constexpr const char* ab_help =
      "Per-variant units, conversions, revenue, lift, z-test, Welch t-test, probability to beat control, always-valid "
      "p-value and confidence sequence, CUPED and sample-ratio mismatch of one A/B test. Exit codes: 0 done, 1 no such "
      "test, 2 usage or an ab_tests row that describes no computable test (the reason is printed), 3 the database "
      "refused or is unreachable";
  auto* ab_cmd = report->add_subcommand("ab-test", ab_help);
  abt->db.add_options(*ab_cmd, false);
  ab_cmd->add_option("--test", abt->test, "The ab_test_id")->required();
  ab_cmd->add_option("--format", abt->format, "Output format")
      ->default_str("table")
      ->check(CLI::IsMember({"table", "json"}));
  ab_cmd->add_option("--sequential-alpha", abt->sequential.alpha,
                     "Level of the always-valid p-value's test and of the confidence sequence")
      ->default_val(0.05)
      ->check(CLI::Range(1e-9, 0.5));
  ab_cmd->add_option("--tuning-units", abt->sequential.tuning_units,
                     "Units (both arms) at which the confidence sequence is tightest: the mixture tuning")
      ->default_val(5000)
      ->check(CLI::PositiveNumber);
  ab_cmd->callback([abt, &exit_code] { exit_code = run_ab(*abt); });
}

}  // namespace crm::ingest::cli
