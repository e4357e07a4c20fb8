// Normalizer: one canonical JSON object (docs/canonical-events.md) -> a communication, a
// touchpoint or a rejection appended to an event_batch. Untrusted input never throws.
// Thread ownership: one normalizer per thread (it reuses one simdjson parser and its buffers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "transform/canonical_event.h"

namespace crm::transform {

struct normalize_options {
  std::string default_region = "US";      // libphonenumber region for numbers without a country code
  std::string default_provider = "generic";
  std::string default_currency = "USD";
  // occurred_at outside [min_occurred_at, received_at + max_future] is rejected: it would create
  // partitions for garbage dates.
  timestamp_us min_occurred_at = 946684800LL * 1000000;  // 2000-01-01T00:00:00Z
  timestamp_us max_future = 366LL * 86400 * 1000000;     // one year ahead of received_at
  std::size_t max_record_bytes = 1 << 20;               // a bigger object is rejected
};

// Where a record came from; rendered "name:line" (or just "name" when line == 0) in rejections.
struct source_ref {
  std::string_view name;
  std::uint64_t line = 0;
};

enum class normalize_outcome : std::uint8_t { communication, touchpoint, rejected };

// The canonical fields of a communication that a provider adapter (transform/providers.h) has read from
// a provider's own payload. Views need to live only during the append() call: what is kept is copied
// into the batch. lead_id/campaign_id are already checked (>= 1; 0 = absent).
struct communication_fields {
  timestamp_us occurred_at = 0;
  std::int64_t lead_id = 0;
  std::int64_t campaign_id = 0;
  channel channel_ = channel::email;
  direction direction_ = direction::outbound;
  comm_status status = comm_status::sent;
  std::string_view provider;  // empty = options().default_provider
  std::string_view provider_message_id;
  std::string_view provider_event_id;
  std::string_view email;  // as the provider wrote it: trimmed, lower-cased and checked by append()
  std::string_view phone;  // as the provider wrote it: E.164 through libphonenumber by append()
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

// The canonical fields of a touchpoint read from a provider's payload; same conventions as above.
struct touchpoint_fields {
  timestamp_us occurred_at = 0;
  std::int64_t lead_id = 0;
  std::int64_t campaign_id = 0;
  touch_type type = touch_type::other;
  std::string_view anonymous_id;
  std::string_view message_id;
  // Absent UTM tags and click ids are taken from landing_url's query string, as normalize() does.
  std::string_view utm_source, utm_medium, utm_campaign, utm_term, utm_content;
  std::string_view gclid, fbclid, msclkid;
  std::string_view landing_url, referrer;
  std::string_view conversion_type;
  bool has_conversion_value = false;
  double conversion_value = 0;  // must be >= 0
  std::string_view currency;    // 3 letters; empty = default_currency for conversions
  std::string_view ab_test_id, variant;
  std::string_view metadata;  // a JSON object's text that jsonb accepts (no \u0000), or empty
};

class normalizer {
 public:
  explicit normalizer(normalize_options options = {});
  ~normalizer();
  normalizer(const normalizer&) = delete;
  normalizer& operator=(const normalizer&) = delete;

  // `text` is one JSON object (no padding needed: it is copied into a padded buffer).
  // Appends exactly one record to `out` and says which.
  normalize_outcome normalize(std::string_view text, source_ref source, timestamp_us received_at,
                              event_batch& out);

  // Records a rejection found before parsing (e.g. by the record splitter).
  void reject(std::string_view raw, source_ref source, timestamp_us received_at, std::string_view reason,
              event_batch& out);

  // Provider adapters: appends exactly one record built from fields already read from a provider's
  // payload, with the rules and derived ids of normalize() (e-mail/phone normalization, occurred_at
  // bounds, UTM and click ids from landing_url, channel group, currency, event_id/touchpoint_id). A
  // broken rule appends a rejection of `raw` (the provider's event as received) instead.
  normalize_outcome append(const communication_fields& fields, std::string_view raw, source_ref source,
                           timestamp_us received_at, event_batch& out);
  normalize_outcome append(const touchpoint_fields& fields, std::string_view raw, source_ref source,
                           timestamp_us received_at, event_batch& out);

  const normalize_options& options() const noexcept { return options_; }

 private:
  struct impl;
  normalize_options options_;
  std::unique_ptr<impl> impl_;
};

// Current wall-clock time in microseconds since the epoch.
timestamp_us now_us() noexcept;

}  // namespace crm::transform
