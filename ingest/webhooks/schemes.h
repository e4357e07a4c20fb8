// The signature scheme of every provider of the registry (transform/providers/registry.h), keyed by the
// registry's name and listed in its order: the [webhooks.<provider>] settings it reads, and how it turns
// their values into the check of one request. ingest/providers.cc builds the checks from the settings
// (and rebuilds them on SIGHUP); ingest/config/settings.cc declares the settings from this table.
// Pure: no sockets, no configuration reading.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ingest/webhooks/signatures.h"

namespace crm::ingest::webhooks {

// What a check needs of one request.
struct signed_request {
  std::string_view body;
  const header_map& headers;
  std::string_view target;  // path and query as received: Twilio signs the public URL
};

using request_check = std::function<verify_result(const signed_request&)>;

// A check that remembers what it accepted (Mailgun's replay cache) leaves, on the calling thread, how to forget
// it: the caller takes it right after a check that passed (empty for the other schemes) and calls it when it
// answers 5xx, so that the provider's retry with the same signature is not refused as a replay.
std::function<void()> take_forget_accepted() noexcept;

struct scheme_setting {
  std::string_view key;  // empty: no setting
  std::string_view description;
  bool signing = true;  // a secret the check is built from (else a setting of the provider used elsewhere)
};

// What a webhook source ([[sources]]) builds its check from.
struct source_keys {
  std::span<const std::string> secrets;  // 1..4, each valid at once (rotation); Postmark: "user:password"
  std::string_view public_base_url;      // without a trailing '/'
  std::optional<std::chrono::seconds> tolerance;  // schemes with a signed timestamp; empty = the scheme's default
};

struct scheme {
  std::string_view provider;
  std::array<scheme_setting, 2> settings;
  bool signs_public_url = false;  // the check depends on http.public_base_url too
  // The check from the values of the signing settings (in order, at least one set) and the public base URL
  // (without a trailing '/'). Throws std::invalid_argument with advice when a value is unusable.
  request_check (*build)(std::span<const std::string> values, std::string_view public_base_url);
  // The check of a webhook source: a request passes when any of its secrets passes. Throws
  // std::invalid_argument with advice when a secret is unusable.
  request_check (*build_source)(const source_keys& keys);
  bool has_timestamp = false;  // the scheme signs a timestamp: a source may set its tolerance
};

inline constexpr std::size_t scheme_count = 8;

// One per provider of the registry, in its order (checked at compile time).
const std::array<scheme, scheme_count>& schemes();

}  // namespace crm::ingest::webhooks
