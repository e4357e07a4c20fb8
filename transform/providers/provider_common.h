// What the provider adapters (providers_<name>.cc) share: a per-thread workspace (parser, padded buffer,
// scratch text), a reader that walks a provider's JSON with simdjson On-Demand and tells malformed JSON
// (the whole body is refused) from a broken rule (that one event becomes a rejection), the collection of
// metadata members, CRM ids carried as strings, and the bookkeeping of one body's events.
// Internal to transform/ (crm::transform::providers::detail).
#pragma once

#include <simdjson.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "transform/canonical/canonical_event.h"
#include "transform/text/json_text.h"
#include "transform/text/json_copy.h"
#include "transform/text/json_input.h"
#include "transform/normalize/normalize.h"
#include "transform/providers/providers.h"
#include "transform/text/text_arena.h"

namespace crm::transform::providers::detail {

namespace od = simdjson::ondemand;

// A scalar as read: a decoded string, or the raw token of a number/true/false. Objects and arrays are
// not captured (type says what was there).
struct scalar {
  std::string_view text;
  od::json_type type = od::json_type::null;
  bool present = false;  // the member was there and not null (an empty string counts as absent)
  bool nul = false;      // a string holding \u0000 (then text is empty: no column can hold it)

  bool is_string() const noexcept { return present && type == od::json_type::string; }
  bool is_number() const noexcept { return present && type == od::json_type::number; }
};

using transform::detail::padded_buffer;
using transform::detail::type_name;

// One per thread, reused by every call on that thread (thread_workspace()); nothing in it outlives a call.
struct workspace {
  od::parser parser;        // the body
  od::parser inner_parser;  // JSON carried inside a string (WhatsApp biz_opaque_callback_data)
  padded_buffer body;
  padded_buffer inner;
  transform::detail::json_copier copier;
  std::string metadata;      // ,"key":value members of the current event
  std::string metadata_out;  // the assembled object
  std::string reason;        // the first broken rule of the current event
  std::string shape;         // the first broken rule met outside any event: the body is not the provider's
  std::string source;        // "<source>:<index>"
  std::string event_key;     // a composed provider_event_id
  std::string decoded;       // percent-decoding scratch
  text_arena scratch{16 * 1024};  // decoded text that must outlive a loop iteration (cleared per call)
};

workspace& thread_workspace();

// Renders "malformed JSON at byte N: <what>" for an error met while iterating `doc` over `buffer`.
void describe_malformed(od::document& doc, const padded_buffer& buffer, std::size_t size, simdjson::error_code e,
                        std::string& error);

// Copies `body` into ws.body (padded) and iterates it. On failure sets `error` ("malformed JSON at byte N: ...",
// "invalid UTF-8 at byte N", "malformed JSON: empty body").
bool start_document(workspace& ws, std::string_view body, od::document& doc, std::string& error);

// Walks the JSON of one body. Every method returns false when the JSON is malformed (then error() says
// where, and the walk must stop: an On-Demand document cannot continue after an error). Rule violations
// of the current event go to the workspace's reason instead (first one wins).
class json_walker {
 public:
  json_walker(workspace& ws, od::document& doc, std::size_t body_size) : ws_(ws), doc_(doc), size_(body_size) {}

  const std::string& error() const noexcept { return error_; }
  bool failed() const noexcept { return !error_.empty(); }

  // Records a JSON error met while iterating.
  bool fail(simdjson::error_code e);

  // Calls on_member(std::string_view key, std::string_view raw_key, od::value value) -> bool for every
  // member of `value`, which must be an object (else a rule failure naming `what`, and false is not
  // returned: the value is just skipped). Stops and returns false on malformed JSON or when on_member does.
  template <typename F>
  bool members(od::value value, std::string_view what, F&& on_member);
  template <typename F>
  bool members(od::object object, F&& on_member);

  // Walks the object `name` that holds a provider's event (Mailgun "event-data", Resend "data") with
  // members(): `found` tells it was an object; another type is the body's shape problem, kept in ws.shape
  // ("\"data\" is array, not an object").
  template <typename F>
  bool event_object(od::value value, std::string_view name, bool& found, F&& on_member);

  // Calls on_element(std::size_t index, od::value value) -> bool for every element of an array value
  // (a non-array is a rule failure naming `what`).
  template <typename F>
  bool elements(od::value value, std::string_view what, F&& on_element);

  // Calls on_element(std::size_t index, od::value value) -> bool for every element of `array`.
  template <typename F>
  bool each(od::array array, F&& on_element);

  // Reads a scalar (strings decoded). An object or array only sets type.
  bool read(od::value value, scalar& out);
  // read() for a field that becomes a column: a string holding \u0000 is a rule failure naming `key`.
  bool take(std::string_view key, od::value value, scalar& out);
  // Reads a scalar and appends ,"raw_key":value to the event's metadata; objects and arrays are copied
  // whole (validated, see json_copier). `key` names the field in a rule failure.
  bool keep(std::string_view key, std::string_view raw_key, od::value value, scalar* out = nullptr);
  // Appends ,"name":value (value copied and validated) under a name of our choosing.
  bool keep_as(std::string_view name, od::value value, scalar* out = nullptr);
  // Appends ,"name":{...} whose members are whatever on_member(key, raw_key, value) -> bool keeps (with
  // keep(), keep_object(), ... : it may also drop a member). A value that is not an object is copied whole.
  template <typename F>
  bool keep_object(std::string_view name, od::value value, F&& on_member);
  // Appends ,"name":[...] (every element copied and validated) and calls on_scalar(const scalar&) for each
  // element that is a string or number.
  template <typename F>
  bool keep_array(std::string_view name, od::value value, F&& on_scalar);

  // Writes ,"name": and the bracket that opens an object or array of the metadata whose members the caller
  // writes (each as ",k:v"); returns where they start, for close_kept(), which drops the first comma.
  std::size_t open_kept(std::string_view name, char bracket);
  void close_kept(std::size_t first, char bracket);

  // After the root value: anything but whitespace left is malformed.
  bool finish();
  // The root's type (a JSON error is recorded).
  bool root_type(od::json_type& t);

  // Where `value` starts (before reading it) and where the walk stands now: for the raw text of an event.
  const char* location_of(od::value& value);
  std::string_view raw_since(const char* start);

  workspace& ws() noexcept { return ws_; }

 private:
  // Opens `value` as a Container (od::object or od::array) and returns walk(container). Null, or another type
  // (a rule failure naming `what`), is skipped: true. False on malformed JSON.
  template <typename Container, typename Walk>
  bool open_as(od::value& value, std::string_view what, Walk&& walk);
  bool copy_failed(transform::detail::copy_error e, std::string_view key);
  bool keep_value(std::string_view key, od::value value, std::size_t mark, scalar* out);

  workspace& ws_;
  od::document& doc_;
  std::size_t size_;
  std::string error_;
};

// Starts the first-broken-rule reason of the current event: false when one is already recorded.
bool begin_rule(workspace& ws, std::string_view field);
// Common rule failures.
void rule_wrong_type(workspace& ws, std::string_view field, std::string_view expected, const scalar& got);
void rule_missing(workspace& ws, std::string_view field);

// The text of a field that becomes a column: the string, or empty. Present but of another JSON type is a
// rule failure naming `field` ("expected a string, got number 5"); with `required`, absent is one too
// ("missing (required)").
std::string_view string_field(workspace& ws, std::string_view field, const scalar& value, bool required = false,
                              std::string_view expected = "a string");

// A provider's words for a status, "word=ours|word|...": "word=ours" maps a word of the provider's to our
// spelling (comm_status_names), a bare word is spelled as we spell it. Words match ignoring ASCII case. The
// same text lists the choices of a rejection reason, so the mapping and its message cannot drift apart.
// Checked when compiled: a word that maps to none of ours does not build.
class status_words {
 public:
  consteval status_words(const char* words) : text_(words) {
    for (std::string_view rest = text_; !rest.empty();) {
      const std::size_t bar = rest.find('|');
      const std::string_view item = rest.substr(0, bar);
      rest = bar == std::string_view::npos ? std::string_view{} : rest.substr(bar + 1);
      const std::size_t eq = item.find('=');
      const std::string_view ours = eq == std::string_view::npos ? item : item.substr(eq + 1);
      bool known = false;
      for (const std::string_view name : comm_status_names) known = known || name == ours;
      if (item.empty() || !known) throw "a status word that maps to none of comm_status_names";
    }
  }
  constexpr std::string_view text() const noexcept { return text_; }

 private:
  std::string_view text_;
};

// Maps `word` through `words` into `out`; false when `words` does not have it.
bool find_status(const status_words& words, std::string_view word, comm_status& out) noexcept;
// The same, but an unknown word is a rule failure naming `field`: `"x" is not one of
// <the provider's words>`, or `"x"` followed by `unknown_rule` when one is given.
bool map_status(workspace& ws, std::string_view field, std::string_view word, const status_words& words,
                comm_status& out, std::string_view unknown_rule = {});
// The same for a JSON value, which must be a string and present.
bool read_status(workspace& ws, std::string_view field, const scalar& value, const status_words& words,
                 comm_status& out);

// The scalar that member `key` is read into, looked up in an adapter's table {{"id", &id}, ...}; nullptr for a
// key the table does not name.
inline scalar* find_field(std::initializer_list<std::pair<std::string_view, scalar*>> fields, std::string_view key) {
  for (const auto& [name, target] : fields) {
    if (name == key) return target;
  }
  return nullptr;
}

// JSON string escaping (transform/text/json_text.h); invalid UTF-8 must be checked by the caller.
using crm::transform::append_json_string;

// The CRM ids a provider carries (lead, campaign, A/B test, variant), each remembered with where it came
// from. A source with a higher priority wins regardless of the order in which they are met.
struct crm_ids {
  struct slot {
    std::string_view text;
    std::string_view origin;  // e.g. "user-variables.lead_id", for the rejection reason
    int priority = -1;
    bool is_number = false;
    // lead_id/campaign_id given as what no id is (an empty string, true, an object...): its description,
    // a rule failure; empty otherwise.
    std::string_view unusable;
  };
  slot lead_id, campaign_id, ab_test_id, variant;

  // Offers `key` = `value` from a key/value source (custom args, metadata, tags): true when `key` is
  // one of lead_id, campaign_id, ab_test_id, variant.
  bool offer(std::string_view key, const scalar& value, std::string_view origin, int priority);
  static void offer_to(slot& s, std::string_view text, bool is_number, std::string_view origin, int priority);
};

// lead_id/campaign_id into the fields: a JSON integer 1..2^63-1 as the id (another number is a rule failure:
// "lead_id: 0 (Metadata) is not an integer >= 1"); a string as written, for normalizer::append() to resolve
// (transform/normalize/crm_ref.h: digits are the id, other text the CRM's reference, "L-1001"); an empty
// string is a rule failure.
bool resolve_ids(workspace& ws, const crm_ids& ids, communication_fields& f);
bool resolve_ids(workspace& ws, const crm_ids& ids, touchpoint_fields& f);
void apply_ids(const crm_ids& ids, communication_fields& f);
void apply_ids(const crm_ids& ids, touchpoint_fields& f);

// Keeps the object `name` in the metadata, offering each of its members to `ids` as coming from `origin`
// (priority 2): Mailgun user-variables, Postmark Metadata, Resend tags.
bool keep_id_members(json_walker& w, std::string_view name, od::value value, crm_ids& ids, std::string_view origin);

// Parses "lead_id:42" / "variant=B" tags (Mailgun tags, Postmark Tag) into `ids`.
void offer_tag(crm_ids& ids, std::string_view tag, std::string_view origin, int priority);
// Parses a query string ("lead_id=42&campaign_id=7") into `ids`; values are percent-decoded into
// ws.scratch.
void offer_query(workspace& ws, crm_ids& ids, std::string_view query, std::string_view origin, int priority);

// `text` as is when it is valid UTF-8 without NUL, else a copy in ws.scratch with each offending byte
// replaced by U+FFFD: what text columns and jsonb accept.
std::string_view usable_text(workspace& ws, std::string_view text);

// A source's declared idempotency key (webhook_input::idempotency_key) for the event at `index`: the key as
// is for the first event of a body that is not a JSON array (or one already indexed: key_is_indexed), else
// "<key>:<index>" (in ws.event_key: valid until the next call).
std::string_view indexed_key(workspace& ws, const webhook_input& in, std::size_t index);

// Text of "<source>:<index>" in ws.source.
source_ref event_source(workspace& ws, std::string_view source, std::size_t index);

// Ends an event read into `f`: the CRM ids resolved into it, then the record appended through `norm` with
// the event's metadata or, when a rule of the event was broken, the rejection of `raw` as
// "<in.source>:<index>". The event's reason is cleared (end_event).
void emit_event(normalizer& norm, const webhook_input& in, workspace& ws, const crm_ids& ids,
                communication_fields& f, std::string_view raw, std::size_t index, event_batch& out);
void emit_event(normalizer& norm, const webhook_input& in, workspace& ws, const crm_ids& ids, touchpoint_fields& f,
                std::string_view raw, std::size_t index, event_batch& out);

// The event's metadata object ("{...}") in ws.metadata_out, or empty when no member was kept.
std::string_view finish_metadata(workspace& ws);

// Begins a call: clears every per-call buffer.
void begin_call(workspace& ws);
// Begins a new event: clears the per-event reason and metadata. A reason left from outside an event (a
// broken shape around the events) is moved to ws.shape first.
void begin_event(workspace& ws);
// Ends an event that has been recorded: its reason is no longer pending.
inline void end_event(workspace& ws) { ws.reason.clear(); }

// Timestamps: an epoch number token or numeric string (seconds, or milliseconds by magnitude), or RFC 3339.
// A failure is a rule failure naming `field`.
bool epoch_time(workspace& ws, std::string_view field, const scalar& value, timestamp_us& out);
bool rfc3339_time(workspace& ws, std::string_view field, const scalar& value, timestamp_us& out);

// Remembers the batch's sizes on entry; rollback() restores them when the body turns out malformed, so a
// false return never leaves half a body in the batch.
class batch_mark {
 public:
  explicit batch_mark(const event_batch& b)
      : communications_(b.communications.size()), touchpoints_(b.touchpoints.size()),
        rejections_(b.rejections.size()) {}
  void rollback(event_batch& b) const {
    b.communications.resize(communications_);
    b.touchpoints.resize(touchpoints_);
    b.rejections.resize(rejections_);
  }

 private:
  std::size_t communications_, touchpoints_, rejections_;
};

// How every JSON provider adapter reads a body: the thread's workspace (reset for this call), the body
// parsed On-Demand, a walker over it and the size of `out` to roll back to when the body as a whole is
// refused. open_object()/open_array() check the root's type ("not <what>: expected a JSON object, got
// a string"); on false, `error` says why and `out` is as it was.
class provider_document {
 public:
  provider_document(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error)
      : ws(thread_workspace()), walker(ws, doc, in.body.size()), norm_(norm), in_(in), out_(out), error_(error),
        mark_(out) {
    begin_call(ws);
  }
  provider_document(const provider_document&) = delete;
  provider_document& operator=(const provider_document&) = delete;

  bool open_object(std::string_view what);  // then `object` is the root
  bool open_array(std::string_view what);   // then `array` is the root

  // A body that is one JSON object: open_object(what), then its event begun and on_member(key, raw_key,
  // value) -> bool called for every member of the root, up to the end of the body.
  template <typename F>
  bool read_object(std::string_view what, F&& on_member) {
    if (!open_object(what)) return false;
    begin_event(ws);
    if (!walker.members(object, std::forward<F>(on_member)) || !walker.finish()) return failed();
    return true;
  }

  // The one event of a single-event body, appended (emit_event) with the whole body as its raw text and
  // "<source>:0" as its source.
  template <typename Fields>
  void emit(const crm_ids& ids, Fields& f, std::size_t index = 0) {
    emit_event(norm_, in_, ws, ids, f, in_.body, index, out_);
  }

  // Rolls `out` back, takes the walker's error and returns false: for a body that fails as a whole.
  bool failed() {
    rollback();
    error_ = walker.error();
    return false;
  }
  // Rolls `out` back and refuses the body as not what open_object()/open_array() expected: the error is
  // "not <what>: <problem>", followed by " (<detail>)" when a detail is given. Returns false.
  bool refuse(std::string_view problem, std::string_view detail = {});
  void rollback() const { mark_.rollback(out_); }

  workspace& ws;
  od::document doc;
  json_walker walker;
  od::object object;
  od::array array;

 private:
  bool open(od::json_type expected, std::string_view what);

  normalizer& norm_;
  const webhook_input& in_;
  event_batch& out_;
  std::string& error_;
  const batch_mark mark_;
  std::string_view what_;
};

// Matches `text` against a table of {spelling, value} ignoring ASCII case.
template <typename T, std::size_t N>
bool lookup(const std::array<std::pair<std::string_view, T>, N>& table, std::string_view text, T& out) {
  for (const auto& [name, value] : table) {
    if (name.size() == text.size()) {
      bool same = true;
      for (std::size_t i = 0; same && i < name.size(); ++i) {
        char a = name[i], b = text[i];
        if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
        same = a == b;
      }
      if (same) {
        out = value;
        return true;
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------

template <typename F>
bool json_walker::members(od::object object, F&& on_member) {
  for (auto member : object) {
    od::field field;
    if (const auto e = std::move(member).get(field)) return fail(e);
    const od::raw_json_string raw = field.key();  // before unescaped_key(), which consumes the key
    std::string_view key;
    if (const auto e = field.unescaped_key().get(key)) return fail(e);
    const std::string_view raw_key = transform::detail::raw_key_token(raw, key);
    if (transform::detail::string_has_nul(raw_key, key)) {
      if (begin_rule(ws_, "field name")) ws_.reason.append("contains \\u0000, which PostgreSQL does not accept");
      continue;  // the value is skipped
    }
    if (!on_member(key, raw_key, field.value())) return false;
  }
  return true;
}

template <typename Container, typename Walk>
bool json_walker::open_as(od::value& value, std::string_view what, Walk&& walk) {
  constexpr bool is_object = std::is_same_v<Container, od::object>;
  od::json_type t;
  if (const auto e = value.type().get(t)) return fail(e);
  if (t != (is_object ? od::json_type::object : od::json_type::array)) {
    if (t != od::json_type::null && begin_rule(ws_, what)) {
      ws_.reason.append(is_object ? "expected an object, got " : "expected an array, got ").append(type_name(t));
    }
    return true;
  }
  Container container;
  simdjson::error_code e;
  if constexpr (is_object) {
    e = value.get_object().get(container);
  } else {
    e = value.get_array().get(container);
  }
  return e ? fail(e) : walk(container);
}

template <typename F>
bool json_walker::each(od::array array, F&& on_element) {
  std::size_t index = 0;
  for (auto element : array) {
    od::value v;
    if (const auto e = std::move(element).get(v)) return fail(e);
    if (!on_element(index++, v)) return false;
  }
  return true;
}

template <typename F>
bool json_walker::members(od::value value, std::string_view what, F&& on_member) {
  return open_as<od::object>(value, what, [&](od::object& object) { return members(object, std::forward<F>(on_member)); });
}

template <typename F>
bool json_walker::event_object(od::value value, std::string_view name, bool& found, F&& on_member) {
  od::json_type t;
  if (const auto e = value.type().get(t)) return fail(e);
  if (t != od::json_type::object) {
    if (ws_.shape.empty()) ws_.shape.assign("\"").append(name).append("\" is ").append(type_name(t)).append(", not an object");
    return true;
  }
  found = true;
  return members(value, name, std::forward<F>(on_member));
}

template <typename F>
bool json_walker::elements(od::value value, std::string_view what, F&& on_element) {
  return open_as<od::array>(value, what, [&](od::array& array) { return each(array, std::forward<F>(on_element)); });
}

template <typename F>
bool json_walker::keep_object(std::string_view name, od::value value, F&& on_member) {
  od::json_type t;
  if (const auto e = value.type().get(t)) return fail(e);
  if (t != od::json_type::object) return keep_as(name, value);
  od::object object;
  if (const auto e = value.get_object().get(object)) return fail(e);
  const std::size_t first = open_kept(name, '{');
  if (!members(object, std::forward<F>(on_member))) return false;
  close_kept(first, '}');
  return true;
}

template <typename F>
bool json_walker::keep_array(std::string_view name, od::value value, F&& on_scalar) {
  od::json_type t;
  if (const auto e = value.type().get(t)) return fail(e);
  if (t != od::json_type::array) {
    scalar s;
    if (!keep_as(name, value, &s)) return false;
    if (s.is_string() || s.is_number()) on_scalar(s);
    return true;
  }
  od::array array;
  if (const auto e = value.get_array().get(array)) return fail(e);
  const std::size_t first = open_kept(name, '[');
  const bool ok = each(array, [&](std::size_t, od::value v) {
    const std::size_t before = ws_.metadata.size();
    ws_.metadata.push_back(',');
    scalar s;
    if (!keep_value(name, v, before, &s)) return false;  // a rule failure takes the element back
    if (s.is_string() || s.is_number()) on_scalar(s);
    return true;
  });
  if (!ok) return false;
  close_kept(first, ']');
  return true;
}

}  // namespace crm::transform::providers::detail
