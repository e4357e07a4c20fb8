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

}  // namespace
