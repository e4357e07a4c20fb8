// Meta WhatsApp Cloud API webhooks: {"object":"whatsapp_business_account","entry":[{"changes":[{"value":{
// "metadata", "contacts", "statuses"[], "messages"[], "user_preferences"[]}}]}]}. Every status, incoming message
// and marketing preference is one event, indexed in document order across the body. The events of one `value` are
// emitted when the value closes, so that its metadata (our phone number) and contacts (profile names) apply
// whatever the member order. A change with no event in it is one dead letter.
#include <array>
#include <utility>
#include <vector>

#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

constexpr status_words whatsapp_statuses = "sent|delivered|read=opened|played=opened|failed";  // played: a voice message

// An event read from a value, waiting for the value to close. Views point into the body buffer, the
// parser's string buffer (valid for the whole document) or ws.scratch.
struct pending_event {
  communication_fields f;
  std::string_view raw;
  std::string_view members;  // ,"k":v metadata members of the event
  std::string_view reason;   // non-empty: a rejection
  std::size_t index = 0;
};

struct contact_name {
  std::string_view wa_id, name;
};

struct value_state {
  std::vector<pending_event>& pending;
  std::vector<contact_name>& contacts;
  std::string_view phone_number_id, display_phone_number;
};

// "+" and the digits of a wa_id ("16505551234" -> "+16505551234"), in ws.scratch.
std::string_view e164_of(workspace& ws, std::string_view wa_id) {
  if (wa_id.empty() || wa_id.front() == '+') return wa_id;
  char* p = ws.scratch.allocate(wa_id.size() + 1);
  p[0] = '+';
  std::memcpy(p + 1, wa_id.data(), wa_id.size());
  return {p, wa_id.size() + 1};
}

// biz_opaque_callback_data, which we set when sending: a JSON object or "k=v&k2=v2".
void offer_callback_data(workspace& ws, crm_ids& ids, std::string_view data) {
  std::size_t i = 0;
  while (i < data.size() && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')) ++i;
  if (i == data.size()) return;
  if (data[i] != '{') {
    offer_query(ws, ids, data, "biz_opaque_callback_data", 2);
    return;
  }
  const std::string_view text = ws.inner.load(data);
  od::document doc;
  od::object object;
  bool ok = !ws.inner_parser.iterate(ws.inner.data(), text.size(), ws.inner.capacity()).get(doc) &&
            !doc.get_object().get(object);
  if (ok) {
    for (auto member : object) {
      od::field field;
      std::string_view key;
      od::json_type t;
      if (std::move(member).get(field) || field.unescaped_key().get(key) || field.value().type().get(t)) {
        ok = false;
        break;
      }
      if (key != "lead_id" && key != "campaign_id" && key != "ab_test_id" && key != "variant") continue;
      std::string_view s;
      if (t == od::json_type::string) {
        const std::string_view raw = transform::detail::trim_token(field.value().raw_json_token());
        if (field.value().get_string().get(s)) {
          ok = false;
          break;
        }
        if (transform::detail::string_has_nul(raw, s)) continue;
      } else if (t == od::json_type::number) {
        s = transform::detail::trim_token(field.value().raw_json_token());
        if (transform::detail::check_json_number(s) != transform::detail::number_check::ok) {
          ok = false;
          break;
        }
      } else {
        continue;
      }
      // The inner parser's buffers are reused by the next status: keep a copy.
      const scalar value{ws.scratch.copy(s), t, !s.empty(), false};
      ids.offer(key, value, "biz_opaque_callback_data", 2);
    }
  }
  if (ok) {
    const char* rest = nullptr;
    ok = doc.current_location().get(rest) != simdjson::SUCCESS;  // nothing after the object
  }
  if (!ok && begin_rule(ws, "biz_opaque_callback_data")) {
    transform::detail::append_quoted(ws.reason, data);
    ws.reason.append(" starts like a JSON object but is not one (expected {\"lead_id\":...} or lead_id=...&...)");
  }
}

// The event numbered `index` whose JSON begins at `start`, with what statuses and messages share.
pending_event new_event(json_walker& w, const char* start, std::size_t index) {
  pending_event p;
  p.index = index;
  p.raw = w.raw_since(start);
  p.f.provider = "whatsapp";
  p.f.channel_ = channel::whatsapp;
  return p;
}

// The contact's wa_id (recipient_id of a status, from of a message) as the event's phone.
void take_phone(workspace& ws, const scalar& wa_id, communication_fields& f) {
  if (wa_id.is_string() || wa_id.is_number()) {
    f.phone = e164_of(ws, wa_id.text);
    f.phone_from_provider = true;
  }
}

// Hands the event to its value, its metadata and rejection copied out of the workspace, and ends it.
void keep_event(workspace& ws, const pending_event& p, value_state& state) {
  pending_event& kept = state.pending.emplace_back(p);
  kept.members = ws.scratch.copy(ws.metadata);
  kept.reason = ws.scratch.copy(ws.reason);
  end_event(ws);
}

// Keeps the event's reading in `pending` (false only on malformed JSON).
bool read_status_event(json_walker& w, od::value v, std::size_t index, value_state& state) {
  workspace& ws = w.ws();
  begin_event(ws);
  const char* start = w.location_of(v);
  scalar id, status, timestamp, recipient, participant, callback_data, error_code, error_title, error_message,
      error_details;
  const bool ok = w.members(v, "statuses[]", [&](std::string_view key, std::string_view raw_key, od::value x) {
    if (key == "id") return w.take(key, x, id);
    if (key == "status") return w.take(key, x, status);
    if (key == "timestamp") return w.take(key, x, timestamp);
    if (key == "recipient_id") return w.take(key, x, recipient);
    // A message to a group: Meta reports each participant's status separately, with the group as recipient_id.
    if (key == "recipient_participant_id") return w.keep(key, raw_key, x, &participant);
    if (key == "biz_opaque_callback_data") return w.keep(key, raw_key, x, &callback_data);
    if (key == "errors") {
      // The first error is the event's error; its details go to metadata.
      return w.elements(x, "errors", [&](std::size_t i, od::value e) {
        if (i != 0) return true;
        return w.members(e, "errors[0]", [&](std::string_view k, std::string_view, od::value y) {
          if (k == "code") return w.read(y, error_code);
          if (k == "title") return w.read(y, error_title);
          if (k == "message") return w.read(y, error_message);
          if (k == "error_data") {
            return w.members(y, "error_data", [&](std::string_view dk, std::string_view, od::value z) {
              if (dk == "details") return w.keep_as("error_details", z, &error_details);
              return true;
            });
          }
          if (k == "href") return w.keep_as("error_href", y);
          return true;
        });
      });
    }
    return w.keep(key, raw_key, x);  // conversation, pricing, recipient_type, ...
  });
  if (!ok) return false;

  pending_event p = new_event(w, start, index);
  communication_fields& f = p.f;
  read_status(ws, "status", status, whatsapp_statuses, f.status);
  epoch_time(ws, "timestamp", timestamp, f.occurred_at);
  f.provider_message_id = string_field(ws, "id", id, true, "a string (wamid)");
  const bool to_group = participant.is_string() || participant.is_number();
  if (to_group) {
    // The participant is the contact; the group's id stays in the metadata.
    take_phone(ws, participant, f);
    if (recipient.is_string() || recipient.is_number()) {
      ws.metadata.append(",\"group_id\":");
      append_json_string(ws.metadata, recipient.text);
    }
  } else {
    take_phone(ws, recipient, f);
  }
  // The idempotency key: a wamid reports each status once (to a group: once per participant).
  if (id.is_string() && status.is_string()) {
    ws.event_key.assign(id.text).append(":").append(status.text);
    if (to_group) ws.event_key.append(":").append(participant.text);
    f.provider_event_id = ws.scratch.copy(ws.event_key);
  }
  if (error_code.is_number() || error_code.is_string()) f.error_code = error_code.text;
  if (error_title.is_string()) {
    f.error_reason = error_title.text;
  } else if (error_message.is_string()) {
    f.error_reason = error_message.text;
  }
  crm_ids ids;
  if (callback_data.is_string()) offer_callback_data(ws, ids, callback_data.text);
  resolve_ids(ws, ids, f);
  // Views into the inner parser's buffer were copied by offer_callback_data.
  apply_ids(ids, f);
  keep_event(ws, p, state);
  return true;
}

bool read_message_event(json_walker& w, od::value v, std::size_t index, value_state& state) {
  workspace& ws = w.ws();
  begin_event(ws);
  const char* start = w.location_of(v);
  scalar id, from, timestamp;
  const bool ok = w.members(v, "messages[]", [&](std::string_view key, std::string_view raw_key, od::value x) {
    if (key == "id") return w.take(key, x, id);
    if (key == "from") return w.take(key, x, from);
    if (key == "timestamp") return w.take(key, x, timestamp);
    return w.keep(key, raw_key, x);  // type, text, referral (click-to-WhatsApp ads), context (the reply's target)
  });
  if (!ok) return false;

  pending_event p = new_event(w, start, index);
  communication_fields& f = p.f;
  f.direction_ = direction::inbound;
  f.status = comm_status::replied;
  epoch_time(ws, "timestamp", timestamp, f.occurred_at);
  f.provider_message_id = string_field(ws, "id", id, true, "a string (wamid)");
  if (!f.provider_message_id.empty()) {
    ws.event_key.assign(id.text).append(":received");
    f.provider_event_id = ws.scratch.copy(ws.event_key);
  }
  take_phone(ws, from, f);
  keep_event(ws, p, state);
  return true;
}

// A user's marketing-message preference (field user_preferences): "stop" -> unsubscribed, "resume" ->
// resubscribed, an inbound event of the user's number; its key the preference's user, category, value and time.
constexpr status_words preference_values = "stop=unsubscribed|resume=resubscribed";

bool read_preference_event(json_walker& w, od::value v, std::size_t index, value_state& state) {
  workspace& ws = w.ws();
  begin_event(ws);
  const char* start = w.location_of(v);
  scalar wa_id, value, category, timestamp;
  const bool ok = w.members(v, "user_preferences[]", [&](std::string_view key, std::string_view raw_key, od::value x) {
    if (key == "wa_id") return w.take(key, x, wa_id);
    if (key == "value") return w.take(key, x, value);
    if (key == "timestamp") return w.take(key, x, timestamp);
    if (key == "category") return w.keep(key, raw_key, x, &category);
    return w.keep(key, raw_key, x);  // detail, ...
  });
  if (!ok) return false;

  pending_event p = new_event(w, start, index);
  communication_fields& f = p.f;
  f.direction_ = direction::inbound;
  read_status(ws, "value", value, preference_values, f.status);
  epoch_time(ws, "timestamp", timestamp, f.occurred_at);
  take_phone(ws, wa_id, f);
  if (wa_id.present && value.is_string() && timestamp.present) {
    ws.event_key.assign("user_preferences:").append(wa_id.text).append(":").append(category.text).append(":");
    ws.event_key.append(value.text).append(":").append(timestamp.text);
    f.provider_event_id = ws.scratch.copy(ws.event_key);
  }
  keep_event(ws, p, state);
  return true;
}

bool read_value(json_walker& w, od::value v, std::size_t& next_index, value_state& state) {
  return w.members(v, "value", [&](std::string_view key, std::string_view, od::value x) {
    if (key == "user_preferences") {
      return w.elements(x, "user_preferences",
                        [&](std::size_t, od::value u) { return read_preference_event(w, u, next_index++, state); });
    }
    if (key == "statuses") {
      return w.elements(x, "statuses", [&](std::size_t, od::value s) { return read_status_event(w, s, next_index++, state); });
    }
    if (key == "messages") {
      return w.elements(x, "messages", [&](std::size_t, od::value m) { return read_message_event(w, m, next_index++, state); });
    }
    if (key == "metadata") {
      return w.members(x, "metadata", [&](std::string_view k, std::string_view, od::value y) {
        scalar s;
        if (!w.take(k, y, s)) return false;
        if (k == "phone_number_id" && s.is_string()) state.phone_number_id = s.text;
        if (k == "display_phone_number" && s.is_string()) state.display_phone_number = s.text;
        return true;
      });
    }
    if (key == "contacts") {
      return w.elements(x, "contacts", [&](std::size_t, od::value c) {
        contact_name n;
        const bool ok = w.members(c, "contacts[]", [&](std::string_view k, std::string_view, od::value y) {
          scalar s;
          if (k == "wa_id") {
            if (!w.take(k, y, s)) return false;
            if (s.is_string()) n.wa_id = s.text;
            return true;
          }
          if (k == "profile") {
            return w.members(y, "profile", [&](std::string_view pk, std::string_view, od::value z) {
              if (pk != "name") return true;
              if (!w.take(pk, z, s)) return false;
              if (s.is_string()) n.name = s.text;
              return true;
            });
          }
          return true;
        });
        if (ok && !n.wa_id.empty()) state.contacts.push_back(n);
        return ok;
      });
    }
    return true;  // messaging_product, errors (account-level notices without a message)
  });
}

// Emits the events of one value.
void emit(normalizer& norm, const webhook_input& in, workspace& ws, value_state& state, event_batch& out) {
  for (pending_event& p : state.pending) {
    const source_ref src = event_source(ws, in.source, p.index);
    if (!p.reason.empty()) {
      norm.reject(p.raw, src, in.received_at, p.reason, out);
      continue;
    }
    ws.metadata.assign(p.members);
    if (!state.phone_number_id.empty()) {
      ws.metadata.append(",\"phone_number_id\":");
      append_json_string(ws.metadata, state.phone_number_id);
    }
    if (!state.display_phone_number.empty()) {
      ws.metadata.append(",\"display_phone_number\":");
      append_json_string(ws.metadata, state.display_phone_number);
    }
    if (p.f.direction_ == direction::inbound) {
      for (const contact_name& c : state.contacts) {
        if (p.f.phone.size() == c.wa_id.size() + 1 && p.f.phone.substr(1) == c.wa_id && !c.name.empty()) {
          ws.metadata.append(",\"profile_name\":");
          append_json_string(ws.metadata, c.name);
          break;
        }
      }
    }
    p.f.metadata = finish_metadata(ws);
    norm.append(p.f, p.raw, src, in.received_at, out);
  }
  state.pending.clear();
  state.contacts.clear();
  state.phone_number_id = {};
  state.display_phone_number = {};
}

}  // namespace

std::string whatsapp_body_of_event(std::string_view raw) {
  thread_local simdjson::ondemand::parser parser;
  const simdjson::padded_string text(raw);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (parser.iterate(text).get(doc) || doc.get_object().get(object)) return {};
  std::string_view array;
  for (auto member : object) {
    std::string_view key;
    if (member.unescaped_key().get(key)) return {};
    if (key == "object" || key == "entry") return {};  // a whole body
    if (key == "status" || key == "recipient_id") array = "statuses";
    if (key == "from" && array.empty()) array = "messages";
    if (key == "wa_id" && array.empty()) array = "user_preferences";
  }
  if (array.empty()) return {};
  // Statuses and messages come in changes of field "messages"; preferences in their own.
  const std::string_view field = array == "user_preferences" ? array : std::string_view("messages");
  std::string body = R"({"object":"whatsapp_business_account","entry":[{"changes":[{"field":")";
  body.append(field).append(R"(","value":{")").append(array).append("\":[").append(raw).append("]}}]}]}");
  return body;
}

bool normalize_whatsapp(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  provider_document d(norm, in, out, error);
  workspace& ws = d.ws;
  json_walker& w = d.walker;
  thread_local std::vector<pending_event> pending;
  thread_local std::vector<contact_name> contacts;
  pending.clear();
  contacts.clear();
  value_state state{pending, contacts, {}, {}};
  std::size_t next_index = 0;
  bool has_entry = false;
  std::string_view object_name;
  const bool read = d.read_object("a WhatsApp Business webhook", [&](std::string_view key, std::string_view, od::value v) {
    if (key == "object") {
      scalar s;
      if (!w.read(v, s)) return false;
      object_name = s.is_string() ? s.text : std::string_view("?");
      return true;
    }
    if (key != "entry") return true;
    has_entry = true;
    return w.elements(v, "entry", [&](std::size_t, od::value entry) {
      return w.members(entry, "entry[]", [&](std::string_view k, std::string_view, od::value x) {
        if (k != "changes") return true;
        return w.elements(x, "changes", [&](std::size_t, od::value change) {
          const char* start = w.location_of(change);
          const std::size_t first_index = next_index;
          scalar field;
          const bool read_ok = w.members(change, "changes[]", [&](std::string_view ck, std::string_view, od::value y) {
            if (ck == "field") return w.take(ck, y, field);
            if (ck != "value") return true;
            return read_value(w, y, next_index, state);
          });
          if (!read_ok) return false;
          if (next_index == first_index) {
            // Neither a status, a message nor a preference (a field this adapter does not map: history,
            // smb_message_echoes, account and template notices; or a value-level error): kept as a dead letter
            // naming the field, not acknowledged and dropped.
            std::string reason("a WhatsApp change of field ");
            transform::detail::append_quoted(reason, field.is_string() ? field.text : std::string_view("?"));
            reason.append(" holds no status, message or user preference: not mapped to an event");
            norm.reject(w.raw_since(start), event_source(ws, in.source, next_index++), in.received_at, reason, out);
          }
          emit(norm, in, ws, state, out);
          return true;
        });
      });
    });
  });
  if (!read) return false;
  if (!has_entry) return d.refuse("no \"entry\" array");
  if (!object_name.empty() && object_name != "whatsapp_business_account") {
    std::string problem("\"object\" is ");
    transform::detail::append_quoted(problem, object_name);
    return d.refuse(problem.append(", not \"whatsapp_business_account\""));
  }
  // A rule broken outside any event (entry not an array, ...): the body is not what Meta sends.
  if (ws.shape.empty()) ws.shape = ws.reason;
  if (!ws.shape.empty()) return d.refuse(ws.shape);
  return true;
}

}  // namespace crm::transform::providers
