// The one validator: a canonical JSON record and the same fields handed over by a provider adapter
// (normalizer::append) meet the same rules, give the same reasons and derive the same records.
#include <gtest/gtest.h>

#include <string>

#include "tests/transform/normalize/normalize_test_support.h"

namespace crm::transform {
namespace {

using namespace test_support;

TEST(OneValidator, ConversionValueBoundIsTheSameForBothInputs) {
  // numeric(20,6) holds 14 integer digits: the bound used to exist on the provider path only.
  const result canonical = run(touch(R"(,"conversion_value":2e14)"));
  touchpoint_fields f = page_view();
  f.has_conversion_value = true;
  f.conversion_value = 2e14;
  f.conversion_value_text = "2e14";
  const result provider = append(f);
  ASSERT_EQ(canonical.outcome, normalize_outcome::rejected);
  ASSERT_EQ(provider.outcome, normalize_outcome::rejected);
  EXPECT_EQ(canonical.reason(), provider.reason());
  EXPECT_EQ(provider.reason(), "conversion_value: expected a number >= 0 within numeric(20,6), got 2e14");
}

TEST(OneValidator, NegativeConversionValueFromAProvider) {
  touchpoint_fields f = page_view();
  f.has_conversion_value = true;
  f.conversion_value = -5;
  EXPECT_EQ(append(f).reason(), "conversion_value: expected a number >= 0, got -5");
  EXPECT_EQ(run(touch(R"(,"conversion_value":-5)")).reason(), append(f).reason());
}

TEST(OneValidator, TouchpointRulesGiveTheCanonicalReasons) {
  touchpoint_fields f = page_view();
  f.anonymous_id = {};
  EXPECT_EQ(append(f).reason(), "lead_id/anonymous_id: at least one is required");
  f = page_view();
  f.type = touch_type::experiment_exposure;
  f.ab_test_id = "t1";
  EXPECT_EQ(append(f).reason(), "variant: missing (required for touch_type experiment_exposure)");
  EXPECT_EQ(append(f).reason(),
            run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"experiment_exposure",)"
                R"("anonymous_id":"a1","ab_test_id":"t1"})")
                .reason());
  f = page_view();
  f.currency = "U$D";
  EXPECT_EQ(append(f).reason(), "currency: \"U$D\" is not an ISO 4217 code");
  f = page_view();
  f.touchpoint_id = "123";
  EXPECT_EQ(append(f).reason(), run(touch(R"(,"touchpoint_id":"123")")).reason());
  f = page_view();
  f.occurred_at = 0;
  EXPECT_EQ(append(f).reason(),
            run(R"({"kind":"touchpoint","occurred_at":0,"touch_type":"page_view","anonymous_id":"a1"})").reason());
}

TEST(OneValidator, CommunicationRulesGiveTheCanonicalReasons) {
  communication_fields f;
  f.occurred_at = may_first_10h;
  f.status = comm_status::delivered;
  f.email = "foo.example.com";
  EXPECT_EQ(append(f).reason(), run(comm(R"(,"email":"foo.example.com")")).reason());
  f.email = {};
  f.phone = "12345";
  EXPECT_EQ(append(f).reason(), run(comm(R"(,"phone":"12345")")).reason());
  f.phone = {};
  f.event_id = "not-a-uuid";
  EXPECT_EQ(append(f).reason(), run(comm(R"(,"event_id":"not-a-uuid")")).reason());
}

TEST(OneValidator, TheSameFieldsDeriveTheSameRecords) {
  const result canonical = run(comm(R"(,"provider":"acme","provider_message_id":"m-1","email":" A@B.co ","lead_id":4)"));
  communication_fields f;
  f.occurred_at = may_first_10h;
  f.status = comm_status::delivered;
  f.provider = "acme";
  f.provider_message_id = "m-1";
  f.email = " A@B.co ";
  f.lead_id = 4;
  const result provider = append(f);
  ASSERT_EQ(canonical.outcome, normalize_outcome::communication) << canonical.reason();
  ASSERT_EQ(provider.outcome, normalize_outcome::communication) << provider.reason();
  EXPECT_EQ(provider.comm().event_id, canonical.comm().event_id);
  EXPECT_EQ(provider.comm().email, "a@b.co");

  const result page = run(touch(R"(,"landing_url":"https://s.com/?utm_source=google&utm_medium=cpc&gclid=x%20y")"));
  touchpoint_fields t = page_view();
  t.landing_url = "https://s.com/?utm_source=google&utm_medium=cpc&gclid=x%20y";
  const result mapped = append(t);
  ASSERT_EQ(page.outcome, normalize_outcome::touchpoint) << page.reason();
  ASSERT_EQ(mapped.outcome, normalize_outcome::touchpoint) << mapped.reason();
  EXPECT_EQ(mapped.touch().touchpoint_id, page.touch().touchpoint_id);
  EXPECT_EQ(mapped.touch().gclid, "x y");
  EXPECT_EQ(mapped.touch().group, channel_group::paid_search);
  EXPECT_EQ(mapped.touch().group, page.touch().group);
}

}  // namespace
}  // namespace crm::transform
