#include "sinks/postgres/row_json.h"

#include <charconv>

#include "sinks/postgres/copy_encoder.h"
#include "transform/text/json_text.h"

namespace crm::sinks::postgres {

namespace {

class json_object {
 public:
  json_object() { out_.push_back('{'); }

  void raw(std::string_view key, std::string_view value) {
    if (value.empty()) return;
    key_(key);
    out_.append(value);
  }
  void str(std::string_view key, std::string_view value) {
    if (value.empty()) return;
    key_(key);
    quoted(value);
  }
  void num(std::string_view key, std::int64_t v) {
    if (v == 0) return;
    key_(key);
    out_.append(std::to_string(v));
  }
  void time(std::string_view key, transform::timestamp_us us) {
    char buf[32];
    std::size_t n = format_timestamp(us, buf);
    std::string iso(buf, n - 3);  // drop "+00"
    iso[10] = 'T';
    iso += 'Z';
    str(key, iso);
  }
  std::string done() {
    out_.push_back('}');
    return std::move(out_);
  }

 private:
  void key_(std::string_view k) {
    if (out_.size() > 1) out_.push_back(',');
    quoted(k);
    out_.push_back(':');
  }
  void quoted(std::string_view s) { transform::append_json_string(out_, s); }
  std::string out_;
};

}  // namespace

std::string to_canonical_json(const transform::communication& c) {
  json_object o;
  o.str("kind", "communication");
  o.str("event_id", transform::to_string(c.event_id));
  o.time("occurred_at", c.occurred_at);
  o.num("lead_id", c.lead_id);
  o.num("campaign_id", c.campaign_id);
  o.str("channel", transform::to_string(c.channel_));
  o.str("direction", transform::to_string(c.direction_));
  o.str("status", transform::to_string(c.status));
  o.str("provider", c.provider);
  o.str("provider_message_id", c.provider_message_id);
  o.str("provider_event_id", c.provider_event_id);
  o.str("email", c.email);
  o.str("phone", c.phone);
  o.str("ab_test_id", c.ab_test_id);
  o.str("variant", c.variant);
  o.str("url", c.url);
  o.str("error_code", c.error_code);
  o.str("error_reason", c.error_reason);
  o.str("tenant_id", c.tenant_id);
  // metadata is kept as text: it may be exactly what the database refused.
  o.str("metadata_text", c.metadata);
  return o.done();
}

std::string to_canonical_json(const transform::touchpoint& t) {
  json_object o;
  o.str("kind", "touchpoint");
  o.str("touchpoint_id", transform::to_string(t.touchpoint_id));
  o.time("occurred_at", t.occurred_at);
  o.num("lead_id", t.lead_id);
  o.str("anonymous_id", t.anonymous_id);
  o.str("message_id", t.message_id);
  o.str("touch_type", transform::to_string(t.type));
  o.num("campaign_id", t.campaign_id);
  o.str("utm_source", t.utm_source);
  o.str("utm_medium", t.utm_medium);
  o.str("utm_campaign", t.utm_campaign);
  o.str("utm_term", t.utm_term);
  o.str("utm_content", t.utm_content);
  o.str("gclid", t.gclid);
  o.str("fbclid", t.fbclid);
  o.str("msclkid", t.msclkid);
  o.str("landing_url", t.landing_url);
  o.str("referrer", t.referrer);
  o.str("conversion_type", t.conversion_type);
  if (t.has_conversion_value) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, t.conversion_value);
    o.raw("conversion_value", std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  }
  o.str("currency", t.currency);
  o.str("ab_test_id", t.ab_test_id);
  o.str("variant", t.variant);
  o.str("tenant_id", t.tenant_id);
  o.str("metadata_text", t.metadata);
  return o.done();
}

}  // namespace crm::sinks::postgres
