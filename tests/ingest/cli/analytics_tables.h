// What the analytics tests share: the events they generate and import, and every attribution, A/B and identity
// table dumped as sorted text to compare incremental upkeep with a recompute.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/run_command.h"
#include "support/test_db.h"

namespace analytics_tables {

namespace fs = std::filesystem;

inline crm_test::command_result run(const std::string& args) { return crm_test::run_ingest("--log-level warn " + args); }

struct event {
  std::int64_t at;  // epoch seconds
  std::string line;
};

inline std::string uuid(std::mt19937_64& rng) {
  std::uint64_t a = rng(), b = rng();
  return fmt::format("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, (b >> 48) & 0xfff,
                     b & 0xffffffffffffULL);
}

inline void write_file(const fs::path& p, const std::vector<event>& events) {
  std::ofstream f(p);
  for (const auto& e : events) f << e.line << "\n";
}

// Every attribution and A/B table as sorted text, numbers without trailing zeros.
inline std::map<std::string, std::string> dump(const std::string& dsn) {
  const std::map<std::string, std::string> queries = {
      {"attribution_credits",
       "SELECT conversion_id, conversion_occurred_at, touchpoint_id, touchpoint_occurred_at, model,"
       " trim_scale(credit), trim_scale(revenue_credit), lead_id, anonymous_id, campaign_id, utm_source, utm_medium,"
       " utm_campaign, channel_group, stitched FROM attribution_credits"},
      {"campaign_attribution_daily",
       "SELECT day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group, trim_scale(conversions),"
       " trim_scale(revenue), credit_rows FROM campaign_attribution_daily"},
      {"ab_test_units",
       "SELECT ab_test_id, unit, lead_id, anonymous_id, variant, first_exposure_id, first_exposure_at, contaminated,"
       " converted, trim_scale(revenue), pre_conversions, trim_scale(pre_revenue) FROM ab_test_units"},
      {"ab_test_variant_stats",
       "SELECT ab_test_id, variant, units, converted_units, trim_scale(revenue_sum), trim_scale(revenue_sum_squares),"
       " contaminated_units, trim_scale(pre_conversions), trim_scale(pre_conversions_squares),"
       " trim_scale(pre_conversions_cross), trim_scale(pre_revenue), trim_scale(pre_revenue_squares),"
       " trim_scale(pre_revenue_cross) FROM ab_test_variant_stats"},
      {"identity_links", "SELECT tenant, anonymous_id, lead_id, linked_at, link_touchpoint_id, claims,"
                         " anonymous_touchpoints FROM identity_links"},
      {"identity_claims", "SELECT * FROM identity_claims"},
      {"ab_test_message_counts", "SELECT ab_test_id, variant, status, events FROM ab_test_message_counts"},
  };
  std::map<std::string, std::string> out;
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  for (const auto& [name, sql] : queries) {
    auto r = tx.exec("SELECT count(*), coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM (" + sql +
                     ") t");
    out[name] = r[0][1].as<std::string>();
  }
  return out;
}

inline long long rows(const std::map<std::string, std::string>& d, const std::string& table) {
  const auto& s = d.at(table);
  return s.empty() ? 0 : 1 + std::count(s.begin(), s.end(), '\n');
}

inline std::string first_difference(const std::string& a, const std::string& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  auto line_at = [&](const std::string& s) {
    auto from = s.rfind('\n', i == 0 ? 0 : i - 1);
    from = from == std::string::npos ? 0 : from + 1;
    return s.substr(from, s.find('\n', i) - from);
  };
  return "\n  first: " + line_at(a) + "\n  other: " + line_at(b);
}

inline void expect_same(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b,
                 const std::string& what) {
  for (const auto& [table, text] : a) {
    EXPECT_TRUE(text == b.at(table)) << what << ": " << table << " differs (" << rows(a, table) << " vs "
                                     << rows(b, table) << " rows)" << first_difference(text, b.at(table));
  }
}

inline void import(const std::string& dsn, const fs::path& file, int writers, int batch_rows) {
  auto r = run(fmt::format("import --no-progress --writers {} --batch-rows {} --dsn '{}' {}", writers, batch_rows, dsn,
                           file.string()));
  ASSERT_EQ(r.status, 0) << r.out;
}

// The invariants that hold at any time: credits sum to exactly 1 per conversion and model, every conversion
// has every model, the daily table is the GROUP BY of the credits, the variant stats the GROUP BY of the units.
inline void expect_invariants(const std::string& dsn) {
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM (SELECT 1 FROM attribution_credits"
                                 " GROUP BY conversion_id, conversion_occurred_at, model HAVING sum(credit) <> 1) x"),
            0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints WHERE touch_type = 'conversion'") * 6,
            crm_test::count(dsn, "SELECT count(*) FROM (SELECT DISTINCT conversion_id, conversion_occurred_at, model"
                                 " FROM attribution_credits) x"));
  const char* daily_sum =
      "SELECT (conversion_occurred_at AT TIME ZONE 'UTC')::date, model, campaign_id, utm_source, utm_medium,"
      " utm_campaign, channel_group, sum(credit), sum(revenue_credit), count(*) FROM attribution_credits"
      " GROUP BY 1, 2, 3, 4, 5, 6, 7";
  const char* daily = "SELECT day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group,"
                      " conversions, revenue, credit_rows FROM campaign_attribution_daily";
  EXPECT_EQ(crm_test::count(dsn, fmt::format("SELECT count(*) FROM (({}) EXCEPT ({})) x", daily, daily_sum)), 0);
  EXPECT_EQ(crm_test::count(dsn, fmt::format("SELECT count(*) FROM (({}) EXCEPT ({})) x", daily_sum, daily)), 0);
  const char* stats = "SELECT ab_test_id, variant, units, converted_units, revenue_sum, revenue_sum_squares,"
                      " contaminated_units, pre_conversions, pre_conversions_squares, pre_conversions_cross,"
                      " pre_revenue, pre_revenue_squares, pre_revenue_cross FROM ab_test_variant_stats";
  const char* stats_sum =
      "SELECT ab_test_id, variant, count(*) FILTER (WHERE NOT contaminated),"
      " count(*) FILTER (WHERE NOT contaminated AND converted), coalesce(sum(revenue) FILTER (WHERE NOT contaminated), 0),"
      " coalesce(sum(revenue * revenue) FILTER (WHERE NOT contaminated), 0), count(*) FILTER (WHERE contaminated),"
      " coalesce(sum(pre_conversions) FILTER (WHERE NOT contaminated), 0),"
      " coalesce(sum(pre_conversions * pre_conversions) FILTER (WHERE NOT contaminated), 0),"
      " coalesce(sum(pre_conversions * converted::int) FILTER (WHERE NOT contaminated), 0),"
      " coalesce(sum(pre_revenue) FILTER (WHERE NOT contaminated), 0),"
      " coalesce(sum(pre_revenue * pre_revenue) FILTER (WHERE NOT contaminated), 0),"
      " coalesce(sum(pre_revenue * revenue) FILTER (WHERE NOT contaminated), 0)"
      " FROM ab_test_units GROUP BY 1, 2";
  EXPECT_EQ(crm_test::count(dsn, fmt::format("SELECT count(*) FROM (({}) EXCEPT ({})) x", stats, stats_sum)), 0);
  EXPECT_EQ(crm_test::count(dsn, fmt::format("SELECT count(*) FROM (({}) EXCEPT ({})) x", stats_sum, stats)), 0);
}

// A fresh database `name` with `file` imported into it.
inline std::string imported(const std::string& name, const fs::path& file, int writers, int batch_rows) {
  auto dsn = crm_test::fresh_database(name);
  import(dsn, file, writers, batch_rows);
  return dsn;
}

// About 2% of the generated lines again (a source's retries).
inline void repeat_some(std::vector<event>& out, std::mt19937_64& rng) {
  const std::size_t unique = out.size();
  for (std::size_t i = 0; i < unique / 50; ++i) out.push_back(out[rng() % unique]);
}

// The events in time order (time.ndjson), reversed (reversed.ndjson: everything arrives before what it
// precedes) and shuffled with `seed` (shuffled.ndjson, also returned), and the shuffled lines dealt to three
// shards (shard0..2.ndjson) for concurrent imports.
inline std::vector<event> write_orders(const fs::path& dir, const std::vector<event>& events, std::uint64_t seed) {
  auto by_time = events;
  std::stable_sort(by_time.begin(), by_time.end(), [](const event& a, const event& b) { return a.at < b.at; });
  write_file(dir / "time.ndjson", by_time);
  std::reverse(by_time.begin(), by_time.end());
  write_file(dir / "reversed.ndjson", by_time);
  auto shuffled = events;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(seed));
  write_file(dir / "shuffled.ndjson", shuffled);
  std::vector<std::vector<event>> shards(3);
  for (std::size_t i = 0; i < shuffled.size(); ++i) shards[i % 3].push_back(shuffled[i]);
  for (int k = 0; k < 3; ++k) write_file(dir / fmt::format("shard{}.ndjson", k), shards[k]);
  return shuffled;
}

// Replaying `file` into `replayed` (another order and batching than its first import) changes nothing, and a
// recompute of `dsn` from scratch gives the tables it kept incrementally (`kept`, dumped from both before).
inline void expect_replay_and_recompute_change_nothing(const std::map<std::string, std::string>& kept,
                                                        const std::string& dsn, const std::string& replayed,
                                                        const fs::path& file) {
  import(replayed, file, 3, 500);
  expect_same(kept, dump(replayed), "after a replay");
  auto r = run("report attribution --recompute --format json --dsn '" + dsn + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  expect_same(kept, dump(dsn), "incremental vs recomputed");
}

}  // namespace analytics_tables
