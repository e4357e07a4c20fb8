// http_load: an open-loop HTTP/1.1 load generator for `crm-ingest serve` (POST /v1/events and
// POST /v1/webhooks/twilio, or a mix of provider webhooks), loopback only.
//
// Open loop: request g of the run is due at start + g / rate, whatever the server does. A due request
// goes out on an idle keep-alive connection of the pool; when every connection is busy it waits in a
// FIFO queue, and that wait is part of its latency. Latency runs from the INTENDED send time to the
// last byte of the response, so a server stall shows up in full instead of slowing the client down
// (no coordinated omission). A request that has not been answered --timeout after its intended time
// is given up (counted, never retried). The run schedules rate x duration requests, then waits up to
// --drain-timeout for the stragglers and prints one JSON summary on stdout.
//
// Every event is unique and derived from (--seed, request number): ids are
//   communications  provider_message_id = m-SSSSSSSS-CCCCCCCCCCCCCCCC
//   touchpoints     message_id          = t-SSSSSSSS-CCCCCCCCCCCCCCCC
//   Twilio          MessageSid          = SMSSSSSSSSCCCCCCCCCCCCCCCCCCCCCCCC
// (S = seed, C = event counter, hex). The same seed and --epoch produce byte-identical requests, so a
// second run is a replay. Event times derive from --epoch too (Twilio: RawDlrDoneDate on delivered and
// undelivered callbacks; sent and failed ones carry no time, as on Twilio). --ack-log appends one line
// per 2xx response: the ids that request carried, separated by spaces; the prefix (m-, t-, SM) says
// which table and column to look them up in.
//
// Threads: --threads workers, each with its own io_context, connections and every threads-th request
// of the schedule; they share only the start time and the ack log (each appends whole lines in one
// write(2), so several http_load processes may share one file too).
//
// --mode mix (bench/sizing.sh) sends each request to the endpoint of its kind, drawn per request from
// --mix weights: canonical NDJSON batches (/v1/events), SendGrid event arrays, single Twilio callbacks and
// Segment calls (page views with UTM and click ids, A/B exposures, conversions). --duplicates repeats an
// earlier request's body byte for byte (a provider retry: its events must be stored once); --invalid
// makes that share of canonical and SendGrid events invalid (id x-SSSSSSSS-C..., dead-lettered into
// rejected_events, also listed in the ack log). Ids: see mix_kinds below. The JSON gains a "mix" object
// (per kind: 2xx requests and events; repeated and invalid events among them).
//
//   http_load --url http://127.0.0.1:8080 --mode events|twilio|mix --rate R --duration S [--connections N]
//             [--events-per-request 100] [--touchpoints 0.3] [--seed N] [--epoch UNIX_S] [--timeout S]
//             [--drain-timeout S] [--threads T] [--ack-log FILE] [--dump-request N]
//             [--mix canonical=2,sendgrid=3,twilio=4,segment=1] [--sendgrid-events-per-request 20]
//             [--duplicates 0.05] [--invalid 0.01]
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "client.h"

using namespace http_load;

namespace {

bool is_loopback(const net::ip::address& a) {
  if (a.is_v4()) return (a.to_v4().to_uint() >> 24) == 127;
  auto v6 = a.to_v6();
  if (v6.is_loopback()) return true;
  return v6.is_v4_mapped() && (net::ip::make_address_v4(net::ip::v4_mapped, v6).to_uint() >> 24) == 127;
}

bool parse_url(const std::string& url, run_options& o, std::string& error) {
  constexpr std::string_view scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    error = "--url must start with http:// (no TLS: loopback only)";
    return false;
  }
  std::string rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  o.path = slash == std::string::npos ? "" : rest.substr(slash);
  std::string host = authority, port = "80";
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos) {
      error = "bad IPv6 literal in --url";
      return false;
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
  } else if (auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty() || port.empty()) {
    error = "--url needs a host and port, e.g. http://127.0.0.1:8080";
    return false;
  }
  o.host = host;
  o.port = port;
  return true;
}

std::string ms(std::uint64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(us) / 1000.0);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Open-loop HTTP/1.1 load generator for crm-ingest serve (loopback only)"};
  std::string url, ack_log_path;
  load_spec spec;
  run_options opt;
  double timeout_s = 30, drain_timeout_s = 10;
  app.add_option("--url", url, "http://127.0.0.1:PORT[/path]; the path defaults to /v1/events or /v1/webhooks/twilio")
      ->required();
  app.add_option("--mode", spec.mode, "events: canonical NDJSON; twilio: one Twilio status callback per request")
      ->check(CLI::IsMember({"events", "twilio", "mix"}));
  std::string mix_text = "canonical=2,sendgrid=3,twilio=4,segment=1";
  app.add_option("--mix", mix_text,
                 "--mode mix: request weights per kind (canonical NDJSON batch, SendGrid event array, Twilio callback, "
                 "Segment call)");
  app.add_option("--sendgrid-events-per-request", spec.sendgrid_events_per_request,
                 "--mode mix: events per SendGrid array")
      ->check(CLI::Range(1, 1000));
  app.add_option("--duplicates", spec.duplicate_share,
                 "--mode mix: share of requests that repeat an earlier request of the run (a provider retry)")
      ->check(CLI::Range(0.0, 0.9));
  app.add_option("--invalid", spec.invalid_share,
                 "--mode mix: share of canonical and SendGrid events that are invalid on purpose (dead-lettered)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--rate", opt.rate, "Requests per second, scheduled independently of the responses")
      ->check(CLI::Range(0.001, 10000000.0));
  app.add_option("--duration", opt.duration_s, "Seconds of scheduled requests")->check(CLI::Range(0.001, 3600.0));
  app.add_option("--connections", opt.connections, "Keep-alive connections in the pool")->check(CLI::Range(1, 10000));
  app.add_option("--threads", opt.threads, "Client threads (each with its share of connections and of the rate)")
      ->check(CLI::Range(1, 64));
  app.add_option("--events-per-request", spec.events_per_request, "Events per request in --mode events")
      ->check(CLI::Range(1, 100000));
  app.add_option("--touchpoints", spec.touchpoint_share, "Share of touchpoints among the events")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", spec.seed, "Run seed: part of every id; the same seed and epoch replay the same events")
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{0xffffffff}));
  app.add_option("--epoch", spec.epoch, "Unix seconds; occurred_at lie in the 7 days before (default: today 00:00 UTC)");
  app.add_option("--timeout", timeout_s, "A request not answered this long after its intended send time is given up")
      ->check(CLI::Range(0.01, 3600.0));
  app.add_option("--drain-timeout", drain_timeout_s, "After the schedule ends, wait at most this long for answers")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--ack-log", ack_log_path, "Append one line per 2xx response: the ids the request carried");
  std::int64_t dump_request = -1;
  app.add_option("--dump-request", dump_request, "Print request N's body and its ack line, send nothing");
  CLI11_PARSE(app, argc, argv);

  std::string error;
  if (!parse_url(url, opt, error)) {
    std::fprintf(stderr, "http_load: %s\n", error.c_str());
    return 2;
  }
  try {
    net::io_context ioc;
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(opt.host, opt.port);
    for (const auto& r : results) {
      if (!is_loopback(r.endpoint().address())) {
        std::fprintf(stderr, "http_load: %s resolves to %s, which is not a loopback address; refusing\n",
                     opt.host.c_str(), r.endpoint().address().to_string().c_str());
        return 2;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_load: cannot resolve %s: %s\n", opt.host.c_str(), e.what());
    return 2;
  }
  if (spec.mode == "mix" && spec.events_per_request > mix_ids_per_request) {
    std::fprintf(stderr, "http_load: --mode mix takes at most %" PRIu64 " events per canonical batch\n",
                 mix_ids_per_request);
    return 2;
  }
  if (spec.mode == "mix") {
    // canonical=2,sendgrid=3,...: every kind named at most once, unnamed ones weigh 0.
    spec.mix_weights = {};
    std::string_view rest = mix_text;
    double total = 0;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      auto eq = item.find('=');
      std::size_t k = 0;
      while (k < mix_kinds.size() && (eq == std::string_view::npos || mix_kinds[k].name != item.substr(0, eq))) ++k;
      char* end = nullptr;
      const std::string number(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
      const double w = std::strtod(number.c_str(), &end);
      if (k == mix_kinds.size() || number.empty() || *end != '\0' || !(w >= 0)) {
        std::fprintf(stderr, "http_load: --mix: bad item '%.*s' (want KIND=WEIGHT, KIND one of canonical, sendgrid, "
                     "twilio, segment)\n", static_cast<int>(item.size()), item.data());
        return 2;
      }
      spec.mix_weights[k] = w;
      total += w;
    }
    if (total <= 0) {
      std::fprintf(stderr, "http_load: --mix: the weights add up to 0\n");
      return 2;
    }
  }
  if (opt.path.empty() || opt.path == "/") opt.path = spec.mode == "events" ? "/v1/events" : "/v1/webhooks/twilio";
  opt.content_type = spec.mode == "events" ? "application/x-ndjson" : "application/x-www-form-urlencoded";
  opt.threads = std::min(opt.threads, opt.connections);
  opt.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
  opt.drain_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(drain_timeout_s * 1000));
  if (spec.epoch == 0) spec.epoch = std::time(nullptr) / 86400 * 86400;
  if (spec.mode == "twilio") spec.events_per_request = 1;

  int ack_fd = -1;
  if (!ack_log_path.empty()) {
    ack_fd = ::open(ack_log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (ack_fd < 0) {
      std::fprintf(stderr, "http_load: cannot open %s for appending: %s\n", ack_log_path.c_str(), std::strerror(errno));
      return 2;
    }
  }

  body_factory bodies(spec);
  if (dump_request >= 0) {
    std::string body, line;
    const auto& t = bodies.build(static_cast<std::uint64_t>(dump_request), body);
    body_factory::ack_line(t, body, line);
    const bool mix = bodies.mix();
    std::printf("POST %s (%s)%s\n%s\n-- ack line:\n%s",
                mix ? std::string(mix_kinds[t.kind].path).c_str() : opt.path.c_str(),
                mix ? std::string(mix_kinds[t.kind].content_type).c_str() : opt.content_type.c_str(),
                bodies.duplicate(static_cast<std::uint64_t>(dump_request)) ? " (a repeat)" : "", body.c_str(),
                line.c_str());
    return 0;
  }
  std::vector<std::unique_ptr<worker>> workers;
  try {
    for (unsigned t = 0; t < opt.threads; ++t) workers.push_back(std::make_unique<worker>(opt, bodies, t, ack_fd));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_load: %s\n", e.what());
    return 2;
  }
  const auto start = steady::now() + std::chrono::milliseconds(5);
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w, start] { w->run(start); });
  for (auto& t : threads) t.join();
  const auto ended = steady::now();
  if (ack_fd >= 0) ::close(ack_fd);

  run_stats s;
  for (auto& w : workers) s.merge(w->stats());
  const auto last = s.responses ? s.last_response : ended;
  const double elapsed = std::max(1e-9, std::chrono::duration<double>(std::max(last, start) - start).count());

  std::string non_2xx = "{";
  for (auto& [code, n] : s.non_2xx) {
    non_2xx += (non_2xx.size() > 1 ? "," : "") + std::string("\"") + std::to_string(code) + "\":" + std::to_string(n);
  }
  non_2xx += "}";
  std::string mix_json;
  if (bodies.mix()) {
    char buf[256];
    mix_json = ",\"mix\":{\"kinds\":{";
    for (std::size_t k = 0; k < mix_kinds.size(); ++k) {
      std::snprintf(buf, sizeof buf, "%s\"%.*s\":{\"weight\":%g,\"requests_ok\":%" PRIu64 ",\"events_acked\":%" PRIu64 "}",
                    k ? "," : "", static_cast<int>(mix_kinds[k].name.size()), mix_kinds[k].name.data(),
                    spec.mix_weights[k], s.kind_ok[k], s.kind_events_acked[k]);
      mix_json += buf;
    }
    std::snprintf(buf, sizeof buf,
                  "},\"duplicate_share\":%g,\"invalid_share\":%g,\"duplicate_requests_ok\":%" PRIu64
                  ",\"duplicate_events_acked\":%" PRIu64 ",\"invalid_events_acked\":%" PRIu64 "}",
                  spec.duplicate_share, spec.invalid_share, s.duplicate_ok, s.duplicate_events_acked,
                  s.invalid_events_acked);
    mix_json += buf;
  }
  const auto& h = s.latency;
  std::printf(
      "{\"mode\":\"%s\",\"url\":\"http://%s:%s%s\",\"seed\":%" PRIu64 ",\"offered_rps\":%.3f,\"duration_s\":%.3f,"
      "\"connections\":%u,\"threads\":%u,\"events_per_request\":%u,"
      "\"scheduled\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"non_2xx\":%s,"
      "\"status_503_without_retry_after\":%" PRIu64 ","
      "\"errors\":{\"io\":%" PRIu64 ",\"timeout\":%" PRIu64 ",\"expired_unsent\":%" PRIu64 ",\"unfinished\":%" PRIu64
      "},\"connect_failures\":%" PRIu64 ",\"reconnects\":%" PRIu64 ","
      "\"events_sent\":%" PRIu64 ",\"events_acked\":%" PRIu64 ",\"accepted_reported\":%" PRIu64
      ",\"rejected_reported\":%" PRIu64 ","
      "\"elapsed_s\":%.3f,\"achieved_rps\":%.1f,\"achieved_events_per_s\":%.1f,"
      "\"latency_ms\":{\"count\":%" PRIu64 ",\"p50\":%s,\"p90\":%s,\"p95\":%s,\"p99\":%s,\"p99_9\":%s,\"max\":%s,\"mean\":%.3f},"
      "\"latency_method\":\"from intended send time to last response byte, all HTTP responses; log-linear histogram "
      "(exact below 128 us, else <=1.6%% high)\","
      "\"max_queued\":%" PRIu64 ",\"max_release_lag_ms\":%s%s}\n",
      spec.mode.c_str(), opt.host.c_str(), opt.port.c_str(), opt.path.c_str(), spec.seed, opt.rate, opt.duration_s,
      opt.connections, opt.threads, spec.events_per_request, s.scheduled, s.sent, s.ok, non_2xx.c_str(),
      s.status_503_without_retry_after, s.io_errors, s.timeouts, s.expired, s.unfinished, s.connect_failures,
      s.reconnects, s.events_sent, s.events_acked, s.accepted_reported, s.rejected_reported, elapsed,
      static_cast<double>(s.ok) / elapsed, static_cast<double>(s.events_acked) / elapsed, h.count(),
      ms(h.percentile(0.50)).c_str(), ms(h.percentile(0.90)).c_str(), ms(h.percentile(0.95)).c_str(),
      ms(h.percentile(0.99)).c_str(),
      ms(h.percentile(0.999)).c_str(), ms(h.max()).c_str(), h.mean() / 1000.0, s.max_queued,
      ms(s.max_release_lag_us).c_str(), mix_json.c_str());
  return 0;
}
