// A GoogleTest parameter name from a case's free-text name ("lead_id huge" -> "lead_id_huge").
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace crm::transform::test_support {

inline std::string test_name(std::string_view text) {
  std::string name;
  for (const char c : text) name.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return name;
}

}  // namespace crm::transform::test_support
