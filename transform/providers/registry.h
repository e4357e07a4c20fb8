// The provider registry: every provider webhook format this pipeline reads, listed once. Whatever is
// keyed by provider — the HTTP routes /v1/webhooks/<name>, the [webhooks.<name>] settings, the signature
// schemes (ingest/webhooks), the Kafka topic formats, dead-letter replay, the fuzzers — iterates this table
// or looks a name up in it, so that a provider is added in one place.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "transform/providers/providers.h"

namespace crm::transform::providers {

// How a provider posts its events.
enum class body_format : std::uint8_t {
  json_object,  // one JSON object per request (one event, or a document holding several)
  json_array,   // a JSON array of events; a dead letter holds one element
  form,         // application/x-www-form-urlencoded, one event per request
};

struct provider {
  std::string_view name;  // lower case: the route, the settings section and the Kafka format say it so
  provider_fn normalize;
  body_format body;

  // What a body without a Content-Type is taken to be (Kafka messages without the header).
  constexpr std::string_view default_content_type() const noexcept {
    return body == body_format::form ? "application/x-www-form-urlencoded" : "application/json";
  }
};

inline constexpr std::array<provider, 8> registry = {{
    {"sendgrid", normalize_sendgrid, body_format::json_array},
    {"twilio", normalize_twilio, body_format::form},
    {"whatsapp", normalize_whatsapp, body_format::json_object},
    {"mailgun", normalize_mailgun, body_format::json_object},
    {"postmark", normalize_postmark, body_format::json_object},
    {"resend", normalize_resend, body_format::json_object},
    {"segment", normalize_segment, body_format::json_object},
    {"standard", normalize_standard, body_format::json_object},  // the canonical format: an object or an array
}};

// The registry entry named `name`, or nullptr.
constexpr const provider* find_provider(std::string_view name) noexcept {
  for (const provider& p : registry) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// Index of `name` in the registry, or registry.size().
constexpr std::size_t provider_index(std::string_view name) noexcept {
  for (std::size_t i = 0; i < registry.size(); ++i) {
    if (registry[i].name == name) return i;
  }
  return registry.size();
}

}  // namespace crm::transform::providers
