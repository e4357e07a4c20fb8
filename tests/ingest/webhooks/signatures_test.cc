// Webhook signature verification against the providers' own published vectors. Every vector names its
// source next to it. Where a provider publishes none (Meta, Segment, Postmark) the comment says so and
// the test uses the published vector of the identical construction instead (GitHub's X-Hub-Signature-256
// example, RFC 2202/4231 HMAC test cases, RFC 7617's Basic example). Mailgun and its replay cache:
// mailgun_signature_test.cc.
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "ingest/webhooks/signatures.h"
#include "verify_cases.h"

namespace {

using namespace signature_tests;

// =====================================================================================================
// SendGrid Event Webhook (ECDSA P-256 / SHA-256 over timestamp + body)

// Vector 1 — sendgrid/sendgrid-nodejs packages/eventwebhook/src/eventwebhook.spec.js; the same key,
// signature and timestamp are in sendgrid/sendgrid-go helpers/eventwebhook/eventwebhook_test.go.
// PAYLOAD there is JSON.stringify({category, event, message_id}) (Go: json.Marshal of a map, same bytes).
constexpr std::string_view sg1_key =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
constexpr std::string_view sg1_signature =
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
constexpr std::string_view sg1_timestamp = "1588788367";
constexpr std::string_view sg1_payload = R"({"category":"example_payload","event":"test_event","message_id":"message_id"})";
// The spec's "should reject for bad signature" value (one character changed).
constexpr std::string_view sg1_bad_signature =
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
// The spec's "should reject for invalid key" key: a valid P-256 key, just not the signer's.
constexpr std::string_view sg_other_key =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";

// Vector 2 — sendgrid/sendgrid-python test/unit/test_eventwebhook.py: a real "dropped" event; the
// payload is json.dumps(sort_keys=True, separators=(',', ':')) + "\r\n" (the trailing CRLF is signed).
constexpr std::string_view sg2_key =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
constexpr std::string_view sg2_signature =
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
constexpr std::string_view sg2_timestamp = "1600112502";
constexpr std::string_view sg2_payload =
    "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\","
    "\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\","
    "\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\","
    "\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

w::header_list sg_headers(std::string_view signature, std::string_view timestamp) {
  return {{"X-Twilio-Email-Event-Webhook-Signature", signature}, {"X-Twilio-Email-Event-Webhook-Timestamp", timestamp}};
}

TEST(SendGridSignature, OfficialVectorsVerify) {
  const w::sendgrid_verifier v1(sg1_key);
  EXPECT_TRUE(v1.verify(sg1_payload, sg_headers(sg1_signature, sg1_timestamp), at(1588788367)).ok());
  const w::sendgrid_verifier v2(sg2_key);
  EXPECT_TRUE(v2.verify(sg2_payload, sg_headers(sg2_signature, sg2_timestamp), at(1600112502)).ok());
  // Header names are case-insensitive.
  const w::header_list lower{{"x-twilio-email-event-webhook-signature", sg1_signature},
                             {"x-twilio-email-event-webhook-timestamp", sg1_timestamp}};
  EXPECT_TRUE(v1.verify(sg1_payload, lower, at(0)).ok());
}

TEST(SendGridSignature, FailuresCarryTheirReason) {
  const w::sendgrid_verifier v(sg1_key);
  const w::sendgrid_verifier other(sg_other_key);
  const w::sendgrid_verifier strict(sg1_key, 5min);
  const auto now = at(1588788367);
  const std::string without_crlf(sg2_payload.substr(0, sg2_payload.size() - 2));
  const std::string long_signature = std::string(sg1_signature) + "causing failure";
  const w::sendgrid_verifier v2(sg2_key);

  expect_failures({
      {"altered body (SDK 'bad payload')", v.verify("payload", sg_headers(sg1_signature, sg1_timestamp), now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"trailing CRLF dropped", v2.verify(without_crlf, sg_headers(sg2_signature, sg2_timestamp), at(1600112502)),
       verify_error::signature_mismatch, "signature mismatch"},
      {"SDK 'bad signature'", v.verify(sg1_payload, sg_headers(sg1_bad_signature, sg1_timestamp), now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"other key (SDK 'invalid key')", other.verify(sg1_payload, sg_headers(sg1_signature, sg1_timestamp), now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"altered timestamp", v.verify(sg1_payload, sg_headers(sg1_signature, "1588788368"), now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"SDK 'bad timestamp'", v.verify(sg1_payload, sg_headers(sg1_signature, "timestamp"), now),
       verify_error::malformed_input, "malformed header X-Twilio-Email-Event-Webhook-Timestamp"},
      {"signature is base64 but not DER", v.verify(sg1_payload, sg_headers("AAAA", sg1_timestamp), now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"malformed base64", v.verify(sg1_payload, sg_headers("MEUCIQ*tIHJe", sg1_timestamp), now),
       verify_error::malformed_input, "malformed header X-Twilio-Email-Event-Webhook-Signature"},
      {"Go SDK's signature+\"causing failure\"",
       v.verify(sg1_payload, sg_headers(long_signature, sg1_timestamp), now),
       verify_error::malformed_input, "malformed header X-Twilio-Email-Event-Webhook-Signature"},
      {"missing signature", v.verify(sg1_payload, w::header_list{{"X-Twilio-Email-Event-Webhook-Timestamp", sg1_timestamp}}, now),
       verify_error::missing_input, "missing header X-Twilio-Email-Event-Webhook-Signature"},
      {"missing timestamp", v.verify(sg1_payload, w::header_list{{"X-Twilio-Email-Event-Webhook-Signature", sg1_signature}}, now),
       verify_error::missing_input, "missing header X-Twilio-Email-Event-Webhook-Timestamp"},
      {"stale under a 5 min tolerance", strict.verify(sg1_payload, sg_headers(sg1_signature, sg1_timestamp), now + 301s),
       verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"},
      {"future under a 5 min tolerance", strict.verify(sg1_payload, sg_headers(sg1_signature, sg1_timestamp), now - 301s),
       verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"},
  });
  EXPECT_TRUE(strict.verify(sg1_payload, sg_headers(sg1_signature, sg1_timestamp), now + 300s).ok());
}

TEST(SendGridSignature, BadKeysFailAtStartUp) {
  EXPECT_THROW(w::sendgrid_verifier("not base64!"), std::invalid_argument);
  EXPECT_THROW(w::sendgrid_verifier(""), std::invalid_argument);
  // sendgrid-go's "corrupting the public key" case.
  EXPECT_THROW(w::sendgrid_verifier(std::string(sg1_key) + "corrupting the public key"), std::invalid_argument);
  EXPECT_THROW(w::sendgrid_verifier("AAAAAAAA"), std::invalid_argument);  // base64, not DER
  // Line breaks from copy and paste are tolerated.
  std::string wrapped(sg1_key);
  wrapped.insert(64, "\n");
  EXPECT_NO_THROW(w::sendgrid_verifier{wrapped});
}

// =====================================================================================================
// Twilio (base64 HMAC-SHA1 over URL + sorted POST params)

constexpr std::string_view twilio_token = "12345";
constexpr std::string_view twilio_url = "https://mycompany.com/myapp.php?foo=1&bar=2";

w::header_list twilio_headers(std::string_view signature) { return {{"X-Twilio-Signature", signature}}; }

// Twilio's docs, https://www.twilio.com/docs/usage/security#validating-requests (auth token 12345):
// URL https://mycompany.com/myapp.php?foo=1&bar=2, params CallSid=CA1234567890ABCDE,
// Caller=+12349013030, Digits=1234, From=+12349013030, To=+18005551212 -> 0/KCTR6DLpKmkAf8muzZqo1nDgQ=.
// Sent as a form body, out of order on purpose ('+' percent-encoded, as Twilio sends it).
constexpr std::string_view twilio_docs_body =
    "To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=%2B12349013030&Caller=%2B12349013030";
constexpr std::string_view twilio_docs_signature = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

// twilio/twilio-python tests/unit/test_request_validator.py: same token and URL, the older params
// (Caller/From +14158675309) -> RSOYDt4T1cUTdK1PDd93/VVr8B8= (also the older docs' and twilio-php's value).
constexpr std::string_view twilio_sdk_body =
    "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";

TEST(TwilioSignature, OfficialVectorsVerify) {
  const w::twilio_verifier v({std::string(twilio_token)});
  struct row {
    const char* source;
    std::string_view url, body, signature;
  };
  const row rows[] = {
      {"docs example", twilio_url, twilio_docs_body, twilio_docs_signature},
      {"twilio-python test_validation", twilio_url, twilio_sdk_body, "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
      // twilio-python test_compute_signature_duplicate_*: repeated names sort by value.
      {"twilio-python duplicate params", twilio_url, "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
       "IK+Dwps556ElfBT0I3Rgjkr1wJU="},
      // twilio-python test_validation_removes_port_on_https: the port-less signature still verifies.
      {"twilio-python removes port on https", "https://mycompany.com:1234/myapp.php?foo=1&bar=2", twilio_sdk_body,
       "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
      // test_validation_removes_port_on_http: "hash of http uri with port 1234".
      {"twilio-python removes port on http", "http://mycompany.com:1234/myapp.php?foo=1&bar=2", twilio_sdk_body,
       "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="},
      // test_validation_adds_port_on_https: "hash of uri with port 443".
      {"twilio-python adds port on https", twilio_url, twilio_sdk_body, "kvajT1Ptam85bY51eRf/AJRuM3w="},
      // test_validation_adds_port_on_http: "hash of uri with port 80".
      {"twilio-python adds port on http", "http://mycompany.com/myapp.php?foo=1&bar=2", twilio_sdk_body,
       "0ZXoZLH/DfblKGATFgpif+LLRf4="},
      // test_validation_of_body_succeeds: JSON body, bodySHA256 (test_compute_hash_unicode's hash) in the URL.
      {"twilio-python JSON body",
       "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
       "{\"property\": \"value\", \"boolean\": true}", "a9nBmqA0ju/hNViExpshrM61xv4="},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.source);
    const auto result = v.verify(r.url, r.body, twilio_headers(r.signature));
    EXPECT_TRUE(result.ok()) << result.reason;
  }
}

TEST(TwilioSignature, FailuresCarryTheirReason) {
  const w::twilio_verifier v({std::string(twilio_token)});
  const w::twilio_verifier wrong({"54321"});
  const auto sig = twilio_headers(twilio_docs_signature);
  const std::string json_url =
      "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
  expect_failures({
      {"altered param", v.verify(twilio_url, "To=%2B18005551212&Digits=9999&CallSid=CA1234567890ABCDE&From=%2B12349013030&Caller=%2B12349013030", sig),
       verify_error::signature_mismatch, "signature mismatch"},
      {"extra param", v.verify(twilio_url, std::string(twilio_docs_body) + "&Extra=1", sig), verify_error::signature_mismatch,
       "signature mismatch"},
      {"'+' decodes to a space, not a plus",
       v.verify(twilio_url, "To=+18005551212&Digits=1234&CallSid=CA1234567890ABCDE&From=+12349013030&Caller=+12349013030", sig),
       verify_error::signature_mismatch, "signature mismatch"},
      {"altered URL query", v.verify("https://mycompany.com/myapp.php?foo=1&bar=3", twilio_docs_body, sig),
       verify_error::signature_mismatch, "signature mismatch"},
      {"altered URL host", v.verify("https://evil.example/myapp.php?foo=1&bar=2", twilio_docs_body, sig),
       verify_error::signature_mismatch, "signature mismatch"},
      {"http instead of https", v.verify("http://mycompany.com/myapp.php?foo=1&bar=2", twilio_docs_body, sig),
       verify_error::signature_mismatch, "signature mismatch"},
      {"wrong auth token", wrong.verify(twilio_url, twilio_docs_body, sig), verify_error::signature_mismatch,
       "signature mismatch"},
      {"missing header", v.verify(twilio_url, twilio_docs_body, w::header_list{}), verify_error::missing_input,
       "missing header X-Twilio-Signature"},
      {"malformed base64", v.verify(twilio_url, twilio_docs_body, twilio_headers("0/KCTR6DLpKmkAf8muzZqo1nDgQ")),
       verify_error::malformed_input, "malformed header X-Twilio-Signature"},
      {"malformed base64 characters", v.verify(twilio_url, twilio_docs_body, twilio_headers("0/KCTR6DLpKmkAf8m*zZqo1nDgQ=")),
       verify_error::malformed_input, "malformed header X-Twilio-Signature"},
      {"empty header", v.verify(twilio_url, twilio_docs_body, twilio_headers("")), verify_error::malformed_input,
       "malformed header X-Twilio-Signature"},
      {"malformed form body", v.verify(twilio_url, "To=%2B1800555121&Digits=%G1", sig), verify_error::malformed_input,
       "malformed form body"},
      {"truncated escape", v.verify(twilio_url, "To=%2", sig), verify_error::malformed_input, "malformed form body"},
      {"not an http(s) URL", v.verify("mycompany.com/myapp.php", twilio_docs_body, sig), verify_error::malformed_input,
       "malformed public url"},
      {"bad port", v.verify("https://mycompany.com:44x/myapp.php", twilio_docs_body, sig), verify_error::malformed_input,
       "malformed public url"},
      {"JSON body altered", v.verify(json_url, "{\"property\": \"value\", \"boolean\": false}", twilio_headers("a9nBmqA0ju/hNViExpshrM61xv4=")),
       verify_error::body_hash_mismatch, "body hash mismatch"},
      {"bodySHA256 not hex", v.verify("https://mycompany.com/myapp.php?bodySHA256=xyz", "{}", sig),
       verify_error::malformed_input, "malformed bodySHA256 query parameter"},
      {"bodySHA256 repeated", v.verify(json_url + "&bodySHA256=00", "{}", sig), verify_error::malformed_input,
       "malformed bodySHA256 query parameter"},
  });
}

TEST(TwilioSignature, RotatedTokensAndParameterLimit) {
  const w::twilio_verifier v({"old-token", std::string(twilio_token)});
  EXPECT_TRUE(v.verify(twilio_url, twilio_docs_body, twilio_headers(twilio_docs_signature)).ok());
  std::string many;
  for (std::size_t i = 0; i <= w::twilio_verifier::max_form_params; ++i) many += "a=1&";
  expect_result(v.verify(twilio_url, many, twilio_headers(twilio_docs_signature)), verify_error::malformed_input,
                "too many form parameters");
  EXPECT_THROW(w::twilio_verifier({}), std::invalid_argument);
  EXPECT_THROW(w::twilio_verifier({""}), std::invalid_argument);
}

// =====================================================================================================
// Meta / WhatsApp Cloud API

// Meta publishes no X-Hub-Signature-256 test vector. The header format (sha256=<hex HMAC-SHA256 of the
// raw body>) is the one GitHub uses, and GitHub's docs publish one:
// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
constexpr std::string_view hub_secret = "It's a Secret to Everybody";
constexpr std::string_view hub_body = "Hello, World!";
constexpr std::string_view hub_signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

w::header_list meta_headers(std::string_view signature) { return {{"X-Hub-Signature-256", signature}}; }

TEST(MetaSignature, PublishedVectorsVerify) {
  const w::meta_verifier v({std::string(hub_secret)});
  EXPECT_TRUE(v.verify(hub_body, meta_headers(hub_signature)).ok());
  // RFC 4231 test case 2 (HMAC-SHA256, key "Jefe") in the same header format.
  const w::meta_verifier rfc({"Jefe"});
  EXPECT_TRUE(rfc.verify("what do ya want for nothing?",
                         meta_headers("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
                  .ok());
  // Hex case does not matter once decoded.
  EXPECT_TRUE(v.verify(hub_body, meta_headers("sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17")).ok());
}

TEST(MetaSignature, FailuresCarryTheirReason) {
  const w::meta_verifier v({std::string(hub_secret)});
  const w::meta_verifier wrong({"It's a secret to everybody"});
  expect_failures({
      {"altered body", v.verify("Hello, World?", meta_headers(hub_signature)), verify_error::signature_mismatch,
       "signature mismatch"},
      {"wrong secret", wrong.verify(hub_body, meta_headers(hub_signature)), verify_error::signature_mismatch,
       "signature mismatch"},
      {"truncated digest", v.verify(hub_body, meta_headers(hub_signature.substr(0, hub_signature.size() - 2))),
       verify_error::signature_mismatch, "signature mismatch"},
      {"missing header", v.verify(hub_body, w::header_list{{"X-Hub-Signature", "sha1=0"}}), verify_error::missing_input,
       "missing header X-Hub-Signature-256"},
      {"no sha256= prefix", v.verify(hub_body, meta_headers(hub_signature.substr(7))), verify_error::malformed_input,
       "malformed header X-Hub-Signature-256"},
      {"malformed hex", v.verify(hub_body, meta_headers("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g")),
       verify_error::malformed_input, "malformed header X-Hub-Signature-256"},
      {"odd hex length", v.verify(hub_body, meta_headers("sha256=757")), verify_error::malformed_input,
       "malformed header X-Hub-Signature-256"},
      {"empty digest", v.verify(hub_body, meta_headers("sha256=")), verify_error::malformed_input,
       "malformed header X-Hub-Signature-256"},
  });
}

// Meta's docs, https://developers.facebook.com/docs/graph-api/webhooks/getting-started#verification-requests:
// GET ...?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock -> reply 1158201444.
TEST(MetaSubscription, DocsExampleAndRefusals) {
  const auto ok = w::verify_meta_subscription("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
                                              "meatyhamhock");
  EXPECT_TRUE(ok.result.ok()) << ok.result.reason;
  EXPECT_EQ(ok.challenge, "1158201444");
  // Percent-encoded token and extra parameters.
  const auto encoded = w::verify_meta_subscription(
      "x=1&hub.verify_token=meaty%20ham+hock&hub.mode=subscribe&hub.challenge=42", "meaty ham hock");
  EXPECT_TRUE(encoded.result.ok()) << encoded.result.reason;
  EXPECT_EQ(encoded.challenge, "42");

  struct row {
    const char* query;
    verify_error error;
    std::string_view reason;
  };
  const row rows[] = {
      {"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=wrong", verify_error::verify_token_mismatch,
       "verify token mismatch"},
      {"hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhoc", verify_error::verify_token_mismatch,
       "verify token mismatch"},
      {"hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock", verify_error::malformed_input,
       "hub.mode is not subscribe"},
      {"hub.challenge=1&hub.verify_token=meatyhamhock", verify_error::missing_input, "missing query parameter hub.mode"},
      {"hub.mode=subscribe&hub.challenge=1", verify_error::missing_input, "missing query parameter hub.verify_token"},
      {"hub.mode=subscribe&hub.verify_token=meatyhamhock", verify_error::missing_input,
       "missing query parameter hub.challenge"},
      {"hub.mode=subscribe&hub.challenge=%3Cscript%3E&hub.verify_token=meatyhamhock", verify_error::malformed_input,
       "malformed hub.challenge"},
      {"hub.mode=subscribe&hub.challenge=&hub.verify_token=meatyhamhock", verify_error::malformed_input,
       "malformed hub.challenge"},
      {"hub.mode=subscribe&hub.challenge=1&hub.verify_token=x&hub.verify_token=meatyhamhock",
       verify_error::malformed_input, "repeated hub.* query parameter"},
      {"hub.mode=subscribe&hub.challenge=1&hub.verify_token=%zz", verify_error::malformed_input,
       "malformed query string"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.query);
    const auto s = w::verify_meta_subscription(r.query, "meatyhamhock");
    expect_result(s.result, r.error, r.reason);
    EXPECT_TRUE(s.challenge.empty());
  }
  EXPECT_FALSE(w::verify_meta_subscription("hub.mode=subscribe&hub.challenge=1&hub.verify_token=", "").result.ok());
}

// =====================================================================================================
// Svix / Resend

// svix/svix-webhooks python/tests/test_webhooks.py test_sign_function (the same vector is on
// https://docs.svix.com/receiving/verifying-payloads/how-manual, which Resend's docs point to).
constexpr std::string_view svix_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr std::string_view svix_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::string_view svix_timestamp = "1614265330";
constexpr std::string_view svix_body = R"({"test": 2432232314})";
constexpr std::string_view svix_signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const auto svix_now = at(1614265330);

w::header_list svix_headers(std::string_view signature, std::string_view timestamp = svix_timestamp,
                            std::string_view id = svix_id) {
  return {{"svix-id", id}, {"svix-timestamp", timestamp}, {"svix-signature", signature}};
}

TEST(SvixSignature, OfficialVectorVerifies) {
  const w::svix_verifier v({std::string(svix_secret)});
  EXPECT_TRUE(v.verify(svix_body, svix_headers(svix_signature), svix_now).ok());
  // test_signature_verification_with_and_without_prefix: the bare base64 secret works too.
  const w::svix_verifier bare({"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"});
  EXPECT_TRUE(bare.verify(svix_body, svix_headers(svix_signature), svix_now).ok());
  // test_multi_sig_payload_is_valid: several entries (other versions, other secrets); one matches.
  const std::string multi = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " +
                            std::string(svix_signature) + " v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
  EXPECT_TRUE(v.verify(svix_body, svix_headers(multi), svix_now).ok());
  // Unbranded Standard Webhooks headers, read when svix-id is absent.
  const w::header_list standard{{"webhook-id", svix_id}, {"webhook-timestamp", svix_timestamp}, {"webhook-signature", svix_signature}};
  EXPECT_TRUE(v.verify(svix_body, standard, svix_now).ok());
  // Tolerance is inclusive at 5 minutes both ways.
  EXPECT_TRUE(v.verify(svix_body, svix_headers(svix_signature), svix_now + 300s).ok());
  EXPECT_TRUE(v.verify(svix_body, svix_headers(svix_signature), svix_now - 300s).ok());
  // Rotation: the old secret first, the current one second.
  const w::svix_verifier rotating({"whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==", std::string(svix_secret)});
  EXPECT_TRUE(rotating.verify(svix_body, svix_headers(svix_signature), svix_now).ok());
}

TEST(SvixSignature, FailuresCarryTheirReason) {
  const w::svix_verifier v({std::string(svix_secret)});
  const w::svix_verifier wrong({"whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="});
  expect_failures({
      // test_invalid_signature_raises_error's header value.
      {"SDK invalid signature", v.verify(svix_body, svix_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="), svix_now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"altered body", v.verify(R"({"test": 2432232315})", svix_headers(svix_signature), svix_now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"altered id", v.verify(svix_body, svix_headers(svix_signature, svix_timestamp, "msg_other"), svix_now),
       verify_error::signature_mismatch, "signature mismatch"},
      {"wrong secret", wrong.verify(svix_body, svix_headers(svix_signature), svix_now), verify_error::signature_mismatch,
       "signature mismatch"},
      {"test_old_timestamp_fails", v.verify(svix_body, svix_headers(svix_signature), svix_now + 301s),
       verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"},
      {"test_new_timestamp_fails", v.verify(svix_body, svix_headers(svix_signature), svix_now - 301s),
       verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"},
      {"test_invalid_timestamp_raises_error", v.verify(svix_body, svix_headers(svix_signature, "hello"), svix_now),
       verify_error::malformed_input, "malformed header svix-timestamp"},
      {"test_missing_id_raises_error", v.verify(svix_body, w::header_list{{"svix-timestamp", svix_timestamp}, {"svix-signature", svix_signature}}, svix_now),
       verify_error::missing_input, "missing header svix-id"},
      {"test_timestamp_raises_error", v.verify(svix_body, w::header_list{{"svix-id", svix_id}, {"svix-signature", svix_signature}}, svix_now),
       verify_error::missing_input, "missing header svix-timestamp"},
      {"test_missing_signature_raises_error", v.verify(svix_body, w::header_list{{"svix-id", svix_id}, {"svix-timestamp", svix_timestamp}}, svix_now),
       verify_error::missing_input, "missing header svix-signature"},
      {"malformed base64", v.verify(svix_body, svix_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"), svix_now),
       verify_error::malformed_input, "malformed header svix-signature"},
      {"no v1 entry", v.verify(svix_body, svix_headers("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), svix_now),
       verify_error::malformed_input, "malformed header svix-signature"},
      {"v1 without comma", v.verify(svix_body, svix_headers("v1g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), svix_now),
       verify_error::malformed_input, "malformed header svix-signature"},
  });
  EXPECT_THROW(w::svix_verifier({"whsec_not base64!"}), std::invalid_argument);
  EXPECT_THROW(w::svix_verifier({"whsec_"}), std::invalid_argument);
}

// =====================================================================================================
// Segment

// Segment publishes no test vector for X-Signature (hex HMAC-SHA1 of the body with the shared secret).
// RFC 2202 section 3, test case 2 (key "Jefe") is the published vector of that construction.
TEST(SegmentSignature, Rfc2202VectorVerifiesAndFailuresCarryTheirReason) {
  const w::segment_verifier v({"Jefe"});
  const std::string_view body = "what do ya want for nothing?";
  const std::string_view sig = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
  EXPECT_TRUE(v.verify(body, w::header_list{{"X-Signature", sig}}).ok());
  EXPECT_TRUE(v.verify(body, w::header_list{{"x-signature", "  effcdf6ae5eb2fa2d27416d5f184df9c259a7c79 "}}).ok());

  const w::segment_verifier wrong({"jefe"});
  expect_result(v.verify("what do ya want for nothing!", w::header_list{{"X-Signature", sig}}),
                verify_error::signature_mismatch, "signature mismatch");
  expect_result(wrong.verify(body, w::header_list{{"X-Signature", sig}}), verify_error::signature_mismatch,
                "signature mismatch");
  expect_result(v.verify(body, w::header_list{{"X-Signature", sig.substr(0, 38)}}), verify_error::signature_mismatch,
                "signature mismatch");
  expect_result(v.verify(body, w::header_list{}), verify_error::missing_input, "missing header X-Signature");
  expect_result(v.verify(body, w::header_list{{"X-Signature", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c7x"}}),
                verify_error::malformed_input, "malformed header X-Signature");
  expect_result(v.verify(body, w::header_list{{"X-Signature", "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"}}),
                verify_error::malformed_input, "malformed header X-Signature");
}

// =====================================================================================================
// Postmark (HTTP Basic credentials we configure)

// Postmark has no signature. RFC 7617 section 2's example: user "Aladdin", password "open sesame".
TEST(PostmarkBasicAuth, Rfc7617ExampleAndRefusals) {
  const w::postmark_verifier v("Aladdin", "open sesame");
  auto auth = [](std::string_view value) { return w::header_list{{"Authorization", value}}; };
  EXPECT_TRUE(v.verify(auth("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")).ok());
  EXPECT_TRUE(v.verify(auth("basic   QWxhZGRpbjpvcGVuIHNlc2FtZQ==")).ok());

  const std::string wrong_password = "Basic " + w::detail::base64_encode(std::span(
      reinterpret_cast<const unsigned char*>("Aladdin:open sesame!"), 20));
  const std::string wrong_user = "Basic " + w::detail::base64_encode(std::span(
      reinterpret_cast<const unsigned char*>("aladdin:open sesame"), 19));
  const std::string no_colon = "Basic " + w::detail::base64_encode(std::span(
      reinterpret_cast<const unsigned char*>("Aladdin"), 7));
  expect_result(v.verify(auth(wrong_password)), verify_error::credentials_mismatch, "credentials mismatch");
  expect_result(v.verify(auth(wrong_user)), verify_error::credentials_mismatch, "credentials mismatch");
  expect_result(v.verify(w::header_list{}), verify_error::missing_input, "missing header Authorization");
  expect_result(v.verify(auth("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==")), verify_error::malformed_input,
                "malformed header Authorization");
  expect_result(v.verify(auth("Basic")), verify_error::malformed_input, "malformed header Authorization");
  expect_result(v.verify(auth("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ")), verify_error::malformed_input,
                "malformed header Authorization");
  expect_result(v.verify(auth(no_colon)), verify_error::malformed_input, "malformed header Authorization");
  EXPECT_THROW(w::postmark_verifier("a:b", "c"), std::invalid_argument);
  EXPECT_THROW(w::postmark_verifier("a", ""), std::invalid_argument);
}

// =====================================================================================================
// Decoders and helpers

TEST(Decoding, Base64IsStrict) {
  std::array<unsigned char, 8> out{};
  struct row {
    std::string_view in;
    std::optional<std::size_t> len;
  };
  const row rows[] = {
      {"", 0},        {"TQ==", 1},    {"TWE=", 2},      {"TWFu", 3},     {"TWFuTWFu", 6}, {"TWFuTWE=", 5},
      {"TQ=", {}},    {"TQ", {}},     {"T===", {}},     {"TR==", {}},    {"TWF=", {}},    {"TW=u", {}},
      {"TWFu\n", {}}, {" TWFu", {}},  {"TW-u", {}},     {"TW_u", {}},    {"====", {}},    {"TWFuTWFuTWFu", {}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(std::string(r.in));
    EXPECT_EQ(w::detail::base64_decode(r.in, out), r.len);
  }
  ASSERT_EQ(w::detail::base64_decode("TWFuTWE=", out), 5u);
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(out.data()), 5), "ManMa");
  // The output only needs room for the real bytes, not for the padding.
  std::array<unsigned char, 1> one{};
  EXPECT_EQ(w::detail::base64_decode("TQ==", one), 1u);
  EXPECT_EQ(one[0], 'M');
}

TEST(Decoding, HexAndTimestamps) {
  std::array<unsigned char, 4> out{};
  EXPECT_EQ(w::detail::hex_decode("00ff7Fa0", out), 4u);
  EXPECT_EQ(out[1], 0xff);
  EXPECT_EQ(out[2], 0x7f);
  EXPECT_FALSE(w::detail::hex_decode("0", out));
  EXPECT_FALSE(w::detail::hex_decode("0g", out));
  EXPECT_FALSE(w::detail::hex_decode("0011223344", out));  // does not fit
  EXPECT_EQ(w::detail::hex_encode(std::span(out).first(2)), "00ff");

  EXPECT_EQ(w::detail::parse_unix_seconds("1614265330"), 1614265330);
  for (std::string_view bad : {"", "-1", "+1", " 1", "1 ", "1.5", "0x10", "1234567890123456789"}) {
    EXPECT_FALSE(w::detail::parse_unix_seconds(bad)) << bad;
  }
  constexpr auto big = std::numeric_limits<std::int64_t>::max();
  EXPECT_TRUE(w::detail::within_tolerance(100, at(400), 300s));
  EXPECT_FALSE(w::detail::within_tolerance(99, at(400), 300s));
  EXPECT_FALSE(w::detail::within_tolerance(big, at(0), 300s));
  EXPECT_FALSE(w::detail::within_tolerance(0, w::unix_seconds(std::chrono::seconds(big)), 300s));
  EXPECT_FALSE(w::detail::within_tolerance(0, w::unix_seconds(std::chrono::seconds(-big - 1)), 300s));
}

TEST(VerifyError, HasItsOwnCategory) {
  const std::error_code ec = verify_error::replayed_token;
  EXPECT_EQ(ec.category().name(), std::string("crm.ingest.webhooks.verify"));
  EXPECT_EQ(ec.message(), "replayed token");
  EXPECT_FALSE(std::error_code(verify_error::ok));
}

}  // namespace
