#include "transform/text/url_params.h"

#include <simdjson.h>

#include <cstring>

#include "transform/text/ascii.h"

namespace crm::transform::detail {

void percent_decode(std::string_view in, std::string& out) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(in[i + 1]) << 4 | hex_value(in[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
}

std::string_view url_host(std::string_view url) noexcept {
  std::string_view rest = url;
  const std::size_t colon = url.find(':');
  if (colon != std::string_view::npos && colon > 0 && url.substr(colon + 1, 2) == "//") {
    bool scheme = true;
    for (const char c : url.substr(0, colon)) {  // the scheme's characters (RFC 3986)
      scheme = scheme && (is_ascii_alnum(c) || c == '+' || c == '-' || c == '.');
    }
    if (scheme) rest = url.substr(colon + 3);
  } else if (url.substr(0, 2) == "//") {
    rest = url.substr(2);
  }
  const std::size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  const std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority = authority.substr(at + 1);
  if (!authority.empty() && authority.front() == '[') {  // IPv6 literal
    const std::size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  return authority.substr(0, authority.find(':'));
}

void fill_query_params(std::string_view url, std::span<const std::string_view> names,
                       std::span<std::string_view* const> slots, std::string& scratch, text_arena& arena) {
  bool wanted = false;
  for (const std::string_view* slot : slots) wanted = wanted || slot->empty();
  if (!wanted || url.empty()) return;
  for_each_query_param(url, [&](std::string_view key, std::string_view value) {
    for (std::size_t i = 0; i < names.size() && i < slots.size(); ++i) {
      if (!slots[i]->empty() || !ascii_iequals(key, names[i])) continue;
      scratch.clear();
      percent_decode(value, scratch);
      const bool usable = std::memchr(scratch.data(), 0, scratch.size()) == nullptr &&
                          simdjson::validate_utf8(scratch.data(), scratch.size());
      *slots[i] = arena.copy(usable ? std::string_view(scratch) : value);
      return;
    }
  });
}

}  // namespace crm::transform::detail
