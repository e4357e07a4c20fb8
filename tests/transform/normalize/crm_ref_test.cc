// CRM ids as the CRM writes them (issue 18, item 3; transform/normalize/crm_ref.h): a lead or campaign keyed by
// text is kept as its reference, with a derived key in lead_id / campaign_id; an id that is present but empty
// or absurd is still a rejection with a reason. The same rules for canonical JSON and a provider's fields.
#include <gtest/gtest.h>

#include <string>

#include "tests/transform/normalize/normalize_test_support.h"
#include "transform/normalize/crm_ref.h"

namespace crm::transform {
namespace {

using namespace test_support;

// PostgreSQL computed these with schemas/0006_crm_refs.sql's crm_ref_key() (sha256() built in):
//   SELECT crm_ref_key('lead', 'L-1001'), crm_ref_key('campaign', 'C-42');
// The database-side check of more values is tests/sinks/postgres (CrmRefs.KeysAgreeWithTheDatabase).
TEST(CrmRef, KeyIsTheNegatedSha256Prefix) {
  EXPECT_EQ(crm_ref_key("lead", "L-1001"), -6033701757861226638LL);
  EXPECT_EQ(crm_ref_key("campaign", "C-42"), -2933986325899632335LL);
  // The kind is part of the key: a lead and a campaign of the same text do not share it.
  EXPECT_NE(crm_ref_key("lead", "C-42"), crm_ref_key("campaign", "C-42"));
  for (const char* ref : {"a", "L-1", "00000000-0000-0000-0000-000000000000", "ü"}) EXPECT_LE(crm_ref_key("lead", ref), -1);
}

TEST(CrmRef, CanonicalTextIdsBecomeReferences) {
  const result r = run(comm(R"(,"lead_id":"L-1001","campaign_id":"C-42")"));
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().lead_ref, "L-1001");
  EXPECT_EQ(r.comm().lead_id, crm_ref_key("lead", "L-1001"));
  EXPECT_EQ(r.comm().campaign_ref, "C-42");
  EXPECT_EQ(r.comm().campaign_id, crm_ref_key("campaign", "C-42"));

  // Decimal digits in a string are the integer id; blanks around an id are not part of it.
  const result digits = run(touch(R"(,"lead_id":"12","campaign_id":" 7 ")"));
  ASSERT_EQ(digits.outcome, normalize_outcome::touchpoint) << digits.reason();
  EXPECT_EQ(digits.touch().lead_id, 12);
  EXPECT_TRUE(digits.touch().lead_ref.empty());
  EXPECT_EQ(digits.touch().campaign_id, 7);

  // A UUID is one lead however it is written.
  const result upper = run(comm(R"(,"lead_id":"3F2C8D1E-0B6A-4C3D-9E8F-1A2B3C4D5E6F")"));
  const result lower = run(comm(R"(,"lead_id":" 3f2c8d1e-0b6a-4c3d-9e8f-1a2b3c4d5e6f")"));
  ASSERT_EQ(upper.outcome, normalize_outcome::communication) << upper.reason();
  ASSERT_EQ(lower.outcome, normalize_outcome::communication) << lower.reason();
  EXPECT_EQ(upper.comm().lead_ref, "3f2c8d1e-0b6a-4c3d-9e8f-1a2b3c4d5e6f");
  EXPECT_EQ(upper.comm().lead_id, lower.comm().lead_id);
  EXPECT_EQ(upper.comm().event_id, lower.comm().event_id);

  // The reference takes part in the derived id: two leads' otherwise equal events are two events.
  const result other = run(comm(R"(,"lead_id":"L-1002","campaign_id":"C-42")"));
  EXPECT_NE(other.comm().event_id, r.comm().event_id);
  // A touchpoint with only a referenced lead has its lead.
  const result lead_only = run(R"({"kind":"touchpoint","occurred_at":"2024-05-01T10:00:00Z","touch_type":"conversion",)"
                               R"("lead_id":"L-1001"})");
  ASSERT_EQ(lead_only.outcome, normalize_outcome::touchpoint) << lead_only.reason();
  EXPECT_EQ(lead_only.touch().lead_ref, "L-1001");
}

TEST(CrmRef, ProviderFieldsFollowTheSameRules) {
  communication_fields f;
  f.occurred_at = may_first_10h;
  f.channel_ = channel::email;
  f.status = comm_status::delivered;
  f.lead_ref = "L-1001";
  f.campaign_ref = "42";
  const result r = append(f);
  ASSERT_EQ(r.outcome, normalize_outcome::communication) << r.reason();
  EXPECT_EQ(r.comm().lead_ref, "L-1001");
  EXPECT_EQ(r.comm().lead_id, crm_ref_key("lead", "L-1001"));
  EXPECT_EQ(r.comm().campaign_id, 42);
  EXPECT_TRUE(r.comm().campaign_ref.empty());

  for (const auto& [text, reason] : std::initializer_list<std::pair<std::string, std::string>>{
           {"0", R"(lead_id: "0" is not an integer >= 1)"},
           {"-7", R"(lead_id: "-7" is not an integer >= 1)"},
           {"1e3", R"(lead_id: "1e3" is not an integer >= 1)"},
           {"99999999999999999999", R"(lead_id: "99999999999999999999" is not an integer >= 1 (beyond the 64-bit integer range))"},
           {" ", R"(lead_id: " " is empty (give the id, or leave the field out))"},
           {"L\n1", R"(lead_id: "L\x0a1" contains a control character)"},
           {std::string(129, 'x'), "lead_id: \"" + std::string(64, 'x') + "...\" is longer than 128 bytes (not a CRM id)"},
       }) {
    communication_fields bad = f;
    bad.lead_ref = text;
    EXPECT_EQ(append(bad).reason(), reason) << text;
  }
  // 128 bytes is still an id.
  communication_fields longest = f;
  const std::string ref(128, 'x');
  longest.lead_ref = ref;
  EXPECT_EQ(append(longest).outcome, normalize_outcome::communication);
}

}  // namespace
}  // namespace crm::transform
