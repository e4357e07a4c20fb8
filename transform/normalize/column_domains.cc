#include "transform/normalize/column_domains.h"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <iterator>
#include <string_view>

#include <simdjson.h>

#include "transform/normalize/crm_ref.h"
#include "transform/text/json_input.h"
#include "transform/text/reason_text.h"

namespace crm::transform {
namespace {

using detail::append_quoted;
using detail::begin_reason;

// The byte bound of a text column whose key limits it; 0 = only what text itself accepts.
constexpr std::size_t max_bytes_of(std::string_view column) {
  if (column == "ab_test_id" || column == "variant") return max_ab_test_id_bytes;
  if (column == "anonymous_id") return max_anonymous_id_bytes;
  if (column == "utm_source" || column == "utm_medium" || column == "utm_campaign") return max_utm_key_bytes;
  if (column == "currency") return 3;  // char(3)
  if (column == "lead_ref" || column == "campaign_ref") return max_crm_ref_bytes;
  return 0;
}

// max_bytes_of() every text field of a record kind, in the order of its table.
template <typename Record, std::size_t N>
constexpr std::array<std::size_t, N> max_bytes_of(const text_field<Record> (&texts)[N]) {
  std::array<std::size_t, N> bounds{};
  for (std::size_t i = 0; i < N; ++i) bounds[i] = max_bytes_of(texts[i].name);
  return bounds;
}
constexpr auto communication_max_bytes = max_bytes_of(communication_texts);
constexpr auto touchpoint_max_bytes = max_bytes_of(touchpoint_texts);

template <typename Record, std::size_t N>
bool check_texts(const Record& r, const text_field<Record> (&texts)[N], const std::array<std::size_t, N>& max_bytes,
                 std::string& reason) {
  for (std::size_t i = 0; i < N; ++i) {
    const std::string_view v = r.*texts[i].member;
    const std::size_t bound = max_bytes[i];
    if (v.empty()) continue;
    const char* problem = nullptr;
    if (bound != 0 && v.size() > bound) {
      problem = "is longer than the column's key allows";
    } else if (std::memchr(v.data(), 0, v.size()) != nullptr) {
      problem = "contains a NUL character, which PostgreSQL's text does not accept";
    } else if (!simdjson::validate_utf8(v.data(), v.size())) {
      problem = "is not valid UTF-8";
    }
    if (problem == nullptr) continue;
    if (begin_reason(reason, texts[i].name)) {
      append_quoted(reason, v);
      reason.push_back(' ');
      reason.append(problem);
      if (bound != 0 && v.size() > bound) {
        reason.append(" (");
        detail::append_number(reason, v.size());
        reason.append(" bytes, at most ");
        detail::append_number(reason, bound);
        reason.push_back(')');
      }
    }
    return false;
  }
  return true;
}

// An integer id >= 1, 0 (absent: NULL), or the key of a reference, which then comes with it.
bool check_id(std::string_view field, std::int64_t id, std::string_view ref, std::string& reason) {
  if (ref.empty() ? id >= 0 : id <= -1) return true;
  if (begin_reason(reason, field)) {
    if (ref.empty()) {
      reason.append("expected an integer >= 1, got ");
    } else {
      reason.append("a reference's key must be negative, got ");
    }
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

// A decoded record's metadata: what jsonb takes, as the normalizer makes it — one JSON object and nothing after
// it, by the validating copier's rules (no \u0000, nesting, numbers within numeric's range). Empty = NULL.
bool check_metadata(std::string_view metadata, std::string& reason) {
  if (metadata.empty()) return true;
  struct scratch {
    simdjson::ondemand::parser parser;
    detail::padded_buffer buffer;
    detail::json_copier copier;
    std::string copy;
  };
  thread_local scratch s;
  const std::string_view text = s.buffer.load(metadata);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  detail::copy_error e = detail::copy_error::malformed;
  if (!s.parser.iterate(s.buffer.data(), text.size(), s.buffer.capacity()).get(doc) &&
      !doc.get_object().get(object)) {
    s.copy.clear();
    e = s.copier.copy_members(object, s.copy, 1, false);
    const char* trailing = nullptr;  // a location after the object: content follows it
    if (e == detail::copy_error::none && !doc.current_location().get(trailing)) e = detail::copy_error::malformed;
  }
  if (e == detail::copy_error::none) return true;
  if (begin_reason(reason, "metadata")) {
    if (e == detail::copy_error::malformed) {
      reason.append("is not one JSON object that jsonb accepts");
    } else {
      detail::append_copy_rule(reason, e);
    }
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
         check_id("lead_id", c.lead_id, c.lead_ref, reason) &&
         check_id("campaign_id", c.campaign_id, c.campaign_ref, reason) &&
         check_texts(c, communication_texts, communication_max_bytes, reason);
}

bool check_columns(const touchpoint& t, std::string& reason) {
  if (!check_time("occurred_at", t.occurred_at, reason) || !check_time("received_at", t.received_at, reason) ||
      !check_id("lead_id", t.lead_id, t.lead_ref, reason) ||
      !check_id("campaign_id", t.campaign_id, t.campaign_ref, reason)) {
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
  return check_texts(t, touchpoint_texts, touchpoint_max_bytes, reason);
}

bool check_columns(const rejection& r, std::string& reason) { return check_time("received_at", r.received_at, reason); }

bool check_columns(const event_batch& batch, std::size_t communications_from, std::size_t touchpoints_from,
                   std::size_t rejections_from, std::string& reason) {
  // The metadata too: the appender's records carry the copier's output, a decoded record whatever it was sent.
  for (std::size_t i = communications_from; i < batch.communications.size(); ++i) {
    const communication& c = batch.communications[i];
    if (!check_columns(c, reason) || !check_metadata(c.metadata, reason)) return false;
  }
  for (std::size_t i = touchpoints_from; i < batch.touchpoints.size(); ++i) {
    const touchpoint& t = batch.touchpoints[i];
    if (!check_columns(t, reason) || !check_metadata(t.metadata, reason)) return false;
  }
  for (std::size_t i = rejections_from; i < batch.rejections.size(); ++i) {
    if (!check_columns(batch.rejections[i], reason)) return false;
  }
  return true;
}

}  // namespace crm::transform
