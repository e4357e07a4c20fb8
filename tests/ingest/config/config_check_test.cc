// `crm-ingest config check` builds what serve builds from its settings (the callers' credentials, every webhook
// source's check) and prints serve's start-up warnings; serve refuses the same mistakes with exit 2. From a
// review: config check passed files serve then refused (a key file that is not there: exit 70, "a bug"; a
// Standard Webhooks secret that is not base64), and printed none of serve's warnings.
#include <string>

#include <gtest/gtest.h>

#include "support/run_command.h"
#include "support/scratch.h"

namespace {

crm_test::command_result run(const std::string& args) { return crm_test::run_ingest("--log-level warn " + args); }

std::string config_file(const std::string& name, const std::string& text) {
  const auto path = crm_test::scratch("config-check-" + name) / (name + ".toml");
  crm_test::write_file(path, text);
  return path.string();
}

void expect_has(const std::string& out, const std::string& piece) {
  EXPECT_NE(out.find(piece), std::string::npos) << "expected " << piece << " in:\n" << out;
}

TEST(ConfigCheck, RefusesWhatServeWouldRefuseAndServeSaysItIsTheConfiguration) {
  const auto missing_key = config_file("missing-key", "[auth]\njwt_public_key_file = \"/nonexistent/jwt.pem\"\n");
  auto r = run("config check " + missing_key);
  EXPECT_EQ(r.status, 2) << r.out;
  expect_has(r.out, "/nonexistent/jwt.pem");
  // serve stops at the same check, before the database or the listener, with the configuration's exit code.
  r = run("serve --config " + missing_key);
  EXPECT_EQ(r.status, 2) << r.out;
  expect_has(r.out, "/nonexistent/jwt.pem");

  // From the same review: a [[sources]] named after a provider, unsigned, replaced the built-in endpoint whose
  // secret was set, and the secret was ignored without a word.
  const auto dropped_secret = config_file(
      "dropped-secret", "[webhooks.standard]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n[[sources]]\n"
                        "name = \"standard\"\nprovider = \"standard\"\nallow_unsigned = true\n");
  r = run("config check " + dropped_secret);
  EXPECT_EQ(r.status, 2) << r.out;
  expect_has(r.out, "would replace [webhooks.standard], whose secret is set, with an unsigned endpoint");

  const auto bad_secret = config_file("bad-secret", "[webhooks.standard]\nsecret = \"my secret!\"\n");
  r = run("config check " + bad_secret);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_EQ(r.out.find("configuration is valid"), std::string::npos) << r.out;
}

TEST(ConfigCheck, PrintsTheWarningsServeLogsAtStart) {
  const auto open = config_file("open", "[webhooks.segment]\nallow_unsigned = true\n");
  auto r = run("config check " + open);
  EXPECT_EQ(r.status, 0) << r.out;
  expect_has(r.out, "warning: POST /v1/events is OPEN");
  expect_has(r.out, "warning: POST /v1/webhooks/segment accepts UNSIGNED requests");
  expect_has(r.out, "configuration is valid");
  const auto closed = config_file("closed", "[auth]\napi_keys = \"ci=sha256:" + std::string(64, 'a') + "\"\n");
  r = run("config check " + closed);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("warning:"), std::string::npos) << r.out;
}

}  // namespace
