// Wires the provider webhook endpoints: each provider's signature verifier (built from its
// [webhooks.<provider>] secrets; a configured secret makes verification mandatory) and its normalizer.
#pragma once

#include "ingest/collector.h"
#include "ingest/config/settings.h"

namespace crm::ingest {

// Registers /v1/webhooks/{sendgrid,twilio,whatsapp,mailgun,postmark,resend,segment}. Throws
// std::invalid_argument with advice when a configured secret is unusable (e.g. not a P-256 key).
void register_providers(collector& c, const config::settings& cfg);

}  // namespace crm::ingest
