// Mailgun's webhook signature (hex HMAC-SHA256 over timestamp + token) against its SDK's published vector and
// its docs' payloads, and the replay cache that makes a signature good once. The other providers:
// signatures_test.cc.
#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ingest/webhooks/signatures.h"
#include "verify_cases.h"

namespace {

using namespace signature_tests;

// mailgun/mailgun-php tests/Api/WebhookTest.php testVerifyWebhookGood; the same signature object is in
// Mailgun's docs payloads copied to tests/fixtures/webhooks/mailgun/*.json.
constexpr std::string_view mg_key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
constexpr std::string_view mg_timestamp = "1403645220";
constexpr std::string_view mg_token = "5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6";
constexpr std::string_view mg_signature = "9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33";
// testVerifyWebhookBad: another token with the same signature.
constexpr std::string_view mg_bad_token = "owyldpe6nxhmrn78epljl6bj0orrki1u3d2v5e6cnlmmuox8jr";
const auto mg_now = at(1403645220);

TEST(MailgunSignature, OfficialVectorVerifiesOnceThenIsAReplay) {
  const w::mailgun_verifier v({std::string(mg_key)});
  const w::mailgun_signature sig{mg_timestamp, mg_token, mg_signature, {}};
  EXPECT_TRUE(v.verify(sig, mg_now + 10s).ok());
  expect_result(v.verify(sig, mg_now + 11s), verify_error::replayed_token, "replayed token");
}

TEST(MailgunSignature, FailuresCarryTheirReason) {
  const w::mailgun_verifier v({std::string(mg_key)});
  const w::mailgun_verifier wrong({"key-3ax6xnjp29jd6fds4gc373sgvjxteol1"});
  struct row {
    const char* name;
    w::mailgun_signature sig;
    w::unix_seconds now;
    verify_error error;
    std::string_view reason;
  };
  const row rows[] = {
      {"SDK testVerifyWebhookBad (other token)", {mg_timestamp, mg_bad_token, mg_signature, {}}, mg_now,
       verify_error::signature_mismatch, "signature mismatch"},
      {"altered timestamp", {"1403645221", mg_token, mg_signature, {}}, mg_now, verify_error::signature_mismatch,
       "signature mismatch"},
      {"stale (5 min + 1 s)", {mg_timestamp, mg_token, mg_signature, {}}, mg_now + 301s,
       verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"},
      {"from the future", {mg_timestamp, mg_token, mg_signature, {}}, mg_now - 301s,
       verify_error::timestamp_outside_tolerance, "timestamp outside tolerance"},
      {"SDK testVerifyWebhookEmptyRequest", {"0", "", "", {}}, mg_now, verify_error::missing_input,
       "missing signature.token"},
      {"missing timestamp", {"", mg_token, mg_signature, {}}, mg_now, verify_error::missing_input,
       "missing signature.timestamp"},
      {"missing signature", {mg_timestamp, mg_token, "", {}}, mg_now, verify_error::missing_input,
       "missing signature.signature"},
      {"malformed hex", {mg_timestamp, mg_token, "9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256dzz", {}},
       mg_now, verify_error::malformed_input, "malformed signature.signature"},
      {"float timestamp", {"1403645220.5", mg_token, mg_signature, {}}, mg_now, verify_error::malformed_input,
       "malformed signature.timestamp"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.name);
    expect_result(v.verify(r.sig, r.now), r.error, r.reason);
  }
  expect_result(wrong.verify({mg_timestamp, mg_token, mg_signature, {}}, mg_now), verify_error::signature_mismatch,
                "signature mismatch");
  // Failed attempts must not burn the token: the genuine request still passes afterwards.
  EXPECT_TRUE(v.verify({mg_timestamp, mg_token, mg_signature, {}}, mg_now).ok());
}

TEST(MailgunSignature, ParentSignatureIsCheckedWhenTheSubaccountOneIsNot) {
  // No published vector: Mailgun documents the field, not an example with a known key. The parent
  // signature is the same construction under the primary account's key, which here is mg_key.
  const w::mailgun_verifier v({std::string(mg_key)});
  const std::string subaccount_sig(64, 'a');
  EXPECT_TRUE(v.verify({mg_timestamp, mg_token, subaccount_sig, mg_signature}, mg_now).ok());
  const w::mailgun_verifier v2({std::string(mg_key)});
  expect_result(v2.verify({mg_timestamp, mg_token, subaccount_sig, subaccount_sig}, mg_now),
                verify_error::signature_mismatch, "signature mismatch");
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The string value of `"key": "..."` after `from` (fixture formatting is known; not a JSON parser).
std::string_view json_string_after(std::string_view text, std::string_view key, std::size_t from) {
  const std::string needle = "\"" + std::string(key) + "\": \"";
  const std::size_t k = text.find(needle, from);
  if (k == std::string_view::npos) return {};
  const std::size_t b = k + needle.size();
  return text.substr(b, text.find('"', b) - b);
}

TEST(MailgunSignature, DocsFixturesVerifyWithTheSdkKey) {
  const std::filesystem::path dir = std::filesystem::path(CRM_FIXTURES_DIR) / "webhooks" / "mailgun";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;  // the folder's README
    SCOPED_TRACE(entry.path().filename().string());
    const std::string text = read_file(entry.path());
    const std::size_t block = text.find("\"signature\": {");
    ASSERT_NE(block, std::string::npos);
    const w::mailgun_signature sig{json_string_after(text, "timestamp", block), json_string_after(text, "token", block),
                                   json_string_after(text, "signature", block), {}};
    const w::mailgun_verifier v({std::string(mg_key)});  // fresh cache: every fixture reuses the token
    EXPECT_TRUE(v.verify(sig, mg_now).ok());
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

TEST(ReplayCache, ForgetsExpiredTokensAndRefusesWhenFull) {
  w::replay_cache cache(2);
  using o = w::replay_cache::outcome;
  EXPECT_EQ(cache.insert("a", 100, 0), o::inserted);
  EXPECT_EQ(cache.insert("a", 100, 50), o::replayed);
  EXPECT_EQ(cache.insert("b", 200, 50), o::inserted);
  EXPECT_EQ(cache.insert("c", 200, 50), o::full);  // fail closed: "a" is still live
  EXPECT_EQ(cache.insert("a", 100, 100), o::replayed);  // expiry is inclusive
  EXPECT_EQ(cache.insert("c", 300, 101), o::inserted);  // "a" expired and was dropped
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.insert("b", 200, 201), o::inserted);  // "b" expired; a new acceptance
  cache.erase("b");
  EXPECT_EQ(cache.size(), 1u);  // "c" (until 300) remains
  EXPECT_EQ(cache.insert("b", 400, 201), o::inserted);
  EXPECT_EQ(cache.insert("c", 300, 250), o::replayed);
}

TEST(MailgunSignature, ForgottenTokenCanBeRetried) {
  // The handler accepted the event, failed to enqueue it and answers 5xx: Mailgun's retry may carry
  // the same signature.
  const w::mailgun_verifier v({std::string(mg_key)});
  const w::mailgun_signature sig{mg_timestamp, mg_token, mg_signature, {}};
  ASSERT_TRUE(v.verify(sig, mg_now).ok());
  v.forget(mg_token);
  v.forget("never-seen");
  EXPECT_TRUE(v.verify(sig, mg_now + 1s).ok());
  expect_result(v.verify(sig, mg_now + 2s), verify_error::replayed_token, "replayed token");
}

TEST(ReplayCache, ConcurrentDeliveriesOfOneTokenPassOnce) {
  const w::mailgun_verifier v({std::string(mg_key)});
  std::atomic<int> accepted{0}, replayed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      const auto r = v.verify({mg_timestamp, mg_token, mg_signature, {}}, mg_now);
      (r.ok() ? accepted : replayed)++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(replayed, 7);
}

TEST(MailgunSignature, CacheFullIsARetryableRefusal) {
  w::mailgun_options options;
  options.replay_capacity = 1;
  const w::mailgun_verifier v({"k"}, options);
  auto sign = [](std::string_view ts, std::string_view token) {
    const w::detail::hmac_keyring ring(w::detail::mac_digest::sha256, {"k"});
    w::detail::mac_stream mac(ring, 0);
    mac.update(ts);
    mac.update(token);
    std::array<unsigned char, w::detail::max_mac_size> out;
    EXPECT_TRUE(mac.finish(out));
    return w::detail::hex_encode(std::span(out).first(32));
  };
  const std::string s1 = sign("1000", "t1"), s2 = sign("1000", "t2");
  EXPECT_TRUE(v.verify({"1000", "t1", s1, {}}, at(1000)).ok());
  expect_result(v.verify({"1000", "t2", s2, {}}, at(1000)), verify_error::replay_cache_full, "replay cache full");
  expect_result(v.verify({"1000", "t2", s2, {}}, at(1301)), verify_error::timestamp_outside_tolerance,
                "timestamp outside tolerance");
  EXPECT_THROW(w::mailgun_verifier({"k"}, w::mailgun_options{0s, 10}), std::invalid_argument);
}

}  // namespace
