// Deterministic record ids and times for the write-path tests.
#pragma once

#include <cstdint>

#include "transform/canonical/canonical_event.h"

namespace crm_test {

inline constexpr crm::transform::timestamp_us nov_2026 = 1793491200LL * 1000000;  // 2026-11-01T00:00:00Z
inline constexpr crm::transform::timestamp_us day_us = 86400LL * 1000000;

// A version-4-shaped uuid holding `n` in its last bytes.
inline crm::transform::uuid id_of(std::uint64_t n) {
  crm::transform::uuid u{};
  for (int i = 0; i < 8; ++i) u[15 - i] = static_cast<std::uint8_t>(n >> (8 * i));
  u[6] = 0x40;
  u[8] = 0x80;
  return u;
}

// An anonymous page view (visitor "anon", direct), touchpoint id 1,000,000 + `n`, received when it occurred.
inline crm::transform::touchpoint page_view(std::uint64_t n, crm::transform::timestamp_us at) {
  crm::transform::touchpoint t;
  t.touchpoint_id = id_of(1'000'000 + n);
  t.occurred_at = at;
  t.received_at = at;
  t.anonymous_id = "anon";
  t.type = crm::transform::touch_type::page_view;
  t.group = crm::transform::channel_group::direct;
  return t;
}

}  // namespace crm_test
