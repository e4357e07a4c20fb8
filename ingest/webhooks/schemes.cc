#include "ingest/webhooks/schemes.h"

#include <chrono>
#include <memory>
#include <stdexcept>

#include "transform/providers/providers.h"
#include "transform/providers/registry.h"

namespace crm::ingest::webhooks {
namespace {

namespace tp = crm::transform::providers;

unix_seconds now_s() { return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()); }

// Shares one verifier between the copies of the check (std::function copies its target).
template <typename Verifier, typename Verify>
request_check shared(std::shared_ptr<const Verifier> v, Verify verify) {
  return [v = std::move(v), verify](const signed_request& r) { return verify(*v, r); };
}

request_check sendgrid(std::span<const std::string> values, std::string_view) {
  return shared(std::make_shared<const sendgrid_verifier>(values[0]), [](const sendgrid_verifier& v, const signed_request& r) {
    return v.verify(r.body, r.headers, now_s());
  });
}

request_check twilio(std::span<const std::string> values, std::string_view public_base_url) {
  if (public_base_url.empty()) {
    throw std::invalid_argument(
        "webhooks.twilio.auth_token is set but http.public_base_url is not: Twilio signs the public URL it "
        "calls, so set http.public_base_url (e.g. https://ingest.example.com)");
  }
  return shared(std::make_shared<const twilio_verifier>(secret_list{values[0]}),
                [base = std::string(public_base_url)](const twilio_verifier& v, const signed_request& r) {
                  return v.verify(base + std::string(r.target), r.body, r.headers);
                });
}

request_check meta(std::span<const std::string> values, std::string_view) {
  return shared(std::make_shared<const meta_verifier>(secret_list{values[0]}),
                [](const meta_verifier& v, const signed_request& r) { return v.verify(r.body, r.headers); });
}

request_check mailgun(std::span<const std::string> values, std::string_view) {
  return shared(std::make_shared<const mailgun_verifier>(secret_list{values[0]}),
                [](const mailgun_verifier& v, const signed_request& r) -> verify_result {
                  tp::mailgun_signature_fields f;
                  if (!tp::extract_mailgun_signature(r.body, f)) {
                    return {verify_error::malformed_input, "body is not a JSON object with a signature"};
                  }
                  return v.verify(mailgun_signature{f.timestamp, f.token, f.signature, {}}, now_s());
                });
}

request_check postmark(std::span<const std::string> values, std::string_view) {
  return shared(std::make_shared<const postmark_verifier>(values[0], values[1]),
                [](const postmark_verifier& v, const signed_request& r) { return v.verify(r.headers); });
}

request_check svix(std::span<const std::string> values, std::string_view) {
  return shared(std::make_shared<const svix_verifier>(std::vector<std::string>{values[0]}),
                [](const svix_verifier& v, const signed_request& r) { return v.verify(r.body, r.headers, now_s()); });
}

request_check segment(std::span<const std::string> values, std::string_view) {
  return shared(std::make_shared<const segment_verifier>(secret_list{values[0]}),
                [](const segment_verifier& v, const signed_request& r) { return v.verify(r.body, r.headers); });
}

constexpr std::array<scheme, scheme_count> table = {{
      {"sendgrid", {{{"public_key", "SendGrid Event Webhook verification key (base64 DER); set = signatures required."}}},
       false, sendgrid},
      {"twilio", {{{"auth_token", "Twilio auth token; set = X-Twilio-Signature required."}}}, true, twilio},
      {"whatsapp",
       {{{"app_secret", "Meta app secret; set = X-Hub-Signature-256 required."},
         {"verify_token", "Token Meta echoes in the hub.challenge handshake.", false}}},
       false, meta},
      {"mailgun", {{{"signing_key", "Mailgun HTTP webhook signing key; set = signatures required."}}}, false, mailgun},
      {"postmark",
       {{{"username", "Basic-auth user name Postmark sends; set = required."},
         {"password", "Basic-auth password Postmark sends."}}},
       false, postmark},
      {"resend", {{{"secret", "Resend (Svix) signing secret whsec_…; set = signatures required."}}}, false, svix},
      {"segment", {{{"shared_secret", "Segment shared secret; set = X-Signature required."}}}, false, segment},
}};

constexpr bool keyed_like_the_registry() {
  if (table.size() != tp::registry.size()) return false;
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (table[i].provider != tp::registry[i].name) return false;
  }
  return true;
}
static_assert(keyed_like_the_registry(), "one scheme per provider of transform/providers/registry.h, in its order");

}  // namespace

const std::array<scheme, scheme_count>& schemes() { return table; }

}  // namespace crm::ingest::webhooks
