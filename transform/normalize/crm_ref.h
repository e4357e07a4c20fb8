// CRM ids as the CRM writes them. A lead_id or campaign_id is an integer >= 1, or — when the CRM keys its
// leads or campaigns otherwise ("L-1001", "C-42", a UUID) — a reference: kept as written in lead_ref /
// campaign_ref, with lead_id / campaign_id holding a key derived from it, so that everything keyed by those
// bigint columns (attribution paths, A/B units, communication_metrics, the indexes) works unchanged.
//
// The derived key: the first 8 bytes of SHA-256("crm-ingest:<kind>:<ref>") as a big-endian integer, the sign
// bit cleared (0 taken as 1), negated — always <= -1, so it never meets an integer id of the CRM. The SQL
// function crm_ref_key(kind, ref) (schemas/0006_crm_refs.sql) computes the same value, for queries and for
// registering such a campaign in `campaigns`. Two different references of one kind share a key with
// probability about n^2 / 2^64 for n references (1e-7 for a million).
//
// Pure functions: any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "transform/text/text_arena.h"

namespace crm::transform {

inline constexpr std::size_t max_crm_ref_bytes = 128;

// "lead" or "campaign": the kind hashed into the key.
[[nodiscard]] std::int64_t crm_ref_key(std::string_view kind, std::string_view ref) noexcept;

// Resolves an id written as text (`field` is "lead_id" or "campaign_id"): surrounding blanks are trimmed;
// decimal digits are the integer id (1..2^63-1, else refused); any other text of 1..128 bytes without control
// characters is a reference (a UUID written in lower case), `ref` then a copy in `arena` and `id` its key.
// Refused, with `reason` ("lead_id: ..." when empty on entry): empty or blank text, a number that is not an
// integer >= 1 ("0", "-3", "1.5", "1e9"), more than 128 bytes, control characters, invalid UTF-8.
[[nodiscard]] bool resolve_crm_id(std::string_view field, std::string_view text, text_arena& arena, std::int64_t& id,
                                  std::string_view& ref, std::string& reason);

}  // namespace crm::transform
