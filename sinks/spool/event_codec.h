// Encodes one transform::event_batch (communications, touchpoints, rejections, every field) as one
// compact binary record for the spool, and decodes it back into an event_batch whose strings live in
// its own text_arena. The format is versioned; the decoder treats its input as untrusted: anything
// malformed is an error code, never a crash, an over-read or an unbounded allocation.
//
// Pure functions, no shared state: call them from any thread on batches that thread owns.
//
// Format, version 2 (integers are LEB128 varints, signed ones zigzag-encoded):
//   "EB" version(1 byte) flags(1 byte, 0)  count_communications count_touchpoints count_rejections
//   communication: id(16 bytes) occurred_at(delta from the previous communication's) received_at(delta
//                  from its occurred_at) lead_id campaign_id channel direction(bit 7: occurred_at is the
//                  receipt time) status(1 byte each) then
//                  12 strings (length + bytes) in the order of communication_texts in event_codec.cc
//   touchpoint:    id(16) times(as above) lead_id campaign_id type group(1 byte each) flags(1 byte:
//                  1 is_conversion, 2 has_conversion_value, 4 conversion_value follows) [value: 8 bytes
//                  IEEE-754 little-endian] then 18 strings
//   rejection:     received_at(delta from the previous rejection's) source reason raw tenant_id
// Version 1 (still decoded, for logs written before): rejections without tenant_id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "sinks/spool/spool_error.h"
#include "transform/canonical_event.h"

namespace crm::sinks::spool {

inline constexpr std::uint8_t event_codec_version = 2;

// Replaces the content of `out` with the encoding of `batch` (its capacity is reused).
void encode_event_batch(const transform::event_batch& batch, std::string& out);

// Replaces the content of `out` (its vectors and arena are cleared and reused) with the decoded batch.
// On error `out` is left empty and the error says what was wrong (codec_errc).
[[nodiscard]] std::error_code decode_event_batch(std::string_view bytes, transform::event_batch& out);

}  // namespace crm::sinks::spool
