// Postmark webhooks (postmarkapp.com/developer/webhooks): one JSON object per request, told apart by
// RecordType. No signature: the HTTP layer checks basic auth.
#include <array>
#include <tuple>
#include <utility>

#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

enum class record : std::uint8_t { delivery, bounce, spam_complaint, open, click, subscription_change };

constexpr std::array<std::pair<std::string_view, record>, 6> record_types = {{
    {"Delivery", record::delivery},
    {"Bounce", record::bounce},
    {"SpamComplaint", record::spam_complaint},
    {"Open", record::open},
    {"Click", record::click},
    {"SubscriptionChange", record::subscription_change},
}};

// Bounce types after which Postmark's verdict is "this address does not work": counted as bounced. Every
// other type (SoftBounce, Transient, DnsError, AutoResponder, Blocked, ...) is a failed attempt; Postmark
// also marks permanent bounces Inactive, which counts as well.
constexpr std::array<std::string_view, 3> permanent_bounce_types = {"HardBounce", "BadEmailAddress",
                                                                    "ManuallyDeactivated"};

}  // namespace

bool normalize_postmark(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  provider_document d(in, out, error);
  if (!d.open_object("a Postmark webhook")) return false;
  workspace& ws = d.ws;
  json_walker& w = d.walker;
  od::object& top = d.object;
  auto failed = [&] { return d.failed(); };
  scalar record_type, message_id, recipient, email, delivered_at, bounced_at, received_at, changed_at, type,
      description, details, inactive, original_link, suppress_sending;
  crm_ids ids;
  begin_event(ws);
  const bool ok = w.members(top, [&](std::string_view key, std::string_view raw_key, od::value v) {
    if (key == "RecordType") return w.take(key, v, record_type);
    if (key == "MessageID") return w.take(key, v, message_id);
    if (key == "Recipient") return w.take(key, v, recipient);
    if (key == "Email") return w.take(key, v, email);
    if (key == "DeliveredAt") return w.take(key, v, delivered_at);
    if (key == "BouncedAt") return w.take(key, v, bounced_at);
    if (key == "ReceivedAt") return w.take(key, v, received_at);
    if (key == "ChangedAt") return w.take(key, v, changed_at);
    if (key == "OriginalLink") return w.take(key, v, original_link);
    if (key == "Content") return true;  // the full bounce dump: large, and the Details say what matters
    if (key == "Type") return w.keep(key, raw_key, v, &type);
    if (key == "Description") return w.keep(key, raw_key, v, &description);
    if (key == "Details") return w.keep(key, raw_key, v, &details);
    if (key == "Inactive") return w.keep(key, raw_key, v, &inactive);
    if (key == "SuppressSending") return w.keep(key, raw_key, v, &suppress_sending);
    if (key == "Metadata") {
      return w.keep_object("Metadata", v, [&](std::string_view mk, std::string_view mraw, od::value x) {
        scalar s;
        if (!w.keep(mk, mraw, x, &s)) return false;
        ids.offer(mk, s, "Metadata", 2);
        return true;
      });
    }
    if (key == "Tag") {
      scalar s;
      if (!w.keep(key, raw_key, v, &s)) return false;
      if (s.is_string()) offer_tag(ids, s.text, "Tag", 1);
      return true;
    }
    return w.keep(key, raw_key, v);  // MessageStream, ServerID, Client, OS, Geo, Platform, FirstOpen, ...
  });
  if (!ok || !w.finish()) return failed();
  if (!record_type.is_string()) {
    error.assign("not a Postmark webhook: no \"RecordType\"");
    if (!ws.reason.empty()) error.append(" (").append(ws.reason).append(")");
    return false;
  }

  communication_fields f;
  f.provider = "postmark";
  f.channel_ = channel::email;
  record kind = record::delivery;
  const scalar* time = &delivered_at;
  std::string_view time_field = "DeliveredAt";
  if (!lookup(record_types, record_type.text, kind)) {
    if (begin_rule(ws, "RecordType")) {
      transform::detail::append_quoted(ws.reason, record_type.text);
      ws.reason.append(" is not one of Delivery|Bounce|SpamComplaint|Open|Click|SubscriptionChange");
    }
  } else {
    switch (kind) {
      case record::delivery: f.status = comm_status::delivered; break;
      case record::bounce: {
        time = &bounced_at;
        time_field = "BouncedAt";
        bool permanent = inactive.present && inactive.text == "true";
        for (const std::string_view t : permanent_bounce_types) permanent = permanent || (type.is_string() && type.text == t);
        f.status = permanent ? comm_status::bounced : comm_status::failed;
        if (type.is_string() && type.text == "SpamComplaint") {
          f.status = comm_status::spam;
        } else {
          if (type.is_string()) f.error_code = type.text;
          f.error_reason = description.is_string() ? description.text
                           : details.is_string()   ? details.text
                                                   : std::string_view{};
        }
        break;
      }
      case record::spam_complaint:
        f.status = comm_status::spam;
        time = &bounced_at;
        time_field = "BouncedAt";
        break;
      case record::open:
        f.status = comm_status::opened;
        time = &received_at;
        time_field = "ReceivedAt";
        break;
      case record::click:
        f.status = comm_status::clicked;
        time = &received_at;
        time_field = "ReceivedAt";
        if (original_link.present && !original_link.is_string()) {
          rule_wrong_type(ws, "OriginalLink", "a string", original_link);
        }
        f.url = original_link.is_string() ? original_link.text : std::string_view{};
        break;
      case record::subscription_change:
        time = &changed_at;
        time_field = "ChangedAt";
        if (suppress_sending.type != od::json_type::boolean || !suppress_sending.present) {
          if (!suppress_sending.present) {
            rule_missing(ws, "SuppressSending");
          } else {
            rule_wrong_type(ws, "SuppressSending", "true or false", suppress_sending);
          }
        }
        f.status = suppress_sending.text == "true" ? comm_status::unsubscribed : comm_status::resubscribed;
        break;
    }
  }
  rfc3339_time(ws, time_field, *time, f.occurred_at);
  scalar& contact = recipient.present ? recipient : email;
  for (auto [name, s, target] : {std::tuple{"MessageID", &message_id, &f.provider_message_id},
                                 std::tuple{recipient.present ? "Recipient" : "Email", &contact, &f.email}}) {
    if (s->present && !s->is_string()) rule_wrong_type(ws, name, "a string", *s);
    *target = s->is_string() ? s->text : std::string_view{};
  }
  // The idempotency key: Postmark has no event id; one record per type, message, recipient and time.
  if (message_id.is_string() && time->is_string()) {
    ws.event_key.assign(record_type.text).append(":").append(message_id.text).append(":").append(f.email).append(":");
    ws.event_key.append(time->text);
    f.provider_event_id = ws.event_key;
  }
  resolve_ids(ws, ids, f.lead_id, f.campaign_id);
  apply_ids(ids, f);
  const source_ref src = event_source(ws, in.source, 0);
  if (!ws.reason.empty()) {
    norm.reject(in.body, src, in.received_at, ws.reason, out);
  } else {
    f.metadata = finish_metadata(ws);
    norm.append(f, in.body, src, in.received_at, out);
  }
  end_event(ws);
  return true;
}

}  // namespace crm::transform::providers
