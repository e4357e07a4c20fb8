// Spool append throughput with 1, 4 and 16 concurrent appenders, each appending one encoded
// 100-event batch per call, next to the reference measured in the same run on the same disk: a plain
// write() + fdatasync() per append to one shared file (no group commit). Also the event codec.
//
//   build/bench/spool_bench                        # data under ./spool-bench-data (the build dir's disk)
//   SPOOL_BENCH_DIR=/var/lib/crm-ingest/bench build/bench/spool_bench --benchmark_min_time=2
//
// items_per_second = appends (batches) per second, bytes_per_second = payload bytes, events/s =
// items * 100. Real time is used: the appenders spend their time waiting for fdatasync, not on CPU.
// The spool runs with group_wait_us 1000 (the default) and 0 (no gather wait, see README.md).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "sinks/spool/durable_log.h"
#include "transform/canonical/event_codec.h"
#include "sinks/spool/segment_format.h"

namespace {

namespace fs = std::filesystem;
using crm::sinks::spool::durable_log;
using crm::sinks::spool::durable_log_options;
namespace transform = crm::transform;

constexpr int events_per_batch = 100;

fs::path bench_dir() {
  const char* env = std::getenv("SPOOL_BENCH_DIR");
  return env != nullptr ? fs::path(env) : fs::current_path() / "spool-bench-data";
}

// A batch shaped like webhook traffic: 60 email/SMS status events, 40 UTM-tagged touchpoints.
transform::event_batch make_batch(int seed) {
  transform::event_batch b;
  for (int i = 0; i < events_per_batch; ++i) {
    const std::string k = std::to_string(seed * 1000 + i);
    const transform::timestamp_us t = 1'732'000'000'000'000 + (seed * 1000 + i) * 1500;
    if (i < 60) {
      transform::communication c;
      for (std::size_t j = 0; j < c.event_id.size(); ++j) c.event_id[j] = static_cast<std::uint8_t>(i * 7 + j);
      c.occurred_at = t;
      c.received_at = t + 180'000;
      c.lead_id = 100000 + i;
      c.campaign_id = 4711;
      c.channel_ = i % 3 == 0 ? transform::channel::sms : transform::channel::email;
      c.status = static_cast<transform::comm_status>(i % 6);
      c.provider = b.text.copy(i % 3 == 0 ? "twilio" : "sendgrid");
      c.provider_message_id = b.text.copy("SM" + std::string(32, 'a') + k);
      c.provider_event_id = b.text.copy("evt_" + std::string(20, 'b') + k);
      c.email = b.text.copy("customer" + k + "@example.com");
      c.ab_test_id = b.text.copy("subject-line-test");
      c.variant = b.text.copy(i % 2 == 0 ? "A" : "B");
      if (i % 5 == 0) c.url = b.text.copy("https://www.example.com/offers/spring?utm_source=newsletter&id=" + k);
      c.metadata = b.text.copy(R"({"ip":"203.0.113.)" + std::to_string(i) +
                               R"json(","useragent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)","sg_machine_open":false,)json"
                               R"json("category":["newsletter","spring"]})json");
      b.communications.push_back(c);
    } else {
      transform::touchpoint p;
      for (std::size_t j = 0; j < p.touchpoint_id.size(); ++j) p.touchpoint_id[j] = static_cast<std::uint8_t>(i * 11 + j);
      p.occurred_at = t;
      p.received_at = t + 40'000;
      p.lead_id = i % 4 == 0 ? 0 : 200000 + i;
      p.type = i % 10 == 0 ? transform::touch_type::conversion : transform::touch_type::page_view;
      p.group = transform::channel_group::paid_search;
      p.is_conversion = p.type == transform::touch_type::conversion;
      p.has_conversion_value = p.is_conversion;
      p.conversion_value = p.is_conversion ? 49.90 : 0;
      p.currency = b.text.copy(p.is_conversion ? "EUR" : "");
      p.anonymous_id = b.text.copy("anon-" + std::string(24, 'c') + k);
      p.utm_source = b.text.copy("google");
      p.utm_medium = b.text.copy("cpc");
      p.utm_campaign = b.text.copy("spring_sale_2026");
      p.utm_term = b.text.copy("running shoes");
      p.gclid = b.text.copy("EAIaIQobChMI" + std::string(40, 'd'));
      p.landing_url = b.text.copy("https://shop.example.com/landing/spring?utm_source=google&utm_medium=cpc&gclid=" + k);
      p.referrer = b.text.copy("https://www.google.com/");
      b.touchpoints.push_back(p);
    }
  }
  return b;
}

const std::string& encoded_batch() {
  static const std::string bytes = [] {
    std::string out;
    crm::transform::encode_event_batch(make_batch(1), out);
    return out;
  }();
  return bytes;
}

// ---------------------------------------------------------------------------------------------------
// The spool

std::unique_ptr<durable_log> g_log;

// range(0) is max_group_wait in microseconds: 1000 is the default, 0 shows what the gather wait buys.
void open_spool(const benchmark::State& state) {
  fs::remove_all(bench_dir() / "spool");
  durable_log_options o;
  o.directory = bench_dir() / "spool";
  o.max_bytes = 64ull << 30;  // no drainer here: the bound must not be what is measured
  o.max_group_wait = std::chrono::microseconds(state.range(0));
  g_log = durable_log::open(o);
}

void close_spool(const benchmark::State&) {
  g_log.reset();
  fs::remove_all(bench_dir() / "spool");
}

void BM_spool_append(benchmark::State& state) {
  const std::string& record = encoded_batch();
  const std::string_view records[] = {record};
  const auto before = g_log->stats();
  for (auto _ : state) {
    const auto r = g_log->append(records);
    if (!r.ok()) {
      state.SkipWithError(r.error.message().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(record.size()));
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * events_per_batch), benchmark::Counter::kIsRate);
  if (state.thread_index() == 0) {
    // Every thread has left the loop (the loop ends at a barrier), so these are the run's totals.
    const auto after = g_log->stats();
    const double appends = static_cast<double>(after.appends - before.appends);
    const double syncs = static_cast<double>(after.group_commits - before.group_commits);
    state.counters["appends/fsync"] = syncs > 0 ? appends / syncs : 0;
    state.counters["fsync_us"] =
        syncs > 0 ? static_cast<double>(after.total_fsync_ns - before.total_fsync_ns) / 1000.0 /
                        static_cast<double>(after.fsyncs - before.fsyncs)
                  : 0;
  }
}
BENCHMARK(BM_spool_append)
    ->ArgName("group_wait_us")
    ->Arg(1000)
    ->Arg(0)
    ->Setup(open_spool)
    ->Teardown(close_spool)
    ->Threads(1)
    ->Threads(4)
    ->Threads(16)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---------------------------------------------------------------------------------------------------
// The reference: write() + fdatasync() per append, every appender on its own

int g_reference_fd = -1;

void open_reference(const benchmark::State&) {
  fs::create_directories(bench_dir());
  const auto path = bench_dir() / "reference.log";
  g_reference_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
}

void close_reference(const benchmark::State&) {
  ::close(g_reference_fd);
  g_reference_fd = -1;
  fs::remove(bench_dir() / "reference.log");
}

void BM_write_fdatasync_reference(benchmark::State& state) {
  if (g_reference_fd < 0) {
    state.SkipWithError("could not open the reference file");
    return;
  }
  // The same bytes the spool writes: frame header + payload.
  const std::string& payload = encoded_batch();
  std::string frame(crm::sinks::spool::format::frame_header_size, '\0');
  crm::sinks::spool::format::encode_frame_header(payload, frame.data());
  frame += payload;
  for (auto _ : state) {
    if (::write(g_reference_fd, frame.data(), frame.size()) != static_cast<ssize_t>(frame.size()) ||
        ::fdatasync(g_reference_fd) != 0) {
      state.SkipWithError("write or fdatasync failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(payload.size()));
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * events_per_batch), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_write_fdatasync_reference)
    ->Setup(open_reference)
    ->Teardown(close_reference)
    ->Threads(1)
    ->Threads(4)
    ->Threads(16)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// ---------------------------------------------------------------------------------------------------
// The codec (CPU only), for scale: what an appender spends before append(), and the drainer after read()

void BM_encode_event_batch(benchmark::State& state) {
  const auto batch = make_batch(1);
  std::string out;
  for (auto _ : state) {
    crm::transform::encode_event_batch(batch, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * events_per_batch);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
  state.counters["record_bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_encode_event_batch);

void BM_decode_event_batch(benchmark::State& state) {
  const std::string& bytes = encoded_batch();
  transform::event_batch out;
  for (auto _ : state) {
    if (crm::transform::decode_event_batch(bytes, out)) {
      state.SkipWithError("decode failed");
      break;
    }
    benchmark::DoNotOptimize(out.communications.data());
  }
  state.SetItemsProcessed(state.iterations() * events_per_batch);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}
BENCHMARK(BM_decode_event_batch);

}  // namespace

BENCHMARK_MAIN();
