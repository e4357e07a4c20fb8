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

std::string_view to_string(channel v) noexcept {
  switch (v) {
    case channel::email: return "email";
    case channel::sms: return "sms";
    case channel::whatsapp: return "whatsapp";
    case channel::voice: return "voice";
    case channel::chat: return "chat";
    case channel::push: return "push";
  }
  return "?";
}

std::string_view to_string(direction v) noexcept {
  switch (v) {
    case direction::outbound: return "outbound";
    case direction::inbound: return "inbound";
  }
  return "?";
}

std::string_view to_string(comm_status v) noexcept {
  switch (v) {
    case comm_status::queued: return "queued";
    case comm_status::sent: return "sent";
    case comm_status::delivered: return "delivered";
    case comm_status::opened: return "opened";
    case comm_status::clicked: return "clicked";
    case comm_status::bounced: return "bounced";
    case comm_status::failed: return "failed";
    case comm_status::replied: return "replied";
    case comm_status::unsubscribed: return "unsubscribed";
    case comm_status::resubscribed: return "resubscribed";
    case comm_status::spam: return "spam";
  }
  return "?";
}

std::string_view to_string(touch_type v) noexcept {
  switch (v) {
    case touch_type::page_view: return "page_view";
    case touch_type::ad_click: return "ad_click";
    case touch_type::email_click: return "email_click";
    case touch_type::form_submit: return "form_submit";
    case touch_type::call: return "call";
    case touch_type::chat: return "chat";
    case touch_type::conversion: return "conversion";
    case touch_type::experiment_exposure: return "experiment_exposure";
    case touch_type::other: return "other";
  }
  return "?";
}

std::string_view to_string(channel_group v) noexcept {
  switch (v) {
    case channel_group::paid_search: return "Paid Search";
    case channel_group::organic_search: return "Organic Search";
    case channel_group::paid_social: return "Paid Social";
    case channel_group::organic_social: return "Organic Social";
    case channel_group::email: return "Email";
    case channel_group::referral: return "Referral";
    case channel_group::direct: return "Direct";
    case channel_group::display: return "Display";
    case channel_group::affiliates: return "Affiliates";
    case channel_group::sms: return "SMS";
    case channel_group::other: return "Other";
  }
  return "?";
}

void event_batch::append_copy(const event_batch& from) {
  for (communication c : from.communications) {
    for (auto field : communication_texts) c.*field = text.copy(c.*field);
    communications.push_back(c);
  }
  for (touchpoint t : from.touchpoints) {
    for (auto field : touchpoint_texts) t.*field = text.copy(t.*field);
    touchpoints.push_back(t);
  }
  for (rejection r : from.rejections) {
    for (auto field : rejection_texts) r.*field = text.copy(r.*field);
    rejections.push_back(r);
  }
}

}  // namespace crm::transform
