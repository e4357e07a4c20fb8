// Channel group of a touchpoint, derived from its UTM tags, click ids and referrer following Google
// Analytics 4's default channel group rules, mapped onto our 11 groups.
#pragma once

#include <string_view>

#include "transform/canonical/canonical_event.h"

namespace crm::transform::detail {

struct channel_inputs {
  std::string_view utm_source, utm_medium, utm_campaign;
  std::string_view gclid, fbclid, msclkid;
  std::string_view referrer, landing_url;
};

channel_group derive_channel_group(const channel_inputs& in) noexcept;

// Site classification of a source or host (case-insensitive; "www.google.co.uk" is google).
bool is_search_site(std::string_view source_or_host) noexcept;
bool is_social_site(std::string_view source_or_host) noexcept;

}  // namespace crm::transform::detail
