#include "transform/providers/provider_common.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "transform/text/ascii.h"
#include "transform/text/json_diagnostics.h"
#include "transform/text/reason_text.h"
#include "transform/text/timestamp.h"
#include "transform/text/url_params.h"
#include "transform/text/utf8.h"

namespace crm::transform::providers::detail {

using transform::detail::append_number;
using transform::detail::append_printable;
using transform::detail::append_quoted;

workspace& thread_workspace() {
  thread_local workspace ws;
  return ws;
}

void describe_malformed(od::document& doc, const padded_buffer& buffer, std::size_t size, simdjson::error_code e,
                        std::string& error) {
  const char* location = nullptr;
  std::size_t offset = size;
  if (!doc.current_location().get(location) && location >= buffer.data() && location <= buffer.data() + size) {
    offset = static_cast<std::size_t>(location - buffer.data());
  }
  error.assign("malformed JSON at byte ");
  append_number(error, offset);
  error.append(": ").append(simdjson::error_message(e));
}

bool start_document(workspace& ws, std::string_view body, od::document& doc, std::string& error) {
  const std::string_view text = ws.body.load(body);
  const auto e = ws.parser.iterate(ws.body.data(), text.size(), ws.body.capacity()).get(doc);
  if (!e) return true;
  if (!transform::detail::describe_stage1_error(e, text, error)) {
    error.assign(e == simdjson::EMPTY ? "malformed JSON: empty body" : "malformed JSON at byte 0: ");
    if (e != simdjson::EMPTY) error.append(simdjson::error_message(e));
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------

bool json_walker::fail(simdjson::error_code e) {
  if (error_.empty()) {
    if (e == simdjson::INCOMPLETE_ARRAY_OR_OBJECT) {
      // simdjson checks the root's balance up front and reports it without a position.
      error_.assign("malformed JSON at byte ");
      append_number(error_, size_);
      error_.append(": an object or array is not closed (truncated body?)");
    } else {
      describe_malformed(doc_, ws_.body, size_, e, error_);
    }
  }
  return false;
}

bool json_walker::read(od::value value, scalar& out) {
  out = scalar{};
  od::json_type t;
  if (const auto e = value.type().get(t)) return fail(e);
  out.type = t;
  switch (t) {
    case od::json_type::null: {
      bool is_null = false;
      if (value.is_null().get(is_null) || !is_null) return fail(simdjson::N_ATOM_ERROR);
      return true;
    }
    case od::json_type::string: {
      const std::string_view raw = transform::detail::trim_token(value.raw_json_token());
      std::string_view s;
      if (const auto e = value.get_string().get(s)) return fail(e);
      if (transform::detail::string_has_nul(raw, s)) {
        // Text columns refuse NUL: such a value is absent here; keep() makes it a rule failure.
        out.nul = true;
        return true;
      }
      out.text = s;
      out.present = !s.empty();
      return true;
    }
    case od::json_type::number: {
      const std::string_view token = transform::detail::trim_token(value.raw_json_token());
      if (transform::detail::check_json_number(token) == transform::detail::number_check::not_a_number) {
        return fail(simdjson::NUMBER_ERROR);
      }
      out.text = token;
      out.present = true;
      return true;
    }
    case od::json_type::boolean: {
      bool b = false;
      if (value.get_bool().get(b)) {
        const std::string_view raw = value.raw_json_token();
        return fail(!raw.empty() && raw.front() == 'f' ? simdjson::F_ATOM_ERROR : simdjson::T_ATOM_ERROR);
      }
      out.text = b ? "true" : "false";
      out.present = true;
      return true;
    }
    case od::json_type::object:
    case od::json_type::array: out.present = true; return true;
  }
  return true;
}

bool json_walker::take(std::string_view key, od::value value, scalar& out) {
  if (!read(value, out)) return false;
  if (out.nul && begin_rule(ws_, key)) ws_.reason.append("contains \\u0000, which PostgreSQL does not accept");
  return true;
}

bool json_walker::copy_failed(transform::detail::copy_error e, std::string_view key) {
  using transform::detail::copy_error;
  switch (e) {
    case copy_error::none: return true;
    case copy_error::malformed: {
      if (error_.empty()) {
        describe_malformed(doc_, ws_.body, size_, simdjson::TAPE_ERROR, error_);
        const std::string_view detail = ws_.copier.malformed_detail();
        if (!detail.empty()) {
          error_.resize(error_.find(": ") + 2);
          error_.append(detail);
        }
      }
      return false;
    }
    default:
      if (begin_rule(ws_, key)) transform::detail::append_copy_rule(ws_.reason, e);
      return true;
  }
}

bool json_walker::keep(std::string_view key, std::string_view raw_key, od::value value, scalar* out) {
  std::string& meta = ws_.metadata;
  const std::size_t mark = meta.size();
  meta.push_back(',');
  meta.append(raw_key);
  meta.push_back(':');
  return keep_value(key, value, mark, out);
}

bool json_walker::keep_as(std::string_view name, od::value value, scalar* out) {
  std::string& meta = ws_.metadata;
  const std::size_t mark = meta.size();
  meta.push_back(',');
  append_json_string(meta, name);
  meta.push_back(':');
  return keep_value(name, value, mark, out);
}

// Appends `value` after the key already written at `mark`; on a rule failure the member is taken back.
bool json_walker::keep_value(std::string_view key, od::value value, std::size_t mark, scalar* out) {
  std::string& meta = ws_.metadata;
  od::json_type t;
  if (const auto e = value.type().get(t)) return fail(e);
  if (t == od::json_type::object || t == od::json_type::array) {
    if (out != nullptr) *out = scalar{{}, t, true, false};
    const auto e = ws_.copier.copy_value(value, meta, 1);
    if (e != transform::detail::copy_error::none) meta.resize(mark);
    return copy_failed(e, key);
  }
  const std::string_view raw = transform::detail::trim_token(value.raw_json_token());
  scalar s;
  if (!read(value, s)) return false;
  if (s.nul) {
    meta.resize(mark);
    if (begin_rule(ws_, key)) ws_.reason.append("contains \\u0000, which PostgreSQL does not accept");
    return true;
  }
  if (t == od::json_type::number &&
      transform::detail::check_json_number(s.text) == transform::detail::number_check::out_of_range) {
    meta.resize(mark);
    if (begin_rule(ws_, key)) ws_.reason.append("contains a number out of PostgreSQL's numeric range");
    return true;
  }
  if (t == od::json_type::null) {
    meta.append("null");
  } else {
    meta.append(t == od::json_type::string ? raw : s.text);
  }
  if (out != nullptr) *out = s;
  return true;
}

std::size_t json_walker::open_kept(std::string_view name, char bracket) {
  std::string& meta = ws_.metadata;
  meta.push_back(',');
  append_json_string(meta, name);
  meta.push_back(':');
  meta.push_back(bracket);
  return meta.size();
}

void json_walker::close_kept(std::size_t first, char bracket) {
  std::string& meta = ws_.metadata;
  if (meta.size() > first && meta[first] == ',') meta.erase(first, 1);
  meta.push_back(bracket);
}

bool json_walker::finish() {
  const char* p = nullptr;
  if (doc_.current_location().get(p)) return true;  // at the end
  if (error_.empty()) {
    error_.assign("malformed JSON at byte ");
    append_number(error_, p >= ws_.body.data() && p <= ws_.body.data() + size_
                              ? static_cast<std::size_t>(p - ws_.body.data())
                              : size_);
    error_.append(": unexpected content after the JSON value");
  }
  return false;
}

bool json_walker::root_type(od::json_type& t) {
  if (const auto e = doc_.type().get(t)) return fail(e);
  return true;
}

const char* json_walker::location_of(od::value& value) {
  const char* p = nullptr;
  if (value.current_location().get(p)) return nullptr;
  return p;
}

std::string_view json_walker::raw_since(const char* start) {
  const char* base = ws_.body.data();
  if (start == nullptr || start < base || start > base + size_) return {};
  const char* end = nullptr;
  if (doc_.current_location().get(end) || end < start || end > base + size_) end = base + size_;
  std::string_view raw(start, static_cast<std::size_t>(end - start));
  while (!raw.empty() && transform::detail::is_json_whitespace(raw.back())) raw.remove_suffix(1);
  return raw;
}

// ---------------------------------------------------------------------------------------------------------

bool begin_rule(workspace& ws, std::string_view field) { return transform::detail::begin_reason(ws.reason, field); }

void rule_wrong_type(workspace& ws, std::string_view field, std::string_view expected, const scalar& got) {
  if (!begin_rule(ws, field)) return;
  ws.reason.append("expected ").append(expected).append(", got ").append(type_name(got.type));
  if (got.type == od::json_type::number || got.type == od::json_type::boolean) {
    ws.reason.push_back(' ');
    append_printable(ws.reason, got.text);
  } else if (got.type == od::json_type::string) {
    ws.reason.push_back(' ');
    append_quoted(ws.reason, got.text);
  }
}

void rule_missing(workspace& ws, std::string_view field) {
  if (begin_rule(ws, field)) ws.reason.append("missing (required)");
}

std::string_view string_field(workspace& ws, std::string_view field, const scalar& value, bool required,
                              std::string_view expected) {
  if (value.is_string()) return value.text;
  if (value.present) {
    rule_wrong_type(ws, field, expected, value);
  } else if (required) {
    rule_missing(ws, field);
  }
  return {};
}

bool find_status(const status_words& words, std::string_view word, comm_status& out) noexcept {
  for (std::string_view rest = words.text(); !rest.empty();) {
    const std::size_t bar = rest.find('|');
    const std::string_view item = rest.substr(0, bar);
    rest = bar == std::string_view::npos ? std::string_view{} : rest.substr(bar + 1);
    const std::size_t eq = item.find('=');
    if (!transform::detail::ascii_iequals(item.substr(0, eq), word)) continue;
    const std::string_view ours = eq == std::string_view::npos ? item : item.substr(eq + 1);
    for (std::size_t i = 0; i < comm_status_names.size(); ++i) {
      if (comm_status_names[i] == ours) {
        out = static_cast<comm_status>(i);
        return true;
      }
    }
  }
  return false;
}

bool map_status(workspace& ws, std::string_view field, std::string_view word, const status_words& words,
                comm_status& out, std::string_view unknown_rule) {
  if (find_status(words, word, out)) return true;
  if (begin_rule(ws, field)) {
    append_quoted(ws.reason, word);
    if (!unknown_rule.empty()) {
      ws.reason.append(unknown_rule);
    } else {
      ws.reason.append(" is not one of ");
      bool first = true;
      for (std::string_view rest = words.text(); !rest.empty();) {
        const std::size_t bar = rest.find('|');
        if (!first) ws.reason.push_back('|');
        ws.reason.append(rest.substr(0, std::min(bar, rest.find('='))));
        rest = bar == std::string_view::npos ? std::string_view{} : rest.substr(bar + 1);
        first = false;
      }
    }
  }
  return false;
}

bool read_status(workspace& ws, std::string_view field, const scalar& value, const status_words& words,
                 comm_status& out) {
  const std::string_view word = string_field(ws, field, value, true);
  return !word.empty() && map_status(ws, field, word, words, out);
}

std::string_view usable_text(workspace& ws, std::string_view text) {
  if (text.empty() ||
      (std::memchr(text.data(), 0, text.size()) == nullptr && simdjson::validate_utf8(text.data(), text.size()))) {
    return text;
  }
  std::string& fixed = ws.decoded;
  fixed.clear();
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t n = text[i] == '\0' ? 0 : transform::detail::utf8_sequence_length(text.substr(i));
    if (n == 0) {
      fixed.append("\xEF\xBF\xBD");  // U+FFFD
      ++i;
    } else {
      fixed.append(text.substr(i, n));
      i += n;
    }
  }
  return ws.scratch.copy(fixed);
}

std::string_view indexed_key(workspace& ws, const webhook_input& in, std::size_t index) {
  if (in.key_is_indexed) return in.idempotency_key;
  const std::size_t at = transform::detail::skip_json_whitespace(in.body, 0);
  if (index == 0 && (at == std::string_view::npos || in.body[at] != '[')) return in.idempotency_key;
  ws.event_key.assign(in.idempotency_key).push_back(':');
  append_number(ws.event_key, index);
  return ws.event_key;
}

source_ref event_source(workspace& ws, std::string_view source, std::size_t index) {
  ws.source.assign(source).push_back(':');
  append_number(ws.source, index);
  return {ws.source, 0};
}

namespace {

// A source's declared idempotency key in place of the provider's own event id (providers.h, webhook_input):
// `<key>` for the first event of an object body, `<key>:<index>` otherwise.
void declared_key(std::string_view key, communication_fields& f) { f.provider_event_id = key; }
void declared_key(std::string_view key, touchpoint_fields& f) { f.message_id = key; }

template <typename Fields>
void emit(normalizer& norm, const webhook_input& in, workspace& ws, const crm_ids& ids, Fields& f,
          std::string_view raw, std::size_t index, event_batch& out) {
  resolve_ids(ws, ids, f);
  apply_ids(ids, f);
  const source_ref src = event_source(ws, in.source, index);
  // A rejection keeps the key too, so that `rejected replay` gives the event the id a redelivery stores.
  const std::string_view key = in.idempotency_key.empty() ? std::string_view{} : indexed_key(ws, in, index);
  if (!ws.reason.empty()) {
    norm.reject(raw, src, in.received_at, ws.reason, out, key);
  } else {
    f.metadata = finish_metadata(ws);
    if (!key.empty()) declared_key(key, f);
    norm.append(f, raw, src, in.received_at, out, key);
  }
  end_event(ws);
}

}  // namespace

void emit_event(normalizer& norm, const webhook_input& in, workspace& ws, const crm_ids& ids,
                communication_fields& f, std::string_view raw, std::size_t index, event_batch& out) {
  emit(norm, in, ws, ids, f, raw, index, out);
}

void emit_event(normalizer& norm, const webhook_input& in, workspace& ws, const crm_ids& ids, touchpoint_fields& f,
                std::string_view raw, std::size_t index, event_batch& out) {
  emit(norm, in, ws, ids, f, raw, index, out);
}

std::string_view finish_metadata(workspace& ws) {
  if (ws.metadata.empty()) return {};
  ws.metadata_out.clear();
  ws.metadata_out.push_back('{');
  ws.metadata_out.append(std::string_view(ws.metadata).substr(1));  // drop the leading comma
  ws.metadata_out.push_back('}');
  return ws.metadata_out;
}

void begin_call(workspace& ws) {
  ws.scratch.clear();
  ws.reason.clear();
  ws.shape.clear();
  ws.metadata.clear();
}

void begin_event(workspace& ws) {
  if (!ws.reason.empty() && ws.shape.empty()) ws.shape = ws.reason;
  ws.reason.clear();
  ws.metadata.clear();
}

bool epoch_time(workspace& ws, std::string_view field, const scalar& value, timestamp_us& out) {
  if (!value.present) {
    rule_missing(ws, field);
    return false;
  }
  if (value.type != od::json_type::number && value.type != od::json_type::string) {
    rule_wrong_type(ws, field, "epoch seconds (a number or a numeric string)", value);
    return false;
  }
  if (const char* problem = transform::detail::epoch_number_to_us(value.text, out)) {
    if (begin_rule(ws, field)) {
      if (value.type == od::json_type::string) {
        append_quoted(ws.reason, value.text);
      } else {
        append_printable(ws.reason, value.text);
      }
      ws.reason.append(" is not a usable epoch time (").append(problem).append(")");
    }
    return false;
  }
  return true;
}

bool rfc3339_time(workspace& ws, std::string_view field, const scalar& value, timestamp_us& out) {
  if (!value.present) {
    rule_missing(ws, field);
    return false;
  }
  if (value.type != od::json_type::string) {
    rule_wrong_type(ws, field, "an ISO 8601 / RFC 3339 string", value);
    return false;
  }
  if (const char* problem = transform::detail::parse_rfc3339(value.text, out)) {
    if (begin_rule(ws, field)) {
      append_quoted(ws.reason, value.text);
      ws.reason.append(" is not an RFC 3339 timestamp (").append(problem).append(")");
    }
    return false;
  }
  return true;
}

bool provider_document::open(od::json_type expected, std::string_view what) {
  what_ = what;
  if (!start_document(ws, in_.body, doc, error_)) return false;
  od::json_type root;
  if (!walker.root_type(root)) return failed();
  if (root != expected) {
    std::string problem("expected a JSON ");
    problem.append(type_name(expected)).append(", got ").append(type_name(root));
    return refuse(problem);
  }
  const auto e = expected == od::json_type::object ? doc.get_object().get(object) : doc.get_array().get(array);
  if (e) {
    walker.fail(e);
    return failed();
  }
  return true;
}

bool provider_document::refuse(std::string_view problem, std::string_view detail) {
  rollback();
  error_.assign("not ").append(what_).append(": ").append(problem);
  if (!detail.empty()) error_.append(" (").append(detail).append(")");
  return false;
}

bool provider_document::open_object(std::string_view what) { return open(od::json_type::object, what); }
bool provider_document::open_array(std::string_view what) { return open(od::json_type::array, what); }

}  // namespace crm::transform::providers::detail
