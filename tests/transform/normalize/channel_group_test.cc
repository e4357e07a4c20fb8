#include "transform/normalize/channel_group.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/transform/test_names.h"

namespace crm::transform::detail {
namespace {

struct group_case {
  const char* name;
  channel_inputs in;
  channel_group expected;
};

class ChannelGroups : public ::testing::TestWithParam<group_case> {};

TEST_P(ChannelGroups, FollowGa4Rules) {
  EXPECT_EQ(to_string(derive_channel_group(GetParam().in)), to_string(GetParam().expected)) << GetParam().name;
}

constexpr std::string_view landing = "https://shop.example.com/spring";

// channel_inputs: utm_source, utm_medium, utm_campaign, gclid, fbclid, msclkid, referrer, landing_url
INSTANTIATE_TEST_SUITE_P(
    Ga4, ChannelGroups,
    ::testing::Values(
        group_case{"nothing at all", {{}, {}, {}, {}, {}, {}, {}, landing}, channel_group::direct},
        group_case{"self referral", {{}, {}, {}, {}, {}, {}, "https://shop.example.com/cart", landing},
                   channel_group::direct},
        group_case{"self referral with www", {{}, {}, {}, {}, {}, {}, "http://www.shop.example.com/", landing},
                   channel_group::direct},
        group_case{"explicit (direct)", {"(direct)", "(none)", {}, {}, {}, {}, {}, landing}, channel_group::direct},
        group_case{"google cpc", {"google", "cpc", {}, {}, {}, {}, {}, landing}, channel_group::paid_search},
        group_case{"Bing PPC upper case", {"Bing", "PPC", {}, {}, {}, {}, {}, landing}, channel_group::paid_search},
        group_case{"google paid_search", {"google.com", "paidsearch", {}, {}, {}, {}, {}, landing},
                   channel_group::paid_search},
        group_case{"gclid only", {{}, {}, {}, "abc", {}, {}, {}, landing}, channel_group::paid_search},
        group_case{"msclkid only", {{}, {}, {}, {}, {}, "abc", {}, landing}, channel_group::paid_search},
        group_case{"gclid with google source", {"google", {}, {}, "abc", {}, {}, {}, landing},
                   channel_group::paid_search},
        group_case{"gclid but utm says email", {"newsletter", "email", {}, "abc", {}, {}, {}, landing},
                   channel_group::email},
        group_case{"facebook cpc", {"facebook", "cpc", {}, {}, {}, {}, {}, landing}, channel_group::paid_social},
        group_case{"ig paid_social", {"ig", "paid_social", {}, {}, {}, {}, {}, landing}, channel_group::paid_social},
        group_case{"linkedin retargeting", {"linkedin.com", "retargeting", {}, {}, {}, {}, {}, landing},
                   channel_group::paid_social},
        group_case{"display", {"dv360", "display", {}, {}, {}, {}, {}, landing}, channel_group::display},
        group_case{"cpm banner network", {"somenetwork", "cpm", {}, {}, {}, {}, {}, landing}, channel_group::display},
        group_case{"banner", {"adnet", "banner", {}, {}, {}, {}, {}, landing}, channel_group::display},
        group_case{"paid other", {"amazon", "cpc", {}, {}, {}, {}, {}, landing}, channel_group::other},
        group_case{"cross-network", {"google", "cpc", "pmax cross-network", {}, {}, {}, {}, landing},
                   channel_group::other},
        group_case{"organic social by source", {"twitter", "tweet", {}, {}, {}, {}, {}, landing},
                   channel_group::organic_social},
        group_case{"organic social by medium", {"someone", "social-media", {}, {}, {}, {}, {}, landing},
                   channel_group::organic_social},
        group_case{"fbclid only", {{}, {}, {}, {}, "IwAR0", {}, {}, landing}, channel_group::organic_social},
        group_case{"organic search by medium", {"foo", "organic", {}, {}, {}, {}, {}, landing},
                   channel_group::organic_search},
        group_case{"organic search by source", {"duckduckgo", "", {}, {}, {}, {}, {}, landing},
                   channel_group::organic_search},
        group_case{"referral medium", {"partner-blog", "referral", {}, {}, {}, {}, {}, landing},
                   channel_group::referral},
        group_case{"app medium", {"partner", "app", {}, {}, {}, {}, {}, landing}, channel_group::referral},
        group_case{"email medium", {"newsletter", "email", {}, {}, {}, {}, {}, landing}, channel_group::email},
        group_case{"e-mail source", {"e-mail", "weekly", {}, {}, {}, {}, {}, landing}, channel_group::email},
        group_case{"affiliate", {"awin", "affiliate", {}, {}, {}, {}, {}, landing}, channel_group::affiliates},
        group_case{"sms source", {"sms", "text", {}, {}, {}, {}, {}, landing}, channel_group::sms},
        group_case{"sms medium", {"twilio", "SMS", {}, {}, {}, {}, {}, landing}, channel_group::sms},
        group_case{"unknown medium", {"newsletter", "weird", {}, {}, {}, {}, {}, landing}, channel_group::other},
        group_case{"source only, unknown", {"partner", {}, {}, {}, {}, {}, {}, landing}, channel_group::other},
        group_case{"push", {"firebase", "push", {}, {}, {}, {}, {}, landing}, channel_group::other},
        group_case{"referrer google.co.uk", {{}, {}, {}, {}, {}, {}, "https://www.google.co.uk/", landing},
                   channel_group::organic_search},
        group_case{"referrer bing", {{}, {}, {}, {}, {}, {}, "https://www.bing.com/search?q=crm", landing},
                   channel_group::organic_search},
        group_case{"referrer l.facebook.com", {{}, {}, {}, {}, {}, {}, "https://l.facebook.com/l.php", landing},
                   channel_group::organic_social},
        group_case{"referrer t.co", {{}, {}, {}, {}, {}, {}, "https://t.co/abc", landing},
                   channel_group::organic_social},
        group_case{"referrer lnkd.in", {{}, {}, {}, {}, {}, {}, "https://lnkd.in/xyz", landing},
                   channel_group::organic_social},
        group_case{"referrer webmail", {{}, {}, {}, {}, {}, {}, "https://mail.google.com/mail/u/0/", landing},
                   channel_group::email},
        group_case{"referrer other site", {{}, {}, {}, {}, {}, {}, "https://news.ycombinator.com/", landing},
                   channel_group::referral},
        group_case{"referrer site with google in path only",
                   {{}, {}, {}, {}, {}, {}, "https://blog.example.org/google", landing}, channel_group::referral}),
    [](const ::testing::TestParamInfo<group_case>& info) { return test_support::test_name(info.param.name); });

TEST(SiteLists, MatchHostsAndSources) {
  EXPECT_TRUE(is_search_site("google"));
  EXPECT_TRUE(is_search_site("www.google.co.uk"));
  EXPECT_TRUE(is_search_site("news.google.com"));
  EXPECT_TRUE(is_search_site("DuckDuckGo.com"));
  EXPECT_FALSE(is_search_site("googleblog.example.com"));
  EXPECT_FALSE(is_search_site("com"));
  EXPECT_TRUE(is_social_site("fb"));
  EXPECT_TRUE(is_social_site("m.facebook.com"));
  EXPECT_TRUE(is_social_site("x.com"));
  EXPECT_TRUE(is_social_site("www.youtube.com"));
  EXPECT_FALSE(is_social_site("ig.example.com"));  // "ig" only matches as a whole source
  EXPECT_FALSE(is_social_site("example.com"));
}

}  // namespace
}  // namespace crm::transform::detail
