// Error codes of the durable log, with their own std::error_category
// so callers can log `ec.message()` and switch on the value without exceptions on the data path.
#pragma once

#include <system_error>

namespace crm::sinks::spool {

// Outcomes of durable_log operations. Zero is success (a default std::error_code).
enum class log_errc : int {
  log_full = 1,      // accepting the records would exceed max_bytes: refuse upstream (503 + Retry-After)
  record_too_large,  // a record cannot fit in one segment
  io_error,          // a write or fsync failed: the log stopped accepting until it can write again
  closed,            // the log is shutting down
  corrupt_record,    // a record failed its CRC when read back
  invalid_position,  // before the checkpoint, past the durable end, or not at a record boundary
};

const std::error_category& log_category() noexcept;

inline std::error_code make_error_code(log_errc e) noexcept { return {static_cast<int>(e), log_category()}; }

}  // namespace crm::sinks::spool

template <>
struct std::is_error_code_enum<crm::sinks::spool::log_errc> : std::true_type {};
