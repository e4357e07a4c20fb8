// Standard Webhooks v1.0.0 (standardwebhooks.com): v1 (HMAC-SHA256) against the specification's reference
// libraries' published vectors, the Ed25519 primitive against RFC 8032 §7.1, and v1a end to end with
// signatures made here from RFC 8032's TEST 1 key (plus the Go library's published v1a vector). Every
// vector names its source next to it; "std-webhooks" below is github.com/standard-webhooks/standard-webhooks.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "ingest/webhooks/signatures.h"
#include "verify_cases.h"

namespace {

using namespace signature_tests;

// std-webhooks libraries/python/tests/test_webhooks.py test_sign_function: this key, id, timestamp and
// payload sign to this v1 entry (DEFAULT_SECRET, DEFAULT_MSG_ID and DEFAULT_PAYLOAD of the same file are
// the same values, without the "whsec_" prefix for the secret).
constexpr std::string_view secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", bare_secret = secret.substr(6),
                           msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp = "1614265330",
                           payload = R"({"test": 2432232314})", signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const auto signed_at = at(1614265330);

// std-webhooks libraries/python/tests/test_webhooks.py test_invalid_signature_raises_error (last byte off).
constexpr std::string_view invalid_signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
// std-webhooks libraries/python/tests/test_webhooks.py test_multi_sig_payload_is_valid: the entries
// around the valid one (a v1 that does not match, and one of an unknown version v2).
constexpr std::string_view other_v1 = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
constexpr std::string_view unknown_v2 = "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

w::header_list headers(std::string_view sig, std::string_view ts = timestamp, std::string_view id = msg_id) {
  return {{"webhook-id", id}, {"webhook-timestamp", ts}, {"webhook-signature", sig}};
}

w::header_list svix_headers(std::string_view sig, std::string_view ts = timestamp, std::string_view id = msg_id) {
  return {{"svix-id", id}, {"svix-timestamp", ts}, {"svix-signature", sig}};
}

// The vector's headers without the one named `name`.
w::header_list without(std::string_view name) {
  w::header_list out;
  for (const auto& [k, v] : {std::pair{"webhook-id", msg_id}, std::pair{"webhook-timestamp", timestamp},
                             std::pair{"webhook-signature", signature}}) {
    if (k != name) out.add(k, v);
  }
  return out;
}

std::string join(std::initializer_list<std::string_view> entries) {
  std::string out;
  for (auto e : entries) {
    if (!out.empty()) out += ' ';
    out += e;
  }
  return out;
}

template <std::size_t N>
std::array<unsigned char, N> unhex(std::string_view hex) {
  std::array<unsigned char, N> out{};
  const auto n = w::detail::hex_decode(hex, out);
  EXPECT_TRUE(n && *n == N) << hex;
  return out;
}

std::vector<unsigned char> unhex(std::string_view hex) {
  std::vector<unsigned char> out(hex.size() / 2);
  EXPECT_TRUE(w::detail::hex_decode(hex, out)) << hex;
  return out;
}

std::string_view text(std::span<const unsigned char> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The sending side of v1a, made here with OpenSSL from a 32-byte Ed25519 secret key (RFC 8032's "seed").
struct ed25519_signer {
  struct pkey_deleter {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
  };
  struct md_ctx_deleter {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_PKEY, pkey_deleter> key;

  explicit ed25519_signer(std::span<const unsigned char, 32> seed)
      : key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size())) {
    if (!key) throw std::runtime_error("OpenSSL refused the Ed25519 secret key");
  }

  std::array<unsigned char, 32> public_key() const {
    std::array<unsigned char, 32> out{};
    std::size_t len = out.size();
    if (EVP_PKEY_get_raw_public_key(key.get(), out.data(), &len) != 1 || len != out.size()) {
      throw std::runtime_error("no Ed25519 public key");
    }
    return out;
  }
  std::string whpk() const {
    const auto pub = public_key();
    return "whpk_" + w::detail::base64_encode(pub);
  }

  std::array<unsigned char, 64> sign_raw(std::string_view message) const {
    std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
    std::array<unsigned char, 64> sig{};
    std::size_t len = sig.size();
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), sig.data(), &len, reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1 ||
        len != sig.size()) {
      throw std::runtime_error("Ed25519 signing failed");
    }
    return sig;
  }
  // The "v1a,<base64>" entry for a request.
  std::string sign(std::string_view id, std::string_view ts, std::string_view body) const {
    const auto sig = sign_raw(std::string(id) + "." + std::string(ts) + "." + std::string(body));
    return "v1a," + w::detail::base64_encode(sig);
  }
};

// =====================================================================================================
// Ed25519: RFC 8032 §7.1 TEST 1, 2, 3 (secret key, public key, message, signature)

struct rfc8032_case {
  const char* name;
  std::string_view secret_key, public_key, message, signature;
};

constexpr rfc8032_case rfc8032[] = {
    {"RFC 8032 §7.1 TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"RFC 8032 §7.1 TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"RFC 8032 §7.1 TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
};

TEST(Ed25519Primitive, Rfc8032Section71Vectors) {
  for (const auto& c : rfc8032) {
    SCOPED_TRACE(c.name);
    w::detail::ed25519_keyring ring;
    ring.add(unhex<32>(c.public_key));
    const auto message = unhex(c.message);
    auto sig = unhex<64>(c.signature);
    EXPECT_TRUE(ring.match(text(message), sig).ok());

    // The secret key gives the public key and, Ed25519 being deterministic, the very signature.
    const ed25519_signer signer(unhex<32>(c.secret_key));
    EXPECT_EQ(w::detail::hex_encode(signer.public_key()), c.public_key);
    EXPECT_EQ(w::detail::hex_encode(signer.sign_raw(text(message))), c.signature);

    auto longer = message;
    longer.push_back(0x00);
    expect_result(ring.match(text(longer), sig), verify_error::signature_mismatch, "signature mismatch");
    if (!message.empty()) {
      auto changed = message;
      changed[0] ^= 0x01;
      expect_result(ring.match(text(changed), sig), verify_error::signature_mismatch, "signature mismatch");
    }
    expect_result(ring.match(text(message), std::span(sig).first(63)), verify_error::signature_mismatch,
                  "signature mismatch");
    sig[0] ^= 0x01;
    expect_result(ring.match(text(message), sig), verify_error::signature_mismatch, "signature mismatch");
  }
  // Another vector's key: TEST 2's signature does not verify under TEST 1's public key; with both keys
  // (rotation) it does.
  w::detail::ed25519_keyring ring;
  ring.add(unhex<32>(rfc8032[0].public_key));
  const auto sig2 = unhex<64>(rfc8032[1].signature);
  expect_result(ring.match("\x72", sig2), verify_error::signature_mismatch, "signature mismatch");
  ring.add(unhex<32>(rfc8032[1].public_key));
  EXPECT_TRUE(ring.match("\x72", sig2).ok());
}

// =====================================================================================================
// v1 (HMAC-SHA256): the reference libraries' vectors

TEST(StandardWebhooks, SpecVectorVerifies) {
  const w::standard_webhooks_verifier v({std::string(secret)});
  // test_sign_function's vector; test_valid_signature_is_valid_and_returns_json /
  // test_valid_unbranded_signature_is_valid_and_returns_json (webhook-* headers).
  EXPECT_TRUE(v.verify(payload, headers(signature), signed_at).ok());
  // test_signature_verification_with_and_without_prefix: the bare base64 secret is the same key.
  const w::standard_webhooks_verifier bare({std::string(bare_secret)});
  EXPECT_TRUE(bare.verify(payload, headers(signature), signed_at).ok());
  // Svix's names for the same headers (svix/svix-webhooks python/tests/test_webhooks.py test_sign_function
  // has this same vector under svix-* headers).
  EXPECT_TRUE(v.verify(payload, svix_headers(signature), signed_at).ok());
  // The tolerance (5 minutes by default) is inclusive both ways.
  EXPECT_TRUE(v.verify(payload, headers(signature), signed_at + 300s).ok());
  EXPECT_TRUE(v.verify(payload, headers(signature), signed_at - 300s).ok());
  // Rotation: an older secret first, the current one second.
  const w::standard_webhooks_verifier rotating({"whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==", std::string(secret)});
  EXPECT_TRUE(rotating.verify(payload, headers(signature), signed_at).ok());
  // Surrounding whitespace of a header value is not part of it.
  EXPECT_TRUE(v.verify(payload, headers(" " + std::string(signature) + "\t", " 1614265330"), signed_at).ok());
}

TEST(StandardWebhooks, AnyMatchingEntryPasses) {
  const w::standard_webhooks_verifier v({std::string(secret)});
  // test_multi_sig_payload_is_valid: a non-matching v1, an unknown v2, the valid one, another v1.
  EXPECT_TRUE(v.verify(payload, headers(join({other_v1, unknown_v2, signature, other_v1})), signed_at).ok());
  // Entries of a version we hold no key for (v1a here) and of unknown versions are skipped.
  const std::string v1a_entry = "v1a," + std::string(86, 'A') + "==";  // base64 of 64 zero bytes
  EXPECT_TRUE(v.verify(payload, headers(join({v1a_entry, "v9,abc", signature})), signed_at).ok());
  // A v1 entry that is not base64 of 32 bytes cannot pass, but does not stop the others.
  EXPECT_TRUE(v.verify(payload, headers(join({"v1,not-base64", "v1,c2hvcnQ=", signature})), signed_at).ok());
  // Repeated spaces between entries.
  EXPECT_TRUE(v.verify(payload, headers(join({other_v1, "", signature})), signed_at).ok());
}

TEST(StandardWebhooks, FailuresCarryTheirReason) {
  const w::standard_webhooks_verifier v({std::string(secret)});
  const w::standard_webhooks_verifier wrong({"whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=="});
  const std::string sixteen_others = [] {
    std::string s;
    for (std::size_t i = 0; i < w::detail::max_signature_entries; ++i) s += std::string(other_v1) + " ";
    return s;
  }();
  const std::string fifteen_others = sixteen_others.substr(other_v1.size() + 1);
  std::string too_long(signature);
  too_long += ' ';
  too_long.resize(w::detail::max_signature_header + 1, 'A');
  expect_failures({
      {"test_invalid_signature_raises_error", v.verify(payload, headers(invalid_signature), signed_at),
       verify_error::signature_mismatch, "signature mismatch"},
      {"tampered body", v.verify(R"({"test": 2432232315})", headers(signature), signed_at),
       verify_error::signature_mismatch, "signature mismatch"},
      {"tampered id", v.verify(payload, headers(signature, timestamp, "msg_other"), signed_at),
       verify_error::signature_mismatch, "signature mismatch"},
      {"tampered timestamp", v.verify(payload, headers(signature, "1614265331"), signed_at),
       verify_error::signature_mismatch, "signature mismatch"},
      {"wrong secret", wrong.verify(payload, headers(signature), signed_at), verify_error::signature_mismatch,
       "signature mismatch"},
      {"test_invalid_timestamp_raises_error", v.verify(payload, headers(signature, "hello"), signed_at),
       verify_error::malformed_input, "malformed header webhook-timestamp"},
      {"fractional timestamp", v.verify(payload, headers(signature, "1614265330.5"), signed_at),
       verify_error::malformed_input, "malformed header webhook-timestamp"},
      {"test_missing_id_raises_error", v.verify(payload, without("webhook-id"), signed_at), verify_error::missing_input,
       "missing header webhook-id"},
      {"test_timestamp_raises_error", v.verify(payload, without("webhook-timestamp"), signed_at),
       verify_error::missing_input, "missing header webhook-timestamp"},
      {"test_missing_signature_raises_error", v.verify(payload, without("webhook-signature"), signed_at),
       verify_error::missing_input, "missing header webhook-signature"},
      {"svix-id without svix-timestamp",
       v.verify(payload, w::header_list{{"svix-id", msg_id}, {"svix-signature", signature}}, signed_at),
       verify_error::missing_input, "missing header svix-timestamp"},
      {"no headers", v.verify(payload, w::header_list{}, signed_at), verify_error::missing_input,
       "missing header webhook-id"},
      {"unpadded base64", v.verify(payload, headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"), signed_at),
       verify_error::malformed_input, "malformed header webhook-signature"},
      {"v1 of the wrong length", v.verify(payload, headers("v1,c2hvcnQ="), signed_at), verify_error::malformed_input,
       "malformed header webhook-signature"},
      {"only an unknown version", v.verify(payload, headers(unknown_v2), signed_at), verify_error::malformed_input,
       "malformed header webhook-signature"},
      {"entry without comma", v.verify(payload, headers("v1g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), signed_at),
       verify_error::malformed_input, "malformed header webhook-signature"},
      {"empty header", v.verify(payload, headers(""), signed_at), verify_error::malformed_input,
       "malformed header webhook-signature"},
      {"svix alias, bad entry", v.verify(payload, svix_headers("v1,"), signed_at), verify_error::malformed_input,
       "malformed header svix-signature"},
      {"header over the length limit", v.verify(payload, headers(too_long), signed_at), verify_error::malformed_input,
       "malformed header webhook-signature"},
      // Only the first max_signature_entries entries are examined.
      {"valid entry past the entry limit", v.verify(payload, headers(sixteen_others + std::string(signature)), signed_at),
       verify_error::signature_mismatch, "signature mismatch"},
  });
  EXPECT_TRUE(v.verify(payload, headers(fifteen_others + std::string(signature)), signed_at).ok());
  // test_old_timestamp_fails and test_new_timestamp_fails: a second beyond 5 minutes, either way.
  for (const auto when : {signed_at + 301s, signed_at - 301s}) {
    expect_result(v.verify(payload, headers(signature), when), verify_error::timestamp_outside_tolerance,
                  "timestamp outside tolerance");
  }
}

TEST(StandardWebhooks, ToleranceIsConfigurable) {
  const w::standard_webhooks_verifier v({std::string(secret)}, 10s);
  EXPECT_TRUE(v.verify(payload, headers(signature), signed_at + 10s).ok());
  EXPECT_TRUE(v.verify(payload, headers(signature), signed_at - 10s).ok());
  expect_result(v.verify(payload, headers(signature), signed_at + 11s), verify_error::timestamp_outside_tolerance,
                "timestamp outside tolerance");
  expect_result(v.verify(payload, headers(signature), signed_at - 11s), verify_error::timestamp_outside_tolerance,
                "timestamp outside tolerance");
  const w::standard_webhooks_verifier day({std::string(secret)}, 24h);
  EXPECT_TRUE(day.verify(payload, headers(signature), signed_at + 24h).ok());
}

TEST(StandardWebhooks, MessageIdIsTheIdempotencyKey) {
  EXPECT_EQ(w::standard_webhooks_verifier::message_id(headers(signature)), msg_id);
  EXPECT_EQ(w::standard_webhooks_verifier::message_id(svix_headers(signature)), msg_id);
  EXPECT_EQ(w::standard_webhooks_verifier::message_id(w::header_list{{"webhook-id", " msg_1 "}, {"svix-id", "msg_2"}}),
            "msg_1");
  EXPECT_EQ(w::standard_webhooks_verifier::message_id(w::header_list{{"webhook-timestamp", timestamp}}), "");
}

// =====================================================================================================
// v1a (Ed25519)

// RFC 8032 §7.1 TEST 1's secret key signs the requests; its public key is what the receiver configures.
const ed25519_signer& test1_signer() {
  static const ed25519_signer s(unhex<32>(rfc8032[0].secret_key));
  return s;
}

TEST(StandardWebhooks, V1aPublishedVectorVerifies) {
  // std-webhooks libraries/go/webhook_asymmetric_test.go TestAsymmetricWebhookSign: the secret key
  // (seed, base64) "VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=" signs the test_sign_function message to
  // this v1a entry. The receiver is given the matching public key, derived here.
  std::array<unsigned char, 32> seed{};
  ASSERT_TRUE(w::detail::base64_decode("VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=", seed));
  const ed25519_signer sender(seed);
  constexpr std::string_view expected =
      "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";
  const w::standard_webhooks_verifier v({sender.whpk()});
  EXPECT_TRUE(v.verify(payload, headers(expected), signed_at).ok());
  expect_result(v.verify(R"({"test": 2432232315})", headers(expected), signed_at), verify_error::signature_mismatch,
                "signature mismatch");
}

TEST(StandardWebhooks, V1aEndToEnd) {
  const auto& signer = test1_signer();
  ASSERT_EQ(w::detail::hex_encode(signer.public_key()), rfc8032[0].public_key);
  const std::string whpk = signer.whpk();
  const std::string v1a = signer.sign(msg_id, timestamp, payload);
  const w::standard_webhooks_verifier v({whpk});

  EXPECT_TRUE(v.verify(payload, headers(v1a), signed_at).ok());
  EXPECT_TRUE(v.verify(payload, svix_headers(v1a), signed_at).ok());
  // Among other entries (std-webhooks libraries/go/webhook_asymmetric_test.go "valid multi sig is valid":
  // v1 and v2 entries around the v1a one; v1 is skipped when no whsec_ key is configured).
  EXPECT_TRUE(v.verify(payload, headers(join({other_v1, unknown_v2, v1a, other_v1})), signed_at).ok());

  std::string flipped(payload);
  flipped[3] ^= 0x01;
  const std::string other_id_sig = signer.sign("msg_other", timestamp, payload);
  const std::string other_key_sig = ed25519_signer(unhex<32>(rfc8032[1].secret_key)).sign(msg_id, timestamp, payload);
  const w::standard_webhooks_verifier wrong_key({ed25519_signer(unhex<32>(rfc8032[1].secret_key)).whpk()});
  expect_failures({
      {"one flipped body byte", v.verify(flipped, headers(v1a), signed_at), verify_error::signature_mismatch,
       "signature mismatch"},
      {"signed for another id", v.verify(payload, headers(other_id_sig), signed_at), verify_error::signature_mismatch,
       "signature mismatch"},
      {"signed by another key", v.verify(payload, headers(other_key_sig), signed_at), verify_error::signature_mismatch,
       "signature mismatch"},
      {"wrong public key configured", wrong_key.verify(payload, headers(v1a), signed_at),
       verify_error::signature_mismatch, "signature mismatch"},
      {"stale", v.verify(payload, headers(v1a), signed_at + 301s), verify_error::timestamp_outside_tolerance,
       "timestamp outside tolerance"},
      // std-webhooks libraries/go/webhook_asymmetric_test.go "invalid signature is invalid" (32 bytes, not 64)
      // and "partial signature is invalid" (empty): no decodable v1a entry.
      {"go: invalid signature is invalid", v.verify(payload, headers("v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="), signed_at),
       verify_error::malformed_input, "malformed header webhook-signature"},
      {"go: partial signature is invalid", v.verify(payload, headers("v1a,"), signed_at), verify_error::malformed_input,
       "malformed header webhook-signature"},
      {"only v1 entries, only a whpk_ key", v.verify(payload, headers(signature), signed_at),
       verify_error::malformed_input, "malformed header webhook-signature"},
  });
  // A broken v1a entry does not stop a good one.
  EXPECT_TRUE(v.verify(payload, headers(join({"v1a,AAAA", other_key_sig, v1a})), signed_at).ok());
  // At most max_secrets v1a entries are checked (each is an Ed25519 pass over the whole body per key): a good
  // one after four well-formed foreign ones is not looked at, after three it is.
  EXPECT_TRUE(v.verify(payload, headers(join({other_key_sig, other_key_sig, other_key_sig, v1a})), signed_at).ok());
  expect_result(v.verify(payload, headers(join({other_key_sig, other_key_sig, other_key_sig, other_key_sig, v1a})),
                         signed_at),
                verify_error::signature_mismatch, "signature mismatch");
}

TEST(StandardWebhooks, V1AndV1aKeysTogether) {
  const auto& signer = test1_signer();
  const std::string v1a = signer.sign(msg_id, timestamp, payload);
  const std::string bad_v1a = ed25519_signer(unhex<32>(rfc8032[2].secret_key)).sign(msg_id, timestamp, payload);
  const w::standard_webhooks_verifier both({std::string(secret), signer.whpk()});
  EXPECT_TRUE(both.verify(payload, headers(join({signature, bad_v1a})), signed_at).ok());
  EXPECT_TRUE(both.verify(payload, headers(join({invalid_signature, v1a})), signed_at).ok());
  EXPECT_TRUE(both.verify(payload, headers(join({v1a, signature})), signed_at).ok());
  EXPECT_TRUE(both.verify(payload, headers(signature), signed_at).ok());
  EXPECT_TRUE(both.verify(payload, headers(v1a), signed_at).ok());
  expect_result(both.verify(payload, headers(join({invalid_signature, bad_v1a})), signed_at),
                verify_error::signature_mismatch, "signature mismatch");
  expect_result(both.verify(R"({"test": 0})", headers(join({signature, v1a})), signed_at),
                verify_error::signature_mismatch, "signature mismatch");
  // Order of keys does not matter.
  const w::standard_webhooks_verifier reversed({signer.whpk(), std::string(bare_secret)});
  EXPECT_TRUE(reversed.verify(payload, headers(join({invalid_signature, v1a})), signed_at).ok());
  EXPECT_TRUE(reversed.verify(payload, headers(join({signature, bad_v1a})), signed_at).ok());
}

TEST(StandardWebhooks, UnusableConfigurationFailsAtStartUp) {
  const std::string whpk = test1_signer().whpk();
  const std::string s(secret);
  using keys = std::vector<std::string>;
  const auto refused = [](const keys& k, std::chrono::seconds tolerance = 5min) {
    try {
      const w::standard_webhooks_verifier v(k, tolerance);
      return std::string("accepted");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
  };
  EXPECT_NE(refused({}).find("configure the sender's key"), std::string::npos);
  EXPECT_NE(refused({s, s, whpk, whpk, s}).find("at most 4 keys"), std::string::npos);
  EXPECT_EQ(refused({s, s, whpk, whpk}), "accepted");
  EXPECT_NE(refused({s}, 0s).find("tolerance must be positive"), std::string::npos);
  EXPECT_NE(refused({s}, -5s).find("tolerance must be positive"), std::string::npos);
  // A private key is refused with the advice to configure the public one.
  EXPECT_NE(refused({"whsk_" + w::detail::base64_encode(unhex<32>(rfc8032[0].secret_key))}).find("(\"whpk_...\") instead"),
            std::string::npos);
  // whpk_: base64 of exactly 32 bytes.
  const auto pub = unhex<32>(rfc8032[0].public_key);
  EXPECT_NE(refused({"whpk_not base64!"}).find("32-byte Ed25519 public key"), std::string::npos);
  EXPECT_NE(refused({"whpk_" + w::detail::base64_encode(std::span(pub).first(31))}).find("32-byte"), std::string::npos);
  std::array<unsigned char, 33> longer{};
  EXPECT_NE(refused({"whpk_" + w::detail::base64_encode(longer)}).find("32-byte"), std::string::npos);
  EXPECT_NE(refused({"whpk_"}).find("32-byte"), std::string::npos);
  // whsec_ / bare: base64 of at least one byte.
  EXPECT_NE(refused({"whsec_not base64!"}).find("\"whsec_<base64>\""), std::string::npos);
  EXPECT_NE(refused({"whsec_"}).find("\"whsec_<base64>\""), std::string::npos);
  EXPECT_NE(refused({""}).find("\"whsec_<base64>\""), std::string::npos);
  // The error names neither key material nor the secret itself.
  EXPECT_EQ(refused({"whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA=!"}).find("c2Vj"), std::string::npos);
}

}  // namespace
