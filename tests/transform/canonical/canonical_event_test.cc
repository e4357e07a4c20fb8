#include "transform/canonical/canonical_event.h"

#include <gtest/gtest.h>

namespace crm::transform {
namespace {

TEST(Uuid, FormatsLowerCaseCanonical) {
  const uuid id = {0x2e, 0xd6, 0x65, 0x7d, 0xe9, 0x27, 0x56, 0x8b, 0x95, 0xe1, 0x26, 0x65, 0xa8, 0xae, 0xa6, 0xa2};
  EXPECT_EQ(to_string(id), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
  char buf[36];
  format_uuid(id, buf);
  EXPECT_EQ(std::string_view(buf, 36), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

TEST(Uuid, ParsesAnyCaseAndRoundTrips) {
  uuid id{};
  ASSERT_TRUE(parse_uuid("2ED6657D-e927-568B-95e1-2665A8AEA6A2", id));
  EXPECT_EQ(to_string(id), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}

TEST(Uuid, RejectsEverythingElse) {
  const char* const bad[] = {
      "",
      "2ed6657de927568b95e12665a8aea6a2",        // no dashes
      "{2ed6657d-e927-568b-95e1-2665a8aea6a2}",  // braces
      "2ed6657d-e927-568b-95e1-2665a8aea6a",     // short
      "2ed6657d-e927-568b-95e1-2665a8aea6a2a",   // long
      "2ed6657d-e927-568b-95e1_2665a8aea6a2",    // wrong separator
      "2ed6657d-e927-568b-95e1-2665a8aea6g2",    // not hex
      "2ed6657-de927-568b-95e1-2665a8aea6a2",    // dash misplaced
      "urn:uuid:2ed6657d-e927-568b-95e1-2665a8",
  };
  for (const char* text : bad) {
    uuid id{};
    EXPECT_FALSE(parse_uuid(text, id)) << text;
  }
}

TEST(EnumSpelling, MatchesTheDatabase) {
  EXPECT_EQ(to_string(channel::email), "email");
  EXPECT_EQ(to_string(channel::sms), "sms");
  EXPECT_EQ(to_string(channel::whatsapp), "whatsapp");
  EXPECT_EQ(to_string(channel::voice), "voice");
  EXPECT_EQ(to_string(channel::chat), "chat");
  EXPECT_EQ(to_string(channel::push), "push");
  EXPECT_EQ(to_string(direction::outbound), "outbound");
  EXPECT_EQ(to_string(direction::inbound), "inbound");
  const char* const statuses[] = {"queued",  "sent",    "delivered",    "opened",       "clicked", "bounced",
                                  "failed",  "replied", "unsubscribed", "resubscribed", "spam"};
  for (int i = 0; i < 11; ++i) EXPECT_EQ(to_string(static_cast<comm_status>(i)), statuses[i]);
  const char* const types[] = {"page_view", "ad_click", "email_click", "form_submit",        "call",
                               "chat",      "conversion", "experiment_exposure", "other"};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(to_string(static_cast<touch_type>(i)), types[i]);
  const char* const groups[] = {"Paid Search", "Organic Search", "Paid Social", "Organic Social",
                                "Email",       "Referral",       "Direct",      "Display",
                                "Affiliates",  "SMS",            "Other"};
  for (int i = 0; i < 11; ++i) EXPECT_EQ(to_string(static_cast<channel_group>(i)), groups[i]);
}

}  // namespace
}  // namespace crm::transform

namespace crm::transform {
namespace {

TEST(TextArena, ViewsStayValidAcrossGrowthAndBlocksAreReusedAfterClear) {
  text_arena arena(64 * 1024);
  std::vector<std::pair<std::string, std::string_view>> kept;
  for (int i = 0; i < 2000; ++i) {
    std::string s = "value-" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 97), 'x');
    kept.emplace_back(s, arena.copy(s));
  }
  const std::string big(200 * 1024, 'b');  // larger than a block: a block of its own
  const auto big_view = arena.copy(big);
  for (const auto& [text, view] : kept) ASSERT_EQ(view, text);
  EXPECT_EQ(big_view, big);
  EXPECT_TRUE(arena.copy("").empty());

  const auto used = arena.bytes_used();
  EXPECT_GT(used, big.size());
  arena.clear();
  EXPECT_EQ(arena.bytes_used(), 0u);
  // The same volume again fits in the retained blocks at the same addresses.
  const auto again = arena.copy(kept[0].first);
  EXPECT_EQ(again.data(), kept[0].second.data());
}

TEST(EventBatch, AppendCopyCopiesEveryTextFieldIntoItsOwnArena) {
  event_batch from;
  communication c;
  for (const auto& field : communication_texts) c.*field.member = from.text.copy("c" + std::to_string(&field - communication_texts));
  from.communications.push_back(c);
  touchpoint t;
  for (const auto& field : touchpoint_texts) t.*field.member = from.text.copy("t" + std::to_string(&field - touchpoint_texts));
  from.touchpoints.push_back(t);
  rejection r;
  for (const auto& field : rejection_texts) r.*field.member = from.text.copy("r" + std::to_string(&field - rejection_texts));
  from.rejections.push_back(r);

  event_batch to;
  to.append_copy(from);
  to.append_copy(from);
  from.clear();
  // Overwrite the source's memory: the copies must not point into it.
  for (int i = 0; i < 100; ++i) from.text.copy(std::string(64, '#'));
  ASSERT_EQ(to.communications.size(), 2u);
  ASSERT_EQ(to.touchpoints.size(), 2u);
  ASSERT_EQ(to.rejections.size(), 2u);
  for (std::size_t k = 0; k < 2; ++k) {
    for (const auto& field : communication_texts) {
      EXPECT_EQ(to.communications[k].*field.member, "c" + std::to_string(&field - communication_texts));
    }
    for (const auto& field : touchpoint_texts) EXPECT_EQ(to.touchpoints[k].*field.member, "t" + std::to_string(&field - touchpoint_texts));
    for (const auto& field : rejection_texts) EXPECT_EQ(to.rejections[k].*field.member, "r" + std::to_string(&field - rejection_texts));
  }
}

}  // namespace
}  // namespace crm::transform
