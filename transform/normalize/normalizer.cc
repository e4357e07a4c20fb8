// The normalizer: reads canonical JSON (canonical_reader) or takes a provider's field set, and sends both
// through the one validator (record_appender); a broken rule becomes a rejection of the raw text.
#include <charconv>
#include <chrono>
#include <cstring>

#include "transform/normalize/canonical_reader.h"
#include "transform/normalize/normalize.h"
#include "transform/normalize/record_appender.h"

namespace crm::transform {
namespace {

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
  explicit impl(const normalize_options& options) : options(options), reader(options), appender(options) {}

  // Appends the record `f` describes, or the rejection of `raw` with the first broken rule.
  template <typename Fields>
  normalize_outcome append(const Fields& f, normalize_outcome kind, std::string_view raw, source_ref source,
                           timestamp_us received_at, event_batch& out, std::string_view idempotency_key) {
    reason.clear();
    if (appender.append(f, received_at, out, reason)) return kind;
    reject(raw, source, received_at, reason, out, options.max_record_bytes, idempotency_key);
    return normalize_outcome::rejected;
  }

  void reject(std::string_view raw, source_ref source, timestamp_us received_at, std::string_view reason_text,
              event_batch& out, std::size_t max_raw_bytes, std::string_view idempotency_key = {}) {
    rejection r;
    r.received_at = received_at;
    r.source = render_source(source, out.text);
    r.reason = out.text.copy(reason_text);
    r.raw = out.text.copy(raw.substr(0, max_raw_bytes));
    r.idempotency_key = out.text.copy(idempotency_key);
    out.rejections.push_back(r);
  }

  const normalize_options& options;
  detail::canonical_reader reader;
  detail::record_appender appender;
  communication_fields communication;
  touchpoint_fields touchpoint;
  std::string reason;
};

normalizer::normalizer(normalize_options options)
    : options_(std::move(options)), impl_(std::make_unique<impl>(options_)) {}

normalizer::~normalizer() = default;

normalize_outcome normalizer::normalize(std::string_view text, source_ref source, timestamp_us received_at,
                                        event_batch& out, std::string_view fallback_key) {
  impl& m = *impl_;
  m.reason.clear();
  switch (m.reader.read(text, m.communication, m.touchpoint, m.reason)) {
    case normalize_outcome::communication:
      if (!fallback_key.empty() && m.communication.event_id.empty() && m.communication.provider_event_id.empty()) {
        m.communication.provider_event_id = fallback_key;
      }
      return m.append(m.communication, normalize_outcome::communication, text, source, received_at, out,
                      fallback_key);
    case normalize_outcome::touchpoint:
      if (!fallback_key.empty() && m.touchpoint.touchpoint_id.empty() && m.touchpoint.message_id.empty()) {
        m.touchpoint.message_id = fallback_key;
      }
      return m.append(m.touchpoint, normalize_outcome::touchpoint, text, source, received_at, out, fallback_key);
    case normalize_outcome::rejected: break;
  }
  m.reject(text, source, received_at, m.reason, out, options_.max_record_bytes, fallback_key);
  return normalize_outcome::rejected;
}

void normalizer::reject(std::string_view raw, source_ref source, timestamp_us received_at, std::string_view reason,
                        event_batch& out, std::string_view idempotency_key) {
  impl_->reject(raw, source, received_at, reason, out, options_.max_record_bytes, idempotency_key);
}

void normalizer::reject_whole(std::string_view raw, source_ref source, timestamp_us received_at,
                              std::string_view reason, event_batch& out) {
  impl_->reject(raw, source, received_at, reason, out, raw.size());
}

normalize_outcome normalizer::append(const communication_fields& fields, std::string_view raw, source_ref source,
                                     timestamp_us received_at, event_batch& out, std::string_view idempotency_key) {
  return impl_->append(fields, normalize_outcome::communication, raw, source, received_at, out, idempotency_key);
}

normalize_outcome normalizer::append(const touchpoint_fields& fields, std::string_view raw, source_ref source,
                                     timestamp_us received_at, event_batch& out, std::string_view idempotency_key) {
  return impl_->append(fields, normalize_outcome::touchpoint, raw, source, received_at, out, idempotency_key);
}

bool is_canonical_field(std::string_view name) noexcept {
  return detail::canonical_fields::find_field(name) != detail::canonical_field::none;
}

timestamp_us now_us() noexcept {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace crm::transform
