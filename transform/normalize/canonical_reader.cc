#include "transform/normalize/canonical_reader.h"

#include <cstring>

#include "transform/text/ascii.h"
#include "transform/text/json_diagnostics.h"
#include "transform/text/reason_text.h"
#include "transform/text/timestamp.h"

namespace crm::transform::detail {
namespace {

namespace od = simdjson::ondemand;
using field = canonical_field;
using namespace canonical_fields;

bool is_integer_token(std::string_view token) noexcept {
  if (!token.empty() && token.front() == '-') token.remove_prefix(1);
  if (token.empty()) return false;
  for (const char c : token) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// An enum field spelled as to_string() spells its values, matched without regard to ASCII case.
template <typename E>
bool read_enum(field f, std::string_view text, bool required, E& out, std::string& reason) {
  if (text.empty()) {
    if (required && begin_reason(reason, spec(f).name)) reason.append("missing (required)");
    return !required;
  }
  const auto& names = spellings(out);
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (ascii_iequals(text, names[i])) {
      out = static_cast<E>(i);
      return true;
    }
  }
  if (begin_reason(reason, spec(f).name)) {
    append_quoted(reason, text);
    reason.append(" is not one of ");
    append_joined(reason, names, '|');
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Failures

void canonical_reader::set_malformed(std::size_t offset, std::string_view detail) {
  if (!malformed_.empty()) return;
  malformed_.assign("malformed JSON at byte ");
  append_number(malformed_, offset);
  malformed_.append(": ").append(detail);
}

void canonical_reader::set_malformed(od::document& doc, std::string_view detail) {
  const char* location = nullptr;
  if (!doc.current_location().get(location)) {
    set_malformed(static_cast<std::size_t>(location - buffer_.data()), detail);
  } else if (malformed_.empty()) {
    malformed_.assign("malformed JSON at the end of the record: ").append(detail);
  }
}

void canonical_reader::set_malformed(od::document& doc, simdjson::error_code e) {
  set_malformed(doc, std::string_view(simdjson::error_message(e)));
}

void canonical_reader::copy_failed(copy_error e, std::string_view field_name, od::document& doc) {
  if (e == copy_error::malformed) {
    set_malformed(doc, copier_.malformed_detail());
  } else if (e != copy_error::none && begin_reason(reason_, field_name)) {
    append_copy_rule(reason_, e);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

normalize_outcome canonical_reader::read(std::string_view text, communication_fields& comm,
                                         touchpoint_fields& touch, std::string& reason) {
  reason_.clear();
  malformed_.clear();
  auto rejected = [&] {
    reason = malformed_.empty() ? reason_ : malformed_;
    return normalize_outcome::rejected;
  };
  if (text.size() > options_.max_record_bytes) {
    reason_.assign("record exceeds ");
    append_number(reason_, options_.max_record_bytes);
    reason_.append(" bytes");
    return rejected();
  }
  values_ = record_values{};
  metadata_members_.clear();
  unknown_members_.clear();
  stopped_early_ = false;
  input_ = buffer_.load(text);

  od::document doc;
  if (!parse(text, doc)) return rejected();
  const record_kind kind = prescan_kind(doc);
  if (!malformed_.empty() || !doc.is_alive()) {  // a document cannot be rewound after an error
    if (malformed_.empty()) malformed_.assign("malformed JSON");
    return rejected();
  }
  doc.rewind();
  od::object object;
  if (!open_root(doc, object)) return rejected();
  main_pass(doc, object, kind);
  if (!malformed_.empty() || !reason_.empty() || stopped_early_ || kind == record_kind::unknown) return rejected();

  if (kind == record_kind::communication) {
    comm = communication_fields{};
    if (!read_occurred_at(comm.occurred_at) || !to_fields(comm)) return rejected();
    return normalize_outcome::communication;
  }
  touch = touchpoint_fields{};
  if (!read_occurred_at(touch.occurred_at) || !to_fields(touch)) return rejected();
  return normalize_outcome::touchpoint;
}

// Iterates the record and checks that its root is an object; false (with malformed_ or reason_ set) when
// it cannot be read.
bool canonical_reader::parse(std::string_view text, od::document& doc) {
  if (const auto e = parser_.iterate(buffer_.data(), text.size(), buffer_.capacity()).get(doc)) {
    if (!describe_stage1_error(e, text, malformed_)) {
      malformed_.assign(e == simdjson::EMPTY ? "malformed JSON: empty record" : "malformed JSON: ");
      if (e != simdjson::EMPTY) malformed_.append(simdjson::error_message(e));
    }
    return false;
  }
  od::json_type root;
  if (const auto e = doc.type().get(root)) {
    set_malformed(0, simdjson::error_message(e));
    return false;
  }
  if (root != od::json_type::object) {
    reason_.assign("expected a JSON object, got ").append(type_name(root));
    return false;
  }
  return true;
}

// Starts iterating the root object (once per pass: after the pre-scan the document is rewound).
bool canonical_reader::open_root(od::document& doc, od::object& object) {
  const auto e = doc.get_object().get(object);
  if (!e) return true;
  const std::string_view text = input_;
  if (e == simdjson::INCOMPLETE_ARRAY_OR_OBJECT) {
    // simdjson checks the root's balance up front; tell a truncated record from trailing content.
    const std::size_t end = top_level_object_end(text);
    const std::size_t next = end == std::string_view::npos ? end : skip_json_whitespace(text, end);
    if (end == std::string_view::npos) {
      set_malformed(text.size(), "the object is not closed (truncated record?)");
    } else if (next != std::string_view::npos) {
      set_malformed(next, "unexpected content after the JSON object");
    } else {
      set_malformed(0, simdjson::error_message(e));
    }
  } else {
    set_malformed(0, simdjson::error_message(e));
  }
  return false;
}

// Finds "kind" (usually the first field) so that the main pass knows which fields are known. A JSON error
// met on the way is recorded in malformed_ (the document cannot be rewound after one).
record_kind canonical_reader::prescan_kind(od::document& doc) {
  od::object object;
  if (!open_root(doc, object)) return record_kind::unknown;
  for (auto member : object) {
    od::field f;
    std::string_view key;
    if (const auto e = std::move(member).get(f)) {
      set_malformed(doc, e);
      return record_kind::unknown;
    }
    if (const auto e = f.unescaped_key().get(key)) {
      set_malformed(doc, e);
      return record_kind::unknown;
    }
    if (key != "kind") continue;
    od::value v = f.value();
    od::json_type t;
    if (const auto e = v.type().get(t)) {
      set_malformed(doc, e);
      return record_kind::unknown;
    }
    if (t == od::json_type::null) {
      // type() looks at the first byte only: `nope` would pass for null.
      bool is_null = false;
      if (v.is_null().get(is_null) || !is_null) {
        set_malformed(doc, "invalid literal (expected null)");
        return record_kind::unknown;
      }
      break;
    }
    if (t != od::json_type::string) {
      if (begin_reason(reason_, "kind")) reason_.append("expected a string, got ").append(type_name(t));
      return record_kind::unknown;
    }
    std::string_view text;
    if (const auto e = v.get_string().get(text)) {
      set_malformed(doc, e);
      return record_kind::unknown;
    }
    if (text.empty()) break;
    if (text == "communication") return record_kind::communication;
    if (text == "touchpoint") return record_kind::touchpoint;
    if (begin_reason(reason_, "kind")) {
      append_quoted(reason_, text);
      reason_.append(" is not one of communication|touchpoint");
    }
    return record_kind::unknown;
  }
  if (begin_reason(reason_, "kind")) reason_.append("missing (required)");
  return record_kind::unknown;
}

void canonical_reader::main_pass(od::document& doc, od::object& object, record_kind kind) {
  for (auto member : object) {
    od::field f;
    if (const auto e = std::move(member).get(f)) {
      set_malformed(doc, e);
      return;
    }
    const od::raw_json_string raw = f.key();
    std::string_view key;
    if (const auto e = f.unescaped_key().get(key)) {
      set_malformed(doc, e);
      return;
    }
    const std::string_view raw_key = raw_key_token(raw, key);
    if (string_has_nul(raw_key, key)) {
      if (begin_reason(reason_, "field name")) {
        append_quoted(reason_, key);
        reason_.append(" contains \\u0000, which PostgreSQL does not accept");
      }
      continue;
    }
    const field id = find_field(key);
    if (id == field::none || !in_scope(id, kind)) {
      // Unknown here (or a field of the other kind): kept in metadata as "key": value.
      unknown_members_.push_back(',');
      unknown_members_.append(raw_key);
      unknown_members_.push_back(':');
      if (const auto e = copier_.copy_value(f.value(), unknown_members_, 1); e != copy_error::none) {
        copy_failed(e, key, doc);
        stopped_early_ = true;
        return;
      }
      continue;
    }
    const std::uint64_t bit = std::uint64_t{1} << static_cast<unsigned>(id);
    if (values_.seen & bit) {
      if (begin_reason(reason_, spec(id).name)) reason_.append("duplicated field");
      continue;
    }
    values_.seen |= bit;
    if (id == field::kind) continue;  // read by the pre-scan
    if (!read_known(id, f.value(), doc)) {
      stopped_early_ = true;
      return;
    }
  }
  const char* trailing = nullptr;
  if (!doc.current_location().get(trailing)) {
    set_malformed(static_cast<std::size_t>(trailing - buffer_.data()), "unexpected content after the JSON object");
  }
}

// Reads one known field with its type rule. False when the pass cannot go on (malformed JSON or a value
// abandoned half-way).
bool canonical_reader::read_known(field f, od::value v, od::document& doc) {
  const std::string_view name = spec(f).name;
  od::json_type t;
  if (const auto e = v.type().get(t)) {
    set_malformed(doc, e);
    return false;
  }
  if (t == od::json_type::null) {  // null is the same as absent
    bool is_null = false;
    if (v.is_null().get(is_null) || !is_null) {
      set_malformed(doc, "invalid literal (expected null)");
      return false;
    }
    return true;
  }
  auto read_string = [&](std::string_view& out) {
    const std::string_view raw = trim_token(v.raw_json_token());
    if (const auto e = v.get_string().get(out)) {
      set_malformed(doc, e);
      return false;
    }
    if (string_has_nul(raw, out)) {
      if (begin_reason(reason_, name)) reason_.append("contains \\u0000, which PostgreSQL does not accept");
      out = {};
    }
    return true;
  };
  auto wrong_type = [&](std::string_view expected) {
    if (!begin_reason(reason_, name)) return true;
    reason_.append("expected ").append(expected).append(", got ").append(type_name(t));
    if (t == od::json_type::number) {
      reason_.push_back(' ');
      append_printable(reason_, trim_token(v.raw_json_token()));
    } else if (t == od::json_type::string) {
      std::string_view s;
      if (v.get_string().get(s)) {
        set_malformed(doc, "invalid string");
        return false;
      }
      reason_.push_back(' ');
      append_quoted(reason_, s);
    }
    return true;
  };
  // A number token: grammatical, or the record is malformed.
  auto number_token = [&](std::string_view& token) {
    token = trim_token(v.raw_json_token());
    if (check_json_number(token) != number_check::not_a_number) return true;
    set_malformed(doc, simdjson::error_message(simdjson::NUMBER_ERROR));
    return false;
  };

  switch (spec(f).rule) {
    case value_rule::string:
      if (t != od::json_type::string) return wrong_type("a string");
      return read_string(values_[f]);
    case value_rule::positive_id:
      return read_positive_id(f, v, f == field::lead_id ? values_.lead_id : values_.campaign_id, doc);
    case value_rule::timestamp:
      if (t == od::json_type::string) return read_string(values_[f]);
      if (t != od::json_type::number) {
        return wrong_type("an RFC 3339 string or a number of epoch seconds/milliseconds");
      }
      values_.occurred_at_is_number = true;
      return number_token(values_[f]);
    case value_rule::object: {
      if (t != od::json_type::object) return wrong_type("an object");
      od::object object;
      if (const auto e = v.get_object().get(object)) {
        set_malformed(doc, e);
        return false;
      }
      const auto e = copier_.copy_members(object, metadata_members_, 1, true);
      copy_failed(e, name, doc);
      return e == copy_error::none;
    }
    case value_rule::non_negative_number:
      if (t != od::json_type::number) return wrong_type("a number >= 0");
      return read_conversion_value(v, doc);
    case value_rule::string_or_integer: {
      if (t == od::json_type::string) return read_string(values_[f]);
      if (t != od::json_type::number) return wrong_type("a string or an integer");
      std::string_view token;
      if (!number_token(token)) return false;
      if (!is_integer_token(token)) return wrong_type("a string or an integer");
      values_[f] = token;
      return true;
    }
  }
  return true;
}

bool canonical_reader::read_positive_id(field f, od::value v, std::int64_t& out, od::document& doc) {
  const std::string_view name = spec(f).name;
  od::json_type t;
  if (const auto e = v.type().get(t)) {
    set_malformed(doc, e);
    return false;
  }
  if (t == od::json_type::string) {
    // The CRM's id as text: resolved by the appender (crm_ref.h) — digits as the integer, else a reference.
    std::string_view s;
    if (v.get_string().get(s)) {
      set_malformed(doc, "invalid string");
      return false;
    }
    if (s.empty() && begin_reason(reason_, name)) reason_.append("\"\" is empty (give the id, or leave the field out)");
    values_[f] = s;
    return true;
  }
  if (t != od::json_type::number) {
    if (begin_reason(reason_, name)) {
      reason_.append("expected an integer >= 1 or a CRM reference (a string), got ").append(type_name(t));
    }
    return true;
  }
  const std::string_view token = trim_token(v.raw_json_token());
  if (check_json_number(token) == number_check::not_a_number) {
    set_malformed(doc, simdjson::error_message(simdjson::NUMBER_ERROR));
    return false;
  }
  std::int64_t value = 0;
  const bool integer = is_integer_token(token);
  const bool fits = integer && !v.get_int64().get(value);
  if (!fits || value < 1) {
    if (begin_reason(reason_, name)) {
      reason_.append("expected an integer >= 1, got ");
      append_printable(reason_, token);
      if (integer && !fits) reason_.append(" (beyond the 64-bit integer range)");
    }
    return true;
  }
  out = value;
  values_[f] = token;
  return true;
}

// The number as a double; its bounds are the record_appender's rule (shared with the providers).
bool canonical_reader::read_conversion_value(od::value v, od::document& doc) {
  const std::string_view token = trim_token(v.raw_json_token());
  const auto check = check_json_number(token);
  if (check == number_check::not_a_number) {
    set_malformed(doc, simdjson::error_message(simdjson::NUMBER_ERROR));
    return false;
  }
  double value = 0;
  if (check == number_check::out_of_range || v.get_double().get(value)) {
    if (begin_reason(reason_, "conversion_value")) {
      reason_.append("expected a number >= 0, got ");
      append_printable(reason_, token);
      reason_.append(" (out of range)");
    }
    return true;
  }
  values_.conversion_value = value;
  values_.has_conversion_value = true;
  values_[field::conversion_value] = token;
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// From the values read to the field set

bool canonical_reader::read_occurred_at(timestamp_us& occurred) {
  const std::string_view text = values_[field::occurred_at];
  if (text.empty()) {
    if (begin_reason(reason_, "occurred_at")) reason_.append("missing (required)");
    return false;
  }
  if (values_.occurred_at_is_number) {
    if (const char* problem = epoch_number_to_us(text, occurred)) {
      if (begin_reason(reason_, "occurred_at")) {
        append_printable(reason_, text);
        reason_.append(" is not a usable epoch time (").append(problem).append(")");
      }
      return false;
    }
  } else if (const char* problem = parse_rfc3339(text, occurred)) {
    if (begin_reason(reason_, "occurred_at")) {
      append_quoted(reason_, text);
      reason_.append(" is not an RFC 3339 timestamp (").append(problem).append(")");
    }
    return false;
  }
  return true;
}

// metadata's members first, then the unknown fields in document order; empty when there are none.
std::string_view canonical_reader::assemble_metadata() {
  if (metadata_members_.empty() && unknown_members_.empty()) return {};
  // Both buffers hold ",member" items: the very first comma becomes '{'.
  metadata_.assign(metadata_members_).append(unknown_members_).push_back('}');
  metadata_[0] = '{';
  return metadata_;
}

template <typename Fields>
void canonical_reader::common_fields(Fields& f) {
  f.lead_id = values_.lead_id;
  f.campaign_id = values_.campaign_id;
  // A string (numbers set the integer): the appender resolves it.
  if (values_.lead_id == 0) f.lead_ref = values_[field::lead_id];
  if (values_.campaign_id == 0) f.campaign_ref = values_[field::campaign_id];
  f.ab_test_id = values_[field::ab_test_id];
  f.variant = values_[field::variant];
  f.metadata = assemble_metadata();
}

bool canonical_reader::to_fields(communication_fields& f) {
  if (!read_enum(field::channel, values_[field::channel], true, f.channel_, reason_) ||
      !read_enum(field::direction, values_[field::direction], false, f.direction_, reason_) ||
      !read_enum(field::status, values_[field::status], true, f.status, reason_)) {
    return false;
  }
  common_fields(f);
  f.event_id = values_[field::event_id];
  f.provider = values_[field::provider];
  f.provider_message_id = values_[field::provider_message_id];
  f.provider_event_id = values_[field::provider_event_id];
  f.email = values_[field::email];
  f.phone = values_[field::phone];
  f.url = values_[field::url];
  f.error_code = values_[field::error_code];
  f.error_reason = values_[field::error_reason];
  return true;
}

bool canonical_reader::to_fields(touchpoint_fields& f) {
  if (!read_enum(field::touch_type, values_[field::touch_type], true, f.type, reason_)) return false;
  common_fields(f);
  f.touchpoint_id = values_[field::touchpoint_id];
  f.anonymous_id = values_[field::anonymous_id];
  f.message_id = values_[field::message_id];
  // The canonical fields of tracking_params, in their order.
  static constexpr std::array<field, tracking_params.size()> tracking_fields = {
      field::utm_source, field::utm_medium, field::utm_campaign, field::utm_term,
      field::utm_content, field::gclid,      field::fbclid,       field::msclkid};
  const auto tracking = tracking_slots(f);
  for (std::size_t i = 0; i < tracking.size(); ++i) *tracking[i] = values_[tracking_fields[i]];
  f.landing_url = values_[field::landing_url];
  f.referrer = values_[field::referrer];
  f.conversion_type = values_[field::conversion_type];
  f.has_conversion_value = values_.has_conversion_value;
  f.conversion_value = values_.conversion_value;
  f.conversion_value_text = values_[field::conversion_value];
  f.currency = values_[field::currency];
  return true;
}

}  // namespace crm::transform::detail
