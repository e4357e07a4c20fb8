#include "sinks/spool/spool_error.h"

#include "transform/text/error_category.h"

namespace crm::sinks::spool {
namespace {

const char* describe(log_errc e) noexcept {
  switch (e) {
    case log_errc::log_full: return "the spool is full (max_bytes reached)";
    case log_errc::record_too_large: return "a record is larger than a spool segment can hold";
    case log_errc::io_error: return "a spool write or fsync failed; the spool stopped accepting records";
    case log_errc::closed: return "the spool is closed";
    case log_errc::corrupt_record: return "a spool record failed its CRC check";
    case log_errc::invalid_position: return "the spool position is outside the readable range";
  }
  return nullptr;
}

}  // namespace

const std::error_category& log_category() noexcept {
  static const transform::enum_error_category<log_errc> instance("spool.log", describe);
  return instance;
}

}  // namespace crm::sinks::spool
