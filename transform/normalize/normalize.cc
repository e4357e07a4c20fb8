// The normalizer: one canonical JSON object -> one communication, touchpoint or rejection.
//
// A record is parsed with simdjson On-Demand in two passes over the same document: a pre-scan that stops at
// "kind" (usually the first field), then the main pass that reads every known field of that kind with its
// type check and re-emits every other field into the metadata text through the validating json_copier.
// Rule checks that need several fields (required fields, derived ids, UTM extraction, channel group) run
// after the main pass. The first broken rule is the rejection reason; malformed JSON wins over any rule.
// Nothing here throws on input: simdjson is used through error codes only.
#include "transform/normalize/normalize.h"

#include <simdjson.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstring>

#include "transform/text/ascii.h"
#include "transform/normalize/channel_group.h"
#include "transform/normalize/contact.h"
#include "transform/text/json_copy.h"
#include "transform/text/json_diagnostics.h"
#include "transform/text/reason_text.h"
#include "transform/text/timestamp.h"
#include "transform/text/url_params.h"
#include "transform/text/utf8.h"
#include "transform/normalize/uuid_v5.h"

namespace crm::transform {
namespace {

namespace od = simdjson::ondemand;
using detail::append_number;
using detail::append_printable;
using detail::append_quoted;

constexpr char id_separator = '\x1f';

enum class record_kind : std::uint8_t { unknown, communication, touchpoint };

// Every field of the canonical format. Order matters only for field_specs below.
enum class field : std::uint8_t {
  kind, occurred_at, lead_id, campaign_id, ab_test_id, variant, metadata,
  event_id, channel, direction, status, provider, provider_message_id, provider_event_id, email, phone, url,
  error_code, error_reason,
  touchpoint_id, anonymous_id, message_id, touch_type, utm_source, utm_medium, utm_campaign, utm_term,
  utm_content, gclid, fbclid, msclkid, landing_url, referrer, conversion_type, conversion_value, currency,
  none  // not a known field
};
constexpr std::size_t field_count = static_cast<std::size_t>(field::none);
static_assert(field_count <= 64, "fields are tracked in a 64-bit mask");

enum class value_rule : std::uint8_t { string, positive_id, timestamp, object, non_negative_number, string_or_integer };
enum class scope : std::uint8_t { common, communication, touchpoint };

struct field_spec {
  std::string_view name;
  value_rule rule;
  scope in;
};

constexpr std::array<field_spec, field_count> field_specs = {{
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

constexpr const field_spec& spec(field f) noexcept { return field_specs[static_cast<std::size_t>(f)]; }

bool in_scope(field f, record_kind kind) noexcept {
  switch (spec(f).in) {
    case scope::common: return true;
    case scope::communication: return kind == record_kind::communication;
    case scope::touchpoint: return kind == record_kind::touchpoint;
  }
  return false;
}

// Field name -> field through a small open-addressing table built at compile time.
constexpr std::uint32_t fnv1a(std::string_view s) noexcept {
  std::uint32_t h = 2166136261u;
  for (const char c : s) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 16777619u;
  }
  return h;
}

constexpr std::size_t lookup_slots = 128;  // power of two, > 3x the field count

constexpr std::array<std::uint8_t, lookup_slots> build_lookup() {
  std::array<std::uint8_t, lookup_slots> table{};  // 0 = empty, else field index + 1
  for (std::size_t i = 0; i < field_count; ++i) {
    std::size_t h = fnv1a(field_specs[i].name) & (lookup_slots - 1);
    while (table[h] != 0) h = (h + 1) & (lookup_slots - 1);
    table[h] = static_cast<std::uint8_t>(i + 1);
  }
  return table;
}

constexpr std::array<std::uint8_t, lookup_slots> field_lookup = build_lookup();

field find_field(std::string_view key) noexcept {
  if (key.size() > 19) return field::none;  // longer than the longest name
  std::size_t h = fnv1a(key) & (lookup_slots - 1);
  while (const std::uint8_t slot = field_lookup[h]) {
    if (field_specs[slot - 1].name == key) return static_cast<field>(slot - 1);
    h = (h + 1) & (lookup_slots - 1);
  }
  return field::none;
}

// Enums: spelled as to_string() spells them, matched without regard to ASCII case.
template <typename E, std::size_t N>
bool parse_enum(std::string_view text, E& out) noexcept {
  for (std::size_t i = 0; i < N; ++i) {
    const auto v = static_cast<E>(i);
    if (detail::ascii_iequals(text, to_string(v))) {
      out = v;
      return true;
    }
  }
  return false;
}

template <typename E, std::size_t N>
void append_choices(std::string& out) {
  for (std::size_t i = 0; i < N; ++i) {
    if (i != 0) out.push_back('|');
    out.append(to_string(static_cast<E>(i)));
  }
}

constexpr std::size_t channel_count = 6;
constexpr std::size_t direction_count = 2;
constexpr std::size_t status_count = 11;
constexpr std::size_t touch_type_count = 9;

std::string_view type_name(od::json_type t) noexcept {
  switch (t) {
    case od::json_type::array: return "array";
    case od::json_type::object: return "object";
    case od::json_type::number: return "number";
    case od::json_type::string: return "string";
    case od::json_type::boolean: return "boolean";
    case od::json_type::null: return "null";
  }
  return "value";
}

bool is_integer_token(std::string_view token) noexcept {
  if (!token.empty() && token.front() == '-') token.remove_prefix(1);
  if (token.empty()) return false;
  for (const char c : token) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

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
  out.append(buf, detail::format_rfc3339(t, buf));
}

std::string_view render_source(source_ref source, text_arena& arena) {
  if (source.line == 0) return arena.copy(source.name);
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, source.line);
  const auto n = static_cast<std::size_t>(r.ptr - digits);
  char* p = arena.allocate(source.name.size() + 1 + n);
  std::memcpy(p, source.name.data(), source.name.size());
  p[source.name.size()] = ':';
  std::memcpy(p + source.name.size() + 1, digits, n);
  return {p, source.name.size() + 1 + n};
}

}  // namespace

struct normalizer::impl {
  explicit impl(const normalize_options& o) : options(o), phones_(o.default_region) {}

  // What the main pass read. Strings are views into the parser's string buffer or the padded input
  // buffer: valid until the next record.
  struct record_values {
    std::array<std::string_view, field_count> text{};  // decoded strings; raw tokens of numbers
    std::uint64_t seen = 0;                             // fields met, for the duplicate rule
    std::int64_t lead_id = 0;
    std::int64_t campaign_id = 0;
    double conversion_value = 0;
    bool has_conversion_value = false;
    bool occurred_at_is_number = false;

    std::string_view& operator[](field f) noexcept { return text[static_cast<std::size_t>(f)]; }
    bool has(field f) const noexcept { return !text[static_cast<std::size_t>(f)].empty(); }
  };

  normalize_outcome run(std::string_view text, source_ref source, timestamp_us received_at, event_batch& out);
  normalize_outcome append_fields(const communication_fields& f, std::string_view raw, source_ref source,
                                  timestamp_us received_at, event_batch& out);
  normalize_outcome append_fields(const touchpoint_fields& f, std::string_view raw, source_ref source,
                                  timestamp_us received_at, event_batch& out);
  void append_rejection(std::string_view raw, source_ref source, timestamp_us received_at,
                        std::string_view reason_text, event_batch& out);

 private:
  void load(std::string_view text);
  bool parse(std::string_view text, od::document& doc);
  bool open_root(od::document& doc, od::object& object);
  record_kind prescan_kind(od::document& doc);
  void main_pass(od::document& doc, od::object& object, record_kind kind);
  bool read_known(field f, od::value v, od::document& doc);
  bool read_positive_id(field f, od::value v, std::int64_t& out, od::document& doc);
  bool read_conversion_value(od::value v, od::document& doc);
  void copy_failed(detail::copy_error e, std::string_view field_name, od::document& doc);

  bool resolve_occurred_at(timestamp_us received_at, timestamp_us& occurred);
  bool check_occurred_range(timestamp_us received_at, timestamp_us occurred);
  normalize_outcome build_communication(timestamp_us received_at, timestamp_us occurred, event_batch& out);
  normalize_outcome build_touchpoint(timestamp_us received_at, timestamp_us occurred, event_batch& out);
  bool normalize_contacts(std::string_view email, std::string_view phone, bool phone_from_provider,
                          text_arena& arena, communication& c);
  void derive_event_id(communication& c);
  bool check_currency(std::string_view text, char (&currency)[3]);
  void derive_touchpoint_id(touchpoint& t);
  void extract_query_params(std::string_view url, event_batch& out, std::array<std::string_view, 8>& params);
  std::string_view assemble_metadata(text_arena& arena);

  // The first broken rule of the current record; false when one is already recorded.
  bool begin_failure(std::string_view field_name);
  void set_malformed(std::size_t offset, std::string_view detail);
  void set_malformed(od::document& doc, simdjson::error_code e);
  void set_malformed(od::document& doc, std::string_view detail);
  normalize_outcome reject_current(std::string_view text, source_ref source, timestamp_us received_at,
                                   event_batch& out);

 public:
  const normalize_options& options;

 private:
  od::parser parser_;
  std::unique_ptr<char[]> buffer_;  // the record, copied and padded for simdjson
  std::size_t buffer_capacity_ = 0;
  std::string_view input_;          // the record inside buffer_
  detail::uuid_v5_generator uuids_;
  detail::phone_normalizer phones_;
  detail::json_copier copier_;
  record_values values_;
  std::string metadata_members_;  // ,"k":v of the metadata object
  std::string unknown_members_;   // ,"k":v of the unknown fields
  std::string reason_;            // first broken rule
  std::string malformed_;         // JSON syntax error: wins over reason_
  bool stopped_early_ = false;    // the main pass did not reach the end of the object
  std::string id_name_;           // UUIDv5 name
  std::string decoded_;           // percent-decoding scratch
};

// ---------------------------------------------------------------------------------------------------------
// Failures

bool normalizer::impl::begin_failure(std::string_view field_name) {
  if (!reason_.empty()) return false;
  reason_.assign(field_name).append(": ");
  return true;
}

void normalizer::impl::set_malformed(std::size_t offset, std::string_view detail) {
  if (!malformed_.empty()) return;
  malformed_.assign("malformed JSON at byte ");
  append_number(malformed_, offset);
  malformed_.append(": ").append(detail);
}

void normalizer::impl::set_malformed(od::document& doc, std::string_view detail) {
  const char* location = nullptr;
  if (!doc.current_location().get(location)) {
    set_malformed(static_cast<std::size_t>(location - buffer_.get()), detail);
  } else if (malformed_.empty()) {
    malformed_.assign("malformed JSON at the end of the record: ").append(detail);
  }
}

void normalizer::impl::set_malformed(od::document& doc, simdjson::error_code e) {
  set_malformed(doc, std::string_view(simdjson::error_message(e)));
}

void normalizer::impl::copy_failed(detail::copy_error e, std::string_view field_name, od::document& doc) {
  switch (e) {
    case detail::copy_error::none: return;
    case detail::copy_error::malformed: set_malformed(doc, copier_.malformed_detail()); return;
    case detail::copy_error::nul_character:
      if (begin_failure(field_name)) reason_.append("contains \\u0000, which PostgreSQL does not accept");
      return;
    case detail::copy_error::too_deep:
      if (begin_failure(field_name)) {
        reason_.append("nested deeper than ");
        append_number(reason_, detail::json_copier::max_depth);
        reason_.append(" levels");
      }
      return;
    case detail::copy_error::number_out_of_range:
      if (begin_failure(field_name)) reason_.append("contains a number out of PostgreSQL's numeric range");
      return;
  }
}

normalize_outcome normalizer::impl::reject_current(std::string_view text, source_ref source,
                                                   timestamp_us received_at, event_batch& out) {
  append_rejection(text, source, received_at, malformed_.empty() ? reason_ : malformed_, out);
  return normalize_outcome::rejected;
}

void normalizer::impl::append_rejection(std::string_view raw, source_ref source, timestamp_us received_at,
                                        std::string_view reason_text, event_batch& out) {
  rejection r;
  r.received_at = received_at;
  r.source = render_source(source, out.text);
  r.reason = out.text.copy(reason_text);
  r.raw = out.text.copy(raw.substr(0, options.max_record_bytes));
  out.rejections.push_back(r);
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

void normalizer::impl::load(std::string_view text) {
  const std::size_t needed = text.size() + simdjson::SIMDJSON_PADDING;
  if (needed > buffer_capacity_) {
    std::size_t capacity = buffer_capacity_ == 0 ? 4096 : buffer_capacity_;
    while (capacity < needed) capacity *= 2;
    buffer_.reset(new char[capacity]);
    buffer_capacity_ = capacity;
  }
  std::memcpy(buffer_.get(), text.data(), text.size());
  std::memset(buffer_.get() + text.size(), 0, simdjson::SIMDJSON_PADDING);
  input_ = {buffer_.get(), text.size()};
}

// Iterates the record and checks that its root is an object; false (with malformed_ or reason_ set) when
// it cannot be read.
bool normalizer::impl::parse(std::string_view text, od::document& doc) {
  if (const auto e = parser_.iterate(buffer_.get(), text.size(), buffer_capacity_).get(doc)) {
    switch (e) {
      case simdjson::UTF8_ERROR: {
        const std::size_t at = detail::invalid_utf8_offset(text);
        malformed_.assign("invalid UTF-8 at byte ");
        append_number(malformed_, at == std::string_view::npos ? 0 : at);
        break;
      }
      case simdjson::UNESCAPED_CHARS:
      case simdjson::UNCLOSED_STRING: {
        const std::size_t at = detail::locate_string_error(text);
        set_malformed(at == std::string_view::npos ? 0 : at, e == simdjson::UNESCAPED_CHARS
                                                                 ? "control character inside a string (must be escaped)"
                                                                 : "a string is opened but never closed");
        break;
      }
      case simdjson::EMPTY: malformed_.assign("malformed JSON: empty record"); break;
      default: malformed_.assign("malformed JSON: ").append(simdjson::error_message(e)); break;
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
bool normalizer::impl::open_root(od::document& doc, od::object& object) {
  const auto e = doc.get_object().get(object);
  if (!e) return true;
  const std::string_view text = input_;
  if (e == simdjson::INCOMPLETE_ARRAY_OR_OBJECT) {
    // simdjson checks the root's balance up front; tell a truncated record from trailing content.
    const std::size_t end = detail::top_level_object_end(text);
    const std::size_t next = end == std::string_view::npos ? end : detail::skip_json_whitespace(text, end);
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
record_kind normalizer::impl::prescan_kind(od::document& doc) {
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
      if (begin_failure("kind")) reason_.append("expected a string, got ").append(type_name(t));
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
    if (begin_failure("kind")) {
      append_quoted(reason_, text);
      reason_.append(" is not one of communication|touchpoint");
    }
    return record_kind::unknown;
  }
  if (begin_failure("kind")) reason_.append("missing (required)");
  return record_kind::unknown;
}

void normalizer::impl::main_pass(od::document& doc, od::object& object, record_kind kind) {
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
    const std::string_view raw_key = detail::raw_key_token(raw, key);
    if (detail::string_has_nul(raw_key, key)) {
      if (begin_failure("field name")) {
        append_quoted(reason_, key);
        reason_.append(" contains \\u0000, which PostgreSQL does not accept");
      }
      continue;
    }
    const field id = find_field(key);
    if (id == field::none || !in_scope(id, kind)) {
      // Unknown here: kept in metadata as "key": value.
      unknown_members_.push_back(',');
      unknown_members_.append(raw_key);
      unknown_members_.push_back(':');
      if (const auto e = copier_.copy_value(f.value(), unknown_members_, 1); e != detail::copy_error::none) {
        copy_failed(e, key, doc);
        stopped_early_ = true;
        return;
      }
      continue;
    }
    const std::uint64_t bit = std::uint64_t{1} << static_cast<unsigned>(id);
    if (values_.seen & bit) {
      if (begin_failure(spec(id).name)) reason_.append("duplicated field");
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
    set_malformed(static_cast<std::size_t>(trailing - buffer_.get()), "unexpected content after the JSON object");
  }
}

// Reads one known field with its type rule. False when the pass cannot go on (malformed JSON or a value
// abandoned half-way).
bool normalizer::impl::read_known(field f, od::value v, od::document& doc) {
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
    const std::string_view raw = detail::trim_token(v.raw_json_token());
    if (const auto e = v.get_string().get(out)) {
      set_malformed(doc, e);
      return false;
    }
    if (detail::string_has_nul(raw, out)) {
      if (begin_failure(name)) reason_.append("contains \\u0000, which PostgreSQL does not accept");
      out = {};
    }
    return true;
  };
  auto wrong_type = [&](std::string_view expected) {
    if (!begin_failure(name)) return true;
    reason_.append("expected ").append(expected).append(", got ").append(type_name(t));
    if (t == od::json_type::number) {
      reason_.push_back(' ');
      append_printable(reason_, detail::trim_token(v.raw_json_token()));
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

  switch (spec(f).rule) {
    case value_rule::string:
      if (t != od::json_type::string) return wrong_type("a string");
      return read_string(values_[f]);
    case value_rule::positive_id:
      return read_positive_id(f, v, f == field::lead_id ? values_.lead_id : values_.campaign_id, doc);
    case value_rule::timestamp:
      if (t == od::json_type::string) return read_string(values_[f]);
      if (t == od::json_type::number) {
        const std::string_view token = detail::trim_token(v.raw_json_token());
        if (detail::check_json_number(token) == detail::number_check::not_a_number) {
          set_malformed(doc, simdjson::error_message(simdjson::NUMBER_ERROR));
          return false;
        }
        values_[f] = token;
        values_.occurred_at_is_number = true;
        return true;
      }
      return wrong_type("an RFC 3339 string or a number of epoch seconds/milliseconds");
    case value_rule::object: {
      if (t != od::json_type::object) return wrong_type("an object");
      od::object object;
      if (const auto e = v.get_object().get(object)) {
        set_malformed(doc, e);
        return false;
      }
      const auto e = copier_.copy_members(object, metadata_members_, 1, true);
      copy_failed(e, name, doc);
      return e == detail::copy_error::none;
    }
    case value_rule::non_negative_number:
      if (t != od::json_type::number) return wrong_type("a number >= 0");
      return read_conversion_value(v, doc);
    case value_rule::string_or_integer:
      if (t == od::json_type::string) return read_string(values_[f]);
      if (t == od::json_type::number) {
        const std::string_view token = detail::trim_token(v.raw_json_token());
        const auto check = detail::check_json_number(token);
        if (check == detail::number_check::not_a_number) {
          set_malformed(doc, simdjson::error_message(simdjson::NUMBER_ERROR));
          return false;
        }
        if (!is_integer_token(token)) return wrong_type("a string or an integer");
        values_[f] = token;
        return true;
      }
      return wrong_type("a string or an integer");
  }
  return true;
}

bool normalizer::impl::read_positive_id(field f, od::value v, std::int64_t& out, od::document& doc) {
  const std::string_view name = spec(f).name;
  od::json_type t;
  if (const auto e = v.type().get(t)) {
    set_malformed(doc, e);
    return false;
  }
  if (t != od::json_type::number) {
    const bool first_failure = begin_failure(name);
    if (first_failure) reason_.append("expected an integer >= 1, got ").append(type_name(t));
    if (t == od::json_type::string) {
      std::string_view s;
      if (v.get_string().get(s)) {
        set_malformed(doc, "invalid string");
        return false;
      }
      if (first_failure) {
        reason_.push_back(' ');
        append_quoted(reason_, s);
      }
    }
    return true;
  }
  const std::string_view token = detail::trim_token(v.raw_json_token());
  if (detail::check_json_number(token) == detail::number_check::not_a_number) {
    set_malformed(doc, simdjson::error_message(simdjson::NUMBER_ERROR));
    return false;
  }
  std::int64_t value = 0;
  const bool integer = is_integer_token(token);
  const bool fits = integer && !v.get_int64().get(value);
  if (!fits || value < 1) {
    if (begin_failure(name)) {
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

bool normalizer::impl::read_conversion_value(od::value v, od::document& doc) {
  const std::string_view token = detail::trim_token(v.raw_json_token());
  const auto check = detail::check_json_number(token);
  if (check == detail::number_check::not_a_number) {
    set_malformed(doc, simdjson::error_message(simdjson::NUMBER_ERROR));
    return false;
  }
  double value = 0;
  if (check == detail::number_check::out_of_range || v.get_double().get(value)) {
    if (begin_failure("conversion_value")) {
      reason_.append("expected a number >= 0, got ");
      append_printable(reason_, token);
      reason_.append(" (out of range)");
    }
    return true;
  }
  if (value < 0) {
    if (begin_failure("conversion_value")) {
      reason_.append("expected a number >= 0, got ");
      append_printable(reason_, token);
    }
    return true;
  }
  values_.conversion_value = value;
  values_.has_conversion_value = true;
  values_[field::conversion_value] = token;
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Rules across fields

bool normalizer::impl::resolve_occurred_at(timestamp_us received_at, timestamp_us& occurred) {
  const std::string_view text = values_[field::occurred_at];
  if (text.empty()) {
    if (begin_failure("occurred_at")) reason_.append("missing (required)");
    return false;
  }
  if (values_.occurred_at_is_number) {
    if (const char* problem = detail::epoch_number_to_us(text, occurred)) {
      if (begin_failure("occurred_at")) {
        append_printable(reason_, text);
        reason_.append(" is not a usable epoch time (").append(problem).append(")");
      }
      return false;
    }
  } else if (const char* problem = detail::parse_rfc3339(text, occurred)) {
    if (begin_failure("occurred_at")) {
      append_quoted(reason_, text);
      reason_.append(" is not an RFC 3339 timestamp (").append(problem).append(")");
    }
    return false;
  }
  return check_occurred_range(received_at, occurred);
}

bool normalizer::impl::check_occurred_range(timestamp_us received_at, timestamp_us occurred) {
  const timestamp_us latest = received_at + options.max_future;
  if (occurred < options.min_occurred_at || occurred > latest) {
    if (begin_failure("occurred_at")) {
      append_timestamp(reason_, occurred);
      reason_.append(" is outside the accepted range [");
      append_timestamp(reason_, options.min_occurred_at);
      reason_.append(", ");
      append_timestamp(reason_, latest);
      reason_.append("] (min_occurred_at, received_at + max_future)");
    }
    return false;
  }
  return true;
}

std::string_view normalizer::impl::assemble_metadata(text_arena& arena) {
  const std::size_t n = metadata_members_.size() + unknown_members_.size();
  if (n == 0) return {};
  // Both buffers hold ",member" items: the very first comma becomes '{'.
  char* p = arena.allocate(n + 1);
  std::memcpy(p, metadata_members_.data(), metadata_members_.size());
  std::memcpy(p + metadata_members_.size(), unknown_members_.data(), unknown_members_.size());
  p[0] = '{';
  p[n] = '}';
  return {p, n + 1};
}

normalize_outcome normalizer::impl::build_communication(timestamp_us received_at, timestamp_us occurred,
                                                        event_batch& out) {
  communication c;
  auto enum_field = [&](field f, auto& value, auto parse, auto choices, bool required) {
    const std::string_view text = values_[f];
    if (text.empty()) {
      if (required && begin_failure(spec(f).name)) reason_.append("missing (required)");
      return !required;
    }
    if (parse(text, value)) return true;
    if (begin_failure(spec(f).name)) {
      append_quoted(reason_, text);
      reason_.append(" is not one of ");
      choices(reason_);
    }
    return false;
  };
  if (!enum_field(field::channel, c.channel_, parse_enum<channel, channel_count>,
                  append_choices<channel, channel_count>, true) ||
      !enum_field(field::direction, c.direction_, parse_enum<direction, direction_count>,
                  append_choices<direction, direction_count>, false) ||
      !enum_field(field::status, c.status, parse_enum<comm_status, status_count>,
                  append_choices<comm_status, status_count>, true)) {
    return normalize_outcome::rejected;
  }
  const bool has_event_id = values_.has(field::event_id);
  if (has_event_id && !parse_uuid(values_[field::event_id], c.event_id)) {
    if (begin_failure("event_id")) {
      append_quoted(reason_, values_[field::event_id]);
      reason_.append(" is not a UUID (8-4-4-4-12 hex digits)");
    }
    return normalize_outcome::rejected;
  }
  text_arena& arena = out.text;
  if (!normalize_contacts(values_[field::email], values_[field::phone], false, arena, c)) {
    return normalize_outcome::rejected;
  }

  c.occurred_at = occurred;
  c.received_at = received_at;
  c.lead_id = values_.lead_id;
  c.campaign_id = values_.campaign_id;
  c.provider = values_.has(field::provider) ? arena.copy(values_[field::provider])
                                            : arena.copy(options.default_provider);
  c.provider_message_id = arena.copy(values_[field::provider_message_id]);
  c.provider_event_id = arena.copy(values_[field::provider_event_id]);
  c.ab_test_id = arena.copy(values_[field::ab_test_id]);
  c.variant = arena.copy(values_[field::variant]);
  c.url = arena.copy(values_[field::url]);
  c.error_code = arena.copy(values_[field::error_code]);
  c.error_reason = arena.copy(values_[field::error_reason]);
  c.metadata = assemble_metadata(arena);

  if (!has_event_id) derive_event_id(c);
  out.communications.push_back(c);
  return normalize_outcome::communication;
}

bool normalizer::impl::normalize_contacts(std::string_view email, std::string_view phone, bool phone_from_provider,
                                          text_arena& arena, communication& c) {
  if (!email.empty()) {
    const auto e = detail::normalize_email(email, arena, c.email);
    if (e != detail::email_error::none) {
      if (begin_failure("email")) {
        append_quoted(reason_, email);
        reason_.push_back(' ');
        reason_.append(detail::describe(e));
      }
      return false;
    }
  }
  if (!phone.empty()) {
    const auto e = phones_.normalize(phone, arena, c.phone);
    if (e != detail::phone_error::none) {
      if (phone_from_provider && is_international_number(phone)) {
        c.phone = arena.copy(phone);
        return true;
      }
      if (begin_failure("phone")) {
        append_quoted(reason_, phone);
        reason_.push_back(' ');
        reason_.append(detail::describe(e));
        reason_.append(" (default region ").append(options.default_region).append(")");
      }
      return false;
    }
  }
  return true;
}

void normalizer::impl::derive_event_id(communication& c) {
  const timestamp_us occurred = c.occurred_at;
  // See README.md, "Derived ids": the name is fixed forever; changing it changes every id.
  std::string& name = id_name_;
  name.assign("communication");
  name.push_back(id_separator);
  name.append(c.provider);
  name.push_back(id_separator);
  if (!c.provider_event_id.empty()) {
    name.append(c.provider_event_id);
  } else if (!c.provider_message_id.empty()) {
    name.append(c.provider_message_id);
    name.push_back(id_separator);
    name.append(to_string(c.status));
    name.push_back(id_separator);
    append_number(name, occurred);
  } else {
    name.push_back(id_separator);
    name.append(to_string(c.channel_));
    name.push_back(id_separator);
    name.append(to_string(c.direction_));
    name.push_back(id_separator);
    name.append(to_string(c.status));
    name.push_back(id_separator);
    append_number(name, occurred);
    name.push_back(id_separator);
    if (c.lead_id != 0) append_number(name, c.lead_id);
    name.push_back(id_separator);
    name.append(c.email);
    name.push_back(id_separator);
    name.append(c.phone);
    name.push_back(id_separator);
    if (c.campaign_id != 0) append_number(name, c.campaign_id);
    name.push_back(id_separator);
    name.append(c.url);
  }
  c.event_id = uuids_.generate(detail::event_id_namespace, name);
}

// UTM tags and click ids from landing_url's query string, for those the record does not carry itself.
// params: utm_source, utm_medium, utm_campaign, utm_term, utm_content, gclid, fbclid, msclkid.
void normalizer::impl::extract_query_params(std::string_view url, event_batch& out,
                                            std::array<std::string_view, 8>& params) {
  static constexpr std::array<std::string_view, 8> names = {"utm_source", "utm_medium", "utm_campaign",
                                                            "utm_term",   "utm_content", "gclid",
                                                            "fbclid",     "msclkid"};
  bool wanted = false;
  for (const std::string_view p : params) wanted = wanted || p.empty();
  if (!wanted || url.empty()) return;
  detail::for_each_query_param(url, [&](std::string_view key, std::string_view value) {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (!params[i].empty() || !detail::ascii_iequals(key, names[i])) continue;
      decoded_.clear();
      detail::percent_decode(value, decoded_);
      // A decoded NUL or invalid UTF-8 cannot go into a text column: keep the raw (still encoded) value.
      const bool usable = std::memchr(decoded_.data(), 0, decoded_.size()) == nullptr && simdjson::validate_utf8(decoded_.data(), decoded_.size());
      params[i] = out.text.copy(usable ? std::string_view(decoded_) : value);
      return;
    }
  });
}

normalize_outcome normalizer::impl::build_touchpoint(timestamp_us received_at, timestamp_us occurred,
                                                     event_batch& out) {
  touchpoint t;
  const std::string_view type_text = values_[field::touch_type];
  if (type_text.empty()) {
    if (begin_failure("touch_type")) reason_.append("missing (required)");
    return normalize_outcome::rejected;
  }
  if (!parse_enum<touch_type, touch_type_count>(type_text, t.type)) {
    if (begin_failure("touch_type")) {
      append_quoted(reason_, type_text);
      reason_.append(" is not one of ");
      append_choices<touch_type, touch_type_count>(reason_);
    }
    return normalize_outcome::rejected;
  }
  if (values_.lead_id == 0 && !values_.has(field::anonymous_id)) {
    if (begin_failure("lead_id/anonymous_id")) reason_.append("at least one is required");
    return normalize_outcome::rejected;
  }
  if (t.type == touch_type::experiment_exposure) {
    for (const field f : {field::ab_test_id, field::variant}) {
      if (!values_.has(f)) {
        if (begin_failure(spec(f).name)) reason_.append("missing (required for touch_type experiment_exposure)");
        return normalize_outcome::rejected;
      }
    }
  }
  char currency[3];
  const std::string_view currency_text = values_[field::currency];
  if (!check_currency(currency_text, currency)) return normalize_outcome::rejected;
  const bool has_touchpoint_id = values_.has(field::touchpoint_id);
  if (has_touchpoint_id && !parse_uuid(values_[field::touchpoint_id], t.touchpoint_id)) {
    if (begin_failure("touchpoint_id")) {
      append_quoted(reason_, values_[field::touchpoint_id]);
      reason_.append(" is not a UUID (8-4-4-4-12 hex digits)");
    }
    return normalize_outcome::rejected;
  }

  text_arena& arena = out.text;
  std::array<std::string_view, 8> params = {
      arena.copy(values_[field::utm_source]),  arena.copy(values_[field::utm_medium]),
      arena.copy(values_[field::utm_campaign]), arena.copy(values_[field::utm_term]),
      arena.copy(values_[field::utm_content]), arena.copy(values_[field::gclid]),
      arena.copy(values_[field::fbclid]),      arena.copy(values_[field::msclkid])};
  extract_query_params(values_[field::landing_url], out, params);

  t.occurred_at = occurred;
  t.received_at = received_at;
  t.lead_id = values_.lead_id;
  t.campaign_id = values_.campaign_id;
  t.is_conversion = t.type == touch_type::conversion;
  t.has_conversion_value = values_.has_conversion_value;
  t.conversion_value = values_.conversion_value;
  t.anonymous_id = arena.copy(values_[field::anonymous_id]);
  t.message_id = arena.copy(values_[field::message_id]);
  t.utm_source = params[0];
  t.utm_medium = params[1];
  t.utm_campaign = params[2];
  t.utm_term = params[3];
  t.utm_content = params[4];
  t.gclid = params[5];
  t.fbclid = params[6];
  t.msclkid = params[7];
  t.landing_url = arena.copy(values_[field::landing_url]);
  t.referrer = arena.copy(values_[field::referrer]);
  t.conversion_type = arena.copy(values_[field::conversion_type]);
  if (!currency_text.empty()) {
    t.currency = arena.copy({currency, 3});
  } else if (t.is_conversion) {
    t.currency = arena.copy(options.default_currency);
  }
  t.ab_test_id = arena.copy(values_[field::ab_test_id]);
  t.variant = arena.copy(values_[field::variant]);
  t.metadata = assemble_metadata(arena);
  t.group = detail::derive_channel_group({t.utm_source, t.utm_medium, t.utm_campaign, t.gclid, t.fbclid,
                                          t.msclkid, t.referrer, t.landing_url});

  if (!has_touchpoint_id) derive_touchpoint_id(t);
  out.touchpoints.push_back(t);
  return normalize_outcome::touchpoint;
}

bool normalizer::impl::check_currency(std::string_view text, char (&currency)[3]) {
  if (text.empty()) return true;
  bool ok = text.size() == 3;
  for (std::size_t i = 0; ok && i < 3; ++i) {
    const char ch = detail::ascii_upper(text[i]);
    ok = ch >= 'A' && ch <= 'Z';
    currency[i] = ch;
  }
  if (!ok && begin_failure("currency")) {
    append_quoted(reason_, text);
    reason_.append(" is not an ISO 4217 code (3 letters)");
  }
  return ok;
}

void normalizer::impl::derive_touchpoint_id(touchpoint& t) {
  const timestamp_us occurred = t.occurred_at;
  // See README.md, "Derived ids".
  std::string& name = id_name_;
  name.assign("touchpoint");
  name.push_back(id_separator);
  if (!t.message_id.empty()) {
    name.append(t.message_id);
    name.push_back(id_separator);
    append_number(name, occurred);
  } else {
    name.push_back(id_separator);
    name.append(to_string(t.type));
    name.push_back(id_separator);
    append_number(name, occurred);
    name.push_back(id_separator);
    if (t.lead_id != 0) append_number(name, t.lead_id);
    for (const std::string_view part : {t.anonymous_id, t.landing_url, t.referrer, t.utm_source, t.utm_medium,
                                        t.utm_campaign, t.utm_term, t.utm_content, t.gclid, t.fbclid,
                                        t.msclkid, t.conversion_type}) {
      name.push_back(id_separator);
      name.append(part);
    }
    name.push_back(id_separator);
    if (t.has_conversion_value) {
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, t.conversion_value);  // shortest round-trip
      name.append(buf, r.ptr);
    }
    name.push_back(id_separator);
    name.append(t.ab_test_id);
    name.push_back(id_separator);
    name.append(t.variant);
  }
  t.touchpoint_id = uuids_.generate(detail::event_id_namespace, name);
}

// ---------------------------------------------------------------------------------------------------------

normalize_outcome normalizer::impl::run(std::string_view text, source_ref source, timestamp_us received_at,
                                        event_batch& out) {
  reason_.clear();
  malformed_.clear();
  if (text.size() > options.max_record_bytes) {
    reason_.assign("record exceeds ");
    append_number(reason_, options.max_record_bytes);
    reason_.append(" bytes");
    return reject_current(text, source, received_at, out);
  }
  values_ = record_values{};
  metadata_members_.clear();
  unknown_members_.clear();
  stopped_early_ = false;
  load(text);

  od::document doc;
  if (!parse(text, doc)) return reject_current(text, source, received_at, out);
  const record_kind kind = prescan_kind(doc);
  if (!malformed_.empty() || !doc.is_alive()) {  // a document cannot be rewound after an error
    if (malformed_.empty()) malformed_.assign("malformed JSON");
    return reject_current(text, source, received_at, out);
  }
  doc.rewind();
  od::object object;
  if (!open_root(doc, object)) return reject_current(text, source, received_at, out);
  main_pass(doc, object, kind);
  if (!malformed_.empty() || !reason_.empty() || stopped_early_ || kind == record_kind::unknown) {
    return reject_current(text, source, received_at, out);
  }

  timestamp_us occurred = 0;
  if (!resolve_occurred_at(received_at, occurred)) return reject_current(text, source, received_at, out);
  const normalize_outcome outcome = kind == record_kind::communication
                                        ? build_communication(received_at, occurred, out)
                                        : build_touchpoint(received_at, occurred, out);
  if (outcome == normalize_outcome::rejected) return reject_current(text, source, received_at, out);
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------
// Records from fields a provider adapter has read (transform/providers.h): the same rules and derived ids.

normalize_outcome normalizer::impl::append_fields(const communication_fields& f, std::string_view raw,
                                                  source_ref source, timestamp_us received_at, event_batch& out) {
  reason_.clear();
  malformed_.clear();
  text_arena& arena = out.text;
  communication c;
  c.channel_ = f.channel_;
  c.direction_ = f.direction_;
  c.status = f.status;
  if (!check_occurred_range(received_at, f.occurred_at) ||
      !normalize_contacts(f.email, f.phone, f.phone_from_provider, arena, c)) {
    return reject_current(raw, source, received_at, out);
  }
  c.occurred_at = f.occurred_at;
  c.received_at = received_at;
  c.lead_id = f.lead_id;
  c.campaign_id = f.campaign_id;
  c.provider = arena.copy(f.provider.empty() ? std::string_view(options.default_provider) : f.provider);
  c.provider_message_id = arena.copy(f.provider_message_id);
  c.provider_event_id = arena.copy(f.provider_event_id);
  c.ab_test_id = arena.copy(f.ab_test_id);
  c.variant = arena.copy(f.variant);
  c.url = arena.copy(f.url);
  c.error_code = arena.copy(f.error_code);
  c.error_reason = arena.copy(f.error_reason);
  c.metadata = arena.copy(f.metadata);
  c.occurred_at_is_receipt_time = f.occurred_at_is_receipt_time;
  derive_event_id(c);
  out.communications.push_back(c);
  return normalize_outcome::communication;
}

normalize_outcome normalizer::impl::append_fields(const touchpoint_fields& f, std::string_view raw,
                                                  source_ref source, timestamp_us received_at, event_batch& out) {
  reason_.clear();
  malformed_.clear();
  if (!check_occurred_range(received_at, f.occurred_at)) return reject_current(raw, source, received_at, out);
  if (f.lead_id == 0 && f.anonymous_id.empty()) {
    if (begin_failure("lead_id/anonymous_id")) reason_.append("at least one is required");
    return reject_current(raw, source, received_at, out);
  }
  if (f.type == touch_type::experiment_exposure && (f.ab_test_id.empty() || f.variant.empty())) {
    if (begin_failure(f.ab_test_id.empty() ? "ab_test_id" : "variant")) {
      reason_.append("missing (required for touch_type experiment_exposure)");
    }
    return reject_current(raw, source, received_at, out);
  }
  if (f.has_conversion_value && !(f.conversion_value >= 0 && f.conversion_value <= 1e14)) {
    // numeric(20,6) holds 14 integer digits; NaN fails both comparisons.
    if (begin_failure("conversion_value")) reason_.append("expected a number >= 0 within numeric(20,6)");
    return reject_current(raw, source, received_at, out);
  }
  char currency[3];
  if (!check_currency(f.currency, currency)) return reject_current(raw, source, received_at, out);

  text_arena& arena = out.text;
  touchpoint t;
  std::array<std::string_view, 8> params = {arena.copy(f.utm_source),  arena.copy(f.utm_medium),
                                            arena.copy(f.utm_campaign), arena.copy(f.utm_term),
                                            arena.copy(f.utm_content), arena.copy(f.gclid),
                                            arena.copy(f.fbclid),      arena.copy(f.msclkid)};
  extract_query_params(f.landing_url, out, params);
  t.type = f.type;
  t.occurred_at = f.occurred_at;
  t.received_at = received_at;
  t.lead_id = f.lead_id;
  t.campaign_id = f.campaign_id;
  t.is_conversion = t.type == touch_type::conversion;
  t.has_conversion_value = f.has_conversion_value;
  t.conversion_value = f.has_conversion_value ? f.conversion_value : 0;
  t.anonymous_id = arena.copy(f.anonymous_id);
  t.message_id = arena.copy(f.message_id);
  t.utm_source = params[0];
  t.utm_medium = params[1];
  t.utm_campaign = params[2];
  t.utm_term = params[3];
  t.utm_content = params[4];
  t.gclid = params[5];
  t.fbclid = params[6];
  t.msclkid = params[7];
  t.landing_url = arena.copy(f.landing_url);
  t.referrer = arena.copy(f.referrer);
  t.conversion_type = arena.copy(f.conversion_type);
  if (!f.currency.empty()) {
    t.currency = arena.copy({currency, 3});
  } else if (t.is_conversion) {
    t.currency = arena.copy(options.default_currency);
  }
  t.ab_test_id = arena.copy(f.ab_test_id);
  t.variant = arena.copy(f.variant);
  t.metadata = arena.copy(f.metadata);
  t.group = detail::derive_channel_group({t.utm_source, t.utm_medium, t.utm_campaign, t.gclid, t.fbclid,
                                          t.msclkid, t.referrer, t.landing_url});
  derive_touchpoint_id(t);
  out.touchpoints.push_back(t);
  return normalize_outcome::touchpoint;
}

normalizer::normalizer(normalize_options options)
    : options_(std::move(options)), impl_(std::make_unique<impl>(options_)) {}

normalizer::~normalizer() = default;

normalize_outcome normalizer::normalize(std::string_view text, source_ref source, timestamp_us received_at,
                                        event_batch& out) {
  return impl_->run(text, source, received_at, out);
}

void normalizer::reject(std::string_view raw, source_ref source, timestamp_us received_at, std::string_view reason,
                        event_batch& out) {
  impl_->append_rejection(raw, source, received_at, reason, out);
}

normalize_outcome normalizer::append(const communication_fields& fields, std::string_view raw, source_ref source,
                                     timestamp_us received_at, event_batch& out) {
  return impl_->append_fields(fields, raw, source, received_at, out);
}

normalize_outcome normalizer::append(const touchpoint_fields& fields, std::string_view raw, source_ref source,
                                     timestamp_us received_at, event_batch& out) {
  return impl_->append_fields(fields, raw, source, received_at, out);
}

timestamp_us now_us() noexcept {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace crm::transform
