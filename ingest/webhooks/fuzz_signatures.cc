// libFuzzer entry point: arbitrary bytes as body, headers, URL and query to every verifier, plus a
// round-trip oracle (sign fuzzed content with the same construction, then the verifier must accept it).
// Not wired into CMake yet. Build and run from the repository root:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. ingest/webhooks/fuzz_signatures.cc
//     ingest/webhooks/signature*.cc -lcrypto -o /tmp/fuzz_signatures      (one command line)
//   /tmp/fuzz_signatures -max_total_time=30 -max_len=4096
//
// Input: fields separated by NUL bytes — flags, body, signature, timestamp, id/token, url/query, extra.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <openssl/evp.h>

#include "ingest/webhooks/signatures.h"

namespace {

namespace w = crm::ingest::webhooks;

// RFC 8032 §7.1 TEST 1's key pair: the fuzzer signs v1a with the secret key, the verifier holds the public key.
constexpr unsigned char ed25519_secret[32] = {0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
                                              0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
                                              0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
constexpr std::string_view ed25519_public = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

constexpr std::string_view sendgrid_key =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";

struct verifiers {
  w::sendgrid_verifier sendgrid{sendgrid_key, std::chrono::seconds(300)};
  w::twilio_verifier twilio{{"12345"}};
  w::meta_verifier meta{{"app-secret"}};
  w::mailgun_verifier mailgun{{"key-3ax6xnjp29jd6fds4gc373sgvjxteol0"}, w::mailgun_options{std::chrono::seconds(300), 4096}};
  w::svix_verifier svix{{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}};
  w::standard_webhooks_verifier standard{{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", std::string(ed25519_public)}};
  EVP_PKEY* ed25519_signer = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, ed25519_secret, 32);
  w::segment_verifier segment{{"shared-secret"}};
  w::postmark_verifier postmark{"user", "pass"};
  w::detail::hmac_keyring svix_key{w::detail::mac_digest::sha256, w::svix_verifier::decode_secrets({"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})};
  w::detail::hmac_keyring mailgun_key{w::detail::mac_digest::sha256, {"key-3ax6xnjp29jd6fds4gc373sgvjxteol0"}};
  w::detail::hmac_keyring meta_key{w::detail::mac_digest::sha256, {"app-secret"}};
};

std::string sign(const w::detail::hmac_keyring& ring, std::initializer_list<std::string_view> parts) {
  w::detail::mac_stream mac(ring, 0);
  for (auto p : parts) mac.update(p);
  std::array<unsigned char, w::detail::max_mac_size> out;
  if (!mac.finish(out)) std::abort();
  return w::detail::hex_encode(std::span(out).first(ring.mac_size()));
}

std::string sign_v1a(EVP_PKEY* key, std::string_view content) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::array<unsigned char, 64> sig;
  std::size_t len = sig.size();
  if (ctx == nullptr || EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key) != 1 ||
      EVP_DigestSign(ctx, sig.data(), &len, reinterpret_cast<const unsigned char*>(content.data()), content.size()) != 1) {
    std::abort();
  }
  EVP_MD_CTX_free(ctx);
  return "v1a," + w::detail::base64_encode(sig);
}

void require(bool ok, const char* what) {
  if (!ok) {
    (void)what;
    std::abort();  // the round-trip oracle failed: a parsing bug, not a crash
  }
}

bool clean(std::string_view s) { return w::detail::trim_ows(s) == s; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static verifiers v;

  std::string_view field[7];
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (auto& f : field) {
    const std::size_t nul = rest.find('\0');
    f = rest.substr(0, nul);
    rest = nul == std::string_view::npos ? std::string_view{} : rest.substr(nul + 1);
  }
  const unsigned flags = field[0].empty() ? 0xffu : static_cast<unsigned char>(field[0][0]);
  const std::string_view body = field[1], sig = field[2], ts = field[3], id = field[4], url = field[5], extra = field[6];
  const auto parsed_ts = w::detail::parse_unix_seconds(ts);
  const auto now = w::unix_seconds(std::chrono::seconds(parsed_ts ? *parsed_ts + (flags >> 6) * 100 : 1'700'000'000));

  w::header_list h;
  if (flags & 1) h.add("X-Twilio-Email-Event-Webhook-Signature", sig);
  if (flags & 2) h.add("x-twilio-email-event-webhook-timestamp", ts);
  if (flags & 1) h.add("X-Twilio-Signature", sig);
  if (flags & 1) h.add("X-Hub-Signature-256", sig);
  if (flags & 1) h.add("X-Signature", sig);
  if (flags & 1) h.add("Authorization", sig);
  if (flags & 4) h.add((flags & 8) ? "webhook-id" : "svix-id", id);
  if (flags & 2) h.add((flags & 8) ? "webhook-timestamp" : "svix-timestamp", ts);
  if (flags & 1) h.add((flags & 8) ? "webhook-signature" : "svix-signature", sig);

  (void)v.sendgrid.verify(body, h, now);
  (void)v.twilio.verify(url, body, h);
  (void)v.meta.verify(body, h);
  (void)v.segment.verify(body, h);
  (void)v.postmark.verify(h);
  (void)v.svix.verify(body, h, now);
  (void)v.standard.verify(body, h, now);
  (void)w::standard_webhooks_verifier::message_id(h);
  (void)v.mailgun.verify({ts, id, sig, extra}, now);
  const auto sub = w::verify_meta_subscription(url, "meatyhamhock");
  require(sub.result.ok() == !sub.challenge.empty(), "challenge only on success");

  std::array<unsigned char, 64> buf;
  (void)w::detail::base64_decode(sig, buf);
  (void)w::detail::hex_decode(sig, buf);

  // Round trips: what the construction signs, the verifier must accept.
  const std::string meta_sig = "sha256=" + sign(v.meta_key, {body});
  require(v.meta.verify(body, w::header_list{{"X-Hub-Signature-256", meta_sig}}).ok(), "meta round trip");

  if (parsed_ts && clean(id) && !id.empty()) {
    std::array<unsigned char, 32> raw;
    const std::string hex = sign(v.svix_key, {id, ".", ts, ".", body});
    (void)w::detail::hex_decode(hex, raw);
    const std::string header = "v1," + w::detail::base64_encode(raw);
    const w::header_list sh{{"svix-id", id}, {"svix-timestamp", ts}, {"svix-signature", header}};
    require(v.svix.verify(body, sh, w::unix_seconds(std::chrono::seconds(*parsed_ts))).ok(), "svix round trip");
    // Standard Webhooks: the same v1 entry, and a v1a one, each among a fuzzed entry.
    const std::string v1a = sign_v1a(v.ed25519_signer, std::string(id) + "." + std::string(ts) + "." + std::string(body));
    for (const std::string& entry : {header, v1a}) {
      // One fuzzed entry (no spaces: several could push ours past the examined limit) before ours.
      const std::string entries = std::string(extra.substr(0, std::min<std::size_t>(64, extra.find(' ')))) + " " + entry;
      const w::header_list wh{{"webhook-id", id}, {"webhook-timestamp", ts}, {"webhook-signature", entries}};
      require(v.standard.verify(body, wh, w::unix_seconds(std::chrono::seconds(*parsed_ts))).ok(), "standard round trip");
    }

    // Mailgun: first acceptance passes (or the bounded cache is full / the token was seen before).
    const auto r = v.mailgun.verify({ts, id, sign(v.mailgun_key, {ts, id}), {}}, w::unix_seconds(std::chrono::seconds(*parsed_ts)));
    require(r.ok() || r.error == w::verify_error::replayed_token || r.error == w::verify_error::replay_cache_full,
            "mailgun round trip");
    if (flags & 16) v.mailgun.forget(id);
  }
  return 0;
}
