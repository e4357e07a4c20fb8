#include "transform/canonical/canonical_event.h"

#include "transform/text/ascii.h"

namespace crm::transform {
namespace {

constexpr char hex_digits[] = "0123456789abcdef";

constexpr bool is_dash_position(std::size_t i) noexcept { return i == 8 || i == 13 || i == 18 || i == 23; }

}  // namespace

void format_uuid(const uuid& id, char* out) noexcept {
  std::size_t pos = 0;
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (is_dash_position(pos)) out[pos++] = '-';
    out[pos++] = hex_digits[id[i] >> 4];
    out[pos++] = hex_digits[id[i] & 0x0f];
  }
}

std::string to_string(const uuid& id) {
  std::string s(36, '\0');
  format_uuid(id, s.data());
  return s;
}

bool parse_uuid(std::string_view text, uuid& out) noexcept {
  if (text.size() != 36) return false;
  uuid parsed{};
  std::size_t byte = 0;
  for (std::size_t i = 0; i < 36;) {
    if (is_dash_position(i)) {
      if (text[i] != '-') return false;
      ++i;
      continue;
    }
    const int hi = detail::hex_value(text[i]);
    const int lo = detail::hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    parsed[byte++] = static_cast<std::uint8_t>(hi << 4 | lo);
    i += 2;
  }
  out = parsed;
  return true;
}

void event_batch::append_copy(const event_batch& from) {
  for (communication c : from.communications) {
    for (const auto& field : communication_texts) c.*field.member = text.copy(c.*field.member);
    communications.push_back(c);
  }
  for (touchpoint t : from.touchpoints) {
    for (const auto& field : touchpoint_texts) t.*field.member = text.copy(t.*field.member);
    touchpoints.push_back(t);
  }
  for (rejection r : from.rejections) {
    for (const auto& field : rejection_texts) r.*field.member = text.copy(r.*field.member);
    rejections.push_back(r);
  }
}

}  // namespace crm::transform
