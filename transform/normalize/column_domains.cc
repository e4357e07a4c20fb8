#include "transform/normalize/column_domains.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <iterator>
#include <string_view>

#include <simdjson.h>

#include "transform/text/json_input.h"
#include "transform/text/reason_text.h"

namespace crm::transform {
namespace {

using detail::append_quoted;
using detail::begin_reason;

// Every text column of each kind with its name, and its byte bound (0 = only what text itself accepts).
template <typename Record>
struct text_column {
  std::string_view name;
  std::string_view Record::*member;
  std::size_t max_bytes;
};

constexpr text_column<communication> communication_columns[] = {
    {"provider", &communication::provider, 0},
    {"provider_message_id", &communication::provider_message_id, 0},
    {"provider_event_id", &communication::provider_event_id, 0},
    {"email", &communication::email, 0},
    {"phone", &communication::phone, 0},
    {"ab_test_id", &communication::ab_test_id, max_ab_test_id_bytes},
    {"variant", &communication::variant, max_ab_test_id_bytes},
    {"url", &communication::url, 0},
    {"error_code", &communication::error_code, 0},
    {"error_reason", &communication::error_reason, 0},
    {"metadata", &communication::metadata, 0},
    {"tenant_id", &communication::tenant_id, 0},
};
static_assert(std::size(communication_columns) == std::size(communication_texts),
              "a new text field of communication needs its column domain here");

constexpr text_column<touchpoint> touchpoint_columns[] = {
    {"anonymous_id", &touchpoint::anonymous_id, max_anonymous_id_bytes},
    {"message_id", &touchpoint::message_id, 0},
    {"utm_source", &touchpoint::utm_source, max_utm_key_bytes},
    {"utm_medium", &touchpoint::utm_medium, max_utm_key_bytes},
    {"utm_campaign", &touchpoint::utm_campaign, max_utm_key_bytes},
    {"utm_term", &touchpoint::utm_term, 0},
    {"utm_content", &touchpoint::utm_content, 0},
    {"gclid", &touchpoint::gclid, 0},
    {"fbclid", &touchpoint::fbclid, 0},
    {"msclkid", &touchpoint::msclkid, 0},
    {"landing_url", &touchpoint::landing_url, 0},
    {"referrer", &touchpoint::referrer, 0},
    {"conversion_type", &touchpoint::conversion_type, 0},
    {"currency", &touchpoint::currency, 3},  // char(3)
    {"ab_test_id", &touchpoint::ab_test_id, max_ab_test_id_bytes},
    {"variant", &touchpoint::variant, max_ab_test_id_bytes},
    {"metadata", &touchpoint::metadata, 0},
    {"tenant_id", &touchpoint::tenant_id, 0},
};
static_assert(std::size(touchpoint_columns) == std::size(touchpoint_texts),
              "a new text field of touchpoint needs its column domain here");

template <typename Record, std::size_t N>
bool check_texts(const Record& r, const text_column<Record> (&columns)[N], std::string& reason) {
  for (const auto& col : columns) {
    const std::string_view v = r.*col.member;
    if (v.empty()) continue;
    const char* problem = nullptr;
    if (col.max_bytes != 0 && v.size() > col.max_bytes) {
      problem = "is longer than the column's key allows";
    } else if (std::memchr(v.data(), 0, v.size()) != nullptr) {
      problem = "contains a NUL character, which PostgreSQL's text does not accept";
    } else if (!simdjson::validate_utf8(v.data(), v.size())) {
      problem = "is not valid UTF-8";
    }
    if (problem == nullptr) continue;
    if (begin_reason(reason, col.name)) {
      append_quoted(reason, v);
      reason.push_back(' ');
      reason.append(problem);
      if (col.max_bytes != 0 && v.size() > col.max_bytes) {
        reason.append(" (");
        detail::append_number(reason, v.size());
        reason.append(" bytes, at most ");
        detail::append_number(reason, col.max_bytes);
        reason.push_back(')');
      }
    }
    return false;
  }
  return true;
}

bool check_id(std::string_view field, std::int64_t id, std::string& reason) {
  if (id >= 0) return true;  // 0: absent (NULL)
  if (begin_reason(reason, field)) {
    reason.append("expected an integer >= 1, got ");
    detail::append_number(reason, id);
  }
  return false;
}

bool check_time(std::string_view field, timestamp_us t, std::string& reason) {
  if (t >= min_storable_timestamp) return true;
  if (begin_reason(reason, field)) {
    detail::append_number(reason, t);
    reason.append(" microseconds since 1970 is before timestamptz's range (4714-11-24 BC)");
  }
  return false;
}

}  // namespace

bool conversion_value_storable(double value) noexcept {
  if (!std::isfinite(value) || value < 0) return false;
  if (value < 99999999999999.0) return true;  // 14 integer digits whatever the rounding
  // Near the bound: what float8 -> numeric makes of it (printf's %.15g), then numeric(20,6)'s < 10^14.
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::general, 15);
  double cast = 0;
  std::from_chars(buf, r.ptr, cast);
  return cast < 1e14;
}

bool check_columns(const communication& c, std::string& reason) {
  return check_time("occurred_at", c.occurred_at, reason) && check_time("received_at", c.received_at, reason) &&
         check_id("lead_id", c.lead_id, reason) && check_id("campaign_id", c.campaign_id, reason) &&
         check_texts(c, communication_columns, reason);
}

bool check_columns(const touchpoint& t, std::string& reason) {
  if (!check_time("occurred_at", t.occurred_at, reason) || !check_time("received_at", t.received_at, reason) ||
      !check_id("lead_id", t.lead_id, reason) || !check_id("campaign_id", t.campaign_id, reason)) {
    return false;
  }
  if (t.lead_id == 0 && t.anonymous_id.empty()) {
    if (begin_reason(reason, "lead_id/anonymous_id")) reason.append("at least one is required");
    return false;
  }
  if (t.has_conversion_value && !conversion_value_storable(t.conversion_value)) {
    if (begin_reason(reason, "conversion_value")) {
      reason.append("expected a number >= 0 within numeric(20,6), got ");
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, t.conversion_value);
      reason.append(buf, r.ptr);
    }
    return false;
  }
  return check_texts(t, touchpoint_columns, reason);
}

bool check_columns(const event_batch& batch, std::size_t communications_from, std::size_t touchpoints_from,
                   std::string& reason) {
  for (std::size_t i = communications_from; i < batch.communications.size(); ++i) {
    if (!check_columns(batch.communications[i], reason)) return false;
  }
  for (std::size_t i = touchpoints_from; i < batch.touchpoints.size(); ++i) {
    if (!check_columns(batch.touchpoints[i], reason)) return false;
  }
  return true;
}

}  // namespace crm::transform
