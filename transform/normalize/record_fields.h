// The one field set every input is mapped into. The canonical JSON reader (canonical_reader.h) and every
// provider adapter (transform/providers/) only read their input into a communication_fields or a
// touchpoint_fields; normalizer::append() then applies every rule of the canonical format once, for all
// of them (record_appender.h), and appends the record or its rejection.
//
// Views need to live only during the append() call: what is kept is copied into the batch.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <utility>

#include "transform/canonical/canonical_event.h"

namespace crm::transform {

struct communication_fields {
  timestamp_us occurred_at = 0;
  std::int64_t lead_id = 0;      // already read as an integer >= 1; 0 = absent
  std::int64_t campaign_id = 0;  // likewise
  // The id as written when the input gives it as text (a JSON string, a form or tag value): append()
  // resolves it (crm_ref.h) — digits are the integer id, other text the CRM's reference. Empty = as above.
  std::string_view lead_ref, campaign_ref;
  channel channel_ = channel::email;
  direction direction_ = direction::outbound;
  comm_status status = comm_status::sent;
  std::string_view event_id;  // a given UUID (canonical input only); empty = derived (README.md, "Derived ids")
  std::string_view provider;  // empty = options().default_provider
  std::string_view provider_message_id;
  std::string_view provider_event_id;
  std::string_view email;  // as written: trimmed, lower-cased and checked by append()
  std::string_view phone;  // as written: E.164 through libphonenumber by append()
  // The provider has routed a message to (or from) this number. When libphonenumber does not accept it
  // (a range newer than its metadata, or a documentation number), a number written "+<8-15 digits>" is
  // kept as written instead of rejected.
  bool phone_from_provider = false;
  std::string_view ab_test_id;
  std::string_view variant;
  std::string_view url;
  std::string_view error_code;
  std::string_view error_reason;
  std::string_view metadata;  // a JSON object's text that jsonb accepts (no \u0000), or empty
  // The payload carries no event time and occurred_at is received_at (see communication).
  bool occurred_at_is_receipt_time = false;
};

struct touchpoint_fields {
  timestamp_us occurred_at = 0;
  std::int64_t lead_id = 0;
  std::int64_t campaign_id = 0;
  std::string_view lead_ref, campaign_ref;  // as in communication_fields
  touch_type type = touch_type::other;
  std::string_view touchpoint_id;  // a given UUID (canonical input only); empty = derived
  std::string_view anonymous_id;
  std::string_view message_id;
  // Absent UTM tags and click ids are taken from landing_url's query string.
  std::string_view utm_source, utm_medium, utm_campaign, utm_term, utm_content;
  std::string_view gclid, fbclid, msclkid;
  std::string_view landing_url, referrer;
  std::string_view conversion_type;
  bool has_conversion_value = false;
  double conversion_value = 0;
  std::string_view conversion_value_text;  // as written, for a rejection reason; empty = the shortest decimal
  std::string_view currency;               // ISO 4217 letters, any case; empty = default_currency for conversions
  std::string_view ab_test_id, variant;
  std::string_view metadata;  // a JSON object's text that jsonb accepts (no \u0000), or empty
};

// The UTM tags and click ids of a touchpoint, by name, and the members that hold them (in a touchpoint
// or a touchpoint_fields), in the same order: what is taken from a landing URL's query string.
inline constexpr std::array<std::string_view, 8> tracking_params = {
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid", "fbclid", "msclkid"};
template <typename Record>
std::array<decltype(&std::declval<Record&>().utm_source), 8> tracking_slots(Record& r) noexcept {
  return {&r.utm_source, &r.utm_medium, &r.utm_campaign, &r.utm_term, &r.utm_content, &r.gclid, &r.fbclid, &r.msclkid};
}

}  // namespace crm::transform
