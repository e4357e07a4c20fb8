// Reads one object of the canonical JSON format (../README.md, "Normalization rules") into the field set
// (record_fields.h): the field table, each field's JSON type rule, enum spellings, occurred_at's syntax, and
// the metadata object assembled from `metadata` and the unknown fields. The rules on values are the
// record_appender's, shared with every provider. Internal to transform/ (used by normalizer).
//
// A record is parsed with simdjson On-Demand in two passes over the same document: a pre-scan that stops at
// "kind" (usually the first field), then the main pass that reads every known field of that kind with its
// type check and re-emits every other field into the metadata text through the validating json_copier.
// Malformed JSON wins over a broken rule; otherwise the first broken rule is reported. Nothing here throws on
// input: simdjson is used through error codes only.
// Thread ownership: one per normalizer (it reuses one simdjson parser and its buffers).
#pragma once

#include <simdjson.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "transform/normalize/canonical_fields.h"
#include "transform/normalize/normalize.h"
#include "transform/normalize/record_fields.h"
#include "transform/text/json_copy.h"
#include "transform/text/json_input.h"

namespace crm::transform::detail {

class canonical_reader {
 public:
  explicit canonical_reader(const normalize_options& options) : options_(options) {}

  // Reads `text` (one JSON object; no padding needed) into `comm` or `touch` and says which; rejected with
  // `reason` set when the record cannot be read. Views stay valid until the next read().
  normalize_outcome read(std::string_view text, communication_fields& comm, touchpoint_fields& touch,
                         std::string& reason);

 private:
  // What the main pass read. Strings are views into the parser's string buffer or the padded input buffer.
  struct record_values {
    std::array<std::string_view, canonical_field_count> text{};  // decoded strings; raw tokens of numbers
    std::uint64_t seen = 0;                                       // fields met, for the duplicate rule
    std::int64_t lead_id = 0;
    std::int64_t campaign_id = 0;
    double conversion_value = 0;
    bool has_conversion_value = false;
    bool occurred_at_is_number = false;

    std::string_view& operator[](canonical_field f) noexcept { return text[static_cast<std::size_t>(f)]; }
    bool has(canonical_field f) const noexcept { return !text[static_cast<std::size_t>(f)].empty(); }
  };

  bool parse(std::string_view text, simdjson::ondemand::document& doc);
  bool open_root(simdjson::ondemand::document& doc, simdjson::ondemand::object& object);
  record_kind prescan_kind(simdjson::ondemand::document& doc);
  void main_pass(simdjson::ondemand::document& doc, simdjson::ondemand::object& object, record_kind kind);
  bool read_known(canonical_field f, simdjson::ondemand::value v, simdjson::ondemand::document& doc);
  bool read_positive_id(canonical_field f, simdjson::ondemand::value v, std::int64_t& out,
                        simdjson::ondemand::document& doc);
  bool read_conversion_value(simdjson::ondemand::value v, simdjson::ondemand::document& doc);
  void copy_failed(copy_error e, std::string_view field_name, simdjson::ondemand::document& doc);

  bool read_occurred_at(timestamp_us& occurred);
  bool to_fields(communication_fields& f);
  bool to_fields(touchpoint_fields& f);
  // The fields both record kinds have: CRM ids, A/B test and variant, metadata.
  template <typename Fields>
  void common_fields(Fields& f);
  std::string_view assemble_metadata();

  void set_malformed(std::size_t offset, std::string_view detail);
  void set_malformed(simdjson::ondemand::document& doc, simdjson::error_code e);
  void set_malformed(simdjson::ondemand::document& doc, std::string_view detail);

  const normalize_options& options_;
  simdjson::ondemand::parser parser_;
  padded_buffer buffer_;          // the record, copied and padded for simdjson
  std::string_view input_;        // the record inside buffer_
  json_copier copier_;
  record_values values_;
  std::string metadata_members_;  // ,"k":v of the metadata object
  std::string unknown_members_;   // ,"k":v of the unknown fields
  std::string metadata_;          // the assembled object
  std::string reason_;            // first broken rule
  std::string malformed_;         // JSON syntax error: wins over reason_
  bool stopped_early_ = false;    // the main pass did not reach the end of the object
};

}  // namespace crm::transform::detail
