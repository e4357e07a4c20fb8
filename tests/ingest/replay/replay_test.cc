// `crm-ingest rejected replay` against a real PostgreSQL: dead letters that pass the current rules are
// written exactly once and marked, the still-failing ones are kept, filters narrow the run.
#include <fstream>

#include <gtest/gtest.h>

#include "replay_support.h"

namespace {

using namespace crm_test::replay;

// A record a former rule refused and the current one accepts.
const char* fixed_raw =
    R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","lead_id":1001,"campaign_id":42,"channel":"email","status":"sent","provider_message_id":"replay-1","email":"ana@example.com"})";
const char* fixed_touch_raw =
    R"({"kind":"touchpoint","occurred_at":"2026-11-03T10:00:00Z","anonymous_id":"anon-9","touch_type":"page_view","landing_url":"https://example.com/?utm_source=news"})";
const char* broken_raw = R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","channel":"fax","status":"sent"})";
const char* sendgrid_raw =
    R"({"email":"bob@example.com","timestamp":1794128400,"event":"delivered","sg_event_id":"replay-sg-1","sg_message_id":"replay-sg-msg.filter0001","lead_id":"77"})";

TEST(RejectedReplay, FixedRecordsAreWrittenOnceAndStillFailingOnesKept) {
  auto dsn = crm_test::fresh_database("t_replay");
  add_rejection(dsn, "/v1/events:3", "email: rule of an older release", fixed_raw);
  add_rejection(dsn, "import:/data/a.ndjson:7", "landing_url: rule of an older release", fixed_touch_raw);
  add_rejection(dsn, "/v1/events:4", "channel: \"fax\" is not one of ...", broken_raw);
  add_rejection(dsn, "POST /v1/webhooks/sendgrid:0", "lead_id: rule of an older release", sendgrid_raw);

  crm_test::command_result r;
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "",
      "examined 4: 3 now pass (3 events inserted, 0 already stored), 1 still failing", r));
  EXPECT_NE(r.out.find("still failing 1: channel"), std::string::npos) << r.out;
  EXPECT_EQ(rows(dsn, "communications"), 2);
  EXPECT_EQ(rows(dsn, "customer_touchpoints"), 1);
  EXPECT_EQ(rows(dsn, "communications WHERE provider_message_id = 'replay-1' AND email = 'ana@example.com' AND lead_id = 1001"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NOT NULL"), 3);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NULL AND raw LIKE '%fax%'"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events"), 4);  // nothing new dead-lettered

  // Again: only the still-failing one is looked at; nothing is written twice.
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "", "examined 1: 0 now pass", r));

  // A run that died after writing and before marking: the next run finds the events stored.
  exec(dsn, "UPDATE rejected_events SET replayed_at = NULL WHERE raw LIKE '%replay-1%'");
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "",
      "examined 2: 1 now pass (0 events inserted, 1 already stored), 1 still failing", r));
  EXPECT_EQ(rows(dsn, "communications"), 2);
}

TEST(RejectedReplay, FiltersDryRunAndDelete) {
  auto dsn = crm_test::fresh_database("t_replay_filters");
  add_rejection(dsn, "/v1/events:3", "email: old", fixed_raw, "2026-11-02T09:16:00Z");
  add_rejection(dsn, "import:/data/a.ndjson:7", "landing_url: old", fixed_touch_raw, "2026-11-05T00:00:00Z");
  add_rejection(dsn, "POST /v1/webhooks/sendgrid:0", "lead_id: old", sendgrid_raw, "2026-11-06T00:00:00Z");

  crm_test::command_result r;
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "--dry-run", "examined 3: 3 now pass", r));
  EXPECT_EQ(rows(dsn, "communications"), 0);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NOT NULL"), 0);

  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "--source 'POST /v1/webhooks/%'", "examined 1: 1 now pass", r));
  EXPECT_EQ(rows(dsn, "communications WHERE provider = 'sendgrid'"), 1);

  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "--since 2026-11-04T00:00:00Z --until 2026-11-06T00:00:00Z --delete",
      "examined 1: 1 now pass", r));
  EXPECT_EQ(rows(dsn, "customer_touchpoints"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events"), 2);

  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "--reason 'email:%'", "examined 1: 1 now pass", r));
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NULL"), 0);
}

// Issue 16, item 3: replay reports what it really stored. A dead letter that passes the rules but whose row the
// database refuses (here a CHECK the test adds, standing for any refusal the rules miss) is not "now passing"
// nor "already stored": it is counted as refused and kept un-replayed; the others of its page are written and
// marked as usual.
TEST(RejectedReplay, ARowTheDatabaseRefusesIsReportedAndItsDeadLetterKept) {
  auto dsn = crm_test::fresh_database("t_replay_refused");
  exec(dsn, "ALTER TABLE communications ADD CONSTRAINT test_refuses_provider CHECK (provider <> 'refused-by-test')");
  const char* refused_raw =
      R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","channel":"email","status":"sent","provider":"refused-by-test","provider_message_id":"replay-refused","email":"eve@example.com"})";
  add_rejection(dsn, "/v1/events:9", "email: rule of an older release", refused_raw);
  add_rejection(dsn, "/v1/events:3", "email: rule of an older release", fixed_raw);

  crm_test::command_result r;
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "",
      "examined 2: 1 now pass (1 events inserted, 0 already stored), 0 still failing, 0 not "
      "replayable, 1 refused by the database", r));
  EXPECT_EQ(rows(dsn, "communications"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NOT NULL AND raw LIKE '%replay-1%'"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NULL AND source = '/v1/events:9'"), 1);

  // The database's reason is reported; the dead letter stays the one there was (no copy of it is added).
  EXPECT_NE(r.out.find("refused 1: database refused the row (23514)"), std::string::npos) << r.out;
  EXPECT_EQ(rows(dsn, "rejected_events"), 2);

  // Nothing was stored for it, so a second run tries it again and says the same; the table does not grow.
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "", "examined 1: 0 now pass (0 events inserted, 0 already stored)", r));
  EXPECT_NE(r.out.find("1 refused by the database"), std::string::npos) << r.out;
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NULL"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events"), 2);
  EXPECT_EQ(rows(dsn, "communications"), 1);
}

// From a review: whether a refused page's dead letters were stored was judged by event id alone, and an id
// derived from a provider's event id is the same for that provider event in another month: the October one,
// refused, was marked replayed because its November twin was stored (with --delete it was gone for good). A
// dead letter is settled only when a row with its own key (id, occurred_at) exists.
TEST(RejectedReplay, ADeadLetterIsSettledOnlyByItsOwnEventNotAnotherWithItsId) {
  auto dsn = crm_test::fresh_database("t_replay_same_id");
  exec(dsn, "ALTER TABLE communications ADD CONSTRAINT test_refuses_october "
            "CHECK (occurred_at >= '2026-11-01' OR provider_event_id IS DISTINCT FROM 'pe-twin')");
  auto twin = [](const std::string& at) {
    return R"({"kind":"communication","occurred_at":")" + at +
           R"(","channel":"email","status":"delivered","provider":"sendgrid","provider_event_id":"pe-twin","email":"a@b.co"})";
  };
  add_rejection(dsn, "import:/data/twins.ndjson:1", "email: rule of an older release", twin("2026-10-05T10:00:00Z"));
  add_rejection(dsn, "import:/data/twins.ndjson:2", "email: rule of an older release", twin("2026-11-05T10:00:00Z"));
  crm_test::command_result r;
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "", "1 refused by the database", r));
  EXPECT_EQ(rows(dsn, "communications"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NULL AND source = 'import:/data/twins.ndjson:1'"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NOT NULL AND source = 'import:/data/twins.ndjson:2'"), 1);
}

// A dead letter's tenant is the tenant of the events it becomes (they were stored without one).
TEST(RejectedReplay, ReplayedEventsKeepTheDeadLettersTenant) {
  auto dsn = crm_test::fresh_database("t_replay_tenant");
  add_rejection(dsn, "/v1/events:3", "email: rule of an older release", fixed_raw, "2026-11-02T09:16:00Z", "tenant-a");
  add_rejection(dsn, "POST /v1/webhooks/sendgrid:0", "lead_id: rule of an older release", sendgrid_raw,
                "2026-11-02T09:16:00Z", "tenant-b");
  add_rejection(dsn, "import:/data/a.ndjson:7", "landing_url: rule of an older release", fixed_touch_raw);
  add_rejection(dsn, "/v1/events:4", "channel: \"fax\" is not one of ...", broken_raw, "2026-11-02T09:16:00Z", "tenant-a");
  auto r = replay(dsn);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(rows(dsn, "communications WHERE provider_message_id = 'replay-1' AND tenant_id = 'tenant-a'"), 1);
  EXPECT_EQ(rows(dsn, "communications WHERE provider_event_id = 'replay-sg-1' AND tenant_id = 'tenant-b'"), 1);
  EXPECT_EQ(rows(dsn, "customer_touchpoints WHERE tenant_id IS NULL"), 1);
  // The one still failing keeps its tenant where it is.
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NULL AND tenant_id = 'tenant-a'"), 1);
}

// From a review: a WhatsApp dead letter holds the one status (or message) object its body had, which the adapter
// refused as a body: "not replayable" whatever the rules. Replay puts it back in a body of its own.
TEST(RejectedReplay, AWhatsAppEventsDeadLetterIsReplayed) {
  auto dsn = crm_test::fresh_database("t_replay_whatsapp");
  // A participant's status of a group message, refused before group statuses were read (the group id as phone).
  add_rejection(dsn, "POST /v1/webhooks/whatsapp:0", "phone: \"+120363400000000001\" is not a valid phone number",
                R"({"id":"wamid.REPLAY1","recipient_id":"120363400000000001","recipient_type":"group",)"
                R"("recipient_participant_id":"16505551234","status":"read","timestamp":"1750263901"})",
                "2026-11-02T09:16:00Z", "tenant-w");
  add_rejection(dsn, "POST /v1/webhooks/whatsapp:1", "an older rule",
                R"({"from":"16505551234","id":"wamid.REPLAY2","timestamp":"1750263902","type":"text",)"
                R"("text":{"body":"hi"}})");
  add_rejection(dsn, "POST /v1/webhooks/whatsapp:2", "an older rule",
                R"({"wa_id":"16505551234","category":"marketing_messages","value":"stop","timestamp":1750263903})");
  crm_test::command_result r;
  replay_reports(dsn, "", "3 now pass (3 events inserted, 0 already stored), 0 still failing, 0 not replayable", r);
  EXPECT_EQ(rows(dsn, "communications WHERE provider_message_id = 'wamid.REPLAY1' AND status = 'opened' AND "
                      "direction = 'outbound' AND phone = '+16505551234' AND tenant_id = 'tenant-w'"), 1);
  EXPECT_EQ(rows(dsn, "communications WHERE provider_message_id = 'wamid.REPLAY2' AND status = 'replied' AND "
                      "direction = 'inbound'"), 1);
  EXPECT_EQ(rows(dsn, "communications WHERE status = 'unsubscribed' AND direction = 'inbound'"), 1);
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NULL"), 0);
}

}  // namespace
