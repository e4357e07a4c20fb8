#include "ingest/webhooks/schemes.h"

#include <chrono>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "transform/providers/providers.h"
#include "transform/providers/registry.h"

namespace crm::ingest::webhooks {
namespace {

namespace tp = crm::transform::providers;

thread_local std::function<void()> forget_accepted;  // see take_forget_accepted()

unix_seconds now_s() { return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()); }

// Shares one verifier between the copies of the check (std::function copies its target).
template <typename Verifier, typename Verify>
request_check shared(std::shared_ptr<const Verifier> v, Verify verify) {
  return [v = std::move(v), verify](const signed_request& r) { return verify(*v, r); };
}

// How much a failure tells the sender: a missing or malformed header, a stale timestamp say more than "no key
// produced this signature", which every key but the right one answers.
int informative(verify_error e) {
  return e == verify_error::signature_mismatch || e == verify_error::credentials_mismatch ? 0 : 1;
}

// One verifier per secret (schemes whose verifier takes a single key): passes when any passes; otherwise the
// most informative failure.
template <typename Verifier, typename Verify>
request_check any_of(std::vector<std::shared_ptr<const Verifier>> vs, Verify verify) {
  return [vs = std::move(vs), verify](const signed_request& r) -> verify_result {
    verify_result failure{verify_error::signature_mismatch, "no configured secret matches"};
    int rank = -1;
    for (const auto& v : vs) {
      verify_result res = verify(*v, r);
      if (res.ok()) return res;
      if (informative(res.error) > rank) {
        rank = informative(res.error);
        failure = res;
      }
    }
    return failure;
  };
}

secret_list list_of(std::span<const std::string> secrets) { return secret_list(secrets.begin(), secrets.end()); }

// A [webhooks.<provider>] section's check: its one secret, as a source with that secret would check it.
template <request_check (*Source)(const source_keys&)>
request_check first_value(std::span<const std::string> values, std::string_view base) {
  return Source({values.first(1), base, std::nullopt});
}

request_check sendgrid_source(const source_keys& k) {
  std::vector<std::shared_ptr<const sendgrid_verifier>> vs;
  for (const std::string& key : k.secrets) vs.push_back(std::make_shared<const sendgrid_verifier>(key, k.tolerance));
  return any_of(std::move(vs), [](const sendgrid_verifier& v, const signed_request& r) {
    return v.verify(r.body, r.headers, now_s());
  });
}


request_check twilio_source(const source_keys& k) {
  if (k.public_base_url.empty()) {
    throw std::invalid_argument(
        "a Twilio auth token is set but http.public_base_url is not: Twilio signs the public URL it "
        "calls, so set http.public_base_url (e.g. https://ingest.example.com)");
  }
  return shared(std::make_shared<const twilio_verifier>(list_of(k.secrets)),
                [base = std::string(k.public_base_url)](const twilio_verifier& v, const signed_request& r) {
                  return v.verify(base + std::string(r.target), r.body, r.headers);
                });
}

request_check twilio(std::span<const std::string> values, std::string_view public_base_url) {
  if (public_base_url.empty()) {
    throw std::invalid_argument(
        "webhooks.twilio.auth_token is set but http.public_base_url is not: Twilio signs the public URL it "
        "calls, so set http.public_base_url (e.g. https://ingest.example.com)");
  }
  return twilio_source({values.first(1), public_base_url, std::nullopt});
}

request_check meta_source(const source_keys& k) {
  return shared(std::make_shared<const meta_verifier>(list_of(k.secrets)),
                [](const meta_verifier& v, const signed_request& r) { return v.verify(r.body, r.headers); });
}


request_check mailgun_source(const source_keys& k) {
  mailgun_options options;
  if (k.tolerance) options.tolerance = *k.tolerance;
  auto verifier = std::make_shared<const mailgun_verifier>(list_of(k.secrets), options);
  return [verifier](const signed_request& r) -> verify_result {
    forget_accepted = nullptr;
    tp::mailgun_signature_fields f;
    if (!tp::extract_mailgun_signature(r.body, f)) {
      return {verify_error::malformed_input, "body is not a JSON object with a signature"};
    }
    const verify_result v = verifier->verify(mailgun_signature{f.timestamp, f.token, f.signature, {}}, now_s());
    if (v.ok()) {
      try {
        forget_accepted = [verifier, token = std::string(f.token)] { verifier->forget(token); };
      } catch (...) {  // std::bad_alloc: the token stays remembered (a retry within the tolerance is refused)
      }
    }
    return v;
  };
}


request_check postmark_source(const source_keys& k) {
  std::vector<std::shared_ptr<const postmark_verifier>> vs;
  for (const std::string& pair : k.secrets) {
    const std::size_t colon = pair.find(':');
    if (colon == std::string::npos) {
      throw std::invalid_argument("a Postmark secret is \"user:password\" (the basic-auth pair of its webhook URL)");
    }
    vs.push_back(std::make_shared<const postmark_verifier>(std::string_view(pair).substr(0, colon),
                                                           std::string_view(pair).substr(colon + 1)));
  }
  return any_of(std::move(vs), [](const postmark_verifier& v, const signed_request& r) { return v.verify(r.headers); });
}

request_check postmark(std::span<const std::string> values, std::string_view) {
  return shared(std::make_shared<const postmark_verifier>(values[0], values[1]),
                [](const postmark_verifier& v, const signed_request& r) { return v.verify(r.headers); });
}

request_check svix_source(const source_keys& k) {
  return shared(std::make_shared<const svix_verifier>(list_of(k.secrets), k.tolerance.value_or(std::chrono::minutes(5))),
                [](const svix_verifier& v, const signed_request& r) { return v.verify(r.body, r.headers, now_s()); });
}


request_check segment_source(const source_keys& k) {
  return shared(std::make_shared<const segment_verifier>(list_of(k.secrets)),
                [](const segment_verifier& v, const signed_request& r) { return v.verify(r.body, r.headers); });
}


// Standard Webhooks: v1 (HMAC-SHA256, "whsec_" keys) and v1a (Ed25519, "whpk_" public keys) signatures over
// webhook-id.webhook-timestamp.body.
request_check standard_source(const source_keys& k) {
  return shared(std::make_shared<const standard_webhooks_verifier>(list_of(k.secrets),
                                                                   k.tolerance.value_or(std::chrono::minutes(5))),
                [](const standard_webhooks_verifier& v, const signed_request& r) {
                  return v.verify(r.body, r.headers, now_s());
                });
}

constexpr std::array<scheme, scheme_count> table = {{
      {"sendgrid", {{{"public_key", "SendGrid Event Webhook verification key (base64 DER); set = signatures required."}}},
       false, first_value<sendgrid_source>, sendgrid_source, true},
      {"twilio", {{{"auth_token", "Twilio auth token; set = X-Twilio-Signature required."}}}, true, twilio,
       twilio_source, false},
      {"whatsapp",
       {{{"app_secret", "Meta app secret; set = X-Hub-Signature-256 required."},
         {"verify_token", "Token Meta echoes in the hub.challenge handshake.", false}}},
       false, first_value<meta_source>, meta_source, false},
      {"mailgun", {{{"signing_key", "Mailgun HTTP webhook signing key; set = signatures required."}}}, false,
       first_value<mailgun_source>, mailgun_source, true},
      {"postmark",
       {{{"username", "Basic-auth user name Postmark sends; set = required."},
         {"password", "Basic-auth password Postmark sends."}}},
       false, postmark, postmark_source, false},
      {"resend", {{{"secret", "Resend (Svix) signing secret whsec_…; set = signatures required."}}}, false,
       first_value<svix_source>, svix_source, true},
      {"segment", {{{"shared_secret", "Segment shared secret; set = X-Signature required."}}}, false,
       first_value<segment_source>, segment_source, false},
      {"standard",
       {{{"secret", "Standard Webhooks key: whsec_… (v1 HMAC secret) or whpk_… (v1a Ed25519 public key); set = webhook-signature required."}}},
       false, first_value<standard_source>, standard_source, true},
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

std::function<void()> take_forget_accepted() noexcept { return std::exchange(forget_accepted, nullptr); }

const std::array<scheme, scheme_count>& schemes() { return table; }

}  // namespace crm::ingest::webhooks
