// gen_events: writes N canonical events as NDJSON to stdout, deterministic for a given seed, with a
// chosen share of touchpoints, in-input duplicates and invalid records. Used by the import benchmark,
// the sizing harness and the large-file memory check.
//
//   gen_events --count 1000000 [--seed 1] [--touchpoints 0.3] [--duplicates 0.02] [--invalid 0.01]
//              [--months 3] [--phones 0.3] [--campaigns-per-day 3] [--order time|random]
//              [--conversions 0.02 --exposures 0.05] [--visitors 80000 [--identified 0.2]]
//
// Touchpoints carry a lead and a new anonymous id each by default (every touchpoint a new visitor, claimed by its
// lead: the worst case of the identity claims). --visitors N draws them from N visitors instead, each with one lead
// that --identified of its touchpoints carry; the others are anonymous-only (web traffic before and beside a login:
// the worst case of stitching and re-attribution). Measure an analytics change with both.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "synthetic_events.h"

namespace {

using synthetic_events::channels;
using synthetic_events::iso8601;
using synthetic_events::mediums;
using synthetic_events::sources;
using synthetic_events::status_weights;
using synthetic_events::statuses;
using synthetic_events::touch_types;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate canonical NDJSON events"};
  std::uint64_t count = 100000, seed = 1;
  double touch_share = 0.3, dup_share = 0.02, invalid_share = 0.01, phone_share = 0.3;
  int months = 3;
  int campaigns_per_day = 3;
  std::string order = "time";
  double conversion_share = -1, exposure_share = 0;
  std::uint64_t visitors = 0;
  double identified_share = 0.2;
  // The last of a repeated option wins: import_bench.sh passes its defaults (--duplicates, --invalid, --order) before
  // the user's --gen-args.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--count", count, "Records to write (including duplicates and invalid ones)");
  app.add_option("--seed", seed, "Seed; the same seed writes the same file");
  app.add_option("--touchpoints", touch_share, "Share of touchpoints")->check(CLI::Range(0.0, 1.0));
  app.add_option("--duplicates", dup_share, "Share of records repeating an earlier one")->check(CLI::Range(0.0, 1.0));
  app.add_option("--invalid", invalid_share, "Share of invalid records")->check(CLI::Range(0.0, 1.0));
  app.add_option("--phones", phone_share, "Share of communications on phone channels")->check(CLI::Range(0.0, 1.0));
  app.add_option("--months", months, "Spread occurred_at over this many months back from 2026-11-01")
      ->check(CLI::Range(1, 120));
  app.add_option("--campaigns-per-day", campaigns_per_day,
                 "Campaigns sending on one day (campaign sends come in bursts); 0 = any of 50 on any day")
      ->check(CLI::Range(0, 50));
  app.add_option("--order", order,
                 "time: occurred_at rises through the file with +-1 h jitter, as in exports and live streams; "
                 "random: uniformly spread over the months (every batch touches many days)")
      ->check(CLI::IsMember({"time", "random"}));
  app.add_option("--conversions", conversion_share,
                 "Share of touchpoints that are conversions (and --exposures: experiment exposures); "
                 "unset = the six touch types alike")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--exposures", exposure_share, "Share of touchpoints that are experiment exposures (with --conversions)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--visitors", visitors,
                 "Draw touchpoints from this many visitors (anonymous ids), each with one lead; 0 = a new visitor with "
                 "a lead on every touchpoint");
  app.add_option("--identified", identified_share,
                 "With --visitors: share of touchpoints carrying the visitor's lead (the rest are anonymous-only)")
      ->check(CLI::Range(0.0, 1.0));
  CLI11_PARSE(app, argc, argv);
  std::discrete_distribution<unsigned> status_of(std::begin(status_weights), std::end(status_weights));

  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const std::int64_t end = 1793491200;  // 2026-11-01T00:00:00Z
  const std::int64_t span = static_cast<std::int64_t>(months) * 30 * 86400;
  std::vector<std::string> recent;  // a window of earlier lines to duplicate
  recent.reserve(4096);
  std::string line, out;
  out.reserve(1 << 20);
  std::uint64_t unique = 0;

  for (std::uint64_t i = 0; i < count; ++i) {
    double r = u(rng);
    if (r < dup_share && !recent.empty()) {
      line = recent[rng() % recent.size()];
    } else if (r < dup_share + invalid_share) {
      switch (rng() % 5) {
        case 0: line = fmt::format(R"({{"kind":"communication","occurred_at":"{}","channel":"email","status":"deliverd","email":"x{}@example.com"}})", iso8601(end - static_cast<std::int64_t>(rng() % span)), i); break;
        case 1: line = fmt::format(R"({{"kind":"communication","occurred_at":"{}","channel":"email","status":"sent","email":)", iso8601(end)); break;
        case 2: line = fmt::format(R"({{"kind":"touchpoint","occurred_at":"{}","touch_type":"page_view"}})", iso8601(end - 3600)); break;
        case 3: line = fmt::format(R"({{"kind":"communication","channel":"sms","status":"sent","phone":"+1415555{:04}"}})", i % 10000); break;
        default: line = fmt::format(R"({{"kind":"communication","occurred_at":"{}","channel":"sms","status":"sent","lead_id":-{}}})", iso8601(end), i + 1); break;
      }
    } else {
      ++unique;
      std::int64_t at;
      if (order == "time") {
        const std::int64_t base = end - span + static_cast<std::int64_t>(static_cast<double>(span) * static_cast<double>(i) /
                                                                          static_cast<double>(count));
        at = std::min(end - 1, base + static_cast<std::int64_t>(rng() % 7200) - 3600);
      } else {
        at = end - static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(span));
      }
      std::uint64_t lead = 1 + rng() % 200000;
      std::uint64_t campaign =
          campaigns_per_day == 0
              ? 1 + rng() % 50
              : 1 + (static_cast<std::uint64_t>(at / 86400) * 7 + rng() % static_cast<std::uint64_t>(campaigns_per_day)) % 50;
      if (u(rng) < touch_share) {
        auto tt = touch_types[rng() % std::size(touch_types)];
        if (conversion_share >= 0) {  // a chosen mix instead of the six types alike
          const double m = u(rng);
          tt = m < conversion_share                     ? std::string_view("conversion")
               : m < conversion_share + exposure_share ? std::string_view("experiment_exposure")
                                                       : touch_types[rng() % 4];
        }
        auto k = rng() % std::size(sources);
        std::string extra;
        if (tt == "conversion") extra = fmt::format(R"(,"conversion_type":"purchase","conversion_value":{}.{:02},"currency":"USD")", rng() % 500, rng() % 100);
        if (tt == "experiment_exposure") extra = fmt::format(R"(,"ab_test_id":"test-{}","variant":"{}")", campaign % 5, (rng() & 1) ? "A" : "B");
        std::string who;
        if (visitors == 0) {
          who = fmt::format(R"("lead_id":{},"anonymous_id":"anon-{:x}")", lead, rng() % 1000000);
        } else {
          const std::uint64_t v = rng() % visitors;
          const std::uint64_t visitor_lead = 1 + (v * 2654435761ULL + seed) % 200000;  // one lead per visitor
          who = u(rng) < identified_share ? fmt::format(R"("lead_id":{},"anonymous_id":"v-{}-{:x}")", visitor_lead, seed, v)
                                          : fmt::format(R"("anonymous_id":"v-{}-{:x}")", seed, v);
        }
        line = fmt::format(
            R"({{"kind":"touchpoint","message_id":"tp-{}-{}","occurred_at":"{}",{},"touch_type":"{}","landing_url":"https://shop.example.com/p/{}?utm_source={}&utm_medium={}&utm_campaign=c{}","referrer":"https://www.{}.com/","campaign_id":{}{}}})",
            seed, i, iso8601(at), who, tt, i % 997, sources[k], mediums[k], campaign, sources[(k + 1) % std::size(sources)], campaign, extra);
      } else {
        bool phone = u(rng) < phone_share;
        auto ch = phone ? channels[1 + rng() % 3] : std::string_view("email");
        auto st = statuses[status_of(rng)];
        std::string contact = phone ? fmt::format(R"("phone":"+1415{:07}")", 5550000 + rng() % 9999)
                                    : fmt::format(R"("email":"Lead.{}@Example.com")", lead);
        line = fmt::format(
            R"({{"kind":"communication","occurred_at":"{}","lead_id":{},"campaign_id":{},"channel":"{}","status":"{}","provider":"gen","provider_message_id":"m-{}-{}",{},"metadata":{{"batch":"{}","tags":["a","b"]}}}})",
            iso8601(at), lead, campaign, ch, st, seed, i, contact, i / 1000);
      }
      if (recent.size() < 4096) recent.push_back(line);
      else recent[rng() % recent.size()] = line;
    }
    out.append(line);
    out.push_back('\n');
    if (out.size() >= (1 << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fprintf(stderr, "gen_events: %llu records, %llu unique events\n", static_cast<unsigned long long>(count),
               static_cast<unsigned long long>(unique));
  return 0;
}
