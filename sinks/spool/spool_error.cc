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

class codec_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spool.codec"; }
  std::string message(int value) const override {
    switch (static_cast<codec_errc>(value)) {
      case codec_errc::truncated: return "the encoded event batch is truncated";
      case codec_errc::bad_magic: return "the bytes are not an encoded event batch";
      case codec_errc::unsupported_version: return "the encoded event batch has an unsupported version";
      case codec_errc::bad_varint: return "the encoded event batch holds an overlong integer";
      case codec_errc::value_out_of_range: return "the encoded event batch holds an undefined enum or flag value";
      case codec_errc::too_many_records: return "the encoded event batch claims more records than its bytes can hold";
      case codec_errc::trailing_bytes: return "the encoded event batch has trailing bytes";
    }
    return "unknown spool codec error " + std::to_string(value);
  }
};

}  // namespace

const std::error_category& log_category() noexcept {
  static const log_category_impl instance;
  return instance;
}

const std::error_category& codec_category() noexcept {
  static const codec_category_impl instance;
  return instance;
}

}  // namespace crm::sinks::spool
