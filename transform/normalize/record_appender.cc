// The rules of the canonical format, applied once to whatever was read (canonical JSON or a provider's
// payload), in this order: occurred_at range, given ids, contacts (communications); occurred_at range,
// lead_id/anonymous_id, experiment fields, conversion value, currency, given id (touchpoints); then the
// finished record against what its database columns accept (column_domains.h), derived values included.
// The first broken rule is the reason. What the record keeps is copied into the batch's arena.
#include "transform/normalize/record_appender.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>

#include "transform/normalize/channel_group.h"
#include "transform/normalize/column_domains.h"
#include "transform/normalize/crm_ref.h"
#include "transform/normalize/currency.h"
#include "transform/text/ascii.h"
#include "transform/text/json_input.h"
#include "transform/text/reason_text.h"
#include "transform/text/timestamp.h"
#include "transform/text/url_params.h"

namespace crm::transform::detail {
namespace {

constexpr char id_separator = '\x1f';

// The name of a derived id (README.md, "Derived ids"): its parts, each after id_separator.
struct id_name {
  std::string& text;

  void add(std::string_view part) {
    text.push_back(id_separator);
    text.append(part);
  }
  void add_number(std::int64_t n) {
    text.push_back(id_separator);
    append_number(text, n);
  }
  // An optional CRM id: 0 (absent) is an empty part.
  void add_id(std::int64_t id) {
    text.push_back(id_separator);
    if (id != 0) append_number(text, id);
  }
};

// "+<8-15 digits>", the first not 0: the shape of an E.164 number (ITU-T E.164: at most 15 digits).
bool is_international_number(std::string_view s) noexcept {
  if (s.size() < 9 || s.size() > 16 || s[0] != '+' || s[1] == '0') return false;
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

void append_timestamp(std::string& out, timestamp_us t) {
  char buf[48];
  out.append(buf, format_rfc3339(t, buf));
}

// A given event_id / touchpoint_id: the canonical 8-4-4-4-12 form.
bool read_given_id(std::string_view field, std::string_view text, uuid& out, std::string& reason) {
  if (parse_uuid(text, out)) return true;
  if (begin_reason(reason, field)) {
    append_quoted(reason, text);
    reason.append(" is not a UUID (8-4-4-4-12 hex digits)");
  }
  return false;
}

// An ISO 4217 code (currency.h), upper-cased into `code`.
bool check_currency(std::string_view text, char (&code)[3], std::string& reason) {
  const bool ok = normalize_currency(text, code);
  if (!ok && begin_reason(reason, "currency")) {
    append_quoted(reason, text);
    reason.append(" is not an ISO 4217 code");
  }
  return ok;
}

// lead_id / campaign_id of the record from the fields: an integer read as such, or text resolved (crm_ref.h).
template <typename Fields, typename Record>
bool resolve_ids(const Fields& f, text_arena& arena, Record& r, std::string& reason) {
  r.lead_id = f.lead_id;
  r.campaign_id = f.campaign_id;
  if (!f.lead_ref.empty() && !resolve_crm_id("lead_id", f.lead_ref, arena, r.lead_id, r.lead_ref, reason)) return false;
  return f.campaign_ref.empty() ||
         resolve_crm_id("campaign_id", f.campaign_ref, arena, r.campaign_id, r.campaign_ref, reason);
}

bool check_conversion_value(const touchpoint_fields& f, std::string& reason) {
  if (!f.has_conversion_value || conversion_value_storable(f.conversion_value)) return true;
  if (begin_reason(reason, "conversion_value")) {
    reason.append("expected a number >= 0");
    if (!(f.conversion_value < 0)) reason.append(" within numeric(20,6)");
    reason.append(", got ");
    if (!f.conversion_value_text.empty()) {
      append_printable(reason, f.conversion_value_text);
    } else {
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, f.conversion_value);
      reason.append(buf, r.ptr);
    }
  }
  return false;
}

}  // namespace

record_appender::record_appender(const normalize_options& options)
    : options_(options), phones_(options.default_region) {}

bool record_appender::check_occurred_range(timestamp_us received_at, timestamp_us occurred, std::string& reason) const {
  // Within timestamptz's range whatever the options say; the sum saturates instead of overflowing.
  const timestamp_us earliest = std::max(options_.min_occurred_at, min_storable_timestamp);
  timestamp_us latest = 0;
  if (__builtin_add_overflow(received_at, options_.max_future, &latest)) {
    latest = options_.max_future > 0 ? std::numeric_limits<timestamp_us>::max() : std::numeric_limits<timestamp_us>::min();
  }
  if (occurred >= earliest && occurred <= latest) return true;
  if (begin_reason(reason, "occurred_at")) {
    append_timestamp(reason, occurred);
    reason.append(" is outside the accepted range [");
    append_timestamp(reason, earliest);
    reason.append(", ");
    append_timestamp(reason, latest);
    reason.append("] (min_occurred_at, received_at + max_future)");
  }
  return false;
}

bool record_appender::normalize_contacts(const communication_fields& f, text_arena& arena, communication& c,
                                         std::string& reason) {
  if (!f.email.empty()) {
    const auto e = normalize_email(f.email, arena, c.email);
    if (e != email_error::none) {
      if (begin_reason(reason, "email")) {
        append_quoted(reason, f.email);
        reason.push_back(' ');
        reason.append(describe(e));
      }
      return false;
    }
  }
  if (!f.phone.empty()) {
    const auto e = phones_.normalize(f.phone, arena, c.phone);
    if (e != phone_error::none) {
      if (f.phone_from_provider && is_international_number(f.phone)) {
        c.phone = arena.copy(f.phone);
        return true;
      }
      if (begin_reason(reason, "phone")) {
        append_quoted(reason, f.phone);
        reason.push_back(' ');
        reason.append(describe(e));
        reason.append(" (default region ").append(options_.default_region).append(")");
      }
      return false;
    }
  }
  return true;
}

bool record_appender::append(const communication_fields& f, timestamp_us received_at, event_batch& out,
                             std::string& reason) {
  communication c;
  if (!check_occurred_range(received_at, f.occurred_at, reason)) return false;
  if (!f.event_id.empty() && !read_given_id("event_id", f.event_id, c.event_id, reason)) return false;
  text_arena& arena = out.text;
  if (!resolve_ids(f, arena, c, reason)) return false;
  if (!normalize_contacts(f, arena, c, reason)) return false;

  c.occurred_at = f.occurred_at;
  c.received_at = received_at;
  c.channel_ = f.channel_;
  c.direction_ = f.direction_;
  c.status = f.status;
  c.provider = arena.copy(f.provider.empty() ? std::string_view(options_.default_provider) : f.provider);
  c.provider_message_id = arena.copy(f.provider_message_id);
  c.provider_event_id = arena.copy(f.provider_event_id);
  c.ab_test_id = arena.copy(f.ab_test_id);
  c.variant = arena.copy(f.variant);
  c.url = arena.copy(f.url);
  c.error_code = arena.copy(f.error_code);
  c.error_reason = arena.copy(f.error_reason);
  c.metadata = arena.copy(f.metadata);
  c.occurred_at_is_receipt_time = f.occurred_at_is_receipt_time;
  if (!check_columns(c, reason)) return false;
  if (f.event_id.empty()) derive_event_id(c);
  out.communications.push_back(c);
  return true;
}

bool record_appender::append(const touchpoint_fields& f, timestamp_us received_at, event_batch& out,
                             std::string& reason) {
  if (!check_occurred_range(received_at, f.occurred_at, reason)) return false;
  touchpoint t;
  if (!resolve_ids(f, out.text, t, reason)) return false;
  if (t.lead_id == 0 && f.anonymous_id.empty()) {
    if (begin_reason(reason, "lead_id/anonymous_id")) reason.append("at least one is required");
    return false;
  }
  if (f.type == touch_type::identify && (t.lead_id == 0 || f.anonymous_id.empty())) {
    if (begin_reason(reason, t.lead_id == 0 ? "lead_id" : "anonymous_id")) {
      reason.append("missing (touch_type identify links an anonymous_id to a lead_id: both are required)");
    }
    return false;
  }
  if (f.type == touch_type::experiment_exposure && (f.ab_test_id.empty() || f.variant.empty())) {
    if (begin_reason(reason, f.ab_test_id.empty() ? "ab_test_id" : "variant")) {
      reason.append("missing (required for touch_type experiment_exposure)");
    }
    return false;
  }
  if (!check_conversion_value(f, reason)) return false;
  char currency[3];
  if (!f.currency.empty() && !check_currency(f.currency, currency, reason)) return false;
  if (!f.touchpoint_id.empty() && !read_given_id("touchpoint_id", f.touchpoint_id, t.touchpoint_id, reason)) {
    return false;
  }

  text_arena& arena = out.text;
  const auto given = tracking_slots(f);
  const auto tracking = tracking_slots(t);
  for (std::size_t i = 0; i < tracking.size(); ++i) *tracking[i] = arena.copy(*given[i]);
  fill_query_params(f.landing_url, tracking_params, tracking_slots(t), decoded_, arena);
  t.type = f.type;
  t.occurred_at = f.occurred_at;
  t.received_at = received_at;
  t.is_conversion = t.type == touch_type::conversion;
  t.has_conversion_value = f.has_conversion_value;
  // -0 (also what -1e-400 reads as) is the value 0: one id and one stored value for both spellings.
  t.conversion_value = f.has_conversion_value && f.conversion_value != 0 ? f.conversion_value : 0;
  t.anonymous_id = arena.copy(f.anonymous_id);
  t.message_id = arena.copy(f.message_id);
  t.landing_url = arena.copy(f.landing_url);
  t.referrer = arena.copy(f.referrer);
  t.conversion_type = arena.copy(f.conversion_type);
  if (!f.currency.empty()) {
    t.currency = arena.copy({currency, 3});
  } else if (t.is_conversion) {
    t.currency = arena.copy(options_.default_currency);
  }
  t.ab_test_id = arena.copy(f.ab_test_id);
  t.variant = arena.copy(f.variant);
  t.metadata = arena.copy(f.metadata);
  t.group = derive_channel_group({t.utm_source, t.utm_medium, t.utm_campaign, t.gclid, t.fbclid, t.msclkid,
                                  t.referrer, t.landing_url});
  if (!check_columns(t, reason)) return false;
  if (f.touchpoint_id.empty()) derive_touchpoint_id(t);
  out.touchpoints.push_back(t);
  return true;
}

void record_appender::derive_event_id(communication& c) {
  // See README.md, "Derived ids": the name is fixed forever; changing it changes every id.
  id_name name{id_name_.assign("communication")};
  name.add(c.provider);
  if (!c.provider_event_id.empty()) {
    name.add(c.provider_event_id);
  } else if (!c.provider_message_id.empty()) {
    name.add(c.provider_message_id);
    name.add(to_string(c.status));
    name.add_number(c.occurred_at);
  } else {
    name.add({});  // neither id
    name.add(to_string(c.channel_));
    name.add(to_string(c.direction_));
    name.add(to_string(c.status));
    name.add_number(c.occurred_at);
    name.add_id(c.lead_id);
    name.add(c.email);
    name.add(c.phone);
    name.add_id(c.campaign_id);
    name.add(c.url);
  }
  c.event_id = uuids_.generate(event_id_namespace, name.text);
}

void record_appender::derive_touchpoint_id(touchpoint& t) {
  // See README.md, "Derived ids".
  id_name name{id_name_.assign("touchpoint")};
  if (!t.message_id.empty()) {
    name.add(t.message_id);
    name.add_number(t.occurred_at);
  } else {
    name.add({});  // no message id
    name.add(to_string(t.type));
    name.add_number(t.occurred_at);
    name.add_id(t.lead_id);
    for (const std::string_view part : {t.anonymous_id, t.landing_url, t.referrer, t.utm_source, t.utm_medium,
                                        t.utm_campaign, t.utm_term, t.utm_content, t.gclid, t.fbclid,
                                        t.msclkid, t.conversion_type}) {
      name.add(part);
    }
    char buf[32];
    std::string_view value;
    if (t.has_conversion_value) {
      const auto r = std::to_chars(buf, buf + sizeof buf, t.conversion_value);  // shortest round-trip
      value = {buf, static_cast<std::size_t>(r.ptr - buf)};
    }
    name.add(value);
    name.add(t.ab_test_id);
    name.add(t.variant);
  }
  t.touchpoint_id = uuids_.generate(event_id_namespace, name.text);
}

}  // namespace crm::transform::detail
