#include "ingest/config/settings.h"

#include <map>

#include <gtest/gtest.h>

namespace cfg = crm::ingest::config;

namespace {

cfg::env_lookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

const cfg::env_lookup no_env = env_of({});

TEST(Config, DefaultsApplyWithoutAFile) {
  auto s = cfg::settings::parse("", "test", no_env);
  EXPECT_EQ(s.str("http", "listen"), "127.0.0.1:8080");
  EXPECT_EQ(s.integer("postgres", "writers"), 2);
  EXPECT_EQ(s.origin("http", "listen"), "default");
}

TEST(Config, FileValuesAndTheirOrigin) {
  auto s = cfg::settings::parse("[http]\nlisten = \"0.0.0.0:9000\"\n\n[webhooks.twilio]\nauth_token = \"abc\"\n",
                                "crm.toml", no_env);
  EXPECT_EQ(s.str("http", "listen"), "0.0.0.0:9000");
  EXPECT_EQ(s.origin("http", "listen"), "crm.toml:2");
  EXPECT_EQ(s.str("webhooks.twilio", "auth_token"), "abc");
}

TEST(Config, EnvironmentOverridesTheFile) {
  auto s = cfg::settings::parse("[webhooks.twilio]\nauth_token = \"from-file\"\n", "crm.toml",
                                env_of({{"CRM_INGEST_WEBHOOKS_TWILIO_AUTH_TOKEN", "from-env"},
                                        {"CRM_INGEST_POSTGRES_WRITERS", "4"}}));
  EXPECT_EQ(s.str("webhooks.twilio", "auth_token"), "from-env");
  EXPECT_EQ(s.origin("webhooks.twilio", "auth_token"), "environment CRM_INGEST_WEBHOOKS_TWILIO_AUTH_TOKEN");
  EXPECT_EQ(s.integer("postgres", "writers"), 4);
}

TEST(Config, EveryMistakeIsReportedAtOnceWithAdvice) {
  const char* text =
      "[http]\n"
      "listn = \"x\"\n"            // typo
      "io_threads = 0\n"           // out of bounds
      "body_limit_bytes = \"1\"\n"  // wrong type
      "[postgress]\n"              // unknown section
      "dsn = \"x\"\n"
      "[webhooks.resend]\nsecret = \"abc\"\n";
  try {
    cfg::settings::parse(text, "bad.toml", env_of({{"CRM_INGEST_POSTGRES_WRITERS", "many"}}));
    FAIL() << "accepted a bad configuration";
  } catch (const cfg::config_error& e) {
    std::string all;
    for (const auto& p : e.problems()) all += p + "\n";
    EXPECT_EQ(e.problems().size(), 6u) << all;
    EXPECT_NE(all.find("bad.toml:2: unknown setting http.listn (did you mean http.listen?)"), std::string::npos) << all;
    EXPECT_NE(all.find("http.io_threads = 0 is outside [1, 256]"), std::string::npos) << all;
    EXPECT_NE(all.find("http.body_limit_bytes must be an integer"), std::string::npos) << all;
    EXPECT_NE(all.find("unknown section [postgress] (did you mean [postgres]?)"), std::string::npos) << all;
    EXPECT_NE(all.find("must start with whsec_"), std::string::npos) << all;
    EXPECT_NE(all.find("environment CRM_INGEST_POSTGRES_WRITERS: postgres.writers must be an integer"),
              std::string::npos)
        << all;
  }
}

// From a review: "ZZ" or "XX" passed the two-upper-case-letters check and then every national number was
// dead-lettered ("invalid country code"); import and rejected replay did not check --default-region at all
// (tests/ingest/import). The region must be one libphonenumber reads numbers in.
TEST(Config, TheDefaultRegionIsOneOfPhoneNumbering) {
  for (const char* bad : {"gb", "XX", "ZZ", "ZZZ", ""}) {
    try {
      cfg::settings::parse(std::string("[normalize]\ndefault_region = \"") + bad + "\"\n", "r.toml", no_env);
      ADD_FAILURE() << "accepted default_region " << bad;
    } catch (const cfg::config_error& e) {
      ASSERT_EQ(e.problems().size(), 1u) << bad;
      EXPECT_NE(e.problems()[0].find("normalize.default_region must be a region of phone numbering"), std::string::npos)
          << e.problems()[0];
    }
  }
  for (const char* good : {"US", "GB", "DE", "BR"}) {
    EXPECT_EQ(cfg::settings::parse(std::string("[normalize]\ndefault_region = \"") + good + "\"\n", "r.toml", no_env)
                  .str("normalize", "default_region"),
              good);
  }
}

TEST(Config, SyntaxErrorsCarryLineAndColumn) {
  try {
    cfg::settings::parse("[http\nlisten = 1\n", "broken.toml", no_env);
    FAIL();
  } catch (const cfg::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.toml:1:"), std::string::npos) << e.what();
  }
}

TEST(Config, SecretsAreMaskedWhenDescribed) {
  auto s = cfg::settings::parse("[webhooks.segment]\nshared_secret = \"hunter2\"\n", "crm.toml", no_env);
  auto d = s.describe();
  EXPECT_EQ(d.find("hunter2"), std::string::npos);
  EXPECT_NE(d.find("shared_secret = \"***\""), std::string::npos) << d;
}

TEST(Config, TheReferenceFileIsItselfValidAndDocumentsEverySetting) {
  auto ref = cfg::reference_toml();
  EXPECT_NO_THROW(cfg::settings::parse(ref, "reference.toml", no_env));
  for (const auto& s : cfg::all_settings()) {
    EXPECT_NE(ref.find(s.env_name()), std::string::npos) << s.name();
    EXPECT_FALSE(s.description.empty()) << s.name();
  }
}

TEST(ConfigSources, ArrayOfTablesDefinesSources) {
  auto s = cfg::settings::parse(
      "[[sources]]\nname = \"acme-segment\"\nprovider = \"segment\"\ntenant_id = \"acme\"\nsecrets = [\"old\", \"new\"]\n"
      "idempotency_key = \"header:X-Event-Id\"\n\n"
      "[[sources]]\nname = \"beta_std\"\nprovider = \"standard\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"
      "tolerance_seconds = 60\nidempotency_key = \"body:/data/id\"\n\n"
      "[[sources]]\nname = \"open-mailgun\"\nprovider = \"mailgun\"\nallow_unsigned = true\n",
      "crm.toml", no_env);
  ASSERT_EQ(s.sources().size(), 3u);
  const auto& a = s.sources()[0];
  EXPECT_EQ(a.name, "acme-segment");
  EXPECT_EQ(a.provider, "segment");
  EXPECT_EQ(a.tenant_id, "acme");
  EXPECT_EQ(a.secrets, (std::vector<std::string>{"old", "new"}));
  EXPECT_EQ(a.idempotency_key, "header:X-Event-Id");
  EXPECT_EQ(a.origin, "crm.toml:1");
  EXPECT_EQ(s.sources()[1].tolerance_seconds, 60);
  EXPECT_TRUE(s.sources()[2].allow_unsigned);
  EXPECT_TRUE(s.sources()[2].secrets.empty());
  // Secrets are masked when described; the rest is shown.
  const auto d = s.describe();
  EXPECT_EQ(d.find("old"), std::string::npos) << d;
  EXPECT_EQ(d.find("whsec_"), std::string::npos) << d;
  EXPECT_NE(d.find("name = \"acme-segment\""), std::string::npos) << d;
  EXPECT_NE(d.find("secrets = [\"***\", \"***\"]"), std::string::npos) << d;
}

TEST(ConfigSources, EveryBadDefinitionIsReportedAtOnceNamingTheSourceAndTheKey) {
  const char* text =
      "[[sources]]\n"  // 1
      "name = \"acme\"\nprovider = \"sendgird\"\nsecrets = [\"k\"]\n"  // 2-4: unknown provider
      "[[sources]]\n"  // 5
      "name = \"Bad Name\"\nprovider = \"segment\"\nsecrets = [\"k\"]\n"  // 6-8: bad name
      "[[sources]]\n"  // 9
      "name = \"acme\"\nprovider = \"segment\"\nsecrets = [\"k\"]\n"  // 10-12: duplicate name
      "[[sources]]\n"  // 13
      "name = \"empty\"\nprovider = \"segment\"\nsecrets = [\"\"]\n"  // 14-16: empty secret
      "[[sources]]\n"  // 17
      "name = \"many\"\nprovider = \"segment\"\nsecrets = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n"  // >4
      "[[sources]]\n"  // 21
      "name = \"keyed\"\nprovider = \"segment\"\nsecrets = [\"k\"]\nidempotency_key = \"query:id\"\n"  // bad key
      "[[sources]]\n"  // 26
      "name = \"slow\"\nprovider = \"standard\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"
      "tolerance_seconds = 0\n"  // out of range
      "[[sources]]\n"  // 31
      "name = \"typo\"\nprovider = \"segment\"\nsecret = [\"k\"]\n"  // unknown key (and so no secrets)
      "[[sources]]\n"  // 35
      "name = \"grid\"\nprovider = \"sendgrid\"\nsecrets = [\"not-a-key\"]\n";  // unusable secret
  try {
    cfg::settings::parse(text, "src.toml", no_env);
    FAIL() << "accepted bad sources";
  } catch (const cfg::config_error& e) {
    std::string all;
    for (const auto& p : e.problems()) all += p + "\n";
    auto has = [&](const std::string& what) { EXPECT_NE(all.find(what), std::string::npos) << what << "\n" << all; };
    has("src.toml:3: [[sources]] \"acme\": provider \"sendgird\" is not a provider (one of sendgrid,");
    has("src.toml:6: [[sources]] #2: name \"Bad Name\" must be 1-63 of [a-z0-9_-]");
    has("src.toml:10: [[sources]] \"acme\": name \"acme\" is already the name of the source at src.toml:1");
    has("src.toml:16: [[sources]] \"empty\": secrets holds an empty secret");
    has("[[sources]] \"many\": secrets holds 5 values; at most 4 are valid at once");
    has("[[sources]] \"keyed\": idempotency_key \"query:id\" must be header:<Name> or body:<JSON pointer>");
    has("[[sources]] \"slow\": tolerance_seconds = 0 is outside [1, 86400]");
    has("src.toml:34: [[sources]] \"typo\": secret is not a key of a source (keys: name, provider,");
    has("[[sources]] \"typo\": secrets missing: give 1-4 secrets, or allow_unsigned = true");
    has("src.toml:35: [[sources]] \"grid\": secrets unusable for sendgrid:");
    EXPECT_EQ(e.problems().size(), 10u) << all;
  }
}

TEST(ConfigSources, ProviderSpecificKeysAreChecked) {
  try {
    cfg::settings::parse("[[sources]]\nname = \"seg\"\nprovider = \"segment\"\nsecrets = [\"k\"]\ntolerance_seconds = 60\n"
                         "verify_token = \"t\"\n[[sources]]\nname = \"tw\"\nprovider = \"twilio\"\nsecrets = [\"t\"]\n"
                         "[[sources]]\nname = \"pm\"\nprovider = \"postmark\"\nsecrets = [\"no-colon\"]\n"
                         "[[sources]]\nname = \"wa\"\nprovider = \"whatsapp\"\nsecrets = [\"s\"]\n"
                         "idempotency_key = \"header:X-Id\"\n"
                         "[[sources]]\nname = \"tw2\"\nprovider = \"twilio\"\nallow_unsigned = true\n"
                         "idempotency_key = \"body:/id\"\n",
                         "p.toml", no_env);
    FAIL();
  } catch (const cfg::config_error& e) {
    std::string all;
    for (const auto& p : e.problems()) all += p + "\n";
    EXPECT_NE(all.find("\"seg\": tolerance_seconds is not used: segment signs no timestamp"), std::string::npos) << all;
    EXPECT_NE(all.find("\"seg\": verify_token is for whatsapp sources only"), std::string::npos) << all;
    EXPECT_NE(all.find("\"tw\": secrets unusable for twilio: a Twilio auth token is set but http.public_base_url"),
              std::string::npos) << all;
    EXPECT_NE(all.find("\"pm\": secrets unusable for postmark: a Postmark secret is \"user:password\""),
              std::string::npos) << all;
    // Keys that no request could ever carry.
    EXPECT_NE(all.find("\"wa\": idempotency_key is not used by whatsapp sources"), std::string::npos) << all;
    EXPECT_NE(all.find("\"tw2\": idempotency_key cannot be a body: path for twilio, which posts a form"),
              std::string::npos) << all;
    EXPECT_EQ(e.problems().size(), 6u) << all;
  }
  // With the public URL, the Twilio source is usable.
  EXPECT_NO_THROW(cfg::settings::parse("[http]\npublic_base_url = \"https://in.example.com/\"\n[[sources]]\nname = \"tw\"\n"
                                       "provider = \"twilio\"\nsecrets = [\"t\"]\n", "p.toml", no_env));
}

}  // namespace
