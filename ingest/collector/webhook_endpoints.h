// The webhook sources of the collector (POST /v1/webhooks/<source>), built from the configuration:
//   - one built-in source per provider of the registry (transform/providers/registry.h), named after it, from its
//     [webhooks.<provider>] settings: its signature check (its scheme in ingest/webhooks/schemes.h; a configured
//     secret makes verification mandatory, and without one every request is refused unless
//     webhooks.<provider>.allow_unsigned is set), its tenant, WhatsApp's verify_token;
//   - one per [[sources]] table (config::webhook_source_definition): a provider with 1-4 secrets valid at once,
//     a tenant, a tolerance and an idempotency key. A [[sources]] named after a provider replaces its built-in.
//
// The collector holds the set behind an atomic shared_ptr and looks the source of each request up in it; on
// SIGHUP serve builds a complete new set (build_sources) and swaps it in, so routes, secrets and tenants change
// at once and a request keeps the set it started with.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ingest/collector/collector.h"
#include "ingest/config/settings.h"
#include "ingest/webhooks/schemes.h"

namespace crm::ingest {

// Every source of `cfg`. A source whose definition (provider, secrets, tolerance, public URL where the scheme
// signs it, opt-in to unsigned requests) equals its namesake's in `previous` keeps that verifier (and so
// Mailgun's replay cache). Throws std::invalid_argument with advice when a secret is unusable (e.g. not a P-256
// key, or a Twilio token without http.public_base_url).
std::shared_ptr<const webhook_source_set> build_sources(const config::settings& cfg,
                                                        const webhook_source_set* previous = nullptr);

// The names of the sources added, removed or changed (secrets, tenant, idempotency key, verify token) from
// `before` to `after`, comma-separated; empty when none.
std::string changed_sources(const webhook_source_set* before, const webhook_source_set& after);

// The sources that accept unsigned requests (no secret, allow_unsigned set): serve warns about each at start
// and on reload.
std::vector<std::string> unsigned_webhooks(const config::settings& cfg);

// What a valid source set still risks, one sentence each (serve warns at start and on reload): a header
// idempotency key the provider's signature does not cover (a captured request replayed with another value is
// stored again), and one secret shared by sources of different tenants (a request signed for one is accepted
// by the other's route, and stamped with the other's tenant).
std::vector<std::string> source_risks(const config::settings& cfg);

}  // namespace crm::ingest
