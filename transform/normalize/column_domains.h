// What the database's columns accept, checked on a finished record before it joins a batch, so that the
// database never refuses a normalized record (a refused row makes the writer split its batch in halves until
// it finds the row: the last resort, not the way bad input is found). The domains come from
// schemas/0001_events.sql (column types and CHECKs) and schemas/0002_attribution.sql (the keys and indexes
// whose rows PostgreSQL caps at 2704 bytes):
//   - every text: valid UTF-8 without NUL (the database encoding is UTF-8; text refuses \0);
//   - texts that become btree keys: at most the bytes below (anonymous_id, ab_test_id, variant, utm_source,
//     utm_medium, utm_campaign), so that the widest key (campaign_attribution_daily's) stays under 2704 bytes;
//   - currency: char(3);
//   - lead_id, campaign_id: bigint >= 1 (0 is absent, stored as NULL), or <= -1 with lead_ref/campaign_ref
//     (the key of a CRM reference, crm_ref.h; schemas/0006_crm_refs.sql); the references at most 128 bytes;
//   - occurred_at, received_at: inside timestamptz's range (4714-11-24 BC .. 294276 AD);
//   - conversion_value: numeric(20,6) >= 0, after the float8 -> numeric cast the writer's insert makes (15
//     significant digits, then rounded to 6 decimals: it must stay below 10^14); NaN and infinities refused;
//   - a touchpoint has a lead_id or an anonymous_id.
// Pure functions, no state: any thread.
#pragma once

#include <cstddef>
#include <string>

#include "transform/canonical/canonical_event.h"

namespace crm::transform {

inline constexpr std::size_t max_anonymous_id_bytes = 1024;
inline constexpr std::size_t max_ab_test_id_bytes = 512;  // also variant
inline constexpr std::size_t max_utm_key_bytes = 768;     // utm_source, utm_medium, utm_campaign

// timestamptz's range in our microseconds since the Unix epoch: PostgreSQL's MIN_TIMESTAMP (4714-11-24
// 00:00 BC). Its END_TIMESTAMP (294277-01-01) lies beyond what an int64 of Unix microseconds can hold.
inline constexpr timestamp_us min_storable_timestamp = -211813488000000000LL - 946684800000000LL;

// conversion_value as numeric(20,6) stores it: finite, >= 0 and below 10^14 after the float8 -> numeric
// cast (PostgreSQL prints the double with 15 significant digits: 99999999999999.95 becomes 10^14).
[[nodiscard]] bool conversion_value_storable(double value) noexcept;

// True when every value of the record fits its column; else false with `reason` ("field: rule", the value
// quoted) when `reason` is empty on entry.
[[nodiscard]] bool check_columns(const communication& c, std::string& reason);
[[nodiscard]] bool check_columns(const touchpoint& t, std::string& reason);
// A dead letter: its received_at (its texts are stored whatever they hold: sinks/postgres/copy_encoder.h).
[[nodiscard]] bool check_columns(const rejection& r, std::string& reason);

// The records of `batch` from index `communications_from` / `touchpoints_from` / `rejections_from` on (what one
// input added, e.g. a decoded Kafka message): the first that does not fit its columns, as above, its metadata
// included (one JSON object that jsonb accepts: the appender's records hold the copier's output already).
[[nodiscard]] bool check_columns(const event_batch& batch, std::size_t communications_from,
                                 std::size_t touchpoints_from, std::size_t rejections_from, std::string& reason);

}  // namespace crm::transform
