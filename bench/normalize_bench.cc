// Throughput of the transform stage on a realistic in-memory NDJSON corpus.
//   BM_split_and_normalize  record_splitter + normalizer over the corpus (what an import does per thread)
//   BM_raw_ondemand_parse   simdjson On-Demand (iterate_many) over the same bytes, touching every field:
//                           the reference
//   BM_raw_ondemand_parse_per_record   the same with one iterate() per line, as the normalizer must
//   BM_normalize_email / _phone_cached / _phone_uncached   one record kind at a time, to show what
//                           libphonenumber costs with and without the per-normalizer cache
// Run: build/bench/normalize_bench --benchmark_min_time=2
// Measured on the 2-core AMD EPYC dev box (AVX-512), RelWithDebInfo, CPU time, quiet machine:
//   BM_split_and_normalize            122 ms / 100k records   820k events/s   310 MiB/s
//   BM_raw_ondemand_parse            12.5 ms                  8.0M docs/s     2.96 GiB/s   (normalizing takes 9.8x as long)
//   BM_raw_ondemand_parse_per_record 17.4 ms                  5.7M docs/s     2.12 GiB/s   (normalizing takes 7.0x as long)
//   BM_normalize_email                978 ns/record
//   BM_normalize_phone_cached        1200 ns/record
//   BM_normalize_phone_uncached     12660 ns/record (libphonenumber Parse + IsValidNumber)
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "transform/normalize/normalize.h"
#include "transform/normalize/record_splitter.h"

namespace {

using namespace crm::transform;

constexpr std::size_t corpus_records = 100'000;
constexpr std::size_t contacts = 5'000;  // each contact gets ~12 events, as a campaign's recipients do
constexpr std::int64_t base_epoch_s = 1'714'000'000;  // 2024-04-24

const char* const statuses[] = {"queued", "sent", "delivered", "opened", "clicked", "bounced", "replied"};
const char* const sources[][2] = {{"google", "cpc"},      {"facebook", "paid_social"}, {"newsletter", "email"},
                                  {"bing", "organic"},    {"partner-blog", "referral"}, {"dv360", "display"},
                                  {"instagram", "social"}, {"awin", "affiliate"}};
const char* const referrers[] = {"https://www.google.com/", "https://l.facebook.com/", "https://news.ycombinator.com/",
                                 "", "https://www.bing.com/search?q=crm"};

std::string phone_of(std::size_t i) {
  // Valid US numbers in the 650-253 block: +1 650 253 0000..9999.
  char buf[32];
  std::snprintf(buf, sizeof buf, "(650) 253-%04zu", i % 10000);
  return buf;
}

std::string communication_line(std::mt19937_64& rng, std::size_t i, bool with_phone) {
  const std::size_t contact = rng() % contacts;
  const std::int64_t t = base_epoch_s + static_cast<std::int64_t>(i) * 7;
  std::string s = "{\"kind\":\"communication\",\"occurred_at\":\"";
  char ts[64];
  std::snprintf(ts, sizeof ts, "2024-04-%02dT%02d:%02d:%02d.%03dZ", static_cast<int>(1 + (t / 86400) % 28),
                static_cast<int>((t / 3600) % 24), static_cast<int>((t / 60) % 60), static_cast<int>(t % 60),
                static_cast<int>(i % 1000));
  s += ts;
  s += "\",\"channel\":\"";
  s += with_phone ? "sms" : "email";
  s += "\",\"status\":\"";
  s += statuses[rng() % 7];
  s += "\",\"provider\":\"";
  s += with_phone ? "twilio" : "sendgrid";
  s += "\",\"provider_message_id\":\"msg-" + std::to_string(i / 3) + "\"";
  s += ",\"lead_id\":" + std::to_string(1000 + contact);
  s += ",\"campaign_id\":" + std::to_string(1 + rng() % 40);
  if (with_phone) {
    s += ",\"phone\":\"" + phone_of(contact) + "\"";
  } else {
    s += ",\"email\":\" User" + std::to_string(contact) + "@Example.com\"";
  }
  if (rng() % 4 == 0) s += ",\"ab_test_id\":\"subject-test-7\",\"variant\":\"B\"";
  s += ",\"metadata\":{\"sg_event_id\":\"ev-" + std::to_string(i) +
       "\",\"ip\":\"203.0.113.7\",\"useragent\":\"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)\","
       "\"categories\":[\"promo\",\"spring\"],\"attempt\":1}";
  s += ",\"tenant_hint\":\"acme\"}";
  return s;
}

std::string touchpoint_line(std::mt19937_64& rng, std::size_t i) {
  const auto& src = sources[rng() % 8];
  const std::int64_t t = (base_epoch_s + static_cast<std::int64_t>(i) * 7) * 1000 + static_cast<std::int64_t>(i % 1000);
  const bool conversion = rng() % 10 == 0;
  std::string s = "{\"kind\":\"touchpoint\",\"occurred_at\":" + std::to_string(t);
  s += ",\"touch_type\":\"";
  s += conversion ? "conversion" : "page_view";
  s += "\",\"anonymous_id\":\"anon-" + std::to_string(rng() % 50000) + "\"";
  if (rng() % 3 == 0) s += ",\"lead_id\":" + std::to_string(1000 + rng() % contacts);
  s += ",\"landing_url\":\"https://shop.example.com/products/item-" + std::to_string(i % 300) + "?utm_source=";
  s += src[0];
  s += "&utm_medium=";
  s += src[1];
  s += "&utm_campaign=spring+sale+2024&utm_content=hero%20banner";
  if (src[1][0] == 'c') s += "&gclid=EAIaIQobChMI" + std::to_string(i);
  s += "\",\"referrer\":\"";
  s += referrers[rng() % 5];
  s += "\"";
  if (conversion) s += ",\"conversion_type\":\"purchase\",\"conversion_value\":" + std::to_string(10 + rng() % 500) + ".99";
  s += ",\"metadata\":{\"page_title\":\"Spring collection\",\"viewport\":[1440,900]}}";
  return s;
}

struct corpus {
  std::string ndjson;
  std::size_t records = 0;
};

// 60% communications (two thirds e-mail, one third SMS with a phone), 40% touchpoints.
const corpus& mixed_corpus() {
  static const corpus c = [] {
    corpus out;
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i < corpus_records; ++i) {
      const auto r = rng() % 10;
      out.ndjson += r < 4 ? communication_line(rng, i, false) : r < 6 ? communication_line(rng, i, true)
                                                                      : touchpoint_line(rng, i);
      out.ndjson += '\n';
    }
    out.records = corpus_records;
    return out;
  }();
  return c;
}

// A normalizer and the batch it appends to, every record received at one time (as one import thread).
struct bench_normalizer {
  normalizer n;
  event_batch batch;
  const timestamp_us received_at = now_us();

  normalize_outcome normalize(std::string_view text, std::size_t line) {
    return n.normalize(text, {"bench", line}, received_at, batch);
  }
  void reject(std::string_view text, std::size_t line, std::string_view reason) {
    n.reject(text, {"bench", line}, received_at, reason, batch);
  }
};

// Items: the records handled over all iterations; bytes: the corpus once per iteration.
void report_corpus(benchmark::State& state, std::size_t items, const corpus& c) {
  state.SetItemsProcessed(static_cast<std::int64_t>(items));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.ndjson.size()));
}

void BM_split_and_normalize(benchmark::State& state) {
  const corpus& c = mixed_corpus();
  bench_normalizer w;
  std::size_t events = 0;
  std::size_t rejected = 0;
  auto hand_to_sink = [&] {
    rejected += w.batch.rejections.size();
    events += w.batch.record_count();
    w.batch.clear();
  };
  for (auto _ : state) {
    record_splitter splitter(input_format::auto_detect);
    auto on_record = [&](const split_record& r) {
      if (!r.error.empty()) {
        w.reject(r.text, r.line, r.error);
      } else {
        w.normalize(r.text, r.line);
      }
      if (w.batch.record_count() == 1024) hand_to_sink();
    };
    const std::string_view all = c.ndjson;
    for (std::size_t pos = 0; pos < all.size(); pos += 64 * 1024) splitter.feed(all.substr(pos, 64 * 1024), on_record);
    splitter.finish(on_record);
    hand_to_sink();
  }
  if (rejected != 0) state.SkipWithError("the corpus should normalize without rejections");
  report_corpus(state, events, c);
}
BENCHMARK(BM_split_and_normalize)->Unit(benchmark::kMillisecond);

std::size_t touch_object(simdjson::ondemand::object o);

// Touches every value: strings unescaped, numbers parsed, nested objects/arrays walked.
std::size_t touch(simdjson::ondemand::value v) {
  namespace od = simdjson::ondemand;
  od::json_type t;
  if (v.type().get(t)) return 0;
  switch (t) {
    case od::json_type::object: {
      od::object o;
      return v.get_object().get(o) ? 0 : touch_object(o);
    }
    case od::json_type::array: {
      std::size_t n = 0;
      od::array a;
      if (v.get_array().get(a)) return 0;
      for (auto e : a) {
        od::value item;
        if (std::move(e).get(item)) return n;
        n += touch(item);
      }
      return n;
    }
    case od::json_type::string: {
      std::string_view s;
      return v.get_string().get(s) ? 0 : s.size();
    }
    case od::json_type::number: {
      double d = 0;
      return v.get_double().get(d) ? 0 : static_cast<std::size_t>(d) & 1;
    }
    case od::json_type::boolean: {
      bool b = false;
      return v.get_bool().get(b) ? 0 : b;
    }
    case od::json_type::null: return 1;
  }
  return 0;
}

// Every key and value of `o`; what was read before a malformed member counts.
std::size_t touch_object(simdjson::ondemand::object o) {
  std::size_t n = 0;
  for (auto f : o) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(f).get(field) || field.unescaped_key().get(key)) break;
    n += key.size() + touch(field.value());
  }
  return n;
}

void BM_raw_ondemand_parse(benchmark::State& state) {
  const corpus& c = mixed_corpus();
  const simdjson::padded_string input(c.ndjson);
  simdjson::ondemand::parser parser;
  std::size_t docs = 0;
  for (auto _ : state) {
    simdjson::ondemand::document_stream stream;
    if (parser.iterate_many(input).get(stream)) {
      state.SkipWithError("iterate_many failed");
      return;
    }
    std::size_t sum = 0;
    for (auto doc : stream) {
      simdjson::ondemand::object o;
      if (doc.get_object().get(o)) continue;
      sum += touch_object(o);
      ++docs;
    }
    benchmark::DoNotOptimize(sum);
  }
  report_corpus(state, docs, c);
}
BENCHMARK(BM_raw_ondemand_parse)->Unit(benchmark::kMillisecond);

// The same, one iterate() per line (the normalizer's situation: one record at a time from the splitter,
// copied into a padded buffer).
void BM_raw_ondemand_parse_per_record(benchmark::State& state) {
  const corpus& c = mixed_corpus();
  simdjson::ondemand::parser parser;
  std::vector<char> buffer;
  std::size_t docs = 0;
  for (auto _ : state) {
    std::size_t sum = 0;
    std::string_view rest = c.ndjson;
    while (!rest.empty()) {
      const std::size_t nl = rest.find('\n');
      const std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
      if (buffer.size() < line.size() + simdjson::SIMDJSON_PADDING) buffer.resize(line.size() + simdjson::SIMDJSON_PADDING);
      std::memcpy(buffer.data(), line.data(), line.size());
      simdjson::ondemand::document doc;
      simdjson::ondemand::object o;
      if (parser.iterate(buffer.data(), line.size(), buffer.size()).get(doc) || doc.get_object().get(o)) continue;
      sum += touch_object(o);
      ++docs;
    }
    benchmark::DoNotOptimize(sum);
  }
  report_corpus(state, docs, c);
}
BENCHMARK(BM_raw_ondemand_parse_per_record)->Unit(benchmark::kMillisecond);

// One kind of record, normalized one by one (no splitter).
void run_lines(benchmark::State& state, const std::vector<std::string>& lines) {
  bench_normalizer w;
  std::size_t bytes = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    const std::string& line = lines[i];
    if (w.normalize(line, i + 1) == normalize_outcome::rejected) {
      state.SkipWithError(std::string(w.batch.rejections.back().reason).c_str());
      return;
    }
    bytes += line.size();
    if (++i == lines.size()) i = 0;
    if (w.batch.record_count() == 1024) w.batch.clear();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

// 20000 communication lines of one kind, each passed through `edit` (seeded: the same lines every run).
template <typename Edit>
std::vector<std::string> one_kind(bool with_phone, Edit edit) {
  std::mt19937_64 rng(7);
  std::vector<std::string> v;
  for (std::size_t i = 0; i < 20'000; ++i) {
    std::string line = communication_line(rng, i, with_phone);
    edit(line, i);
    v.push_back(std::move(line));
  }
  return v;
}

void as_generated(std::string&, std::size_t) {}

void BM_normalize_email(benchmark::State& state) {
  static const std::vector<std::string> lines = one_kind(false, as_generated);
  run_lines(state, lines);
}
BENCHMARK(BM_normalize_email);

// 5000 distinct numbers: after the first lap every phone is a cache hit.
void BM_normalize_phone_cached(benchmark::State& state) {
  static const std::vector<std::string> lines = one_kind(true, as_generated);
  run_lines(state, lines);
}
BENCHMARK(BM_normalize_phone_cached);

// Every record a number the cache has not seen (the cache holds 4096): libphonenumber's full cost.
void BM_normalize_phone_uncached(benchmark::State& state) {
  static const std::vector<std::string> lines = one_kind(true, [](std::string& line, std::size_t i) {
    const std::size_t at = line.find("(650) 253-");
    char unique[32];
    // 20000 distinct valid numbers: 650-253-xxxx and 650-254-xxxx.
    std::snprintf(unique, sizeof unique, "(650) %03zu-%04zu", 253 + i / 10000, i % 10000);
    line.replace(at, 14, unique);
  });
  run_lines(state, lines);
}
BENCHMARK(BM_normalize_phone_uncached);

}  // namespace

BENCHMARK_MAIN();
