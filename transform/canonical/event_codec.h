// The record codec of the canonical records: encodes one event_batch (communications, touchpoints,
// rejections, every field) as one compact binary record, and decodes it back into an event_batch whose
// strings live in its own text_arena. It is the format of the local log's records (sinks/spool) and of
// the collectors' Kafka messages (sinks/kafka, read back by `crm-ingest write`). The format is versioned; the decoder treats its input as untrusted: anything
// malformed is an error code, never a crash, an over-read or an unbounded allocation.
//
// Pure functions, no shared state: call them from any thread on batches that thread owns.
//
// Format, version 4 (integers are LEB128 varints, signed ones zigzag-encoded):
//   "EB" version(1 byte) flags(1 byte, 0)  count_communications count_touchpoints count_rejections
//   communication: id(16 bytes) occurred_at(delta from the previous communication's) received_at(delta
//                  from its occurred_at) lead_id campaign_id channel direction(bit 7: occurred_at is the
//                  receipt time) status(1 byte each) then
//                  14 strings (length + bytes) in the order of communication_texts (canonical_event.h)
//   touchpoint:    id(16) times(as above) lead_id campaign_id type group(1 byte each) flags(1 byte:
//                  1 is_conversion, 2 has_conversion_value, 4 conversion_value follows) [value: 8 bytes
//                  IEEE-754 little-endian] then 20 strings (touchpoint_texts)
//   rejection:     received_at(delta from the previous rejection's) source reason raw tenant_id idempotency_key
// Versions 1 to 3 (still decoded, for logs and topics written before): without the rejections' idempotency_key;
// versions 1 and 2 also without the last two strings of communications and touchpoints (lead_ref, campaign_ref);
// version 1 also without the rejections' tenant_id. A batch is written in the oldest version that holds it: with
// no dead letter's key as version 3, with no reference either as version 2, which earlier releases read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "transform/canonical/canonical_event.h"

namespace crm::transform {

// Outcomes of decoding untrusted bytes, with their own std::error_category.
enum class codec_errc : int {
  truncated = 1,        // the input ends inside a field
  bad_magic,            // not an encoded event batch
  unsupported_version,  // written by a newer (or unknown) codec version
  bad_varint,           // a variable-length integer is longer than 64 bits
  value_out_of_range,   // an enum or flag byte holds a value the format does not define
  too_many_records,     // the record counts cannot fit in the remaining bytes
  trailing_bytes,       // bytes left over after the last record
};
const std::error_category& codec_category() noexcept;
inline std::error_code make_error_code(codec_errc e) noexcept { return {static_cast<int>(e), codec_category()}; }

inline constexpr std::uint8_t event_codec_version = 4;

// Replaces the content of `out` with the encoding of `batch` (its capacity is reused).
void encode_event_batch(const event_batch& batch, std::string& out);

// Replaces the content of `out` (its vectors and arena are cleared and reused) with the decoded batch.
// On error `out` is left empty and the error says what was wrong (codec_errc).
[[nodiscard]] std::error_code decode_event_batch(std::string_view bytes, event_batch& out);

// Appends the decoded records to `out` (their text into its arena): what a reader that gathers many
// records into one batch uses, without an intermediate batch and copy. On error `out` holds what it held
// before (its arena may have grown) and the error says what was wrong.
[[nodiscard]] std::error_code append_decoded_event_batch(std::string_view bytes, event_batch& out);

}  // namespace crm::transform

template <>
struct std::is_error_code_enum<crm::transform::codec_errc> : std::true_type {};
