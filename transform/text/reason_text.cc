#include "transform/text/reason_text.h"

#include "transform/text/utf8.h"

namespace crm::transform::detail {

void append_printable(std::string& out, std::string_view value) {
  constexpr char hex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < value.size()) {
    if (i >= max_quoted_bytes) {
      out.append("...");
      return;
    }
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x80) {
      const std::size_t n = utf8_sequence_length(value.substr(i));
      if (n != 0) {
        out.append(value.substr(i, n));
        i += n;
        continue;
      }
    }
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      out.append("\\x");
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0x0f]);
    } else {
      out.push_back(static_cast<char>(c));
    }
    ++i;
  }
}

void append_quoted(std::string& out, std::string_view value) {
  out.push_back('"');
  append_printable(out, value);
  out.push_back('"');
}

}  // namespace crm::transform::detail
