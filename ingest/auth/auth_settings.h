// [auth] and [rate_limit] of the configuration -> the authenticator's options (reads the key files).
#pragma once

#include <memory>

#include "ingest/auth/credentials.h"
#include "ingest/config/settings.h"

namespace crm::ingest::auth {

// Throws config_error naming the setting when a key file is unreadable or not a key.
options options_from_settings(const config::settings& cfg);

// Both limiters of [rate_limit]; null when the rate is 0 (unlimited).
std::shared_ptr<rate_limiter> address_limiter(const config::settings& cfg);
std::shared_ptr<rate_limiter> credential_limiter(const config::settings& cfg);

}  // namespace crm::ingest::auth
