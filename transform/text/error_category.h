// One std::error_category per error enum from a function that describes each value: the category
// boilerplate once, for every enum whose codes travel as std::error_code (the log, the codec, the verifiers).
#pragma once

#include <string>
#include <system_error>

namespace crm::transform {

// `describe` returns the message of a value, or nullptr for a value the enum does not define.
template <class Enum>
class enum_error_category final : public std::error_category {
 public:
  using describe_fn = const char* (*)(Enum) noexcept;

  constexpr enum_error_category(const char* name, describe_fn describe) noexcept : name_(name), describe_(describe) {}

  const char* name() const noexcept override { return name_; }
  std::string message(int value) const override {
    if (const char* m = describe_(static_cast<Enum>(value))) return m;
    return "unknown " + std::string(name_) + " error " + std::to_string(value);
  }

 private:
  const char* name_;
  describe_fn describe_;
};

}  // namespace crm::transform
