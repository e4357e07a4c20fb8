// The webhook source set: built from the configuration, rebuilt and swapped by SIGHUP while the I/O threads
// verify concurrently (serve's reload path, held here as the collector holds it).
#include "ingest/collector/webhook_endpoints.h"
#include "ingest/webhooks/schemes.h"

#include <atomic>
#include <chrono>
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

// What serve and the collector do with the set: an atomic pointer, loaded per request, rebuilt on reload.
class sources_holder {
 public:
  explicit sources_holder(const cfg::settings& c) : current_(crm::ingest::build_sources(c)) {}
  std::string reload(const cfg::settings& c) {
    auto before = current_.load();
    auto fresh = crm::ingest::build_sources(c, before.get());  // throws: the current set stays
    auto changed = crm::ingest::changed_sources(before.get(), *fresh);
    current_.store(std::move(fresh));
    return changed;
  }
  wh::verify_result verify(const std::string& name, const crm::ingest::http::request& req) const {
    auto set = current_.load();
    const auto& s = *set->at(name);
    if (!s.verify) return {};
    return s.verify(req);
  }
  std::shared_ptr<const crm::ingest::webhook_source_set> get() const { return current_.load(); }

 private:
  std::atomic<std::shared_ptr<const crm::ingest::webhook_source_set>> current_;
};

const std::string segment = "segment";

TEST(WebhookSources, ReloadSwapsTheSetWhileOtherThreadsVerify) {
  sources_holder secrets(with_segment_secret("a"));
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

TEST(WebhookSources, AnUnusableConfigurationIsRefusedAndTheCurrentSetStays) {
  sources_holder secrets(with_segment_secret("a"));
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


cfg::settings parse(const std::string& text) {
  return cfg::settings::parse(text, "test", [](const char*) -> const char* { return nullptr; });
}

std::string segment_source(const std::string& name, const std::string& secrets, const std::string& tenant = "") {
  return "[[sources]]\nname = \"" + name + "\"\nprovider = \"segment\"\nsecrets = [" + secrets + "]\n" +
         (tenant.empty() ? "" : "tenant_id = \"" + tenant + "\"\n");
}

TEST(WebhookSources, DeclaredSourcesSitBesideTheBuiltInOnesAndAnyOfTheirSecretsPasses) {
  const signed_request by_old("old"), by_new("new"), by_other("other");
  sources_holder sources(parse(segment_source("acme", "\"old\", \"new\"", "acme") + segment_source("beta", "\"other\"")));
  const auto set = sources.get();
  EXPECT_EQ(set->at("acme")->tenant, "acme");
  EXPECT_EQ(set->at("acme")->endpoint, "/v1/webhooks/acme");
  EXPECT_EQ(set->at("acme")->input_source, "POST /v1/webhooks/segment");
  EXPECT_EQ(set->at("segment")->endpoint, "/v1/webhooks/segment");  // the built-in source is still there
  EXPECT_EQ(set->count("standard"), 1u);
  EXPECT_TRUE(sources.verify("acme", by_old.req).ok());
  EXPECT_TRUE(sources.verify("acme", by_new.req).ok());
  EXPECT_FALSE(sources.verify("acme", by_other.req).ok());
  EXPECT_TRUE(sources.verify("beta", by_other.req).ok());
  EXPECT_FALSE(sources.verify("beta", by_old.req).ok());
  // Rotation done: the old secret is dropped; "beta" is unchanged, "gone" removed, "segment" replaced.
  EXPECT_EQ(sources.reload(parse(segment_source("acme", "\"new\"", "acme") + segment_source("beta", "\"other\"") +
                                 segment_source("segment", "\"s\""))),
            "acme,segment");
  EXPECT_FALSE(sources.verify("acme", by_old.req).ok());
  EXPECT_TRUE(sources.verify("acme", by_new.req).ok());
  EXPECT_EQ(sources.reload(parse(segment_source("acme", "\"new\"", "acme"))), "beta,segment");
  EXPECT_EQ(sources.get()->count("beta"), 0u);
}

// A Mailgun request signed now with `key` and `token` (the signature is in the body).
struct mailgun_request {
  mailgun_request(const std::string& key, const std::string& token) {
    const auto now = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch()).count());
    body = R"({"signature":{"timestamp":")" + now + R"(","token":")" + token + R"(","signature":")" +
           crm_test::hmac_hex(EVP_sha256(), key, now + token) + R"("},"event-data":{}})";
    req.body = body;
    req.headers = &headers;
  }
  std::string body;
  wh::header_list headers;
  crm::ingest::http::request req;
};

const std::string mailgun = "[[sources]]\nname = \"mg\"\nprovider = \"mailgun\"\nsecrets = [\"mg-key\"]\n";

TEST(WebhookSources, AnUnchangedSourceKeepsItsVerifierAndItsReplayCache) {
  const mailgun_request signed_now("mg-key", "tok-1");
  const auto& req = signed_now.req;
  sources_holder sources(parse(mailgun));
  EXPECT_TRUE(sources.verify("mg", req).ok());
  EXPECT_EQ(sources.verify("mg", req).error, wh::verify_error::replayed_token);
  // Another source changes; "mg" keeps its verifier: the token is still known.
  EXPECT_EQ(sources.reload(parse(mailgun + segment_source("acme", "\"a\""))), "acme");
  EXPECT_EQ(sources.verify("mg", req).error, wh::verify_error::replayed_token);
  // A changed tolerance builds a new verifier (with an empty cache).
  EXPECT_EQ(sources.reload(parse(mailgun + "tolerance_seconds = 600\n")), "acme,mg");
  EXPECT_TRUE(sources.verify("mg", req).ok());
}

// From a review: a Mailgun request answered 503 (the local log full) had its token remembered, and the retry with
// the same signature was refused as a replay (401) and lost. A check that passed leaves how to forget its token;
// the collector calls it when it answers 503 (and answers a replayed token 200, nothing stored).
TEST(WebhookSources, AMailgunTokenAcceptedButNotKeptCanBeForgotten) {
  const mailgun_request signed_now("mg-key", "tok-2");
  const auto& req = signed_now.req;
  sources_holder sources(parse(mailgun));
  EXPECT_FALSE(wh::take_forget_accepted()) << "nothing accepted yet on this thread";
  ASSERT_TRUE(sources.verify("mg", req).ok());
  auto forget = wh::take_forget_accepted();
  ASSERT_TRUE(forget);
  EXPECT_FALSE(wh::take_forget_accepted()) << "taken once";
  forget();  // the request was answered 503
  EXPECT_TRUE(sources.verify("mg", req).ok()) << "the retry with the same signature passes";
  (void)wh::take_forget_accepted();  // this time the event was kept
  EXPECT_EQ(sources.verify("mg", req).error, wh::verify_error::replayed_token);
  EXPECT_FALSE(wh::take_forget_accepted()) << "a refused check leaves nothing to forget";
}

TEST(WebhookSources, PostmarkPairsAnyOfWhichPasses) {
  sources_holder sources(parse("[[sources]]\nname = \"pm\"\nprovider = \"postmark\"\nsecrets = [\"u1:p1\", \"u2:p:2\"]\n"));
  auto with_basic = [&](const std::string& user_pass) {
    wh::header_list headers;
    const std::string value = "Basic " + crm_test::base64(user_pass);
    headers.add("Authorization", value);
    crm::ingest::http::request req;
    req.headers = &headers;
    return sources.verify("pm", req);
  };
  EXPECT_TRUE(with_basic("u1:p1").ok());
  EXPECT_TRUE(with_basic("u2:p:2").ok());
  const auto wrong = with_basic("u1:p:2");
  EXPECT_EQ(wrong.error, wh::verify_error::credentials_mismatch);
  // No header at all: the most telling reason, not a mismatch.
  wh::header_list none;
  crm::ingest::http::request req;
  req.headers = &none;
  EXPECT_EQ(sources.verify("pm", req).error, wh::verify_error::missing_input);
}

// The risks a valid set still carries are said (serve logs them at start and on reload).
TEST(WebhookSources, RisksOfAValidSetAreSaid) {
  EXPECT_TRUE(crm::ingest::source_risks(parse(segment_source("acme", "\"a\"", "acme") +
                                               segment_source("beta", "\"b\"", "beta")))
                  .empty());
  // One secret, two tenants: a request signed for acme is accepted on beta's route as beta's.
  auto risks = crm::ingest::source_risks(parse(segment_source("acme", "\"a\"", "acme") +
                                               segment_source("beta", "\"x\", \"a\"", "beta")));
  ASSERT_EQ(risks.size(), 1u);
  EXPECT_NE(risks[0].find("sources acme and beta share a secret but not their tenant"), std::string::npos) << risks[0];
  // The same tenant may use one secret on two routes.
  EXPECT_TRUE(crm::ingest::source_risks(parse(segment_source("acme", "\"a\"", "acme") +
                                               segment_source("acme2", "\"a\"", "acme")))
                  .empty());
  // A header key Segment does not sign; Standard Webhooks signs its webhook-id.
  risks = crm::ingest::source_risks(parse(segment_source("acme", "\"a\"", "acme") +
                                          "idempotency_key = \"header:X-Event-Id\"\n"));
  ASSERT_EQ(risks.size(), 1u);
  EXPECT_NE(risks[0].find("source acme: idempotency_key header:X-Event-Id is not covered by the segment signature"),
            std::string::npos)
      << risks[0];
  EXPECT_TRUE(crm::ingest::source_risks(parse("[[sources]]\nname = \"ev\"\nprovider = \"standard\"\n"
                                               "secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"
                                               "idempotency_key = \"header:Webhook-Id\"\n"))
                  .empty());
  EXPECT_TRUE(crm::ingest::source_risks(parse(segment_source("acme", "\"a\"", "acme") +
                                               "idempotency_key = \"body:/properties/id\"\n"))
                  .empty());
}

}  // namespace
