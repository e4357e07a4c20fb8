// http_load's request bodies: templates built once per run, patched per request (see main.cc for the tool).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "synthetic_events.h"

namespace http_load {

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

inline void put_hex(char* at, std::size_t width, std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = width; i-- > 0;) {
    at[i] = digits[v & 15];
    v >>= 4;
  }
}

std::string hex(std::uint64_t v, std::size_t width);
using synthetic_events::iso8601;  // YYYY-MM-DDTHH:MM:SSZ

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

// The templates of each kind (bodies.cc).
std::vector<body_template> events_templates(const load_spec& spec);
std::vector<body_template> twilio_templates(const load_spec& spec);
std::vector<body_template> sendgrid_templates(const load_spec& spec);
std::vector<body_template> segment_templates(const load_spec& spec);

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline double unit_of(std::uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

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

}  // namespace http_load
