// The one validator: every rule of the canonical format applied to a field set (record_fields.h), whoever
// read it, and the record appended to a batch. Internal to transform/ (used by normalizer).
// Thread ownership: one per normalizer (it reuses a SHA-1 context, a phone cache and scratch text).
#pragma once

#include <string>
#include <string_view>

#include "transform/canonical/canonical_event.h"
#include "transform/normalize/contact.h"
#include "transform/normalize/normalize.h"
#include "transform/normalize/record_fields.h"
#include "transform/normalize/uuid_v5.h"

namespace crm::transform::detail {

class record_appender {
 public:
  explicit record_appender(const normalize_options& options);

  // Checks `f` against every rule (transform/normalize/README.md, "Normalization rules"), then appends the
  // record to `out` with its derived fields (e-mail, E.164 phone, UTM tags and click ids, channel group,
  // currency, event_id / touchpoint_id). False when a rule is broken: `reason` then holds the first one
  // ("field: rule"), and nothing but arena bytes was added to `out`. `reason` must be empty on entry.
  [[nodiscard]] bool append(const communication_fields& f, timestamp_us received_at, event_batch& out,
                            std::string& reason);
  [[nodiscard]] bool append(const touchpoint_fields& f, timestamp_us received_at, event_batch& out,
                            std::string& reason);

 private:
  bool check_occurred_range(timestamp_us received_at, timestamp_us occurred, std::string& reason) const;
  bool normalize_contacts(const communication_fields& f, text_arena& arena, communication& c, std::string& reason);
  void derive_event_id(communication& c);
  void derive_touchpoint_id(touchpoint& t);

  const normalize_options& options_;
  uuid_v5_generator uuids_;
  phone_normalizer phones_;
  std::string id_name_;  // UUIDv5 name
  std::string decoded_;  // percent-decoding scratch
};

}  // namespace crm::transform::detail
