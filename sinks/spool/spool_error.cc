#include "sinks/spool/spool_error.h"

#include <string>

namespace crm::sinks::spool {
namespace {

class log_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spool.log"; }
  std::string message(int value) const override {
    switch (static_cast<log_errc>(value)) {
      case log_errc::log_full: return "the spool is full (max_bytes reached)";
      case log_errc::record_too_large: return "a record is larger than a spool segment can hold";
      case log_errc::io_error: return "a spool write or fsync failed; the spool stopped accepting records";
      case log_errc::closed: return "the spool is closed";
      case log_errc::corrupt_record: return "a spool record failed its CRC check";
      case log_errc::invalid_position: return "the spool position is outside the readable range";
    }
    return "unknown spool log error " + std::to_string(value);
  }
};

}  // namespace

const std::error_category& log_category() noexcept {
  static const log_category_impl instance;
  return instance;
}

}  // namespace crm::sinks::spool
