// Mailgun webhooks (documentation.mailgun.com, "Webhooks"): one JSON object {"signature": {...},
// "event-data": {...}} per request. The signature is checked by the HTTP layer (extract_mailgun_signature
// hands it the three fields); it never reaches the metadata.
#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

// "failed" depends on severity; see below.
constexpr status_words mailgun_events =
    "accepted=queued|delivered|opened|clicked|failed|rejected=failed|complained=spam|unsubscribed";

}  // namespace

bool normalize_mailgun(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  provider_document d(norm, in, out, error);
  workspace& ws = d.ws;
  json_walker& w = d.walker;
  scalar event, id, timestamp, recipient, severity, url, reason, message_id, code, ds_message, ds_description;
  crm_ids ids;
  bool has_event_data = false;
  const bool read = d.read_object("a Mailgun webhook", [&](std::string_view key, std::string_view, od::value v) {
    if (key != "event-data") return true;  // "signature": verified upstream, not kept
    return w.event_object(v, "event-data", has_event_data, [&](std::string_view k, std::string_view raw_key, od::value x) {
      if (scalar* s = find_field({{"event", &event}, {"id", &id}, {"timestamp", &timestamp}, {"recipient", &recipient},
                                  {"url", &url}}, k)) {
        return w.take(k, x, *s);
      }
      if (scalar* s = find_field({{"severity", &severity}, {"reason", &reason}}, k)) return w.keep(k, raw_key, x, s);
      if (k == "storage") return true;  // where to fetch the stored message: an API pointer, not event data
      if (k == "message") {
        return w.keep_object("message", x, [&](std::string_view mk, std::string_view mraw, od::value y) {
          if (mk != "headers") return w.keep(mk, mraw, y);
          return w.keep_object("headers", y, [&](std::string_view hk, std::string_view hraw, od::value z) {
            return w.keep(hk, hraw, z, hk == "message-id" ? &message_id : nullptr);
          });
        });
      }
      if (k == "delivery-status") {
        return w.keep_object("delivery-status", x, [&](std::string_view dk, std::string_view draw, od::value y) {
          return w.keep(dk, draw, y,
                        find_field({{"code", &code}, {"message", &ds_message}, {"description", &ds_description}}, dk));
        });
      }
      if (k == "user-variables") return keep_id_members(w, "user-variables", x, ids, "user-variables");
      if (k == "tags") {
        return w.keep_array("tags", x, [&](const scalar& s) {
          if (s.is_string()) offer_tag(ids, s.text, "tags", 1);
        });
      }
      return w.keep(k, raw_key, x);  // log-level, envelope, flags, geolocation, client-info, campaigns, ...
    });
  });
  if (!read) return false;
  if (!has_event_data) return d.refuse(!ws.shape.empty() ? std::string_view(ws.shape) : "no \"event-data\" object");

  communication_fields f;
  f.provider = "mailgun";
  f.channel_ = channel::email;
  if (read_status(ws, "event-data.event", event, mailgun_events, f.status) && f.status == comm_status::failed &&
      event.text == "failed" && severity.is_string() && severity.text == "permanent") {
    f.status = comm_status::bounced;  // Mailgun gives up on the address; "temporary" is retried
  }
  epoch_time(ws, "event-data.timestamp", timestamp, f.occurred_at);
  f.provider_event_id = string_field(ws, "event-data.id", id);
  f.email = string_field(ws, "event-data.recipient", recipient);
  f.url = string_field(ws, "event-data.url", url);
  f.provider_message_id = string_field(ws, "event-data.message.headers.message-id", message_id);
  if (f.status == comm_status::bounced || f.status == comm_status::failed) {
    if (code.is_number() || code.is_string()) f.error_code = code.text;
    f.error_reason = ds_description.is_string() ? ds_description.text
                     : ds_message.is_string()   ? ds_message.text
                     : reason.is_string()       ? reason.text
                                                : std::string_view{};
  }
  d.emit(ids, f);
  return true;
}

bool extract_mailgun_signature(std::string_view body, mailgun_signature_fields& out) {
  out = {};
  workspace& ws = thread_workspace();
  begin_call(ws);
  od::document doc;
  std::string error;
  if (!start_document(ws, body, doc, error)) return false;
  json_walker w(ws, doc, body.size());
  od::json_type root;
  if (!w.root_type(root) || root != od::json_type::object) return false;
  od::object top;
  if (doc.get_object().get(top)) return false;
  const bool ok = w.members(top, [&](std::string_view key, std::string_view, od::value v) {
    if (key != "signature") return true;
    return w.members(v, "signature", [&](std::string_view k, std::string_view, od::value x) {
      std::string* target = k == "timestamp" ? &out.timestamp : k == "token" ? &out.token
                            : k == "signature"                    ? &out.signature
                                                                  : nullptr;
      if (target == nullptr) return true;
      scalar s;
      if (!w.read(x, s)) return false;
      if (s.is_string() || s.is_number()) target->assign(s.text);  // Mailgun sends the timestamp as a string
      return true;
    });
  });
  if (!ok || !w.finish()) {
    out = {};
    return false;
  }
  return true;
}

}  // namespace crm::transform::providers
