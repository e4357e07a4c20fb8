// SendGrid Event Webhook: a JSON array of events (docs.sendgrid.com, "Event Webhook Reference").
// One record per element; a bad element is a rejection "<source>:<index>" and its neighbours are kept.
#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

constexpr status_words sendgrid_events =
    "processed=queued|deferred=queued|delivered|open=opened|click=clicked|bounce=bounced|dropped=failed|"
    "spamreport=spam|unsubscribe=unsubscribed|group_unsubscribe=unsubscribed|group_resubscribe=resubscribed";

// Reads one element; false only on malformed JSON.
bool sendgrid_event(normalizer& norm, const webhook_input& in, json_walker& w, od::value element, std::size_t index,
                    event_batch& out) {
  workspace& ws = w.ws();
  begin_event(ws);
  const char* start = w.location_of(element);
  od::json_type t;
  if (const auto e = element.type().get(t)) return w.fail(e);
  if (t != od::json_type::object) {
    std::string_view raw;
    if (t == od::json_type::array) {
      od::array a;
      if (const auto e = element.get_array().get(a)) return w.fail(e);
      for (auto x : a) {  // consumed, so that the raw text ends where the element does
        od::value v;
        if (const auto e = std::move(x).get(v)) return w.fail(e);
      }
      raw = w.raw_since(start);
    } else {
      raw = transform::detail::trim_token(element.raw_json_token());
      scalar ignored;
      if (!w.read(element, ignored)) return false;
    }
    begin_rule(ws, "event");
    ws.reason.append("expected an object, got ").append(type_name(t));
    norm.reject(raw, event_source(ws, in.source, index), in.received_at, ws.reason, out);
    end_event(ws);
    return true;
  }

  scalar email, timestamp, event, sg_event_id, sg_message_id, url, reason, status, response, mc_id, mc_version;
  crm_ids ids;
  const bool ok = w.members(element, "event", [&](std::string_view key, std::string_view raw_key, od::value v) {
    if (scalar* s = find_field({{"email", &email}, {"timestamp", &timestamp}, {"event", &event},
                                {"sg_event_id", &sg_event_id}, {"sg_message_id", &sg_message_id}, {"url", &url}}, key)) {
      return w.take(key, v, *s);
    }
    // Error details stay in metadata too: for a delivered event `response` is not an error.
    if (scalar* s = find_field({{"reason", &reason}, {"status", &status}, {"response", &response},
                                {"marketing_campaign_id", &mc_id}, {"marketing_campaign_version", &mc_version}}, key)) {
      return w.keep(key, raw_key, v, s);
    }
    if (key == "lead_id" || key == "campaign_id" || key == "ab_test_id" || key == "variant") {
      // custom_args arrive flattened at the top level.
      scalar s;
      if (!w.take(key, v, s)) return false;
      if (s.present && !s.is_string() && !s.is_number()) {
        rule_wrong_type(ws, key, "a string or an integer", s);
        return true;
      }
      ids.offer(key, s, "custom_args", 2);
      return true;
    }
    return w.keep(key, raw_key, v);  // category, smtp-id, ip, useragent, pool, asm_group_id, custom args...
  });
  if (!ok) return false;
  const std::string_view raw = w.raw_since(start);

  communication_fields f;
  f.provider = "sendgrid";
  f.channel_ = channel::email;
  // Legacy A/B tests of Marketing Campaigns: the version is the variant, the campaign the test.
  if (mc_version.is_string() || mc_version.is_number()) {
    crm_ids::offer_to(ids.variant, mc_version.text, mc_version.is_number(), "marketing_campaign_version", 1);
    if (mc_id.is_string() || mc_id.is_number()) {
      crm_ids::offer_to(ids.ab_test_id, mc_id.text, mc_id.is_number(), "marketing_campaign_id", 1);
    }
  }
  read_status(ws, "event", event, sendgrid_events, f.status);
  epoch_time(ws, "timestamp", timestamp, f.occurred_at);
  f.email = string_field(ws, "email", email);
  f.provider_event_id = string_field(ws, "sg_event_id", sg_event_id);
  f.provider_message_id = string_field(ws, "sg_message_id", sg_message_id);
  f.url = string_field(ws, "url", url);
  if (f.status == comm_status::bounced || f.status == comm_status::failed || event.text == "deferred") {
    if (status.is_string()) f.error_code = status.text;  // the SMTP enhanced status, "5.0.0"
    f.error_reason = reason.is_string() ? reason.text : response.is_string() ? response.text : std::string_view{};
  }
  emit_event(norm, in, ws, ids, f, raw, index, out);
  return true;
}

}  // namespace

bool normalize_sendgrid(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  provider_document d(norm, in, out, error);
  if (!d.open_array("a SendGrid event array")) return false;
  json_walker& w = d.walker;
  const bool ok = w.each(d.array, [&](std::size_t index, od::value v) { return sendgrid_event(norm, in, w, v, index, out); });
  if (!ok || !w.finish()) return d.failed();
  return true;
}

}  // namespace crm::transform::providers
