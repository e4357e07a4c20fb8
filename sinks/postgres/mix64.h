// splitmix64's finalizer: its shifts and multiplications carry every input bit to every output bit. Used for the
// ledger ids of a split's halves, the writer an event id belongs to, and the writer's key fingerprints.
#pragma once

#include <cstdint>

namespace crm::sinks::postgres {

constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace crm::sinks::postgres
