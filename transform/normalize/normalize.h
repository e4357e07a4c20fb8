// Normalizer: one canonical JSON object -> a communication, a touchpoint or a rejection appended to an
// event_batch; and the same for the field set a provider adapter has read (record_fields.h). Both go
// through one validator (record_appender.h): the same rules, bounds and derived ids. Untrusted input never
// throws. Thread ownership: one normalizer per thread (it reuses one simdjson parser and its buffers).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "transform/canonical/canonical_event.h"
#include "transform/normalize/record_fields.h"

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

class normalizer {
 public:
  explicit normalizer(normalize_options options = {});
  ~normalizer();
  normalizer(const normalizer&) = delete;
  normalizer& operator=(const normalizer&) = delete;

  // `text` is one JSON object (no padding needed: it is copied into a padded buffer).
  // Appends exactly one record to `out` and says which. `fallback_key`, when not empty, is the idempotency key
  // of a record that carries no id of its own (neither event_id nor provider_event_id; for a touchpoint neither
  // touchpoint_id nor message_id): it becomes its provider_event_id (message_id), from which its id is derived
  // (a webhook's delivery id, so that a redelivery stores nothing twice). A rejection keeps it
  // (rejection::idempotency_key), so that `rejected replay` derives the same id.
  normalize_outcome normalize(std::string_view text, source_ref source, timestamp_us received_at,
                              event_batch& out, std::string_view fallback_key = {});

  // Records a rejection found before parsing (e.g. by the record splitter). Its raw text is kept up to
  // max_record_bytes (a record's text cannot be longer unless it was refused for that).
  // `idempotency_key`: the key the record's event would have had (rejection::idempotency_key).
  void reject(std::string_view raw, source_ref source, timestamp_us received_at, std::string_view reason,
              event_batch& out, std::string_view idempotency_key = {});
  // The same for a whole input that is not one record (a webhook body, a Kafka message): kept whole, however long
  // (its transport bounds it: http.body_limit_bytes, the broker's message size), so that a replay has all of it.
  void reject_whole(std::string_view raw, source_ref source, timestamp_us received_at, std::string_view reason,
                    event_batch& out);

  // Provider adapters: appends exactly one record built from fields already read from a provider's
  // payload, through the same validator as normalize() (e-mail/phone normalization, occurred_at bounds,
  // UTM and click ids from landing_url, channel group, currency, event_id/touchpoint_id). A broken rule
  // appends a rejection of `raw` (the provider's event as received) instead, which keeps `idempotency_key`
  // (the source's declared key the fields carry, if any: rejection::idempotency_key).
  normalize_outcome append(const communication_fields& fields, std::string_view raw, source_ref source,
                           timestamp_us received_at, event_batch& out, std::string_view idempotency_key = {});
  normalize_outcome append(const touchpoint_fields& fields, std::string_view raw, source_ref source,
                           timestamp_us received_at, event_batch& out, std::string_view idempotency_key = {});

  const normalize_options& options() const noexcept { return options_; }

 private:
  struct impl;
  normalize_options options_;
  std::unique_ptr<impl> impl_;
};

// Whether `name` is a field of the canonical format ("status", "utm_source", ...): a bounded set, e.g. for
// metric labels that name the field a rejection broke.
bool is_canonical_field(std::string_view name) noexcept;

// Whether libphonenumber knows `region` as a region to read national numbers in: an ISO 3166 alpha-2 code in
// upper case ("GB"; not "gb", "ZZ" or "XX") — what normalize_options::default_region must be.
bool is_phone_region(std::string_view region);

// Current wall-clock time in microseconds since the epoch.
timestamp_us now_us() noexcept;

}  // namespace crm::transform
