// Canonical events: the two record kinds every source is normalized into (the canonical format:
// docs/canonical-events.md). Text fields are views into the owning event_batch's arena;
// an empty view means "absent" and is stored as NULL.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "transform/text/text_arena.h"

namespace crm::transform {

using uuid = std::array<std::uint8_t, 16>;

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower case. `out` must hold 36 chars.
void format_uuid(const uuid& id, char* out) noexcept;
std::string to_string(const uuid& id);
// Accepts the canonical 8-4-4-4-12 form, any case. Returns false on anything else.
[[nodiscard]] bool parse_uuid(std::string_view text, uuid& out) noexcept;

enum class channel : std::uint8_t { email, sms, whatsapp, voice, chat, push };
enum class direction : std::uint8_t { outbound, inbound };
enum class comm_status : std::uint8_t {
  queued, sent, delivered, opened, clicked, bounced, failed, replied, unsubscribed, resubscribed, spam
};
enum class touch_type : std::uint8_t {
  page_view, ad_click, email_click, form_submit, call, chat, conversion, experiment_exposure, other,
  identify  // links anonymous_id to lead_id (identity stitching); never on an attribution path
};
enum class channel_group : std::uint8_t {
  paid_search, organic_search, paid_social, organic_social, email, referral, direct, display, affiliates,
  sms, other
};

// Database/text spellings ("email", "delivered", "Paid Search", ...), indexed by the enum's value: the
// CHECK constraints of schemas/0001_events.sql list the same words.
inline constexpr std::array<std::string_view, 6> channel_names = {"email", "sms", "whatsapp", "voice", "chat", "push"};
inline constexpr std::array<std::string_view, 2> direction_names = {"outbound", "inbound"};
inline constexpr std::array<std::string_view, 11> comm_status_names = {
    "queued", "sent", "delivered", "opened", "clicked", "bounced", "failed", "replied", "unsubscribed",
    "resubscribed", "spam"};
inline constexpr std::array<std::string_view, 10> touch_type_names = {
    "page_view", "ad_click", "email_click", "form_submit", "call", "chat", "conversion", "experiment_exposure",
    "other", "identify"};
inline constexpr std::array<std::string_view, 11> channel_group_names = {
    "Paid Search", "Organic Search", "Paid Social", "Organic Social", "Email", "Referral", "Direct", "Display",
    "Affiliates", "SMS", "Other"};

// The spellings of an enum type, by overload: spellings(channel{}) is channel_names.
constexpr const auto& spellings(channel) noexcept { return channel_names; }
constexpr const auto& spellings(direction) noexcept { return direction_names; }
constexpr const auto& spellings(comm_status) noexcept { return comm_status_names; }
constexpr const auto& spellings(touch_type) noexcept { return touch_type_names; }
constexpr const auto& spellings(channel_group) noexcept { return channel_group_names; }

// "?" for a value outside the enum (a corrupt input decoded without a check).
template <typename E>
  requires requires(E v) { spellings(v); }
constexpr std::string_view to_string(E v) noexcept {
  const auto& names = spellings(v);
  const auto i = static_cast<std::size_t>(v);
  return i < names.size() ? names[i] : std::string_view("?");
}

// Microseconds since 1970-01-01T00:00:00Z.
using timestamp_us = std::int64_t;

struct communication {
  uuid event_id{};
  timestamp_us occurred_at = 0;
  timestamp_us received_at = 0;
  std::int64_t lead_id = 0;      // 0 = absent
  std::int64_t campaign_id = 0;  // 0 = absent
  channel channel_ = channel::email;
  direction direction_ = direction::outbound;
  comm_status status = comm_status::sent;
  std::string_view provider;  // never empty: "generic" by default
  std::string_view provider_message_id;
  std::string_view provider_event_id;
  std::string_view email;  // trimmed, lower-cased
  std::string_view phone;  // E.164
  std::string_view ab_test_id;
  std::string_view variant;
  std::string_view url;
  std::string_view error_code;
  std::string_view error_reason;
  std::string_view metadata;  // a JSON object's text, or empty
  std::string_view tenant_id;  // empty unless the source assigns one
  // The CRM's lead/campaign id as it wrote it when that is not an integer ("L-1001", a UUID): lead_id /
  // campaign_id then hold the key derived from it (crm_ref_key(), negative). Empty = an integer id, or none.
  std::string_view lead_ref;
  std::string_view campaign_ref;
  // The source gave no event time (e.g. Twilio "sent" callbacks), so occurred_at is when we received it.
  // A provider retry then carries the same event_id with a later occurred_at: the writer treats an
  // existing row with this event_id in the week before occurred_at as the same event.
  bool occurred_at_is_receipt_time = false;
};

struct touchpoint {
  uuid touchpoint_id{};
  timestamp_us occurred_at = 0;
  timestamp_us received_at = 0;
  std::int64_t lead_id = 0;      // 0 = absent
  std::int64_t campaign_id = 0;  // 0 = absent
  touch_type type = touch_type::other;
  channel_group group = channel_group::direct;  // derived
  bool is_conversion = false;                   // type == conversion
  bool has_conversion_value = false;
  double conversion_value = 0;
  std::string_view anonymous_id;
  std::string_view message_id;  // the source's message id, when it has one
  std::string_view utm_source, utm_medium, utm_campaign, utm_term, utm_content;
  std::string_view gclid, fbclid, msclkid;
  std::string_view landing_url, referrer;
  std::string_view conversion_type;
  std::string_view currency;  // ISO 4217; "USD" by default for conversions, empty otherwise
  std::string_view ab_test_id, variant;
  std::string_view metadata;  // a JSON object's text, or empty
  std::string_view tenant_id;
  std::string_view lead_ref, campaign_ref;  // as in communication
};

// A record that broke a rule: kept, never dropped.
struct rejection {
  timestamp_us received_at = 0;
  std::string_view source;  // "file:line", endpoint, "topic/partition:offset"
  std::string_view reason;  // names the field and the rule
  std::string_view raw;     // the record's text as received (possibly not valid UTF-8)
  std::string_view tenant_id;  // the tenant of the credential or endpoint that brought it; empty = none
  // The idempotency key the record's event would have had (a webhook source's declared key or the request's
  // webhook-id, already scoped and indexed: `<source>:<key>[:<index>]`); empty = none. `rejected replay` gives
  // it back, so the replayed event gets the id a redelivery of the request stored.
  std::string_view idempotency_key{};
};

// A text field of a record kind and the name of its column.
template <typename Record>
struct text_field {
  std::string_view name;
  std::string_view Record::*member;
};

// Every text field of each record kind. Code that copies, serializes or checks records walks these tables
// (the spool's event codec, event_batch::append_copy, the column domains), so a new field is handled
// everywhere once it is listed here; the codec's size checks fail the build until it is.
inline constexpr text_field<communication> communication_texts[] = {
    {"provider", &communication::provider},     {"provider_message_id", &communication::provider_message_id},
    {"provider_event_id", &communication::provider_event_id}, {"email", &communication::email},
    {"phone", &communication::phone},           {"ab_test_id", &communication::ab_test_id},
    {"variant", &communication::variant},       {"url", &communication::url},
    {"error_code", &communication::error_code}, {"error_reason", &communication::error_reason},
    {"metadata", &communication::metadata},     {"tenant_id", &communication::tenant_id},
    // Codec version 3 added the last two.
    {"lead_ref", &communication::lead_ref},     {"campaign_ref", &communication::campaign_ref},
};
inline constexpr text_field<touchpoint> touchpoint_texts[] = {
    {"anonymous_id", &touchpoint::anonymous_id}, {"message_id", &touchpoint::message_id},
    {"utm_source", &touchpoint::utm_source},     {"utm_medium", &touchpoint::utm_medium},
    {"utm_campaign", &touchpoint::utm_campaign}, {"utm_term", &touchpoint::utm_term},
    {"utm_content", &touchpoint::utm_content},   {"gclid", &touchpoint::gclid},
    {"fbclid", &touchpoint::fbclid},             {"msclkid", &touchpoint::msclkid},
    {"landing_url", &touchpoint::landing_url},   {"referrer", &touchpoint::referrer},
    {"conversion_type", &touchpoint::conversion_type}, {"currency", &touchpoint::currency},
    {"ab_test_id", &touchpoint::ab_test_id},     {"variant", &touchpoint::variant},
    {"metadata", &touchpoint::metadata},         {"tenant_id", &touchpoint::tenant_id},
    // Codec version 3 added the last two.
    {"lead_ref", &touchpoint::lead_ref},         {"campaign_ref", &touchpoint::campaign_ref},
};
inline constexpr text_field<rejection> rejection_texts[] = {
    {"source", &rejection::source}, {"reason", &rejection::reason}, {"raw", &rejection::raw},
    {"tenant_id", &rejection::tenant_id}, {"idempotency_key", &rejection::idempotency_key}};

// The unit that crosses thread boundaries. Owned by one thread at a time; moved, never shared.
struct event_batch {
  std::vector<communication> communications;
  std::vector<touchpoint> touchpoints;
  std::vector<rejection> rejections;
  text_arena text;  // owns every string_view above

  void clear() noexcept {
    communications.clear();
    touchpoints.clear();
    rejections.clear();
    text.clear();
  }
  std::size_t record_count() const noexcept {
    return communications.size() + touchpoints.size() + rejections.size();
  }
  // Appends copies of `from`'s records, their text copied into this batch's arena.
  void append_copy(const event_batch& from);
};

}  // namespace crm::transform
