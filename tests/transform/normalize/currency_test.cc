// ISO 4217 codes from ICU (transform/normalize/currency.h), and the conversions' currency checked with them.
#include <gtest/gtest.h>

#include <string>

#include "tests/transform/normalize/normalize_test_support.h"
#include "transform/normalize/currency.h"

namespace crm::transform {
namespace {

using namespace test_support;

TEST(Currency, CurrentCodesAreKnown) {
  for (const char* code : {"USD", "EUR", "GBP", "JPY", "CHF", "BGN", "RON", "ISK", "ZAR", "SLE", "VES"}) {
    EXPECT_TRUE(is_iso4217(code)) << code;
  }
  // Funds, precious metals and the codes ISO reserves for tests and "no currency" are ISO 4217 codes too.
  for (const char* code : {"XAU", "XDR", "XTS", "XXX", "CHE"}) EXPECT_TRUE(is_iso4217(code)) << code;
}

TEST(Currency, WithdrawnCodesAreKnown) {
  // The ECB's historical reference rates quote these (eurofxref-hist.csv).
  for (const char* code : {"CYP", "EEK", "LTL", "LVL", "MTL", "ROL", "SIT", "SKK", "TRL", "HRK", "DEM"}) {
    EXPECT_TRUE(is_iso4217(code)) << code;
  }
}

TEST(Currency, OtherCodesAreNot) {
  // CNH (offshore yuan) and ARL are CLDR codes without an ISO 4217 number.
  for (const char* code : {"XYZ", "ABC", "CNH", "ARL", "usd", "US", "USDD", "", "U$D", "EU1"}) {
    EXPECT_FALSE(is_iso4217(code)) << code;
  }
}

TEST(Currency, NormalizeUpperCases) {
  char code[3];
  ASSERT_TRUE(normalize_currency("eur", code));
  EXPECT_EQ(std::string(code, 3), "EUR");
  ASSERT_TRUE(normalize_currency("gBp", code));
  EXPECT_EQ(std::string(code, 3), "GBP");
  EXPECT_FALSE(normalize_currency("xyz", code));
  EXPECT_FALSE(normalize_currency("eu", code));
  EXPECT_FALSE(normalize_currency("e\xc3\xbcr", code));
}

TEST(Currency, ConversionWithAnUnknownCodeIsDeadLettered) {
  const result r = run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion","lead_id":3,"currency":"XYZ","conversion_value":10})");
  EXPECT_EQ(r.outcome, normalize_outcome::rejected);
  EXPECT_EQ(r.reason(), "currency: \"XYZ\" is not an ISO 4217 code");
  const result ok = run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion","lead_id":3,"currency":"jpy","conversion_value":1000})");
  ASSERT_EQ(ok.outcome, normalize_outcome::touchpoint) << ok.reason();
  EXPECT_EQ(ok.touch().currency, "JPY");
}

}  // namespace
}  // namespace crm::transform
