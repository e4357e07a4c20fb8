// Segment Spec events from the Webhooks destination (segment.com/docs/connections/spec): one JSON object per
// request (batching off: Segment signs only the first event of a batch).
//   track "Email Delivered|Opened|Link Clicked|Bounced|Marked as Spam|Unsubscribed" -> communication (email)
//   track "Experiment Viewed" -> touchpoint experiment_exposure
//   track "Order Completed", or any track with a revenue -> touchpoint conversion
//   track that is evidently a form ("... Form Submitted", a form_id) -> touchpoint form_submit
//   other track -> touchpoint other;  page / screen -> touchpoint page_view;  identify / group / alias -> nothing
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <utility>

#include "transform/text/ascii.h"
#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"
#include "transform/text/url_params.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

// Segment's e-mail spec events: communications; every other track is a touchpoint.
constexpr std::string_view email_events =
    "Email Delivered=delivered|Email Opened=opened|Email Link Clicked=clicked|Email Bounced=bounced|"
    "Email Marked as Spam=spam|Unsubscribed=unsubscribed|Email Unsubscribed=unsubscribed";
static_assert(valid_status_words(email_events));

struct properties {
  scalar email_id, link_url, url, referrer, search, email, lead_id, campaign_id, ab_test_id, variant;
  scalar experiment_id, experiment_name, variation_id, variation_name, revenue, total, value, currency, form_id;
  scalar utm_source, utm_medium, utm_campaign, utm_term, utm_content, gclid, fbclid, msclkid;

  scalar* find(std::string_view k) {
    static constexpr std::array<std::pair<std::string_view, scalar properties::*>, 27> table = {{
        {"email_id", &properties::email_id},       {"link_url", &properties::link_url},
        {"url", &properties::url},                 {"referrer", &properties::referrer},
        {"search", &properties::search},           {"email", &properties::email},
        {"lead_id", &properties::lead_id},         {"campaign_id", &properties::campaign_id},
        {"ab_test_id", &properties::ab_test_id},   {"variant", &properties::variant},
        {"experiment_id", &properties::experiment_id}, {"experiment_name", &properties::experiment_name},
        {"variation_id", &properties::variation_id},   {"variation_name", &properties::variation_name},
        {"revenue", &properties::revenue},         {"total", &properties::total},
        {"value", &properties::value},             {"currency", &properties::currency},
        {"form_id", &properties::form_id},         {"utm_source", &properties::utm_source},
        {"utm_medium", &properties::utm_medium},   {"utm_campaign", &properties::utm_campaign},
        {"utm_term", &properties::utm_term},       {"utm_content", &properties::utm_content},
        {"gclid", &properties::gclid},             {"fbclid", &properties::fbclid},
        {"msclkid", &properties::msclkid},
    }};
    for (const auto& [name, member] : table) {
      if (name == k) return &(this->*member);
    }
    return nullptr;
  }
};

struct page {
  scalar url, referrer, search;
};

struct campaign {
  scalar source, medium, name, term, content;
};

std::string_view text_of(const scalar& s) { return s.is_string() ? s.text : std::string_view{}; }

std::string_view first_text(std::initializer_list<const scalar*> candidates) {
  for (const scalar* s : candidates) {
    if (s->is_string()) return s->text;
  }
  return {};
}

bool contains_ci(std::string_view text, std::string_view word) {
  if (word.size() > text.size()) return false;
  for (std::size_t i = 0; i + word.size() <= text.size(); ++i) {
    if (transform::detail::ascii_iequals(text.substr(i, word.size()), word)) return true;
  }
  return false;
}

// A number, or a string holding one (revenue is sometimes sent as "19.99").
bool number_of(const scalar& s, double& out) {
  if (!s.is_number() && !s.is_string()) return false;
  const char* end = s.text.data() + s.text.size();
  const auto r = std::from_chars(s.text.data(), end, out);
  return r.ec == std::errc{} && r.ptr == end && std::isfinite(out);
}

}  // namespace

bool normalize_segment(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  provider_document d(in, out, error);
  if (!d.open_object("a Segment event")) return false;
  workspace& ws = d.ws;
  json_walker& w = d.walker;

  scalar type, event, message_id, timestamp, original_timestamp, received_at, sent_at, user_id, anonymous_id;
  scalar trait_email, trait_lead_id, context_trait_email, context_trait_lead_id;
  properties props;
  page pg;
  campaign cmp;
  begin_event(ws);
  const bool ok = w.members(d.object, [&](std::string_view key, std::string_view raw_key, od::value v) {
    if (key == "type" || key == "action") return w.take(key, v, type);  // "action" in the e-mail spec's examples
    if (key == "messageId") return w.take(key, v, message_id);
    if (key == "timestamp") return w.take(key, v, timestamp);
    if (key == "integrations" || key == "version" || key == "writeKey" || key == "_metadata") return true;
    if (key == "event" || key == "name") return w.keep(key, raw_key, v, key == "event" ? &event : nullptr);
    if (key == "originalTimestamp") return w.keep(key, raw_key, v, &original_timestamp);
    if (key == "receivedAt") return w.keep(key, raw_key, v, &received_at);
    if (key == "sentAt") return w.keep(key, raw_key, v, &sent_at);
    if (key == "userId" || key == "user_id") return w.keep(key, raw_key, v, &user_id);
    if (key == "anonymousId" || key == "anonymous_id") return w.keep(key, raw_key, v, &anonymous_id);
    if (key == "properties") {
      return w.keep_object("properties", v, [&](std::string_view pk, std::string_view praw, od::value x) {
        return w.keep(pk, praw, x, props.find(pk));
      });
    }
    if (key == "traits") {
      return w.keep_object("traits", v, [&](std::string_view tk, std::string_view traw, od::value x) {
        return w.keep(tk, traw, x, tk == "email" ? &trait_email : tk == "lead_id" ? &trait_lead_id : nullptr);
      });
    }
    if (key == "context") {
      return w.keep_object("context", v, [&](std::string_view ck, std::string_view craw, od::value x) {
        if (ck == "page") {
          return w.keep_object("page", x, [&](std::string_view pk, std::string_view praw, od::value y) {
            scalar* target = pk == "url" ? &pg.url : pk == "referrer" ? &pg.referrer : pk == "search" ? &pg.search : nullptr;
            return w.keep(pk, praw, y, target);
          });
        }
        if (ck == "campaign") {
          return w.keep_object("campaign", x, [&](std::string_view mk, std::string_view mraw, od::value y) {
            scalar* target = mk == "source"    ? &cmp.source
                             : mk == "medium"  ? &cmp.medium
                             : mk == "name"    ? &cmp.name
                             : mk == "term"    ? &cmp.term
                             : mk == "content" ? &cmp.content
                                               : nullptr;
            return w.keep(mk, mraw, y, target);
          });
        }
        if (ck == "traits") {
          return w.keep_object("traits", x, [&](std::string_view tk, std::string_view traw, od::value y) {
            scalar* target = tk == "email" ? &context_trait_email : tk == "lead_id" ? &context_trait_lead_id : nullptr;
            return w.keep(tk, traw, y, target);
          });
        }
        // Kept: who and where; dropped: device, os, screen, network and other fingerprinting detail.
        if (ck == "ip" || ck == "userAgent" || ck == "user_agent" || ck == "locale" || ck == "timezone" ||
            ck == "library" || ck == "app" || ck == "referrer" || ck == "groupId") {
          return w.keep(ck, craw, x);
        }
        return true;
      });
    }
    return w.keep(key, raw_key, v);  // channel, ...
  });
  if (!ok || !w.finish()) return d.failed();
  if (!type.is_string()) {
    error.assign("not a Segment event: no \"type\"");
    if (!ws.reason.empty()) error.append(" (").append(ws.reason).append(")");
    return false;
  }
  const std::string_view kind = type.text;
  if (kind == "identify" || kind == "group" || kind == "alias") return true;  // no event in the CRM's sense

  const bool is_track = kind == "track";
  const bool is_page = kind == "page" || kind == "screen";
  if (!is_track && !is_page) {
    if (begin_rule(ws, "type")) {
      transform::detail::append_quoted(ws.reason, kind);
      ws.reason.append(" is not one of track|page|screen|identify|group|alias");
    }
    norm.reject(in.body, event_source(ws, in.source, 0), in.received_at, ws.reason, out);
    return true;
  }
  if (is_track) string_field(ws, "event", event, true);

  // Segment always sets timestamp; the e-mail spec's examples carry none, so fall back as Segment itself
  // does, and finally to our receive time.
  timestamp_us occurred = in.received_at;
  bool receipt_time = true;
  for (auto [name, s] : {std::pair{"timestamp", &timestamp}, std::pair{"originalTimestamp", &original_timestamp},
                         std::pair{"receivedAt", &received_at}, std::pair{"sentAt", &sent_at}}) {
    if (s->present) {
      rfc3339_time(ws, name, *s, occurred);
      receipt_time = false;
      break;
    }
  }
  string_field(ws, "messageId", message_id);

  crm_ids ids;
  ids.offer("lead_id", props.lead_id, "properties.lead_id", 2);
  ids.offer("lead_id", context_trait_lead_id, "context.traits.lead_id", 1);
  ids.offer("lead_id", trait_lead_id, "traits.lead_id", 1);
  ids.offer("campaign_id", props.campaign_id, "properties.campaign_id", 2);
  ids.offer("ab_test_id", props.ab_test_id, "properties.ab_test_id", 2);
  ids.offer("variant", props.variant, "properties.variant", 2);

  comm_status status = comm_status::sent;
  if (is_track && event.is_string() && find_status(email_events, event.text, status)) {
    communication_fields f;
    f.provider = "segment";
    f.channel_ = channel::email;
    f.status = status;
    f.occurred_at = occurred;
    f.occurred_at_is_receipt_time = receipt_time;
    f.provider_event_id = text_of(message_id);
    f.provider_message_id = text_of(props.email_id);
    if (f.provider_event_id.empty() && receipt_time && !f.provider_message_id.empty()) {
      // Neither a messageId nor a time: the e-mail and the event name are the only stable key, so that a
      // retry keeps its event_id (a repeated open without either cannot be told from a retry anyway).
      ws.event_key.assign(f.provider_message_id).append(":").append(event.text);
      f.provider_event_id = ws.event_key;
    }
    f.email = first_text({&context_trait_email, &props.email, &trait_email});
    if (status == comm_status::clicked) f.url = first_text({&props.link_url, &props.url});
    emit_event(norm, in, ws, ids, f, in.body, 0, out);
    return true;
  }

  touchpoint_fields t;
  t.occurred_at = occurred;
  t.message_id = text_of(message_id);
  t.anonymous_id = first_text({&anonymous_id, &user_id});  // userId when there is no anonymousId
  if (anonymous_id.is_number() && t.anonymous_id.empty()) t.anonymous_id = anonymous_id.text;
  if (is_page) {
    t.type = touch_type::page_view;
    t.landing_url = first_text({&props.url, &pg.url});
    t.referrer = first_text({&props.referrer, &pg.referrer});
  } else {
    t.landing_url = first_text({&pg.url, &props.url});
    t.referrer = first_text({&pg.referrer, &props.referrer});
    const std::string_view name = text_of(event);
    double amount = 0;
    const bool has_amount = number_of(props.revenue, amount) || number_of(props.total, amount) ||
                            number_of(props.value, amount);
    if (transform::detail::ascii_iequals(name, "Experiment Viewed")) {
      t.type = touch_type::experiment_exposure;
      crm_ids::offer_to(ids.ab_test_id, first_text({&props.experiment_id, &props.experiment_name}), false,
                        "properties.experiment_id", 3);
      crm_ids::offer_to(ids.variant, first_text({&props.variation_id, &props.variation_name}), false,
                        "properties.variation_id", 3);
      if (props.variation_id.is_number()) {
        crm_ids::offer_to(ids.variant, props.variation_id.text, true, "properties.variation_id", 4);
      }
      if (props.experiment_id.is_number()) {
        crm_ids::offer_to(ids.ab_test_id, props.experiment_id.text, true, "properties.experiment_id", 4);
      }
    } else if (transform::detail::ascii_iequals(name, "Order Completed") || props.revenue.present) {
      t.type = touch_type::conversion;
      t.conversion_type = name;
    } else if ((contains_ci(name, "form") && contains_ci(name, "submit")) || props.form_id.present) {
      t.type = touch_type::form_submit;
    } else {
      t.type = touch_type::other;
    }
    if (t.type == touch_type::conversion) {
      if (has_amount) {
        t.has_conversion_value = true;
        t.conversion_value = amount;
      } else if (props.revenue.present) {
        rule_wrong_type(ws, "properties.revenue", "a number", props.revenue);
      }
      t.currency = text_of(props.currency);
    }
  }
  t.utm_source = first_text({&cmp.source, &props.utm_source});
  t.utm_medium = first_text({&cmp.medium, &props.utm_medium});
  t.utm_campaign = first_text({&cmp.name, &props.utm_campaign});
  t.utm_term = first_text({&cmp.term, &props.utm_term});
  t.utm_content = first_text({&cmp.content, &props.utm_content});
  t.gclid = text_of(props.gclid);
  t.fbclid = text_of(props.fbclid);
  t.msclkid = text_of(props.msclkid);
  // A landing URL without its query string: the tags are in context.page.search.
  const std::string_view search = first_text({&pg.search, &props.search});
  if (t.landing_url.find('?') == std::string_view::npos && !search.empty() && search.front() == '?') {
    transform::detail::fill_query_params(search, tracking_params, tracking_slots(t), ws.decoded, ws.scratch);
  }
  emit_event(norm, in, ws, ids, t, in.body, 0, out);
  return true;
}

}  // namespace crm::transform::providers
