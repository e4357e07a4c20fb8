// The provider webhook endpoints of the collector, one per provider of the registry
// (transform/providers/registry.h): each provider's signature check (its scheme in ingest/webhooks/schemes.h, built from its
// [webhooks.<provider>] secrets; a configured secret makes verification mandatory, and without one every
// request is refused unless webhooks.<provider>.allow_unsigned is set) and its normalizer.
//
// The verifiers can be replaced while serving (SIGHUP): webhook_secrets holds the current set behind an
// atomic shared_ptr. The HTTP I/O threads load it per request (lock-free for readers apart from the
// pointer's own short spin); the signal thread builds a complete new set and swaps it in. A request
// already inside verify() keeps the set it loaded alive until it returns, so nothing is torn.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "ingest/collector/collector.h"
#include "ingest/config/settings.h"
#include "ingest/webhooks/schemes.h"

namespace crm::ingest {

class webhook_secrets {
 public:
  // Builds every configured verifier. Throws std::invalid_argument with advice when a configured secret
  // is unusable (e.g. not a P-256 key, or a Twilio token without http.public_base_url).
  explicit webhook_secrets(const config::settings& cfg);

  // Builds a complete new set from `cfg` and swaps it in; on an unusable secret throws and keeps the
  // current set. A provider whose secrets did not change keeps its verifier (and its replay cache).
  // Returns the names of the providers whose secrets changed. Called from one thread at a time.
  std::string reload(const config::settings& cfg);

  // The signature check of `provider` as of now; without a secret configured, a refusal unless
  // webhooks.<provider>.allow_unsigned is set (then ok).
  webhooks::verify_result verify(std::size_t provider, const http::request& req) const;

  // The part of that check decided by the head alone (a missing secret, Postmark's basic auth): run before
  // the body is read. ok when the check needs the body.
  webhooks::verify_result verify_head(std::size_t provider, const http::request& head) const;

  // The provider's index in the registry; throws std::logic_error for a name it does not have.
  static std::size_t index_of(std::string_view name);

  struct entry {
    std::string fingerprint;  // the secrets it was built from (compared on reload, never logged)
    signature_check check;    // empty = verification off (no secret, unsigned requests allowed)
    bool head_only = false;   // check reads only the head (also run before the body is read)
  };
  using set = std::array<entry, webhooks::scheme_count>;

 private:
  std::atomic<std::shared_ptr<const set>> current_;
};

// The providers that accept unsigned requests: no secret configured and webhooks.<provider>.allow_unsigned
// set (serve warns about each at start and on reload).
std::vector<std::string> unsigned_webhooks(const config::settings& cfg);

// Registers POST /v1/webhooks/<name> for every provider of the registry, verifying with
// `secrets` (which must outlive the collector's use of it; the endpoints share ownership).
void register_providers(collector& c, std::shared_ptr<webhook_secrets> secrets);

// Same with secrets fixed at start. Throws std::invalid_argument like webhook_secrets.
void register_providers(collector& c, const config::settings& cfg);

}  // namespace crm::ingest
