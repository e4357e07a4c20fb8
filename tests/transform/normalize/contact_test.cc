#include "transform/normalize/contact.h"

#include <gtest/gtest.h>

namespace crm::transform::detail {
namespace {

struct email_case {
  const char* in;
  const char* out;  // nullptr when rejected
  email_error error;
};

class Emails : public ::testing::TestWithParam<email_case> {};

TEST_P(Emails, Normalize) {
  text_arena arena;
  std::string_view out;
  const email_error e = normalize_email(GetParam().in, arena, out);
  EXPECT_EQ(e, GetParam().error) << GetParam().in;
  if (GetParam().out != nullptr) {
    EXPECT_EQ(out, GetParam().out);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Contact, Emails,
    ::testing::Values(email_case{"Foo@Example.COM", "foo@example.com", email_error::none},
                      email_case{"  foo@example.com \t\r\n", "foo@example.com", email_error::none},
                      email_case{"Jöhn.Doe+tag@Exämple.de", "jöhn.doe+tag@exämple.de", email_error::none},
                      email_case{"   ", nullptr, email_error::empty},
                      email_case{"foo.example.com", nullptr, email_error::at_count},
                      email_case{"a@b@c", nullptr, email_error::at_count},
                      email_case{"@example.com", nullptr, email_error::empty_local},
                      email_case{"foo@", nullptr, email_error::empty_domain},
                      email_case{"foo bar@example.com", nullptr, email_error::whitespace_or_control},
                      email_case{"foo@exa\tmple.com", nullptr, email_error::whitespace_or_control},
                      email_case{"foo@example.com\x7f", nullptr, email_error::whitespace_or_control},
                      // A name-addr (Resend's "to"): its address. From a review: it was refused for its space.
                      email_case{"Recipient <To@Example.org>", "to@example.org", email_error::none},
                      email_case{"\"Doe, Jane\" < jane@example.com >", "jane@example.com", email_error::none},
                      email_case{"Nobody <>", nullptr, email_error::empty},
                      email_case{"Two <a@b.c> <d@e.f>", "d@e.f", email_error::none},
                      email_case{"Bad <x y@z.c>", nullptr, email_error::whitespace_or_control}));

struct phone_case {
  const char* in;
  const char* region;
  const char* out;  // nullptr when rejected
};

class Phones : public ::testing::TestWithParam<phone_case> {};

TEST_P(Phones, NormalizeToE164) {
  phone_normalizer phones(GetParam().region);
  text_arena arena;
  for (int round = 0; round < 2; ++round) {  // the second round is answered by the cache
    std::string_view out;
    const phone_error e = phones.normalize(GetParam().in, arena, out);
    if (GetParam().out == nullptr) {
      EXPECT_NE(e, phone_error::none) << GetParam().in;
    } else {
      EXPECT_EQ(e, phone_error::none) << GetParam().in << ": " << describe(e);
      EXPECT_EQ(out, GetParam().out);
    }
  }
  EXPECT_EQ(phones.cache_hits(), 1u);
  EXPECT_EQ(phones.cache_misses(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Contact, Phones,
                         ::testing::Values(phone_case{"(415) 555-2671", "US", "+14155552671"},
                                           phone_case{"+44 20 7946 0958", "US", "+442079460958"},
                                           phone_case{"020 7946 0958", "GB", "+442079460958"},
                                           phone_case{"+1 650-253-0000", "DE", "+16502530000"},
                                           phone_case{"  +33 1 42 68 53 00 ", "US", "+33142685300"},
                                           phone_case{"12345", "US", nullptr},
                                           phone_case{"abc", "US", nullptr},
                                           phone_case{"+999 123 456 789", "US", nullptr},
                                           phone_case{"+", "US", nullptr}));

TEST(Phones, CacheKeepsCallsApart) {
  phone_normalizer phones("US");
  text_arena arena;
  std::string_view a, b;
  ASSERT_EQ(phones.normalize("(650) 253-0000", arena, a), phone_error::none);
  ASSERT_EQ(phones.normalize("(650) 253-0001", arena, b), phone_error::none);
  EXPECT_EQ(a, "+16502530000");
  EXPECT_EQ(b, "+16502530001");
  // A long input (not cached) still works.
  std::string_view c;
  ASSERT_EQ(phones.normalize("+1 (650) 253-0000                                        ", arena, c), phone_error::none);
  EXPECT_EQ(c, "+16502530000");
  // Many distinct numbers, then the first again: evictions never return a wrong answer.
  for (int i = 0; i < 20000; ++i) {
    std::string_view out;
    const std::string n = "(650) 253-" + std::to_string(1000 + i % 9000) + (i >= 9000 ? " " : "");
    ASSERT_EQ(phones.normalize(n, arena, out), phone_error::none) << n;
    ASSERT_EQ(out, "+1650253" + std::to_string(1000 + i % 9000));
  }
}

}  // namespace
}  // namespace crm::transform::detail
