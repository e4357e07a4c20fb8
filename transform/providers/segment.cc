// Segment Spec events from the Webhooks destination (segment.com/docs/connections/spec): one JSON object per
// request (batching off: Segment signs only the first event of a batch).
//   track "Email Delivered|Opened|Link Clicked|Bounced|Marked as Spam|Unsubscribed" -> communication (email)
//   track "Experiment Viewed" -> touchpoint experiment_exposure
//   track "Order Completed", or any track with a revenue -> touchpoint conversion
//   track that is evidently a form ("... Form Submitted", a form_id) -> touchpoint form_submit
//   other track -> touchpoint other;  page / screen -> touchpoint page_view;  identify / alias with both a
//   visitor and a lead -> touchpoint identify (identity stitching);  group -> nothing
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
constexpr status_words email_events =
    "Email Delivered=delivered|Email Opened=opened|Email Link Clicked=clicked|Email Bounced=bounced|"
    "Email Marked as Spam=spam|Unsubscribed=unsubscribed|Email Unsubscribed=unsubscribed";

// The member of `slots` that `names` names `key`, or nullptr.
template <std::size_t N>
scalar* named_slot(const std::array<std::string_view, N>& names, std::array<scalar, N>& slots, std::string_view key) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == key) return &slots[i];
  }
  return nullptr;
}

struct properties {
  scalar email_id, link_url, url, referrer, search, email, lead_id, campaign_id, ab_test_id, variant;
  scalar experiment_id, experiment_name, variation_id, variation_name, revenue, total, value, currency, form_id;
  std::array<scalar, tracking_params.size()> tracking;  // utm_source, ..., msclkid: named as in tracking_params

  scalar* find(std::string_view k) {
    if (scalar* s = named_slot(tracking_params, tracking, k)) return s;
    return find_field({{"email_id", &email_id}, {"link_url", &link_url}, {"url", &url}, {"referrer", &referrer},
                       {"search", &search}, {"email", &email}, {"lead_id", &lead_id}, {"campaign_id", &campaign_id},
                       {"ab_test_id", &ab_test_id}, {"variant", &variant}, {"experiment_id", &experiment_id},
                       {"experiment_name", &experiment_name}, {"variation_id", &variation_id},
                       {"variation_name", &variation_name}, {"revenue", &revenue}, {"total", &total}, {"value", &value},
                       {"currency", &currency}, {"form_id", &form_id}},
                      k);
  }
};

struct page {
  scalar url, referrer, search;
};

// context.campaign: the UTM tags without their prefix ("name" is utm_campaign), in tracking_params' order.
constexpr std::array<std::string_view, 5> campaign_keys = {"source", "medium", "name", "term", "content"};
using campaign = std::array<scalar, campaign_keys.size()>;

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
  provider_document d(norm, in, out, error);
  workspace& ws = d.ws;
  json_walker& w = d.walker;
  scalar type, event, message_id, timestamp, original_timestamp, received_at, sent_at, user_id, anonymous_id;
  scalar previous_id;
  scalar trait_email, trait_lead_id, context_trait_email, context_trait_lead_id;
  properties props;
  page pg;
  campaign cmp;
  const bool read = d.read_object("a Segment event", [&](std::string_view key, std::string_view raw_key, od::value v) {
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
    if (key == "previousId") return w.keep(key, raw_key, v, &previous_id);
    if (key == "properties") {
      return w.keep_object("properties", v, [&](std::string_view pk, std::string_view praw, od::value x) {
        return w.keep(pk, praw, x, props.find(pk));
      });
    }
    if (key == "traits") {
      return w.keep_object("traits", v, [&](std::string_view tk, std::string_view traw, od::value x) {
        return w.keep(tk, traw, x, find_field({{"email", &trait_email}, {"lead_id", &trait_lead_id}}, tk));
      });
    }
    if (key == "context") {
      return w.keep_object("context", v, [&](std::string_view ck, std::string_view craw, od::value x) {
        if (ck == "page") {
          return w.keep_object("page", x, [&](std::string_view pk, std::string_view praw, od::value y) {
            return w.keep(pk, praw, y, find_field({{"url", &pg.url}, {"referrer", &pg.referrer}, {"search", &pg.search}}, pk));
          });
        }
        if (ck == "campaign") {
          return w.keep_object("campaign", x, [&](std::string_view mk, std::string_view mraw, od::value y) {
            return w.keep(mk, mraw, y, named_slot(campaign_keys, cmp, mk));
          });
        }
        if (ck == "traits") {
          return w.keep_object("traits", x, [&](std::string_view tk, std::string_view traw, od::value y) {
            return w.keep(tk, traw, y, find_field({{"email", &context_trait_email}, {"lead_id", &context_trait_lead_id}}, tk));
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
  if (!read) return false;
  if (!type.is_string()) return d.refuse("no \"type\"", ws.reason);
  const std::string_view kind = type.text;
  if (kind == "group") return true;  // no event in the CRM's sense

  const bool is_track = kind == "track";
  const bool is_page = kind == "page" || kind == "screen";
  const bool is_link = kind == "identify" || kind == "alias";
  if (!is_track && !is_page && !is_link) {
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
  // A touchpoint's id is derived from its time (a communication's need not be: see below), so one stamped with
  // our receive time would be stored again by each retry of the call. Segment always sets a time; a call with
  // none is dead-lettered instead (its conversion counted twice before).
  const auto touchpoint_needs_time = [&] {
    if (receipt_time && begin_rule(ws, "timestamp")) {
      ws.reason.append("a touchpoint needs its time: none of timestamp, originalTimestamp, receivedAt, sentAt is set");
    }
  };

  crm_ids ids;
  ids.offer("lead_id", props.lead_id, "properties.lead_id", 2);
  ids.offer("lead_id", context_trait_lead_id, "context.traits.lead_id", 1);
  ids.offer("lead_id", trait_lead_id, "traits.lead_id", 1);
  ids.offer("campaign_id", props.campaign_id, "properties.campaign_id", 2);
  ids.offer("ab_test_id", props.ab_test_id, "properties.ab_test_id", 2);
  ids.offer("variant", props.variant, "properties.variant", 2);

  if (is_link) {
    // identify / alias: the lead is traits.lead_id, context.traits.lead_id, else userId (the id in the CRM's
    // own database). It claims the visitor (anonymousId; alias: previousId, else anonymousId) and userId
    // itself, the visitor key of this mapping's track and page calls that carry no anonymousId, so that the
    // person's anonymous and logged-in calls all join the lead. Nothing to link: nothing stored, as before.
    const std::string_view user = user_id.is_number() ? user_id.text : text_of(user_id);
    if (!user.empty()) crm_ids::offer_to(ids.lead_id, user, user_id.is_number(), "userId", 0);
    if (ids.lead_id.priority < 0) return true;
    touchpoint_needs_time();
    const scalar& visitor = kind == "alias" && previous_id.present ? previous_id : anonymous_id;
    const std::string_view visitors[] = {visitor.is_number() ? visitor.text : text_of(visitor), user};
    std::size_t index = 0;
    for (std::size_t i = 0; i < 2; ++i) {
      if (visitors[i].empty() || (i == 1 && visitors[1] == visitors[0])) continue;
      touchpoint_fields t;
      t.type = touch_type::identify;
      t.occurred_at = occurred;
      t.message_id = i == 0 ? text_of(message_id) : std::string_view();  // the second: an id of its own content
      t.anonymous_id = visitors[i];
      d.emit(ids, t, index++);
    }
    return true;
  }

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
    d.emit(ids, f);
    return true;
  }

  touchpoint_needs_time();
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
  // UTM tags from context.campaign, then properties.utm_*; click ids from properties.
  const std::array<std::string_view*, tracking_params.size()> tracking = tracking_slots(t);
  for (std::size_t i = 0; i < tracking.size(); ++i) {
    *tracking[i] = i < cmp.size() ? first_text({&cmp[i], &props.tracking[i]}) : text_of(props.tracking[i]);
  }
  // A landing URL without its query string: the tags are in context.page.search.
  const std::string_view search = first_text({&pg.search, &props.search});
  if (t.landing_url.find('?') == std::string_view::npos && !search.empty() && search.front() == '?') {
    transform::detail::fill_query_params(search, tracking_params, tracking_slots(t), ws.decoded, ws.scratch);
  }
  d.emit(ids, t);
  return true;
}

}  // namespace crm::transform::providers
