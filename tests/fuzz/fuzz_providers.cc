// libFuzzer: arbitrary bytes through every provider webhook normalizer of the registry
// (transform/providers/registry.h), one after the other, so that every seed (the providers' fixtures)
// reaches its own provider and the others' too. Nothing may crash, leak or read out of bounds, and:
//   - a refused body (false) leaves the batch as it was and says why;
//   - an accepted body yields records whose text PostgreSQL can store: valid UTF-8 without NUL, and
//     metadata that is one JSON object jsonb accepts.
// A form provider's (Twilio's) input is split at the first newline into the StatusCallback query string and
// the form body.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "transform/text/json_copy.h"
#include "transform/providers/registry.h"

namespace {

namespace tp = crm::transform::providers;

bool storable(std::string_view s) {
  return s.empty() || (std::memchr(s.data(), 0, s.size()) == nullptr && simdjson::validate_utf8(s.data(), s.size()));
}

void require(bool condition) {
  if (!condition) std::abort();
}

// One JSON object that jsonb accepts: walked with the same validating copier the canonical normalizer
// uses for metadata (simdjson's DOM would refuse numbers such as 1e400 that PostgreSQL's numeric keeps).
void check_metadata(std::string_view text) {
  if (text.empty()) return;
  static simdjson::ondemand::parser parser;
  static crm::transform::detail::json_copier copier;
  static std::string copy;
  simdjson::padded_string padded(text);
  simdjson::ondemand::document doc;
  require(!parser.iterate(padded).get(doc));
  simdjson::ondemand::object object;
  require(!doc.get_object().get(object));
  copy.clear();
  require(copier.copy_members(object, copy, 1, false) == crm::transform::detail::copy_error::none);
  const char* rest = nullptr;
  require(doc.current_location().get(rest) != simdjson::SUCCESS);  // nothing after the object
}

// One provider: the properties above for whatever it makes of `data`.
void check_provider(const tp::provider& p, std::string_view input) {
  static crm::transform::normalizer norm;
  static crm::transform::event_batch batch;
  batch.clear();
  std::string_view query;
  if (p.body == tp::body_format::form) {
    if (const auto nl = input.find('\n'); nl != std::string_view::npos) {
      query = input.substr(0, nl);
      input = input.substr(nl + 1);
    }
  }
  // A record already in the batch must survive a refused body untouched.
  batch.rejections.push_back({});
  std::string error;
  const tp::webhook_input in{input, p.default_content_type(), query, "fuzz", 1'795'000'000'000'000, {}};
  const bool ok = p.normalize(norm, in, batch, error);
  if (!ok) {
    require(!error.empty());
    require(batch.communications.empty() && batch.touchpoints.empty() && batch.rejections.size() == 1);
    return;
  }
  for (const auto& c : batch.communications) {
    for (std::string_view s : {c.provider, c.provider_message_id, c.provider_event_id, c.email, c.phone, c.ab_test_id,
                               c.variant, c.url, c.error_code, c.error_reason, c.lead_ref, c.campaign_ref}) {
      require(storable(s));
    }
    require(!c.provider.empty());
    // An id is >= 1, absent (0), or the negative key of the CRM's text reference that comes with it.
    require(c.lead_ref.empty() ? c.lead_id >= 0 : c.lead_id <= -1);
    require(c.campaign_ref.empty() ? c.campaign_id >= 0 : c.campaign_id <= -1);
    require(!c.occurred_at_is_receipt_time || c.occurred_at == c.received_at);
    check_metadata(c.metadata);
  }
  for (const auto& t : batch.touchpoints) {
    for (std::string_view s : {t.anonymous_id, t.message_id, t.utm_source, t.utm_medium, t.utm_campaign, t.utm_term,
                               t.utm_content, t.gclid, t.fbclid, t.msclkid, t.landing_url, t.referrer,
                               t.conversion_type, t.currency, t.ab_test_id, t.variant, t.lead_ref, t.campaign_ref}) {
      require(storable(s));
    }
    require(t.lead_id != 0 || !t.anonymous_id.empty());
    require(t.lead_ref.empty() ? t.lead_id >= 0 : t.lead_id <= -1);
    require(t.campaign_ref.empty() ? t.campaign_id >= 0 : t.campaign_id <= -1);
    check_metadata(t.metadata);
  }
  for (std::size_t i = 1; i < batch.rejections.size(); ++i) {
    require(storable(batch.rejections[i].reason) && !batch.rejections[i].reason.empty());
    require(std::string_view(batch.rejections[i].source).substr(0, 5) == "fuzz:");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  tp::mailgun_signature_fields f;
  if (!tp::extract_mailgun_signature(input, f)) require(f.timestamp.empty() && f.token.empty() && f.signature.empty());
  for (const tp::provider& p : tp::registry) check_provider(p, input);
  return 0;
}
