// Resend webhooks (resend.com/docs/dashboard/webhooks/event-types), delivered by Svix: one JSON object
// {"type": "email.delivered", "created_at", "data": {...}} per request. contact.* and domain.* events are
// not communications: they are acknowledged without a record.
#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

constexpr status_words resend_types =
    "email.sent=sent|email.scheduled=queued|email.delivered=delivered|email.delivery_delayed=queued|"
    "email.bounced=bounced|email.complained=spam|email.opened=opened|email.clicked=clicked|email.failed=failed";

}  // namespace

bool normalize_resend(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  provider_document d(norm, in, out, error);
  workspace& ws = d.ws;
  json_walker& w = d.walker;
  scalar type, created_at, email_id, to, link, bounce_type, bounce_subtype, bounce_message, failed_reason;
  crm_ids ids;
  bool has_data = false;
  const bool read = d.read_object("a Resend webhook", [&](std::string_view key, std::string_view, od::value v) {
    if (key == "type") return w.take(key, v, type);
    if (key == "created_at") return w.take(key, v, created_at);
    if (key != "data") return true;
    return w.event_object(v, "data", has_data, [&](std::string_view k, std::string_view raw_key, od::value x) {
      if (k == "email_id") return w.take(k, x, email_id);
      if (k == "to") {
        // A list of recipients; the first is the contact, all are kept.
        return w.keep_array("to", x, [&](const scalar& s) {
          if (!to.present) to = s;
        });
      }
      if (k == "bounce") {
        return w.keep_object("bounce", x, [&](std::string_view bk, std::string_view braw, od::value y) {
          return w.keep(bk, braw, y,
                        find_field({{"type", &bounce_type}, {"subType", &bounce_subtype}, {"message", &bounce_message}}, bk));
        });
      }
      if (k == "click") {
        return w.keep_object("click", x, [&](std::string_view ck, std::string_view craw, od::value y) {
          return w.keep(ck, craw, y, ck == "link" ? &link : nullptr);
        });
      }
      if (k == "failed") {
        return w.keep_object("failed", x, [&](std::string_view fk, std::string_view fraw, od::value y) {
          return w.keep(fk, fraw, y, fk == "reason" ? &failed_reason : nullptr);
        });
      }
      if (k == "tags") {
        // {"name": "value"} or [{"name": "...", "value": "..."}]
        od::json_type tt;
        if (const auto e = x.type().get(tt)) return w.fail(e);
        if (tt != od::json_type::array) return keep_id_members(w, "tags", x, ids, "data.tags");
        // The array form is kept as the object form: {"name": "value", ...}.
        std::string& meta = ws.metadata;
        const std::size_t first = w.open_kept("tags", '{');
        const bool tags_ok = w.elements(x, "data.tags", [&](std::size_t, od::value tag) {
          scalar name, value;
          const bool read = w.members(tag, "data.tags[]", [&](std::string_view tk, std::string_view, od::value y) {
            if (tk == "name") return w.take("data.tags[].name", y, name);
            if (tk == "value") return w.take("data.tags[].value", y, value);
            return true;
          });
          if (!read) return false;
          if (!name.is_string()) return true;
          meta.push_back(',');
          append_json_string(meta, name.text);
          meta.push_back(':');
          if (value.is_string()) {
            append_json_string(meta, value.text);
          } else if (value.is_number() && transform::detail::check_json_number(value.text) ==
                                                 transform::detail::number_check::ok) {
            meta.append(value.text);
          } else {
            meta.append("null");
          }
          ids.offer(name.text, value, "data.tags", 2);
          return true;
        });
        if (!tags_ok) return false;
        w.close_kept(first, '}');
        return true;
      }
      return w.keep(k, raw_key, x);  // from, subject, created_at, broadcast_id, template_id, message_id, ...
    });
  });
  if (!read) return false;
  if (!type.is_string()) return d.refuse("no \"type\"");
  if (!has_data) return d.refuse(!ws.shape.empty() ? std::string_view(ws.shape) : "no \"data\" object");
  if (type.text.rfind("email.", 0) != 0) return true;  // contact.*, domain.*: not communications

  communication_fields f;
  f.provider = "resend";
  f.channel_ = channel::email;
  map_status(ws, "type", type.text, resend_types, f.status);
  if (f.status == comm_status::bounced) {
    // Resend (Amazon SES) bounce types: Permanent, Transient, Undetermined. A transient bounce is a failed
    // attempt, not a dead address.
    if (bounce_type.is_string() && bounce_type.text == "Transient") f.status = comm_status::failed;
    if (bounce_subtype.is_string()) f.error_code = bounce_subtype.text;
    if (bounce_message.is_string()) f.error_reason = bounce_message.text;
  }
  if (f.status == comm_status::failed && failed_reason.is_string()) f.error_reason = failed_reason.text;
  rfc3339_time(ws, "created_at", created_at, f.occurred_at);
  f.provider_message_id = string_field(ws, "data.email_id", email_id);
  f.email = string_field(ws, "data.to", to);
  f.url = link.is_string() ? link.text : std::string_view{};
  // The idempotency key: the svix-id header is not part of the body; one record per email, type and time.
  if (email_id.is_string() && created_at.is_string()) {
    ws.event_key.assign(email_id.text).append(":").append(type.text).append(":").append(created_at.text);
    f.provider_event_id = ws.event_key;
  }
  d.emit(ids, f);
  return true;
}

}  // namespace crm::transform::providers
