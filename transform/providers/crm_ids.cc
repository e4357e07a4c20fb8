// CRM ids in provider payloads (lead_id, campaign_id, ab_test_id, variant): offered from wherever a provider
// carries them (custom args, metadata, tags, callback URLs), the highest priority winning, then handed to the
// normalizer's fields (provider_common.h).
#include <charconv>
#include <cstring>

#include "transform/providers/provider_common.h"
#include "transform/text/reason_text.h"
#include "transform/text/url_params.h"
#include "transform/text/utf8.h"

namespace crm::transform::providers::detail {

using transform::detail::append_printable;

void crm_ids::offer_to(slot& s, std::string_view text, bool is_number, std::string_view origin, int priority) {
  if (text.empty() || priority <= s.priority) return;
  s.text = text;
  s.origin = origin;
  s.priority = priority;
  s.is_number = is_number;
  s.unusable = {};
}

bool crm_ids::offer(std::string_view key, const scalar& value, std::string_view origin, int priority) {
  slot* s = nullptr;
  if (key == "lead_id") {
    s = &lead_id;
  } else if (key == "campaign_id") {
    s = &campaign_id;
  } else if (key == "ab_test_id") {
    s = &ab_test_id;
  } else if (key == "variant") {
    s = &variant;
  } else {
    return false;
  }
  if (value.is_string() || value.is_number()) {
    offer_to(*s, value.text, value.is_number(), origin, priority);
  } else if ((s == &lead_id || s == &campaign_id) && value.type != od::json_type::null && !value.nul &&
             priority > s->priority) {
    // Present, but not an id: refused rather than taken as absent.
    *s = slot{{}, origin, priority, false,
              value.type == od::json_type::string ? std::string_view("\"\" is empty")
              : value.type == od::json_type::boolean ? std::string_view("a boolean is not an id")
              : value.type == od::json_type::object  ? std::string_view("an object is not an id")
                                                     : std::string_view("an array is not an id")};
  }
  return true;
}

namespace {

// A JSON integer token or a string of decimal digits, 1..2^63-1.
bool parse_positive_id(std::string_view text, std::int64_t& out) noexcept {
  if (text.empty()) return false;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
  }
  std::int64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc{} || r.ptr != text.data() + text.size() || v < 1) return false;
  out = v;
  return true;
}

bool resolve_one(workspace& ws, std::string_view name, const crm_ids::slot& s, std::int64_t& id,
                 std::string_view& text) {
  if (!s.unusable.empty()) {
    if (begin_rule(ws, name)) ws.reason.append(s.unusable).append(" (").append(s.origin).append(")");
    return false;
  }
  if (s.text.empty()) return true;
  if (!s.is_number) {
    text = s.text;  // normalizer::append() resolves it
    return true;
  }
  if (parse_positive_id(s.text, id)) return true;
  if (begin_rule(ws, name)) {
    append_printable(ws.reason, s.text);
    ws.reason.append(" (").append(s.origin).append(") is not an integer >= 1");
  }
  return false;
}

template <typename Fields>
bool resolve_both(workspace& ws, const crm_ids& ids, Fields& f) {
  return resolve_one(ws, "lead_id", ids.lead_id, f.lead_id, f.lead_ref) &&
         resolve_one(ws, "campaign_id", ids.campaign_id, f.campaign_id, f.campaign_ref);
}

}  // namespace

bool resolve_ids(workspace& ws, const crm_ids& ids, communication_fields& f) { return resolve_both(ws, ids, f); }
bool resolve_ids(workspace& ws, const crm_ids& ids, touchpoint_fields& f) { return resolve_both(ws, ids, f); }

void apply_ids(const crm_ids& ids, communication_fields& f) {
  f.ab_test_id = ids.ab_test_id.text;
  f.variant = ids.variant.text;
}

void apply_ids(const crm_ids& ids, touchpoint_fields& f) {
  f.ab_test_id = ids.ab_test_id.text;
  f.variant = ids.variant.text;
}

bool keep_id_members(json_walker& w, std::string_view name, od::value value, crm_ids& ids, std::string_view origin) {
  return w.keep_object(name, value, [&](std::string_view key, std::string_view raw_key, od::value v) {
    scalar s;
    if (!w.keep(key, raw_key, v, &s)) return false;
    ids.offer(key, s, origin, 2);
    return true;
  });
}

void offer_tag(crm_ids& ids, std::string_view tag, std::string_view origin, int priority) {
  const std::size_t sep = tag.find_first_of(":=");
  if (sep == std::string_view::npos) return;
  std::string_view key = tag.substr(0, sep);
  std::string_view value = tag.substr(sep + 1);
  while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  const scalar s{value, od::json_type::string, !value.empty(), false};
  ids.offer(key, s, origin, priority);
}

void offer_query(workspace& ws, crm_ids& ids, std::string_view query, std::string_view origin, int priority) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = pair.substr(0, eq);
    if (key != "lead_id" && key != "campaign_id" && key != "ab_test_id" && key != "variant") continue;
    ws.decoded.clear();
    transform::detail::percent_decode(pair.substr(eq + 1), ws.decoded);
    if (std::memchr(ws.decoded.data(), 0, ws.decoded.size()) != nullptr ||
        !simdjson::validate_utf8(ws.decoded.data(), ws.decoded.size())) {
      continue;  // not text a column can hold
    }
    const scalar s{ws.scratch.copy(ws.decoded), od::json_type::string, !ws.decoded.empty(), false};
    ids.offer(key, s, origin, priority);
  }
}

}  // namespace crm::transform::providers::detail
