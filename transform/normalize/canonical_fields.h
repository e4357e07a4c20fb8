// The canonical JSON format's field table: every field's name, JSON type rule and the record kinds it
// belongs to, and the name -> field lookup (a small open-addressing table built at compile time).
// Internal to transform/normalize (canonical_reader.cc).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace crm::transform::detail {

// Every field of the canonical format. Order matters only for field_specs below.
enum class canonical_field : std::uint8_t {
  kind, occurred_at, lead_id, campaign_id, ab_test_id, variant, metadata,
  event_id, channel, direction, status, provider, provider_message_id, provider_event_id, email, phone, url,
  error_code, error_reason,
  touchpoint_id, anonymous_id, message_id, touch_type, utm_source, utm_medium, utm_campaign, utm_term,
  utm_content, gclid, fbclid, msclkid, landing_url, referrer, conversion_type, conversion_value, currency,
  none  // not a known field
};
inline constexpr std::size_t canonical_field_count = static_cast<std::size_t>(canonical_field::none);
static_assert(canonical_field_count <= 64, "fields are tracked in a 64-bit mask");

enum class record_kind : std::uint8_t { unknown, communication, touchpoint };

namespace canonical_fields {

using field = canonical_field;


enum class value_rule : std::uint8_t { string, positive_id, timestamp, object, non_negative_number, string_or_integer };
enum class scope : std::uint8_t { common, communication, touchpoint };

struct field_spec {
  std::string_view name;
  value_rule rule;
  scope in;
};

inline constexpr std::array<field_spec, canonical_field_count> field_specs = {{
    {"kind", value_rule::string, scope::common},
    {"occurred_at", value_rule::timestamp, scope::common},
    {"lead_id", value_rule::positive_id, scope::common},
    {"campaign_id", value_rule::positive_id, scope::common},
    {"ab_test_id", value_rule::string, scope::common},
    {"variant", value_rule::string, scope::common},
    {"metadata", value_rule::object, scope::common},
    {"event_id", value_rule::string, scope::communication},
    {"channel", value_rule::string, scope::communication},
    {"direction", value_rule::string, scope::communication},
    {"status", value_rule::string, scope::communication},
    {"provider", value_rule::string, scope::communication},
    {"provider_message_id", value_rule::string, scope::communication},
    {"provider_event_id", value_rule::string, scope::communication},
    {"email", value_rule::string, scope::communication},
    {"phone", value_rule::string, scope::communication},
    {"url", value_rule::string, scope::communication},
    {"error_code", value_rule::string_or_integer, scope::communication},
    {"error_reason", value_rule::string, scope::communication},
    {"touchpoint_id", value_rule::string, scope::touchpoint},
    {"anonymous_id", value_rule::string, scope::touchpoint},
    {"message_id", value_rule::string, scope::touchpoint},
    {"touch_type", value_rule::string, scope::touchpoint},
    {"utm_source", value_rule::string, scope::touchpoint},
    {"utm_medium", value_rule::string, scope::touchpoint},
    {"utm_campaign", value_rule::string, scope::touchpoint},
    {"utm_term", value_rule::string, scope::touchpoint},
    {"utm_content", value_rule::string, scope::touchpoint},
    {"gclid", value_rule::string, scope::touchpoint},
    {"fbclid", value_rule::string, scope::touchpoint},
    {"msclkid", value_rule::string, scope::touchpoint},
    {"landing_url", value_rule::string, scope::touchpoint},
    {"referrer", value_rule::string, scope::touchpoint},
    {"conversion_type", value_rule::string, scope::touchpoint},
    {"conversion_value", value_rule::non_negative_number, scope::touchpoint},
    {"currency", value_rule::string, scope::touchpoint},
}};

inline constexpr const field_spec& spec(field f) noexcept { return field_specs[static_cast<std::size_t>(f)]; }

// Field name -> field through a small open-addressing table built at compile time.
constexpr std::uint32_t fnv1a(std::string_view s) noexcept {
  std::uint32_t h = 2166136261u;
  for (const char c : s) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 16777619u;
  }
  return h;
}

inline constexpr std::size_t lookup_slots = 128;  // power of two, > 3x the field count

constexpr std::array<std::uint8_t, lookup_slots> build_lookup() {
  std::array<std::uint8_t, lookup_slots> table{};  // 0 = empty, else field index + 1
  for (std::size_t i = 0; i < canonical_field_count; ++i) {
    std::size_t h = fnv1a(field_specs[i].name) & (lookup_slots - 1);
    while (table[h] != 0) h = (h + 1) & (lookup_slots - 1);
    table[h] = static_cast<std::uint8_t>(i + 1);
  }
  return table;
}

inline constexpr std::array<std::uint8_t, lookup_slots> field_lookup = build_lookup();

inline field find_field(std::string_view key) noexcept {
  if (key.size() > 19) return field::none;  // longer than the longest name
  std::size_t h = fnv1a(key) & (lookup_slots - 1);
  while (const std::uint8_t slot = field_lookup[h]) {
    if (field_specs[slot - 1].name == key) return static_cast<field>(slot - 1);
    h = (h + 1) & (lookup_slots - 1);
  }
  return field::none;
}

inline bool in_scope(field f, record_kind kind) noexcept {
  switch (spec(f).in) {
    case scope::common: return true;
    case scope::communication: return kind == record_kind::communication;
    case scope::touchpoint: return kind == record_kind::touchpoint;
  }
  return false;
}

}  // namespace canonical_fields
}  // namespace crm::transform::detail
