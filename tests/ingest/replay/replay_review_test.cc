// `crm-ingest rejected replay`, from a review: a dead letter keeps the idempotency key its event would have had
// (replay stores a redelivered webhook's event once), pages are bounded by bytes, --max-record-bytes, the
// writer's role settles dead letters, --since/--until are checked before the database and read in UTC.
#include <string>

#include <gtest/gtest.h>

#include "../../sinks/postgres/writer_options.h"
#include "replay_support.h"
#include "sinks/postgres/writer.h"
#include "transform/canonical/event_codec.h"
#include "transform/providers/registry.h"

namespace {

using namespace crm_test::replay;
namespace pg = crm::sinks::postgres;
namespace tf = crm::transform;
namespace tp = crm::transform::providers;

// A UK number written nationally: not a phone number under the default region US, +442079460958 under GB.
const std::string standard_body =
    R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","channel":"sms","status":"delivered",)"
    R"("phone":"020 7946 0958"})";
const std::string twilio_body =
    "AccountSid=ACxx&MessageSid=SM77&MessageStatus=delivered&From=%2B15017250604&To=020+7946+0958";

// What serve does with a webhook request: `provider`'s adapter under `region`, with the source's key; the batch
// goes through the record codec (the local log's, the Kafka log topic's) and the writer.
void deliver(const std::string& dsn, const std::string& region, const std::string& provider, const std::string& body,
             const std::string& content_type, const std::string& key, std::size_t communications,
             std::size_t rejections) {
  tf::normalize_options no;
  no.default_region = region;
  tf::normalizer norm(no);
  tf::event_batch batch;
  const std::string source = "POST /v1/webhooks/" + provider;
  const tp::webhook_input in{body, content_type, "", source, 1'795'000'000'000'000, key};
  std::string error;
  ASSERT_TRUE(tp::find_provider(provider)->normalize(norm, in, batch, error)) << error;
  ASSERT_EQ(batch.communications.size(), communications);
  ASSERT_EQ(batch.rejections.size(), rejections);
  std::string bytes;
  tf::encode_event_batch(batch, bytes);
  tf::event_batch decoded;
  ASSERT_FALSE(tf::decode_event_batch(bytes, decoded));
  pg::writer w(crm_test::writer_options_for(dsn));
  w.write(decoded, {"test", region + provider});
}

// The review's repro: a standard source (its webhook-id msg_77) and a source declaring header:X-Event-Id (Twilio):
// a body rejected under US is dead-lettered; under GB the provider's redelivery is stored with the key's id; the
// replay under GB finds the events stored, and stores nothing twice (a second row, content-derived, before).
TEST(RejectedReplayReview, ADeadLetterKeepsItsIdempotencyKeyAndIsNotStoredTwice) {
  auto dsn = crm_test::fresh_database("t_replay_key");
  ASSERT_NO_FATAL_FAILURE(deliver(dsn, "US", "standard", standard_body, "application/json", "acme-std:msg_77", 0, 1));
  ASSERT_NO_FATAL_FAILURE(deliver(dsn, "US", "twilio", twilio_body, "application/x-www-form-urlencoded",
                                  "acme-tw:evt-9", 0, 1));
  EXPECT_EQ(rows(dsn, "rejected_events WHERE idempotency_key IN ('acme-std:msg_77', 'acme-tw:evt-9')"), 2);
  ASSERT_NO_FATAL_FAILURE(deliver(dsn, "GB", "standard", standard_body, "application/json", "acme-std:msg_77", 1, 0));
  ASSERT_NO_FATAL_FAILURE(deliver(dsn, "GB", "twilio", twilio_body, "application/x-www-form-urlencoded",
                                  "acme-tw:evt-9", 1, 0));
  ASSERT_EQ(rows(dsn, "communications"), 2);
  crm_test::command_result r;
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "--default-region GB",
                                         "examined 2: 2 now pass (0 events inserted, 2 already stored)", r));
  EXPECT_EQ(rows(dsn, "communications"), 2);
  for (const std::string key : {"acme-std:msg_77", "acme-tw:evt-9"}) {  // each stored once, with the GB number
    EXPECT_EQ(rows(dsn, "communications WHERE provider_event_id = '" + key + "' AND phone = '+442079460958'"), 1) << key;
  }
}

// A page holds at most 64 MiB of raw (at least one row): five dead letters of 17 MiB are two pages (four, then
// one); they were one page of 85 MiB before (20,000 of 1 MiB would have been 20 GB in memory).
TEST(RejectedReplayReview, APageIsBoundedByItsBytes) {
  auto dsn = crm_test::fresh_database("t_replay_page_bytes");
  exec(dsn, "INSERT INTO rejected_events (rejection_id, received_at, source, reason, raw) SELECT gen_random_uuid(),"
            " '2026-11-02T09:16:00Z', '/v1/events:' || i, 'an older rule', '{\"x\":\"' || repeat('x', 17 << 20) || '\"}'"
            " FROM generate_series(1, 5) i");
  auto r = crm_test::run_ingest("--log-level info rejected replay --dsn " + crm_test::shell_quote(dsn));
  ASSERT_EQ(r.status, 0) << r.out.substr(0, 2000);
  EXPECT_NE(r.out.find("examined 5: 0 now pass"), std::string::npos) << r.out.substr(0, 2000);
  std::size_t pages = 0;
  for (auto at = r.out.find("Replayed a page"); at != std::string::npos; at = r.out.find("Replayed a page", at + 1)) {
    ++pages;
  }
  EXPECT_EQ(pages, 2u) << r.out.substr(0, 2000);
}

// A record imported with --max-record-bytes 4194304 and dead-lettered by another rule can be replayed with the same.
TEST(RejectedReplayReview, MaxRecordBytesAsImport) {
  auto dsn = crm_test::fresh_database("t_replay_max_bytes");
  const std::string big = R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","channel":"email",)"
                          R"("status":"sent","provider_message_id":"big-1","email":"ana@example.com",)"
                          R"("metadata":{"note":")" + std::string(2'000'000, 'n') + R"("}})";
  add_rejection(dsn, "import:/data/big.ndjson:1", "email: rule of an older release", big);
  crm_test::command_result r;
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "", "examined 1: 0 now pass", r));
  ASSERT_NO_FATAL_FAILURE(replay_reports(dsn, "--max-record-bytes 4194304", "examined 1: 1 now pass", r));
  EXPECT_EQ(rows(dsn, "communications WHERE provider_message_id = 'big-1'"), 1);
  EXPECT_EQ(replay(dsn, "--max-record-bytes 100").status, 2);  // the range of import's
}

// README: connect as a role granted crm_ingest_writer. Such a role (no superuser, no BYPASSRLS) marks and deletes
// the dead letters it replayed (before: the events written, then "permission denied", exit 3).
TEST(RejectedReplayReview, TheWritersRoleSettlesDeadLetters) {
  auto dsn = crm_test::fresh_database("t_replay_writer_role");
  crm_test::execute(crm_test::admin_dsn(),
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 't_replay_writer') THEN"
                    " CREATE ROLE t_replay_writer LOGIN IN ROLE crm_ingest_writer; END IF;"
                    " ALTER ROLE t_replay_writer NOSUPERUSER NOBYPASSRLS; END $$");
  const auto scheme = dsn.find("://") + 3;
  const std::string as_writer = dsn.substr(0, scheme) + "t_replay_writer" + dsn.substr(dsn.find('@'));
  const std::string first = R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","channel":"email",)"
                            R"("status":"sent","provider_message_id":"w-1","email":"ana@example.com"})";
  add_rejection(dsn, "/v1/events:1", "email: rule of an older release", first);
  auto run = [&](const std::string& args) {
    return crm_test::run_ingest("--log-level warn rejected replay --dsn " + crm_test::shell_quote(as_writer) + args,
                                false);
  };
  auto r = run("");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(rows(dsn, "rejected_events WHERE replayed_at IS NOT NULL"), 1);
  add_rejection(dsn, "/v1/events:2", "email: rule of an older release",
                R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","channel":"email",)"
                R"("status":"sent","provider_message_id":"w-2","email":"bo@example.com"})");
  r = run(" --delete");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(rows(dsn, "rejected_events"), 1);
  EXPECT_EQ(rows(dsn, "communications"), 2);
}

// A bad --since/--until is a usage error (2), said before the database is reached (3 before: "the database
// refused"); a bare date is midnight UTC whatever the session's time zone (PGTZ moved it before).
TEST(RejectedReplayReview, SinceAndUntilAreCheckedAndReadInUtc) {
  auto dsn = crm_test::fresh_database("t_replay_since");
  add_rejection(dsn, "/v1/events:1", "email: rule of an older release",
                R"({"kind":"communication","occurred_at":"2026-11-02T09:15:00Z","channel":"email",)"
                R"("status":"sent","provider_message_id":"s-1","email":"ana@example.com"})",
                "2026-11-05T02:00:00Z");
  const auto r = crm_test::run_command("PGTZ=America/New_York " + exe + " --log-level warn rejected replay" +
                                       " --allow-superuser --dry-run --since 2026-11-05 --until 2026-11-05T03:00:00" +
                                       " --dsn " + crm_test::shell_quote(dsn));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("examined 1: 1 now pass"), std::string::npos) << r.out;
  for (const char* bad : {"--since 2026-13-01", "--until yesterday", "--since '2026-11-05T25:00:00Z'"}) {
    const auto bad_r = replay(dsn, "--dry-run " + std::string(bad) + " 2>&1");
    EXPECT_EQ(bad_r.status, 2) << bad << "\n" << bad_r.out;
    EXPECT_NE(bad_r.out.find("is not a time"), std::string::npos) << bad_r.out;
  }
}

}  // namespace
