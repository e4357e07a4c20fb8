// Postmark webhooks (postmarkapp.com/developer/webhooks): one JSON object per request, told apart by
// RecordType. No signature: the HTTP layer checks basic auth.
#include <array>

#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

// RecordType -> the status of the record; a Bounce is refined below (bounced, failed or spam) and a
// SubscriptionChange is unsubscribed or resubscribed by SuppressSending.
constexpr status_words record_types =
    "Delivery=delivered|Bounce=bounced|SpamComplaint=spam|Open=opened|Click=clicked|SubscriptionChange=unsubscribed";

// Bounce types after which Postmark's verdict is "this address does not work": counted as bounced. Every
// other type (SoftBounce, Transient, DnsError, AutoResponder, Blocked, ...) is a failed attempt; Postmark
// also marks permanent bounces Inactive, which counts as well.
constexpr std::array<std::string_view, 3> permanent_bounce_types = {"HardBounce", "BadEmailAddress",
                                                                    "ManuallyDeactivated"};

}  // namespace

bool normalize_postmark(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  provider_document d(norm, in, out, error);
  workspace& ws = d.ws;
  json_walker& w = d.walker;
  scalar record_type, message_id, recipient, email, delivered_at, bounced_at, received_at, changed_at, type,
      description, details, inactive, original_link, suppress_sending;
  crm_ids ids;
  const bool read = d.read_object("a Postmark webhook", [&](std::string_view key, std::string_view raw_key, od::value v) {
    if (scalar* s = find_field({{"RecordType", &record_type}, {"MessageID", &message_id}, {"Recipient", &recipient},
                                {"Email", &email}, {"DeliveredAt", &delivered_at}, {"BouncedAt", &bounced_at},
                                {"ReceivedAt", &received_at}, {"ChangedAt", &changed_at},
                                {"OriginalLink", &original_link}}, key)) {
      return w.take(key, v, *s);
    }
    if (scalar* s = find_field({{"Type", &type}, {"Description", &description}, {"Details", &details},
                                {"Inactive", &inactive}, {"SuppressSending", &suppress_sending}}, key)) {
      return w.keep(key, raw_key, v, s);
    }
    if (key == "Content") return true;  // the full bounce dump: large, and the Details say what matters
    if (key == "Metadata") return keep_id_members(w, "Metadata", v, ids, "Metadata");
    if (key == "Tag") {
      scalar s;
      if (!w.keep(key, raw_key, v, &s)) return false;
      if (s.is_string()) offer_tag(ids, s.text, "Tag", 1);
      return true;
    }
    return w.keep(key, raw_key, v);  // MessageStream, ServerID, Client, OS, Geo, Platform, FirstOpen, ...
  });
  if (!read) return false;
  if (!record_type.is_string()) return d.refuse("no \"RecordType\"", ws.reason);

  communication_fields f;
  f.provider = "postmark";
  f.channel_ = channel::email;
  const scalar* time = &delivered_at;
  std::string_view time_field = "DeliveredAt";
  if (map_status(ws, "RecordType", record_type.text, record_types, f.status)) {
    switch (f.status) {
      case comm_status::bounced: {
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
      case comm_status::spam:
        time = &bounced_at;
        time_field = "BouncedAt";
        break;
      case comm_status::opened:
      case comm_status::clicked:
        time = &received_at;
        time_field = "ReceivedAt";
        f.url = f.status == comm_status::clicked ? string_field(ws, "OriginalLink", original_link) : std::string_view{};
        break;
      case comm_status::unsubscribed:
        time = &changed_at;
        time_field = "ChangedAt";
        if (!suppress_sending.present) {
          rule_missing(ws, "SuppressSending");
        } else if (suppress_sending.type != od::json_type::boolean) {
          rule_wrong_type(ws, "SuppressSending", "true or false", suppress_sending);
        }
        f.status = suppress_sending.text == "true" ? comm_status::unsubscribed : comm_status::resubscribed;
        break;
      default: break;  // delivered
    }
  }
  rfc3339_time(ws, time_field, *time, f.occurred_at);
  f.provider_message_id = string_field(ws, "MessageID", message_id);
  f.email = string_field(ws, recipient.present ? "Recipient" : "Email", recipient.present ? recipient : email);
  // The idempotency key: Postmark has no event id; one record per type, message, recipient and time.
  if (message_id.is_string() && time->is_string()) {
    ws.event_key.assign(record_type.text).append(":").append(message_id.text).append(":").append(f.email).append(":");
    ws.event_key.append(time->text);
    // A reactivation and a suppression can share all of those (the same change undone): the reactivation's key
    // says so (a suppression's key is what it always was).
    if (f.status == comm_status::resubscribed) ws.event_key.append(":resubscribed");
    f.provider_event_id = ws.event_key;
  }
  d.emit(ids, f);
  return true;
}

}  // namespace crm::transform::providers
