// Provider webhook formats -> canonical events. One function per provider, each mapping the
// provider's documented payload (tests/fixtures/webhooks/) with its documented status mapping and
// idempotency key, and taking the CRM ids (lead, campaign, A/B test and variant) from where that
// provider carries them. Pure code: the HTTP layer has already verified the signature.
//
// Every function appends one record per event (or a rejection, with the reason naming the field and
// the rule) to `out`, and returns false with `error` (naming the byte offset for malformed JSON) only
// when the body as a whole is unusable. Untrusted input never throws.
#pragma once

#include <string>
#include <string_view>

#include "transform/canonical/canonical_event.h"
#include "transform/normalize/normalize.h"

namespace crm::transform::providers {

struct webhook_input {
  std::string_view body;          // raw request body
  std::string_view content_type;  // e.g. application/x-www-form-urlencoded for Twilio
  std::string_view query;         // the request URL's query string (Twilio StatusCallback parameters)
  std::string_view source;        // e.g. "POST /v1/webhooks/sendgrid"; rejections say "source:index"
  timestamp_us received_at = 0;
  // The request's idempotency key as a webhook source declares it (a header, or a member of the body); empty =
  // the provider's own event id. When set it is the provider_event_id of each communication (message_id of
  // each touchpoint): `<key>` for the first event of a body, `<key>:<index>` for the others and for every
  // element of a body that is a JSON array. standard: the key only of records that carry no id of their own.
  std::string_view idempotency_key;
  // The key is already one event's (`rejected replay` gives back a dead letter's rejection::idempotency_key, in a
  // body it rebuilt): used as is, never indexed.
  bool key_is_indexed = false;
};

using provider_fn = bool (*)(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);

bool normalize_sendgrid(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);
bool normalize_twilio(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);
bool normalize_whatsapp(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);
// A WhatsApp webhook body holding the one event `raw` (a status, an incoming message or a user preference object:
// what a per-event dead letter keeps), for normalize_whatsapp: `rejected replay` re-reads such a dead letter with
// it. Empty when `raw` is not such an object (a whole body already, or not JSON). The value's metadata and contacts
// are not in the dead letter, so the event comes back without phone_number_id, display_phone_number, profile_name.
std::string whatsapp_body_of_event(std::string_view raw);
bool normalize_mailgun(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);
bool normalize_postmark(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);
bool normalize_resend(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);
bool normalize_segment(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);
// Standard Webhooks (standard.cc): the body is the canonical event format, one object or an array of them.
bool normalize_standard(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error);

// Mailgun signs inside the JSON body: {"signature": {"timestamp", "token", "signature"}}. Copies the
// three strings into `out` (empty when absent); false when the body is not a JSON object.
struct mailgun_signature_fields {
  std::string timestamp, token, signature;
};
bool extract_mailgun_signature(std::string_view body, mailgun_signature_fields& out);

}  // namespace crm::transform::providers
