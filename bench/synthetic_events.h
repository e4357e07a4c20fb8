// The vocabulary of the synthetic CRM events that gen_events (NDJSON files) and http_load (request bodies)
// write: statuses with the weights of a campaign send, channels, touchpoint types, UTM sources and mediums,
// and occurred_at as RFC 3339 seconds. One copy so that a file import and an HTTP load see the same mix (the
// attribution test's generated events take their times from it too).
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace synthetic_events {

inline constexpr std::string_view statuses[] = {"queued", "sent", "delivered", "opened", "clicked", "bounced",
                                                "failed", "replied", "unsubscribed"};
// A campaign send: mostly sent/delivered, fewer opens, fewer clicks, a few failures.
inline constexpr unsigned status_weights[] = {2, 30, 28, 20, 8, 4, 3, 3, 2};
inline constexpr std::string_view channels[] = {"email", "sms", "whatsapp", "voice", "chat", "push"};
// The channels a phone number is the contact of: channels[1..3].
inline constexpr std::string_view phone_channels[] = {"sms", "whatsapp", "voice"};
inline constexpr std::string_view touch_types[] = {"page_view", "ad_click", "email_click", "form_submit",
                                                   "conversion", "experiment_exposure"};
inline constexpr std::string_view sources[] = {"google", "facebook", "newsletter", "bing", "linkedin",
                                               "partner-blog"};
inline constexpr std::string_view mediums[] = {"cpc", "paid_social", "email", "organic", "social", "referral"};

// Seconds since the epoch as YYYY-MM-DDTHH:MM:SSZ.
inline std::string iso8601(std::int64_t secs) {
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace synthetic_events
