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
#include <utility>  // Boost 1.74's asio/awaitable.hpp misses it under GCC 12

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <CLI/CLI.hpp>

namespace {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------------
// Latency histogram: HdrHistogram's log-linear layout in microseconds. Values below 128 us are exact;
// above, every power of two is split into 64 linear sub-buckets, so a reported value is at most 1/64
// (1.6%) above the true one. Percentiles report the bucket's highest value (never optimistic); max is
// exact.
class latency_histogram {
 public:
  static constexpr int sub_bucket_bits = 7;
  static constexpr std::uint64_t half = 1u << (sub_bucket_bits - 1);

  latency_histogram() : counts_(64 * half + 2 * half, 0) {}

  void record(std::uint64_t us) {
    ++counts_[index_of(us)];
    ++total_;
    sum_ += static_cast<double>(us);
    max_ = std::max(max_, us);
  }

  void merge(const latency_histogram& o) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return total_ ? sum_ / static_cast<double>(total_) : 0.0; }

  // The smallest bucket upper bound at or below which a fraction q of the values lie.
  std::uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    auto target = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    target = std::clamp<std::uint64_t>(target, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= target) return std::min(highest_of(i), max_);
    }
    return max_;
  }

 private:
  static std::size_t index_of(std::uint64_t v) {
    int msb = 63 - std::countl_zero(v | 1);
    if (msb < sub_bucket_bits) return static_cast<std::size_t>(v);
    int shift = msb - (sub_bucket_bits - 1);
    return static_cast<std::size_t>(shift) * half + static_cast<std::size_t>(v >> shift);
  }
  static std::uint64_t highest_of(std::size_t index) {
    if (index < 2 * half) return index;
    std::uint64_t shift = index / half - 1;
    std::uint64_t sub = index - shift * half;
    return ((sub + 1) << shift) - 1;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------------------------------
// Request bodies. A few templates are built once; a request copies one and writes its counters into
// fixed-width hex fields, so generating 100 unique events costs a memcpy and 100 small hex writes.
struct id_field {
  std::size_t id_offset;       // where the id (with its prefix) starts: what the ack log records
  std::size_t id_length;
  std::size_t counter_offset;  // the hex digits to patch
  std::size_t counter_width;
  std::uint64_t delta;         // counter = request_number * per_request + delta
  bool acked;                  // recorded in the ack log (Twilio's SmsSid repeats MessageSid: not recorded)
};

struct body_template {
  std::string text;
  std::vector<id_field> ids;
  unsigned events = 0;   // events the body carries (invalid ones included)
  unsigned invalid = 0;  // of which invalid on purpose (--mode mix): dead-lettered, never stored
  unsigned kind = 0;     // --mode mix: index into mix_kinds
};

void put_hex(char* at, std::size_t width, std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = width; i-- > 0;) {
    at[i] = digits[v & 15];
    v >>= 4;
  }
}

std::string hex(std::uint64_t v, std::size_t width) {
  std::string s(width, '0');
  put_hex(s.data(), width, v);
  return s;
}

std::string iso8601(std::int64_t secs) {
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Appends `prefix` + seed + a counter placeholder to `out` and records the field.
void append_id(body_template& t, std::string_view prefix, const std::string& seed_hex, std::size_t counter_width,
               std::uint64_t delta, bool acked) {
  id_field f{};
  f.id_offset = t.text.size();
  t.text += prefix;
  t.text += seed_hex;
  f.counter_offset = t.text.size();
  f.counter_width = counter_width;
  t.text.append(counter_width, '0');
  f.id_length = t.text.size() - f.id_offset;
  f.delta = delta;
  f.acked = acked;
  t.ids.push_back(f);
}

struct load_spec {
  std::string mode = "events";
  std::uint64_t seed = 1;
  std::int64_t epoch = 0;  // occurred_at of the events lie in the 7 days before it
  unsigned events_per_request = 100;
  double touchpoint_share = 0.3;
  // --mode mix
  std::array<double, 4> mix_weights{};  // per mix_kinds entry
  unsigned sendgrid_events_per_request = 20;
  double duplicate_share = 0;  // requests that repeat an earlier request's body byte for byte (a provider retry)
  double invalid_share = 0;    // events (canonical and SendGrid) that are invalid on purpose
};

constexpr std::size_t template_count = 16;

std::vector<body_template> events_templates(const load_spec& spec) {
  static constexpr std::string_view statuses[] = {"queued", "sent", "delivered", "opened", "clicked", "bounced",
                                                  "failed", "replied", "unsubscribed"};
  static constexpr unsigned status_weights[] = {2, 30, 28, 20, 8, 4, 3, 3, 2};
  static constexpr std::string_view phone_channels[] = {"sms", "whatsapp", "voice"};
  static constexpr std::string_view touch_types[] = {"page_view", "ad_click", "email_click", "form_submit",
                                                     "conversion", "experiment_exposure"};
  static constexpr std::string_view sources[] = {"google", "facebook", "newsletter", "bing", "linkedin", "partner-blog"};
  static constexpr std::string_view mediums[] = {"cpc", "paid_social", "email", "organic", "social", "referral"};
  std::discrete_distribution<unsigned> status_of(std::begin(status_weights), std::end(status_weights));
  const std::string seed_hex = hex(spec.seed, 8);
  std::vector<body_template> out(template_count);
  char buf[512];
  for (std::size_t k = 0; k < template_count; ++k) {
    std::mt19937_64 rng(spec.seed * 1000003u + k);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    auto& t = out[k];
    t.events = spec.events_per_request;
    for (unsigned j = 0; j < spec.events_per_request; ++j) {
      const std::int64_t at = spec.epoch - 1 - static_cast<std::int64_t>(rng() % (7 * 86400));
      const auto lead = 1 + rng() % 200000;
      const auto campaign = 1 + rng() % 50;
      if (spec.mode == "mix" && u(rng) < spec.invalid_share) {
        // Invalid on purpose: a time that is no time. Dead-lettered with its reason; its id is x-...
        t.text += R"({"kind":"communication","provider":"loadgen","provider_message_id":")";
        append_id(t, "x-", seed_hex + "-", 16, j, true);
        std::snprintf(buf, sizeof buf,
                      R"(","occurred_at":"yesterday-ish","lead_id":%)" PRIu64
                      R"(,"channel":"email","status":"delivered","email":"lead.%)" PRIu64 R"(@example.com"})" "\n",
                      lead, lead);
        t.text += buf;
        ++t.invalid;
        continue;
      }
      if (u(rng) < spec.touchpoint_share) {
        t.text += R"({"kind":"touchpoint","message_id":")";
        append_id(t, "t-", seed_hex + "-", 16, j, true);
        const auto tt = touch_types[rng() % std::size(touch_types)];
        const auto s = rng() % std::size(sources);
        std::string extra;
        if (tt == "conversion") {
          std::snprintf(buf, sizeof buf, R"(,"conversion_type":"purchase","conversion_value":%u.%02u,"currency":"USD")",
                        static_cast<unsigned>(rng() % 500), static_cast<unsigned>(rng() % 100));
          extra = buf;
        } else if (tt == "experiment_exposure") {
          std::snprintf(buf, sizeof buf, R"(,"ab_test_id":"test-%u","variant":"%s")",
                        static_cast<unsigned>(campaign % 5), (rng() & 1) ? "A" : "B");
          extra = buf;
        }
        std::snprintf(buf, sizeof buf,
                      R"(","occurred_at":"%s","lead_id":%)" PRIu64
                      R"(,"anonymous_id":"anon-%)" PRIx64
                      R"(","touch_type":"%.*s","landing_url":"https://shop.example.com/p/%u?utm_source=%.*s&utm_medium=%.*s&utm_campaign=c%)" PRIu64
                      R"(","referrer":"https://www.%.*s.com/","campaign_id":%)" PRIu64 "%s}\n",
                      iso8601(at).c_str(), lead, static_cast<std::uint64_t>(rng() % 1000000),
                      static_cast<int>(tt.size()), tt.data(), static_cast<unsigned>(rng() % 997),
                      static_cast<int>(sources[s].size()), sources[s].data(), static_cast<int>(mediums[s].size()),
                      mediums[s].data(), campaign, static_cast<int>(sources[(s + 1) % std::size(sources)].size()),
                      sources[(s + 1) % std::size(sources)].data(), campaign, extra.c_str());
        t.text += buf;
      } else {
        const bool phone = u(rng) < 0.3;
        const auto channel = phone ? phone_channels[rng() % std::size(phone_channels)] : std::string_view("email");
        const auto status = statuses[status_of(rng)];
        t.text += R"({"kind":"communication","provider":"loadgen","provider_message_id":")";
        append_id(t, "m-", seed_hex + "-", 16, j, true);
        std::string contact;
        if (phone) {
          std::snprintf(buf, sizeof buf, R"("phone":"+1415%07u")", static_cast<unsigned>(5550000 + rng() % 9999));
        } else {
          std::snprintf(buf, sizeof buf, R"("email":"Lead.%)" PRIu64 R"(@Example.com")", lead);
        }
        contact = buf;
        std::snprintf(buf, sizeof buf,
                      R"(","occurred_at":"%s","lead_id":%)" PRIu64 R"(,"campaign_id":%)" PRIu64
                      R"(,"channel":"%.*s","status":"%.*s",%s,"metadata":{"template":%zu,"tags":["load"]}})"
                      "\n",
                      iso8601(at).c_str(), lead, campaign, static_cast<int>(channel.size()), channel.data(),
                      static_cast<int>(status.size()), status.data(), contact.c_str(), k);
        t.text += buf;
      }
    }
  }
  return out;
}

std::vector<body_template> twilio_templates(const load_spec& spec) {
  // Twilio's MessageStatus values of an outbound SMS's life (fixtures/webhooks/twilio).
  static constexpr std::string_view statuses[] = {"sent", "delivered", "delivered", "delivered", "undelivered", "failed"};
  const std::string seed_hex = hex(spec.seed, 8);
  std::vector<body_template> out(template_count);
  char buf[256];
  for (std::size_t k = 0; k < template_count; ++k) {
    std::mt19937_64 rng(spec.seed * 1000003u + k);
    auto& t = out[k];
    t.events = 1;
    const auto status = statuses[k % std::size(statuses)];
    t.text = "AccountSid=AC" + seed_hex + std::string(24, '0') + "&ApiVersion=2010-04-01";
    if (status == "undelivered" || status == "failed") t.text += "&ErrorCode=30003";
    t.text += "&From=%2B15017250604&MessageSid=";
    append_id(t, "SM", seed_hex, 24, 0, true);
    std::snprintf(buf, sizeof buf, "&MessageStatus=%.*s&MessagingServiceSid=MG%s%s",
                  static_cast<int>(status.size()), status.data(), seed_hex.c_str(), std::string(24, '0').c_str());
    t.text += buf;
    if (status == "delivered" || status == "undelivered") {
      // The carrier's receipt time (YYMMDDhhmm, UTC), as on Twilio's final callbacks.
      const std::time_t at = static_cast<std::time_t>(spec.epoch - 60 - static_cast<std::int64_t>(rng() % (7 * 86400)));
      std::tm tm{};
      gmtime_r(&at, &tm);
      char done[16];
      std::strftime(done, sizeof done, "%y%m%d%H%M", &tm);
      t.text += "&RawDlrDoneDate=";
      t.text += done;
    }
    t.text += "&SmsSid=";
    append_id(t, "SM", seed_hex, 24, 0, false);
    std::snprintf(buf, sizeof buf, "&SmsStatus=%.*s&To=%%2B1415%07u", static_cast<int>(status.size()), status.data(),
                  static_cast<unsigned>(5550000 + rng() % 9999));
    t.text += buf;
  }
  return out;
}

// --mode mix: the kinds of request a CRM's collector sees, each on its own endpoint. Ids carry the seed
// and a counter of (request number x 1024 + position), so all kinds share one id space per prefix:
//   canonical  m-/t- (communications/touchpoints), x- invalid (dead-lettered)
//   sendgrid   g-    sg_message_id (communications), its sg_event_id e-...; x- invalid
//   twilio     SM    MessageSid (communications)
//   segment    s-    messageId (touchpoints: page views with UTM + gclid, A/B exposures, conversions, forms)
struct mix_kind {
  std::string_view name;
  std::string_view path;
  std::string_view content_type;
};
constexpr std::array<mix_kind, 4> mix_kinds{{
    {"canonical", "/v1/events", "application/x-ndjson"},
    {"sendgrid", "/v1/webhooks/sendgrid", "application/json"},
    {"twilio", "/v1/webhooks/twilio", "application/x-www-form-urlencoded"},
    {"segment", "/v1/webhooks/segment", "application/json"},
}};
constexpr std::uint64_t mix_ids_per_request = 1024;

// SendGrid's Event Webhook: a JSON array of events (fixtures/webhooks/sendgrid), with the CRM's custom
// args at the top level and, on some, the legacy A/B fields.
std::vector<body_template> sendgrid_templates(const load_spec& spec) {
  static constexpr std::string_view events[] = {"processed", "delivered", "delivered", "open", "open", "click",
                                                "bounce", "deferred", "dropped", "unsubscribe", "spamreport"};
  const std::string seed_hex = hex(spec.seed, 8);
  std::vector<body_template> out(template_count);
  char buf[768];
  for (std::size_t k = 0; k < template_count; ++k) {
    std::mt19937_64 rng(spec.seed * 1000033u + k);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    auto& t = out[k];
    t.events = spec.sendgrid_events_per_request;
    t.text = "[";
    for (unsigned j = 0; j < spec.sendgrid_events_per_request; ++j) {
      if (j) t.text += ",\n";
      const auto lead = 1 + rng() % 200000;
      const auto campaign = 1 + rng() % 50;
      const std::int64_t at = spec.epoch - 1 - static_cast<std::int64_t>(rng() % (7 * 86400));
      if (u(rng) < spec.invalid_share) {
        t.text += R"({"email":"lead.)" + std::to_string(lead) + R"(@example.com","timestamp":1513299569,"event":"delivered","sg_event_id":"z-)" + seed_hex + "-" + hex(k * 1024 + j, 16) + R"(","sg_message_id":")";
        append_id(t, "x-", seed_hex + "-", 16, j, true);
        t.text += R"(","lead_id":"not-a-number-)" + std::to_string(lead) + "\"}";
        ++t.invalid;
        continue;
      }
      const auto ev = events[rng() % std::size(events)];
      t.text += R"({"email":"Lead.)" + std::to_string(lead) + R"(@Example.com","timestamp":)" + std::to_string(at) +
                R"(,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":")" + std::string(ev) +
                R"(","category":["newsletter","load"],"sg_event_id":")";
      append_id(t, "e-", seed_hex + "-", 16, j, false);
      t.text += R"(","sg_message_id":")";
      append_id(t, "g-", seed_hex + "-", 16, j, true);
      std::snprintf(buf, sizeof buf, R"(","lead_id":%)" PRIu64 R"(,"campaign_id":%)" PRIu64, lead, campaign);
      t.text += buf;
      if (campaign % 3 == 0) {
        std::snprintf(buf, sizeof buf, R"(,"ab_test_id":"test-%u","variant":"%s")", static_cast<unsigned>(campaign % 5),
                      (rng() & 1) ? "A" : "B");
        t.text += buf;
      }
      if (ev == "click") {
        std::snprintf(buf, sizeof buf,
                      R"(,"url":"https://shop.example.com/p/%u?utm_source=newsletter&utm_medium=email&utm_campaign=c%)" PRIu64
                      R"~(","useragent":"Mozilla/5.0 (X11; Linux x86_64)","ip":"203.0.113.7")~",
                      static_cast<unsigned>(rng() % 997), campaign);
        t.text += buf;
      } else if (ev == "bounce" || ev == "dropped") {
        t.text += R"(,"reason":"550 5.1.1 The email account that you tried to reach does not exist","status":"5.1.1","type":"bounce")";
      } else if (ev == "delivered") {
        t.text += R"(,"response":"250 OK")";
      }
      t.text += "}";
    }
    t.text += "]";
  }
  return out;
}

// Segment Spec calls (fixtures/webhooks/segment): one call per request.
std::vector<body_template> segment_templates(const load_spec& spec) {
  static constexpr std::string_view sources[] = {"google", "facebook", "bing", "linkedin", "newsletter"};
  static constexpr std::string_view mediums[] = {"cpc", "paid_social", "cpc", "social", "email"};
  const std::string seed_hex = hex(spec.seed, 8);
  std::vector<body_template> out(template_count);
  char buf[1536];
  for (std::size_t k = 0; k < template_count; ++k) {
    std::mt19937_64 rng(spec.seed * 1000037u + k);
    auto& t = out[k];
    t.events = 1;
    const auto lead = 1 + rng() % 200000;
    const auto campaign = 1 + rng() % 50;
    const auto s = rng() % std::size(sources);
    const std::string at = iso8601(spec.epoch - 1 - static_cast<std::int64_t>(rng() % (7 * 86400)));
    std::snprintf(buf, sizeof buf, R"({"anonymousId":"anon-%)" PRIx64 R"(","userId":"lead-%)" PRIu64 R"(","messageId":")",
                  static_cast<std::uint64_t>(rng() % 1000000), lead);
    t.text = buf;
    append_id(t, "s-", seed_hex + "-", 16, 0, true);
    switch (k % 4) {
      case 0:
      case 1:  // a landing page view with UTM and a click id
        std::snprintf(buf, sizeof buf,
                      R"(","type":"page","name":"Pricing","context":{"campaign":{"name":"c%)" PRIu64
                      R"(","source":"%.*s","medium":"%.*s"},"page":{"path":"/pricing","referrer":"https://www.%.*s.com/","url":"https://www.example.com/pricing?utm_source=%.*s&utm_medium=%.*s&utm_campaign=c%)" PRIu64
                      R"(&gclid=EAIaIQobChMI%)" PRIx64 R"("},"traits":{"lead_id":%)" PRIu64
                      R"(}},"properties":{"path":"/pricing","campaign_id":%)" PRIu64 R"(},"timestamp":"%s"})",
                      campaign, static_cast<int>(sources[s].size()), sources[s].data(),
                      static_cast<int>(mediums[s].size()), mediums[s].data(), static_cast<int>(sources[s].size()),
                      sources[s].data(), static_cast<int>(sources[s].size()), sources[s].data(),
                      static_cast<int>(mediums[s].size()), mediums[s].data(), campaign,
                      static_cast<std::uint64_t>(rng()), lead, campaign, at.c_str());
        break;
      case 2:  // an A/B exposure
        std::snprintf(buf, sizeof buf,
                      R"(","type":"track","event":"Experiment Viewed","properties":{"experiment_id":"test-%u","variation_id":"%s","lead_id":%)" PRIu64
                      R"(,"campaign_id":%)" PRIu64 R"(},"timestamp":"%s"})",
                      static_cast<unsigned>(campaign % 5), (rng() & 1) ? "A" : "B", lead, campaign, at.c_str());
        break;
      default:  // a conversion
        std::snprintf(buf, sizeof buf,
                      R"(","type":"track","event":"Order Completed","properties":{"order_id":"o-%)" PRIx64
                      R"(","revenue":%u.%02u,"currency":"EUR","lead_id":%)" PRIu64 R"(,"campaign_id":%)" PRIu64
                      R"(},"context":{"campaign":{"name":"c%)" PRIu64 R"(","source":"%.*s","medium":"%.*s"}},"timestamp":"%s"})",
                      static_cast<std::uint64_t>(rng()), static_cast<unsigned>(rng() % 900 + 10),
                      static_cast<unsigned>(rng() % 100), lead, campaign, campaign,
                      static_cast<int>(sources[s].size()), sources[s].data(), static_cast<int>(mediums[s].size()),
                      mediums[s].data(), at.c_str());
        break;
    }
    t.text += buf;
  }
  return out;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
double unit_of(std::uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

class body_factory {
 public:
  explicit body_factory(const load_spec& spec) : spec_(spec) {
    if (spec.mode == "mix") {
      mix_[0] = events_templates(spec);
      mix_[1] = sendgrid_templates(spec);
      mix_[2] = twilio_templates(spec);
      mix_[3] = segment_templates(spec);
      for (std::size_t k = 0; k < mix_.size(); ++k) {
        for (auto& t : mix_[k]) t.kind = static_cast<unsigned>(k);
      }
      double sum = 0;
      for (std::size_t k = 0; k < mix_.size(); ++k) cumulative_[k] = (sum += std::max(0.0, spec.mix_weights[k]));
      for (auto& c : cumulative_) c /= sum > 0 ? sum : 1;
      per_request_ = 0;
    } else {
      templates_ = spec.mode == "events" ? events_templates(spec) : twilio_templates(spec);
      per_request_ = spec.mode == "events" ? spec.events_per_request : 1;
    }
  }

  bool mix() const { return per_request_ == 0; }
  unsigned events_per_request() const { return per_request_; }

  // --mode mix: the request whose body request `n` carries. A duplicate repeats an earlier request of
  // the run byte for byte (up to 512 back), as a provider's retry does; a repeat of a repeat resolves to
  // the original.
  std::uint64_t body_number(std::uint64_t n) const {
    while (n > 0 && unit_of(splitmix64(spec_.seed * 0x100000001b3ull ^ (n * 2 + 1))) < spec_.duplicate_share) {
      n = n - 1 - splitmix64(spec_.seed ^ (n * 2)) % std::min<std::uint64_t>(n, 512);
    }
    return n;
  }
  bool duplicate(std::uint64_t n) const { return mix() && body_number(n) != n; }

  // Request `n`'s body into `out` (capacity reused).
  const body_template& build(std::uint64_t n, std::string& out) const {
    if (!mix()) {
      const auto& t = templates_[n % templates_.size()];
      out.assign(t.text);
      for (const auto& f : t.ids) put_hex(out.data() + f.counter_offset, f.counter_width, n * per_request_ + f.delta);
      return t;
    }
    const auto b = body_number(n);
    const double x = unit_of(splitmix64(spec_.seed * 31 + b));
    std::size_t k = 0;
    while (k + 1 < cumulative_.size() && x >= cumulative_[k]) ++k;
    const auto& t = mix_[k][b % mix_[k].size()];
    out.assign(t.text);
    for (const auto& f : t.ids) put_hex(out.data() + f.counter_offset, f.counter_width, b * mix_ids_per_request + f.delta);
    return t;
  }

  // The acknowledged ids of a body built from `t`, space-separated, newline-terminated.
  static void ack_line(const body_template& t, const std::string& body, std::string& line) {
    line.clear();
    for (const auto& f : t.ids) {
      if (!f.acked) continue;
      if (!line.empty()) line.push_back(' ');
      line.append(body, f.id_offset, f.id_length);
    }
    line.push_back('\n');
  }

 private:
  load_spec spec_;
  std::vector<body_template> templates_;
  std::array<std::vector<body_template>, mix_kinds.size()> mix_;
  std::array<double, mix_kinds.size()> cumulative_{};
  unsigned per_request_ = 0;
};

// ---------------------------------------------------------------------------------------------------
struct run_options {
  std::string host;
  std::string port;
  std::string path;
  std::string content_type;
  double rate = 100;
  double duration_s = 10;
  unsigned connections = 64;
  unsigned threads = 1;
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds drain_timeout{10000};
};

struct run_stats {
  std::uint64_t scheduled = 0;  // due within the run
  std::uint64_t sent = 0;       // written to a connection
  std::uint64_t responses = 0;  // answered with any HTTP status
  std::uint64_t ok = 0;         // 2xx
  std::map<unsigned, std::uint64_t> non_2xx;
  std::uint64_t status_503_without_retry_after = 0;
  std::uint64_t io_errors = 0;     // sent, but the connection failed before a whole response
  std::uint64_t timeouts = 0;      // sent, not answered within --timeout of the intended time
  std::uint64_t expired = 0;       // waited for a connection longer than --timeout: never sent
  std::uint64_t unfinished = 0;    // still queued or in flight when --drain-timeout ran out
  std::uint64_t connect_failures = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t events_sent = 0;
  std::uint64_t events_acked = 0;       // events carried by 2xx requests
  std::uint64_t accepted_reported = 0;  // sum of "accepted" in 2xx bodies
  std::uint64_t rejected_reported = 0;  // sum of "rejected" in 2xx bodies
  std::uint64_t max_queued = 0;
  std::uint64_t max_release_lag_us = 0;  // how late the client itself released a due request
  // --mode mix: 2xx requests and their events per kind; repeats (duplicates) and invalid events among them
  std::array<std::uint64_t, mix_kinds.size()> kind_ok{};
  std::array<std::uint64_t, mix_kinds.size()> kind_events_acked{};
  std::uint64_t duplicate_ok = 0;
  std::uint64_t duplicate_events_acked = 0;
  std::uint64_t invalid_events_acked = 0;
  steady::time_point last_response{};
  latency_histogram latency;

  void merge(const run_stats& o) {
    scheduled += o.scheduled;
    sent += o.sent;
    responses += o.responses;
    ok += o.ok;
    for (auto& [k, v] : o.non_2xx) non_2xx[k] += v;
    status_503_without_retry_after += o.status_503_without_retry_after;
    io_errors += o.io_errors;
    timeouts += o.timeouts;
    expired += o.expired;
    unfinished += o.unfinished;
    connect_failures += o.connect_failures;
    reconnects += o.reconnects;
    events_sent += o.events_sent;
    events_acked += o.events_acked;
    accepted_reported += o.accepted_reported;
    rejected_reported += o.rejected_reported;
    max_queued = std::max(max_queued, o.max_queued);
    max_release_lag_us = std::max(max_release_lag_us, o.max_release_lag_us);
    for (std::size_t k = 0; k < kind_ok.size(); ++k) {
      kind_ok[k] += o.kind_ok[k];
      kind_events_acked[k] += o.kind_events_acked[k];
    }
    duplicate_ok += o.duplicate_ok;
    duplicate_events_acked += o.duplicate_events_acked;
    invalid_events_acked += o.invalid_events_acked;
    last_response = std::max(last_response, o.last_response);
    latency.merge(o.latency);
  }
};

std::uint64_t json_number_after(std::string_view body, std::string_view key) {
  auto p = body.find(key);
  if (p == std::string_view::npos) return 0;
  std::uint64_t v = 0;
  for (p += key.size(); p < body.size() && body[p] >= '0' && body[p] <= '9'; ++p) v = v * 10 + (body[p] - '0');
  return v;
}

class worker;

// One keep-alive connection. Owned by its worker's thread.
class connection {
 public:
  connection(worker& w, net::io_context& ioc) : worker_(w), socket_(ioc), timer_(ioc), retry_timer_(ioc) {}

  bool connect_now(const tcp::resolver::results_type& endpoints);
  void connect_later(std::chrono::milliseconds delay);
  void send(std::uint64_t n, steady::time_point intended);
  void close();
  bool busy() const { return busy_; }

 private:
  void watch_idle();
  void on_written(error_code ec);
  void on_read(error_code ec);
  void fail(error_code ec);
  void reconnect(bool after_failure);

  worker& worker_;
  tcp::socket socket_;
  net::steady_timer timer_;
  net::steady_timer retry_timer_;
  boost::beast::flat_buffer buffer_;
  std::optional<bhttp::response_parser<bhttp::string_body>> parser_;
  std::string header_, body_, ack_;
  const body_template* template_ = nullptr;
  bool duplicate_ = false;
  steady::time_point intended_{};
  std::uint64_t generation_ = 0;  // bumped on every request and close: stale completions are ignored
  std::chrono::milliseconds backoff_{0};
  bool busy_ = false;
  bool timed_out_ = false;
  bool closing_ = false;
};

class worker {
 public:
  worker(const run_options& opt, const body_factory& bodies, unsigned index, int ack_fd)
      : opt_(opt), bodies_(bodies), ack_fd_(ack_fd), tick_(ioc_) {
    tcp::resolver resolver(ioc_);
    endpoints_ = resolver.resolve(opt.host, opt.port);
    unsigned conns = opt.connections / opt.threads + (index < opt.connections % opt.threads ? 1 : 0);
    for (unsigned i = 0; i < std::max(1u, conns); ++i) {
      conns_.push_back(std::make_unique<connection>(*this, ioc_));
      if (conns_.back()->connect_now(endpoints_)) idle_.push_back(conns_.back().get());
    }
    total_ = static_cast<std::uint64_t>(std::floor(opt.rate * opt.duration_s));
    next_ = index;
  }

  void run(steady::time_point start) {
    start_ = start;
    end_of_schedule_ = intended(total_);
    for (auto& c : conns_) {
      if (!c->busy() && std::find(idle_.begin(), idle_.end(), c.get()) == idle_.end()) c->connect_later({});
    }
    tick_.expires_at(start_);
    tick_.async_wait([this](error_code ec) {
      if (!ec) on_tick();
    });
    ioc_.run();
  }

  const run_stats& stats() const { return stats_; }

  // Called by connections.
  void on_idle(connection* c) {
    idle_.push_back(c);
    dispatch(steady::now());
  }
  void remove_idle(connection* c) { std::erase(idle_, c); }
  void on_response(steady::time_point intended, steady::time_point now, unsigned status, bool retry_after,
                   const std::string& body, const std::string& ack_line, const body_template* t, bool duplicate) {
    --in_flight_;
    stats_.responses++;
    stats_.last_response = now;
    stats_.latency.record(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - intended).count()));
    if (status >= 200 && status < 300) {
      stats_.ok++;
      const unsigned events = t ? t->events : bodies_.events_per_request();
      stats_.events_acked += events;
      if (t && bodies_.mix()) {
        stats_.kind_ok[t->kind]++;
        stats_.kind_events_acked[t->kind] += events;
        stats_.invalid_events_acked += t->invalid;
        if (duplicate) {
          stats_.duplicate_ok++;
          stats_.duplicate_events_acked += events;
        }
      }
      stats_.accepted_reported += json_number_after(body, "\"accepted\":");
      stats_.rejected_reported += json_number_after(body, "\"rejected\":");
      if (ack_fd_ >= 0) {
        ack_buffer_ += ack_line;
        if (ack_buffer_.size() >= (1u << 20)) flush_acks();
      }
    } else {
      stats_.non_2xx[status]++;
      if (status == 503 && !retry_after) stats_.status_503_without_retry_after++;
    }
  }
  void on_request_failed(bool timed_out) {
    --in_flight_;
    (timed_out ? stats_.timeouts : stats_.io_errors)++;
  }
  void count_connect_failure() { stats_.connect_failures++; }
  void count_reconnect() { stats_.reconnects++; }
  bool finished() const { return finished_; }
  const run_options& options() const { return opt_; }
  const body_factory& bodies() const { return bodies_; }
  const tcp::resolver::results_type& endpoints() const { return endpoints_; }
  void count_sent(unsigned events) {
    stats_.sent++;
    stats_.events_sent += events;
  }

 private:
  steady::time_point intended(std::uint64_t g) const {
    return start_ + std::chrono::duration_cast<steady::duration>(
                        std::chrono::duration<double>(static_cast<double>(g) / opt_.rate));
  }

  void on_tick() {
    const auto now = steady::now();
    // Release everything due by now, stamped with its intended time.
    while (next_ < total_) {
      auto due = intended(next_);
      if (due > now) break;
      stats_.max_release_lag_us = std::max<std::uint64_t>(
          stats_.max_release_lag_us,
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - due).count()));
      queue_.push_back({next_, due});
      stats_.scheduled++;
      next_ += opt_.threads;
    }
    stats_.max_queued = std::max<std::uint64_t>(stats_.max_queued, queue_.size());
    dispatch(now);
    // Requests that waited past their timeout for a connection are given up unsent.
    while (!queue_.empty() && queue_.front().intended + opt_.timeout <= now) {
      queue_.pop_front();
      stats_.expired++;
    }
    const bool schedule_done = next_ >= total_;
    if (schedule_done && queue_.empty() && in_flight_ == 0) return finish();
    if (schedule_done && now >= end_of_schedule_ + opt_.drain_timeout) {
      stats_.unfinished += queue_.size() + in_flight_;
      queue_.clear();
      return finish();
    }
    // Wake at the next due time, but at most every 100 us (a late release is still measured from the
    // intended time), and every 10 ms while only stragglers remain.
    auto wake = schedule_done ? now + std::chrono::milliseconds(10)
                              : std::max(intended(next_), now + std::chrono::microseconds(100));
    tick_.expires_at(wake);
    tick_.async_wait([this](error_code ec) {
      if (!ec) on_tick();
    });
  }

  void dispatch(steady::time_point now) {
    while (!queue_.empty() && !idle_.empty()) {
      auto p = queue_.front();
      queue_.pop_front();
      if (p.intended + opt_.timeout <= now) {
        stats_.expired++;
        continue;
      }
      // Round robin (FIFO): every connection stays warm, so none meets the server's idle timeout just as
      // a request goes out on it.
      auto* c = idle_.front();
      idle_.pop_front();
      ++in_flight_;
      c->send(p.n, p.intended);
    }
  }

  // Whole lines in one O_APPEND write: safe beside other writers of the same file.
  void flush_acks() {
    std::size_t done = 0;
    while (done < ack_buffer_.size()) {
      auto n = ::write(ack_fd_, ack_buffer_.data() + done, ack_buffer_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("http_load: writing the ack log");
        std::exit(1);  // an incomplete ack log would make a loss check lie
      }
      done += static_cast<std::size_t>(n);
    }
    ack_buffer_.clear();
  }

  void finish() {
    if (ack_fd_ >= 0) flush_acks();
    finished_ = true;
    tick_.cancel();
    for (auto& c : conns_) c->close();
  }

  struct pending {
    std::uint64_t n;
    steady::time_point intended;
  };

  const run_options& opt_;
  const body_factory& bodies_;
  int ack_fd_;
  std::string ack_buffer_;
  net::io_context ioc_;
  net::steady_timer tick_;
  tcp::resolver::results_type endpoints_;
  std::vector<std::unique_ptr<connection>> conns_;
  std::deque<connection*> idle_;
  std::deque<pending> queue_;
  std::uint64_t total_ = 0;
  std::uint64_t next_ = 0;
  std::uint64_t in_flight_ = 0;
  steady::time_point start_{};
  steady::time_point end_of_schedule_{};
  bool finished_ = false;
  run_stats stats_;
};

bool connection::connect_now(const tcp::resolver::results_type& endpoints) {
  error_code ec;
  net::connect(socket_, endpoints, ec);
  if (ec) {
    worker_.count_connect_failure();
    return false;
  }
  socket_.set_option(tcp::no_delay(true), ec);
  backoff_ = {};
  watch_idle();
  return true;
}

void connection::connect_later(std::chrono::milliseconds delay) {
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([this](error_code ec) {
    if (ec || closing_ || worker_.finished()) return;
    net::async_connect(socket_, worker_.endpoints(), [this](error_code ec2, const tcp::endpoint&) {
      if (closing_ || worker_.finished()) return;
      if (ec2) {
        worker_.count_connect_failure();
        error_code ignored;
        socket_.close(ignored);
        backoff_ = std::min(std::max(backoff_ * 2, std::chrono::milliseconds(20)), std::chrono::milliseconds(500));
        return connect_later(backoff_);
      }
      error_code ignored;
      socket_.set_option(tcp::no_delay(true), ignored);
          backoff_ = {};
      buffer_.clear();
      watch_idle();
      worker_.on_idle(this);
    });
  });
}

// While idle, notice the server closing the connection (idle timeout, shutdown) and reconnect, so that
// the next request does not fail on a dead socket.
void connection::watch_idle() {
  socket_.async_wait(tcp::socket::wait_read, [this, gen = generation_](error_code ec) {
    if (ec || busy_ || gen != generation_ || closing_ || worker_.finished()) return;
    // epoll may report readiness that an earlier read already consumed: only EOF, an error or bytes
    // the server sent unasked (e.g. a 408 before closing) end the connection.
    char c;
    auto n = ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return watch_idle();
    reconnect(false);
  });
}

void connection::reconnect(bool after_failure) {
  ++generation_;
  error_code ignored;
  socket_.close(ignored);
  if (!busy_) worker_.remove_idle(this);
  busy_ = false;
  worker_.count_reconnect();
  connect_later(after_failure ? std::max(backoff_, std::chrono::milliseconds(1)) : std::chrono::milliseconds(0));
}

void connection::send(std::uint64_t n, steady::time_point intended) {
  busy_ = true;
  timed_out_ = false;
  ++generation_;
  intended_ = intended;
  template_ = &worker_.bodies().build(n, body_);
  duplicate_ = worker_.bodies().duplicate(n);
  const auto& o = worker_.options();
  const bool mix = worker_.bodies().mix();
  header_.clear();
  header_ += "POST ";
  header_ += mix ? mix_kinds[template_->kind].path : std::string_view(o.path);
  header_ += " HTTP/1.1\r\nHost: ";
  header_ += o.host;
  header_ += ':';
  header_ += o.port;
  header_ += "\r\nUser-Agent: crm-http-load\r\nContent-Type: ";
  header_ += mix ? mix_kinds[template_->kind].content_type : std::string_view(o.content_type);
  header_ += "\r\nContent-Length: ";
  header_ += std::to_string(body_.size());
  header_ += "\r\n\r\n";
  worker_.count_sent(template_->events);

  timer_.expires_at(intended + o.timeout);
  timer_.async_wait([this, gen = generation_](error_code ec) {
    if (ec || gen != generation_ || !busy_) return;
    timed_out_ = true;
    error_code ignored;
    socket_.close(ignored);  // the pending write/read completes with operation_aborted
  });
  std::array<net::const_buffer, 2> bufs{net::buffer(header_), net::buffer(body_)};
  net::async_write(socket_, bufs, [this](error_code ec, std::size_t) { on_written(ec); });
}

void connection::on_written(error_code ec) {
  if (closing_ || worker_.finished()) return;
  if (ec) return fail(ec);
  parser_.emplace();
  parser_->body_limit(16 << 20);
  bhttp::async_read(socket_, buffer_, *parser_, [this](error_code e, std::size_t) { on_read(e); });
}

void connection::on_read(error_code ec) {
  if (closing_ || worker_.finished()) return;  // already counted as unfinished
  if (ec) return fail(ec);
  const auto now = steady::now();
  timer_.cancel();
  auto& res = parser_->get();
  const bool retry_after = res.find(bhttp::field::retry_after) != res.end();
  const unsigned status = res.result_int();
  if (status >= 200 && status < 300 && template_) body_factory::ack_line(*template_, body_, ack_);
  busy_ = false;
  ++generation_;
  worker_.on_response(intended_, now, status, retry_after, res.body(), ack_, template_, duplicate_);
  if (worker_.finished()) return;
  if (!res.keep_alive()) return reconnect(false);
  watch_idle();
  worker_.on_idle(this);
}

void connection::fail(error_code) {
  if (closing_ || worker_.finished()) return;  // already counted as unfinished
  timer_.cancel();
  const bool timed_out = timed_out_;
  busy_ = false;
  worker_.on_request_failed(timed_out);
  reconnect(true);
}

void connection::close() {
  closing_ = true;
  ++generation_;
  error_code ignored;
  timer_.cancel();
  retry_timer_.cancel();
  socket_.close(ignored);
}

// ---------------------------------------------------------------------------------------------------
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
