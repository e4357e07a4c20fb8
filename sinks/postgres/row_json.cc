#include "sinks/postgres/row_json.h"

#include <charconv>
#include <initializer_list>
#include <utility>

#include <simdjson.h>

#include "sinks/postgres/copy_encoder.h"
#include "transform/text/json_text.h"

namespace crm::sinks::postgres {

namespace {

class json_object {
 public:
  // A record's object, opened with what every kind has first: kind, id, occurred_at, lead_id.
  json_object(std::string_view kind, std::string_view id_key, const transform::uuid& id,
              transform::timestamp_us occurred_at, std::int64_t lead_id, std::string_view lead_ref) {
    out_.push_back('{');
    str("kind", kind);
    str(id_key, transform::to_string(id));
    time("occurred_at", occurred_at);
    crm_id("lead_id", lead_id, lead_ref);
  }

  // A CRM id as the input gave it: the reference (a string, which reads back to the same key) or the integer.
  void crm_id(std::string_view key, std::int64_t id, std::string_view ref) {
    if (ref.empty()) return num(key, id);
    str(key, ref);
  }

  void raw(std::string_view key, std::string_view value) {
    if (value.empty()) return;
    key_(key);
    out_.append(value);
  }
  // The record's metadata: as the object it is, so that a replay reads it back as metadata; as text
  // (metadata_text) when it is not a JSON object, which is then what the database refused.
  void metadata(std::string_view text) {
    if (text.empty()) return;
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (!parser.parse(text.data(), text.size()).get(root) && root.is_object()) return raw("metadata", text);
    str("metadata_text", text);
  }
  void str(std::string_view key, std::string_view value) {
    if (value.empty()) return;
    key_(key);
    quoted(value);
  }
  // Text fields in order, each left out when empty.
  void str(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
    for (const auto& [key, value] : fields) str(key, value);
  }
  void num(std::string_view key, std::int64_t v) {
    if (v == 0) return;
    key_(key);
    out_.append(std::to_string(v));
  }
  void time(std::string_view key, transform::timestamp_us us) {
    char buf[40];
    std::size_t n = format_timestamp(us, buf);
    std::string iso(buf, n - 3);  // drop "+00"
    iso[n - 3 - 16] = 'T';  // between the date and HH:MM:SS.ffffff
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
  json_object o("communication", "event_id", c.event_id, c.occurred_at, c.lead_id, c.lead_ref);
  o.crm_id("campaign_id", c.campaign_id, c.campaign_ref);
  o.str("channel", transform::to_string(c.channel_));
  o.str("direction", transform::to_string(c.direction_));
  o.str("status", transform::to_string(c.status));
  o.str({{"provider", c.provider}, {"provider_message_id", c.provider_message_id},
         {"provider_event_id", c.provider_event_id}, {"email", c.email}, {"phone", c.phone},
         {"ab_test_id", c.ab_test_id}, {"variant", c.variant}, {"url", c.url}, {"error_code", c.error_code},
         {"error_reason", c.error_reason}});
  o.metadata(c.metadata);  // the tenant is the dead letter's (rejection::tenant_id), not a field of the record
  return o.done();
}

std::string to_canonical_json(const transform::touchpoint& t) {
  json_object o("touchpoint", "touchpoint_id", t.touchpoint_id, t.occurred_at, t.lead_id, t.lead_ref);
  o.str({{"anonymous_id", t.anonymous_id}, {"message_id", t.message_id}});
  o.str("touch_type", transform::to_string(t.type));
  o.crm_id("campaign_id", t.campaign_id, t.campaign_ref);
  o.str({{"utm_source", t.utm_source}, {"utm_medium", t.utm_medium}, {"utm_campaign", t.utm_campaign},
         {"utm_term", t.utm_term}, {"utm_content", t.utm_content}, {"gclid", t.gclid}, {"fbclid", t.fbclid},
         {"msclkid", t.msclkid}, {"landing_url", t.landing_url}, {"referrer", t.referrer},
         {"conversion_type", t.conversion_type}});
  if (t.has_conversion_value) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, t.conversion_value);
    o.raw("conversion_value", std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  }
  o.str({{"currency", t.currency}, {"ab_test_id", t.ab_test_id}, {"variant", t.variant}});
  o.metadata(t.metadata);
  return o.done();
}

}  // namespace crm::sinks::postgres
