#include "transform/text/url_params.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace crm::transform::detail {
namespace {

std::vector<std::pair<std::string, std::string>> params_of(std::string_view url) {
  std::vector<std::pair<std::string, std::string>> out;
  for_each_query_param(url, [&](std::string_view k, std::string_view v) { out.emplace_back(k, v); });
  return out;
}

TEST(QueryParams, SplitsPairs) {
  using p = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(params_of("https://x.com/a?utm_source=google&utm_medium=cpc#frag&x=1"),
            (p{{"utm_source", "google"}, {"utm_medium", "cpc"}}));
  EXPECT_EQ(params_of("https://x.com/?&a=&b&c=1=2&&"), (p{{"a", ""}, {"b", ""}, {"c", "1=2"}}));
  EXPECT_EQ(params_of("https://x.com/no-query"), p{});
  EXPECT_EQ(params_of("?a=1"), (p{{"a", "1"}}));
}

TEST(PercentDecode, DecodesAndKeepsMalformedEscapes) {
  const std::pair<const char*, const char*> cases[] = {
      {"spring+sale", "spring sale"},   {"hero%20banner", "hero banner"}, {"a%2Bb", "a+b"},
      {"%C3%A9t%C3%A9", "été"},         {"100%", "100%"},                 {"%zz", "%zz"},
      {"%4", "%4"},                     {"%4g", "%4g"},                   {"%%41", "%A"},
      {"", ""},
  };
  for (const auto& [in, expected] : cases) {
    std::string out;
    percent_decode(in, out);
    EXPECT_EQ(out, expected) << in;
  }
}

TEST(UrlHost, FindsTheHost) {
  const std::pair<const char*, const char*> cases[] = {
      {"https://www.Google.co.uk/search?q=x", "www.Google.co.uk"},
      {"http://user:pw@example.com:8080/x", "example.com"},
      {"//cdn.example.com/x", "cdn.example.com"},
      {"example.com/path", "example.com"},
      {"android-app://com.google.android.gm/", "com.google.android.gm"},
      {"https://[2001:db8::1]:443/", "[2001:db8::1]"},
      {"https://example.com?x=1", "example.com"},
      {"", ""},
  };
  for (const auto& [url, host] : cases) EXPECT_EQ(url_host(url), host) << url;
}

}  // namespace
}  // namespace crm::transform::detail
