// webhook_secrets: the set swapped by SIGHUP while the I/O threads verify concurrently.
#include "ingest/collector/webhook_endpoints.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "support/hmac.h"

namespace {

namespace cfg = crm::ingest::config;
namespace wh = crm::ingest::webhooks;

cfg::settings with_segment_secret(const std::string& secret, const std::string& extra = "") {
  return cfg::settings::parse("[webhooks.segment]\nshared_secret = \"" + secret + "\"\n" + extra, "test",
                              [](const char*) -> const char* { return nullptr; });
}

struct signed_request {
  std::string body = R"({"type":"track"})";
  std::string signature;
  wh::header_list headers;
  crm::ingest::http::request req;
  explicit signed_request(const std::string& secret) : signature(crm_test::hmac_hex(EVP_sha1(), secret, body)) {
    headers.add("X-Signature", signature);
    req.body = body;
    req.headers = &headers;
  }
};

const std::size_t segment = crm::ingest::webhook_secrets::index_of("segment");

TEST(WebhookSecrets, ReloadSwapsTheSetWhileOtherThreadsVerify) {
  crm::ingest::webhook_secrets secrets(with_segment_secret("a"));
  const signed_request by_a("a"), by_b("b");
  const auto config_a = with_segment_secret("a"), config_b = with_segment_secret("b");
  std::atomic<bool> stop{false};
  std::atomic<long> ok{0}, mismatch{0}, other{0};
  std::atomic<int> verified_once{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      const auto& r = t % 2 ? by_a : by_b;
      bool first = true;
      while (!stop.load(std::memory_order_relaxed)) {
        auto v = secrets.verify(segment, r.req);
        if (v.ok()) ++ok;
        else if (v.error == wh::verify_error::signature_mismatch) ++mismatch;
        else ++other;
        if (first) ++verified_once;
        first = false;
      }
    });
  }
  // Every reader has verified against the first set ("a": ok for by_a, mismatch for by_b) before the
  // reloads start, however late a loaded machine schedules the threads.
  while (verified_once.load() < 4) std::this_thread::yield();
  for (int i = 0; i < 2000; ++i) {
    EXPECT_EQ(secrets.reload(i % 2 ? config_a : config_b), "segment");
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(mismatch.load(), 0);
  // The last reload installed "a".
  EXPECT_TRUE(secrets.verify(segment, by_a.req).ok());
  EXPECT_FALSE(secrets.verify(segment, by_b.req).ok());
}

TEST(WebhookSecrets, AnUnusableConfigurationIsRefusedAndTheCurrentSetStays) {
  crm::ingest::webhook_secrets secrets(with_segment_secret("a"));
  const signed_request by_a("a"), by_b("b");
  // A Twilio token without http.public_base_url cannot be verified: the whole reload is refused.
  auto bad = cfg::settings::parse("[webhooks.segment]\nshared_secret = \"b\"\n[webhooks.twilio]\nauth_token = \"t\"\n",
                                  "test", [](const char*) -> const char* { return nullptr; });
  EXPECT_THROW(secrets.reload(bad), std::invalid_argument);
  EXPECT_TRUE(secrets.verify(segment, by_a.req).ok());
  EXPECT_FALSE(secrets.verify(segment, by_b.req).ok());
  // Removing the secret closes the endpoint (every request refused, with the advice); an unchanged file
  // changes nothing; only the explicit opt-in turns verification off.
  EXPECT_EQ(secrets.reload(with_segment_secret("")), "segment");
  auto refused = secrets.verify(segment, by_b.req);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.reason.find("webhooks.segment.allow_unsigned = true"), std::string_view::npos) << refused.reason;
  EXPECT_FALSE(secrets.verify(segment, by_a.req).ok());
  EXPECT_EQ(secrets.reload(with_segment_secret("")), "");
  EXPECT_TRUE(crm::ingest::unsigned_webhooks(with_segment_secret("")).empty());
  const auto open = with_segment_secret("", "allow_unsigned = true\n");
  EXPECT_EQ(secrets.reload(open), "segment");
  EXPECT_TRUE(secrets.verify(segment, by_b.req).ok());
  EXPECT_EQ(crm::ingest::unsigned_webhooks(open), std::vector<std::string>{"segment"});
  // With a secret, the opt-in is moot: signatures are checked.
  EXPECT_EQ(secrets.reload(with_segment_secret("a", "allow_unsigned = true\n")), "segment");
  EXPECT_FALSE(secrets.verify(segment, by_b.req).ok());
  EXPECT_TRUE(crm::ingest::unsigned_webhooks(with_segment_secret("a", "allow_unsigned = true\n")).empty());
}

}  // namespace
