// Every provider payload of tests/fixtures/webhooks/ through the real `crm-ingest serve` into a real
// PostgreSQL: POSTed to its endpoint with the provider's Content-Type, stored row by row as the provider's
// documented mapping says, then POSTed again: a provider's retry must change nothing.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/scratch.h"
#include "support/serve_process.h"
#include "support/test_db.h"
#include "transform/normalize/crm_ref.h"

namespace fs = std::filesystem;
using crm_test::read_file;
using crm_test::scratch;

namespace {

// Every fixture goes through the writers: up to 30 s.
long long wait_for(const std::string& dsn, const std::string& sql, long long want) {
  return crm_test::wait_for_count(dsn, sql, want, std::chrono::seconds(30));
}

const fs::path fixtures_root = fs::path(CRM_FIXTURES_DIR) / "webhooks";

struct request {
  std::string file;  // relative to the fixtures root
  std::string target;
  std::string content_type;
  std::string body;
};

// Every fixture file, in name order, with its endpoint. The Twilio status callback "sent" carries the ids we
// put in the StatusCallback URL when sending.
std::vector<request> fixture_requests() {
  std::vector<request> out;
  for (const auto& entry : fs::recursive_directory_iterator(fixtures_root)) {
    if (!entry.is_regular_file() || entry.path().filename() == "README.md") continue;
    const std::string file = fs::relative(entry.path(), fixtures_root).generic_string();
    std::string provider = file.substr(0, file.find('/'));
    if (provider == "resend-svix") provider = "resend";
    request r{file, "/v1/webhooks/" + provider, "application/json", read_file(entry.path())};
    if (provider == "twilio") r.content_type = "application/x-www-form-urlencoded";
    if (file == "twilio/status-callback-sent.docs.form") r.target += "?lead_id=42&campaign_id=7";
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const request& a, const request& b) { return a.file < b.file; });
  return out;
}

// The number after "name": in a response body, -1 when absent.
long long field_of(const std::string& body, const std::string& name) {
  const std::size_t at = body.find("\"" + name + "\":");
  return at == std::string::npos ? -1 : std::stoll(body.substr(at + name.size() + 3));
}

// POSTs every request; returns how many records (accepted + rejected) the server acknowledged.
long long post_all(unsigned short port, const std::vector<request>& requests) {
  crm_test::http_connection c(port);
  long long records = 0;
  for (const request& r : requests) {
    const auto reply = c.request("POST", r.target, r.body, {{"Content-Type", r.content_type}});
    EXPECT_EQ(reply.status, 200) << r.file << ": " << reply.body;
    if (r.file == "segment/docs-identify-complete.json") {
      EXPECT_EQ(reply.body, R"({"accepted":2,"rejected":0})");  // its two claims (identity stitching)
    }
    const long long accepted = field_of(reply.body, "accepted"), rejected = field_of(reply.body, "rejected");
    EXPECT_GE(accepted, 0) << r.file << ": " << reply.body;
    EXPECT_GE(rejected, 0) << r.file << ": " << reply.body;
    records += accepted + rejected;
  }
  return records;
}

const char* ledger_records = "SELECT coalesce(sum(communications_in + touchpoints_in + rejected), 0) FROM ingest_batches";

// One communications row as the test reads it back. occurred "=received" means occurred_at = received_at
// (Twilio and the Segment e-mail examples carry no event time).
struct comm_row {
  std::string provider, event_key, message_id, status, channel, direction, occurred, email, phone;
  std::string lead_id, campaign_id, ab_test_id, variant, error_code, url;
};

// The derived fixtures' lead "L-1001" and campaign "C-42" (variant "B"), as stored: their derived keys.
comm_row with_refs(comm_row r) {
  r.lead_id = std::to_string(crm::transform::crm_ref_key("lead", "L-1001"));
  r.campaign_id = std::to_string(crm::transform::crm_ref_key("campaign", "C-42"));
  r.variant = "B";
  return r;
}

constexpr const char* received = "=received";

std::string key_of(const comm_row& r) {
  return r.provider + "|" + (r.event_key.empty() ? r.message_id + "|" + r.status : r.event_key);
}

std::vector<comm_row> expected_communications() {
  // An outbound e-mail event: only its ids, status, time, recipient, error code and url vary.
  auto email = [](std::string provider, std::string key, std::string message_id, std::string status,
                  std::string occurred, std::string to, std::string code = "", std::string url = "") {
    return comm_row{provider, key, message_id, status, "email", "outbound", occurred, to, "", "", "", "", "", code, url};
  };
  // Most SendGrid examples are events of one message to example@test.com.
  const std::string sg_time = "2017-12-15T00:59:29.000000Z";
  auto sg = [&](std::string key, std::string status, std::string code = "", std::string url = "") {
    return email("sendgrid", key, "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", status, sg_time, "example@test.com",
                 code, url);
  };
  const std::string sid = "SM1342fe1b2c904d1ab04f0fc7a58abca9";  // Twilio's MessageSid
  // A WhatsApp message to the business number (event "received") or status of one it sent, all with one customer.
  auto wa = [](std::string wamid, std::string event, std::string status, std::string occurred, std::string code = "") {
    return comm_row{"whatsapp", wamid + ":" + event, wamid, status, "whatsapp", event == "received" ? "inbound" : "outbound",
                    occurred, "", "+16505551234", "", "", "", "", code, ""};
  };
  const std::string wa_del = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA";
  // Most Postmark examples are events of john@example.com at one time (kept to the 100 ns in the event key).
  const std::string pm = "883953f4-6105-42a2-a16a-77a8eac79483";
  const std::string pm0 = "00000000-0000-0000-0000-000000000000";
  auto pm_john = [&](std::string record_type, std::string message_id, std::string status, std::string code = "") {
    return email("postmark", record_type + ":" + message_id + ":john@example.com:2019-11-05T16:33:54.9070259Z", message_id,
                 status, "2019-11-05T16:33:54.907025Z", "john@example.com", code);
  };
  const std::string rs = "56761188-7520-42d8-8898-ff6fc54ce618";  // the Resend examples' email_id
  auto seg = [&](std::string status, std::string event, std::string email, std::string url = "") {
    return comm_row{"segment", "18vzF7u3z:" + event, "18vzF7u3z", status, "email", "outbound", received, email, "", "",
                    "123", "", "", "", url};
  };
  return {
      // SendGrid: 16 files, 15 rows. docs-all-event-types repeats one sg_event_id 11 times (a documentation
      // placeholder): one event id, the first (processed) is kept. docs-bounce-blocked and docs-bounce-hard are
      // the same event (same sg_event_id).
      {"sendgrid", "qNOzbkTuTNCdxa1eXEpnXg", "5lFl7Fr1Rjme_EyzNNB_5A.stfilter-015.5185.55F883172.0", "queued", "email",
       "outbound", "2015-09-15T20:44:08.000000Z", "tadpole_0010@stbase-018.sjc1.sendgrid.net", "", "", "", "23314", "B", "", ""},
      email("sendgrid", "sg_event_id", "sg_message_id", "queued", sg_time, "example@test.com"),
      sg("6g4ZI7SA-xmRDv57GoPIPw==", "bounced", "5.0.0"),
      sg("kCAi1KttyQdEKHhdC-nuEA==", "clicked", "", "http://www.sendgrid.com/"),
      sg("t7LEShmowp86DTdUW8M-GQ==", "queued"),
      sg("rWVYmVk90MjZJ9iohOBa3w==", "delivered"),
      sg("zmzJhfJgAfUSOW80yEbPyw==", "failed", "5.0.0"),
      sg("w_u0vJhLT-OFfprar5N93g==", "resubscribed", "", "http://www.sendgrid.com/"),
      sg("ahSCB7xYcXFb-hEaawsPRw==", "unsubscribed", "", "http://www.sendgrid.com/"),
      sg("FOTFFO0ecsBE-zxFXfs6WA==", "opened"),
      email("sendgrid", "rbtnWrG1DVDGGGFHFyun0A==", "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000",
            "queued", sg_time, "example@test.com"),
      email("sendgrid", "sendgrid_internal_event_id", "sendgrid_internal_message_id", "opened", "2020-06-09T18:19:12.372000Z",
            "email@example.com"),
      sg("37nvH5QBz858KGVYCM4uOA==", "spam"),
      email("sendgrid", "", "sendgrid_internal_message_id", "clicked", "2012-05-25T17:26:55.000000Z", "john.doe@sendgrid.com",
            "", "https://sendgrid.com"),
      sg("zz_BjPgU_5pS-J8vlfB1sg==", "unsubscribed"),
      // Twilio
      {"twilio", "SMYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY:received", "SMYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY", "unsubscribed",
       "sms", "inbound", received, "", "+14017122661", "", "", "", "", "", ""},
      {"twilio", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:received", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "replied", "sms",
       "inbound", received, "", "+14017122661", "", "", "", "", "", ""},
      {"twilio", sid + ":delivered", sid, "delivered", "sms", "outbound", "2023-08-24T05:01:00.000000Z", "",
       "+15558675310", "", "", "", "", "", ""},
      {"twilio", sid + ":sent", sid, "sent", "sms", "outbound", received, "", "", "42", "7", "", "", "", ""},
      {"twilio", sid + ":undelivered:30003", sid, "bounced", "sms", "outbound", "2023-08-24T05:02:00.000000Z", "",
       "+15558675310", "", "", "", "", "30003", ""},
      // WhatsApp: the two inbound examples are one message (same wamid and time).
      wa("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=", "received", "replied", "2025-06-08T20:59:43.000000Z"),
      wa(wa_del, "delivered", "delivered", "2025-06-18T16:22:53.000000Z"),
      wa(wa_del, "read", "opened", "2025-06-18T16:25:01.000000Z"),
      // A user's marketing preference: resumed.
      comm_row{"whatsapp", "user_preferences:16505551234:marketing_messages:resume:1731705721", "", "resubscribed",
               "whatsapp", "inbound", "2024-11-15T21:22:01.000000Z", "", "+16505551234", "", "", "", "", "", ""},
      // Read in a group: one event per participant, each the participant's.
      comm_row{"whatsapp", wa_del + ":read:16505551234", wa_del, "opened", "whatsapp", "outbound",
               "2025-06-18T16:25:01.000000Z", "", "+16505551234", "", "", "", "", "", ""},
      comm_row{"whatsapp", wa_del + ":read:16505551235", wa_del, "opened", "whatsapp", "outbound",
               "2025-06-18T16:25:01.000000Z", "", "+16505551235", "", "", "", "", "", ""},
      wa("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA", "failed", "failed", "2025-06-28T20:34:48.000000Z", "131049"),
      wa("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=", "sent", "sent", "2025-06-15T23:27:53.000000Z"),
      // Mailgun
      email("mailgun", "G5zMz2ysS6OxZ2C8xb2Tqg", "20130821085807.30688.67706@samples.mailgun.org", "clicked",
            "2013-08-21T08:59:24.094891Z", "recipient@example.com", "", "http://example.com/signup"),
      email("mailgun", "ncV2XwymRUKbPek_MIM-Gw", "20130718032413.263EE2E0926@example.com", "spam",
            "2013-08-22T23:31:00.049634Z", "foo@example.com"),
      // delivered-with-user-variables.derived.json, the same event with the CRM's text ids, is posted first.
      with_refs(email("mailgun", "hK7mQVt1QtqRiOfQXta4sw", "20180622182958.1.48906CB188F1A454@exmple.org", "delivered",
                      "2018-06-22T18:29:59.626182Z", "john@example.com")),
      email("mailgun", "pl271FzxTTmGRW8Uj3dUWw", "20180622211249.1.2A6098970A380E12@example.org", "bounced",
            "2018-06-22T21:12:49.818328Z", "slava@mailgun.com", "605"),
      email("mailgun", "xYrATi63Rke8EC_s7EoJeA", "20221006142837.1618e01bf42da9fa@test.com", "failed",
            "2022-10-06T14:28:43.871657Z", "test@test.com", "451"),
      email("mailgun", "-laxIqj9QWubsjY_3pTq_g", "20130821005614.19826.35976@samples.mailgun.org", "opened",
            "2013-08-21T01:09:03.042277Z", "recipient@example.com"),
      email("mailgun", "W3X4JOhFT-OZidZGKKr9iA", "20130822232216.13966.79700@samples.mailgun.org", "unsubscribed",
            "2013-08-22T23:23:11.421473Z", "recipient@example.com"),
      // Postmark
      pm_john("Bounce", pm, "bounced", "HardBounce"),
      email("postmark", "Click:" + pm0 + ":john@example.com:2017-10-25T15:21:11.9065619Z", pm0, "clicked",
            "2017-10-25T15:21:11.906561Z", "john@example.com", "", "https://example.com"),
      pm_john("Delivery", pm, "delivered"),
      pm_john("Open", pm, "opened"),
      pm_john("SpamComplaint", pm0, "spam"),
      email("postmark", "SubscriptionChange:" + pm + ":bounced-address@wildbit.com:2020-02-01T10:53:34.416071Z", pm,
            "unsubscribed", "2020-02-01T10:53:34.416071Z", "bounced-address@wildbit.com"),
      email("postmark", "SubscriptionChange:" + pm + ":bounced-address@wildbit.com:2020-02-01T10:53:34.416071Z:resubscribed",
            pm, "resubscribed", "2020-02-01T10:53:34.416071Z", "bounced-address@wildbit.com"),
      // Resend
      email("resend", rs + ":email.bounced:2026-11-22T23:41:12.126Z", rs, "bounced", "2026-11-22T23:41:12.126000Z",
            "delivered@resend.dev", "Suppressed"),
      email("resend", rs + ":email.clicked:2024-11-22T23:41:12.126Z", rs, "clicked", "2024-11-22T23:41:12.126000Z",
            "delivered@resend.dev", "", "https://resend.com"),
      email("resend", rs + ":email.delivered:2026-02-22T23:41:12.126Z", rs, "delivered", "2026-02-22T23:41:12.126000Z",
            "delivered@resend.dev"),
      email("resend", rs + ":email.failed:2024-11-22T23:41:12.126Z", rs, "failed", "2024-11-22T23:41:12.126000Z",
            "delivered@resend.dev"),
      // Segment e-mail events
      seg("bounced", "Email Bounced", "pgibbons@example.com"),
      seg("delivered", "Email Delivered", "pgibbons@example.com"),
      seg("clicked", "Email Link Clicked", "joanna@chotchkies.com", "https://www.buymyshirts.com?promo=NEWCUSTOMER"),
      seg("spam", "Email Marked as Spam", "mwaddams@example.com"),
      seg("opened", "Email Opened", "pgibbons@example.com"),
      seg("unsubscribed", "Unsubscribed", "pgibbons@example.com"),
  };
}

const char* comm_select =
    "SELECT provider, coalesce(provider_event_id, ''), coalesce(provider_message_id, ''), status, channel, direction,"
    " CASE WHEN occurred_at = received_at THEN '=received'"
    "      ELSE to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END,"
    " coalesce(email, ''), coalesce(phone, ''), coalesce(lead_id::text, ''), coalesce(campaign_id::text, ''),"
    " coalesce(ab_test_id, ''), coalesce(variant, ''), coalesce(error_code, ''), coalesce(url, ''), contact"
    " FROM communications";

std::string describe(const comm_row& r) {
  return r.provider + " " + r.event_key + " " + r.message_id + " " + r.status + " " + r.channel + " " + r.direction +
         " " + r.occurred + " " + r.email + " " + r.phone + " lead=" + r.lead_id + " campaign=" + r.campaign_id +
         " ab=" + r.ab_test_id + " variant=" + r.variant + " error=" + r.error_code + " url=" + r.url;
}

std::vector<comm_row> stored_communications(const std::string& dsn, std::map<std::string, std::string>* contacts = nullptr) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  std::vector<comm_row> rows;
  for (const auto& row : tx.exec(comm_select)) {
    comm_row r;
    std::string* fields[] = {&r.provider, &r.event_key, &r.message_id, &r.status,     &r.channel,
                             &r.direction, &r.occurred, &r.email,      &r.phone,      &r.lead_id,
                             &r.campaign_id, &r.ab_test_id, &r.variant, &r.error_code, &r.url};
    for (int i = 0; i < 15; ++i) *fields[i] = row[i].as<std::string>();
    if (contacts != nullptr && !row[15].is_null()) (*contacts)[key_of(r)] = row[15].as<std::string>();
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string metrics_text(const std::string& dsn) {
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  std::string out;
  for (const auto& row : tx.exec("SELECT day::text, coalesce(campaign_id::text, '-'), channel, status, event_count"
                                 " FROM communication_metrics ORDER BY 1, 2, 3, 4")) {
    out += row[0].as<std::string>() + " " + row[1].as<std::string>() + " " + row[2].as<std::string>() + " " +
           row[3].as<std::string>() + " " + row[4].as<std::string>() + "\n";
  }
  return out;
}

// What the metric rows must be: the communications actually stored, counted.
const char* metrics_from_rows =
    "SELECT count(*) FROM ("
    " SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, campaign_id, channel, status, count(*) AS n"
    " FROM communications GROUP BY 1, 2, 3, 4) r"
    " FULL JOIN communication_metrics m"
    " ON m.day = r.day AND m.campaign_id IS NOT DISTINCT FROM r.campaign_id AND m.channel = r.channel AND m.status = r.status"
    " WHERE r.n IS DISTINCT FROM m.event_count";

TEST(ServeFixtures, EveryPayloadIsStoredAsDocumentedAndARetryChangesNothing) {
  const auto requests = fixture_requests();
  ASSERT_EQ(requests.size(), 63u) << "a fixture was added or removed: update the expectations below";
  const auto dsn = crm_test::fresh_database("t_serve_fixtures");
  // The fixtures are posted unsigned (their signatures are checked in signatures_test): every provider opts in.
  std::string unsigned_ok;
  for (const char* p : {"sendgrid", "twilio", "whatsapp", "mailgun", "postmark", "resend", "segment"}) {
    unsigned_ok += std::string("\n[webhooks.") + p + "]\nallow_unsigned = true\n";
  }
  crm_test::serve_process srv(dsn, scratch("fixtures"), unsigned_ok);
  srv.start();

  const long long posted = post_all(srv.port(), requests);
  // 65 communications (the repeated ids included), 8 touchpoints. The three derived payloads carry the CRM's
  // text ids ("L-1001", "C-42"): stored with them as references, not rejected. Segment's documented identify
  // and page examples share one messageId and timestamp (Segment's id of a call): the identify, posted first,
  // is stored (identity stitching: two claims, anonymousId and userId) and the page is the same call to us, a
  // duplicate. The WhatsApp change with no event in it (a value-level error) is a dead letter; the user's
  // marketing preference is a communication.
  EXPECT_EQ(posted, 75);
  // Every acknowledged record is committed once the ledger has counted it.
  ASSERT_EQ(wait_for(dsn, ledger_records, posted), posted) << srv.stderr_text();
  const auto expected = expected_communications();
  ASSERT_EQ(wait_for(dsn, "SELECT count(*) FROM communications", static_cast<long long>(expected.size())),
            static_cast<long long>(expected.size()))
      << srv.stderr_text();
  ASSERT_EQ(wait_for(dsn, "SELECT count(*) FROM customer_touchpoints", 7), 7);

  // Communications, row by row.
  std::map<std::string, std::string> contacts;
  const auto stored = stored_communications(dsn, &contacts);
  std::map<std::string, comm_row> by_key;
  for (const auto& r : stored) EXPECT_TRUE(by_key.emplace(key_of(r), r).second) << "two rows for " << key_of(r);
  for (const auto& want : expected) {
    const auto it = by_key.find(key_of(want));
    if (it == by_key.end()) {
      ADD_FAILURE() << "no row for " << describe(want);
      continue;
    }
    EXPECT_EQ(describe(it->second), describe(want));
    // The generated contact column: the address the event concerns.
    EXPECT_EQ(contacts[key_of(want)], want.channel == "email" ? want.email : want.phone) << key_of(want);
  }
  // The repeated sg_event_id kept its first event, and the two bounce examples their first (blocked).
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE provider_event_id = '6g4ZI7SA-xmRDv57GoPIPw=='"
                                 " AND metadata->>'type' = 'blocked'"),
            1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE metadata ? 'signature'"), 0);

  // Touchpoints.
  {
    pqxx::connection c(dsn);
    pqxx::read_transaction tx(c);
    std::set<std::string> rows;
    for (const auto& row : tx.exec(
             "SELECT touch_type || ' ' || channel_group || ' ' || coalesce(anonymous_id, '-') || ' ' || coalesce(message_id, '-') || ' ' ||"
             " to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || ' ' || coalesce(utm_source, '-') ||"
             " ' ' || coalesce(gclid, '-') || ' ' || coalesce(ab_test_id, '-') || ' ' || coalesce(variant, '-')"
             " FROM customer_touchpoints")) {
      rows.insert(row[0].as<std::string>());
    }
    const std::set<std::string> want = {
        "other Email 507f191e810c19729de860ea 022bb90c-bbac-11e4-8dfc-aa07a5b093db 2015-12-10T04:08:31.905000Z Newsletter - - -",
        "identify Direct 507f191e810c19729de860ea 022bb90c-bbac-11e4-8dfc-aa07a5b093db 2015-02-23T22:28:55.111000Z - - - -",
        "identify Direct 97980cfea0067 - 2015-02-23T22:28:55.111000Z - - - -",
        "other Direct 23adfd82-aa0f-45a7-a756-24f2a7a4c895 ajs-f8ca1e4de5024d9430b3928bd8ac6b96 2015-12-12T19:11:01.249000Z - - - -",
        "page_view Paid Search 507f191e810c19729de860ea ajs-next-1f2e3d4c5b6a79880796a5b4c3d2e1f0 2024-05-01T10:00:01.050000Z "
        "google EAIaIQobChMI_example_gclid - -",
        "experiment_exposure Direct 507f191e810c19729de860ea 022bb90c-bbac-11e4-8dfc-aa07a5b093dc 2024-05-01T12:00:01.050000Z "
        "- - exp_email_subject_q2 B",
        "form_submit Paid Social 507f191e810c19729de860ea ajs-next-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d "
        "2024-05-01T10:05:01.050000Z facebook - - -",
    };
    EXPECT_EQ(rows, want);
  }
  // The derived payloads' text ids, kept as references (the Mailgun and WhatsApp ones repeat the event of
  // delivered.json / docs-status-sent-marketing.json, posted after them: the first stored stays). The only dead
  // letter: the WhatsApp change no event is mapped from.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events WHERE reason LIKE 'a WhatsApp change of field %'"),
            1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints WHERE lead_ref = 'L-1001'"
                                 " AND lead_id = crm_ref_key('lead', 'L-1001')"),
            1);
  EXPECT_EQ(crm_test::count(dsn, metrics_from_rows), 0) << metrics_text(dsn);

  // The provider retries every request. Wait until the second pass is committed (the ledger counts every
  // record in), then nothing may have changed: not a row, not a metric.
  const std::string metrics_before = metrics_text(dsn);
  EXPECT_EQ(post_all(srv.port(), requests), posted);
  ASSERT_EQ(wait_for(dsn, ledger_records, 2 * posted), 2 * posted);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), static_cast<long long>(expected.size()));
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 7);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 1);
  EXPECT_EQ(metrics_text(dsn), metrics_before);
  EXPECT_EQ(crm_test::count(dsn, metrics_from_rows), 0) << metrics_text(dsn);
  // That includes the payloads without an event time (Twilio without RawDlrDoneDate, the Segment e-mail
  // examples): their retry arrives with another occurred_at, and is recognized by its event_id.
  EXPECT_EQ(std::count_if(expected.begin(), expected.end(), [](const comm_row& r) { return r.occurred == received; }),
            9);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT event_id) FROM communications"),
            static_cast<long long>(expected.size()));
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

}  // namespace

namespace {

// Issue 18, item 3: a verified Postmark delivery whose Metadata carries the CRM's ids as it writes them
// ("L-1001", "C-42") is stored with its references and counted in the campaign's metrics; a touchpoint and a
// conversion of the same referenced lead are one path; an empty id is still refused with its reason.
TEST(ServeFixtures, TextCrmIdsAreStoredAsReferencesAndCounted) {
  const auto dsn = crm_test::fresh_database("t_serve_crm_refs");
  crm_test::serve_process srv(dsn, scratch("crm-refs"),
                              "\n[webhooks.postmark]\nallow_unsigned = true\n");
  srv.start();
  crm_test::http_connection c(srv.port());
  const std::string delivery = R"({"MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Recipient":"john@example.com",)"
                               R"("DeliveredAt":"2019-11-05T16:33:54.9070259Z","Details":"Test delivery webhook details",)"
                               R"("Tag":"welcome-email","ServerID":23,"Metadata":{"lead_id":"L-1001","campaign_id":"C-42"},)"
                               R"("RecordType":"Delivery","MessageStream":"outbound"})";
  auto reply = c.request("POST", "/v1/webhooks/postmark", delivery, {{"Content-Type", "application/json"}});
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.body, R"({"accepted":1,"rejected":0})");
  // An empty lead id is present but no id: rejected with the reason, kept as a dead letter.
  std::string empty_lead = delivery;
  empty_lead.replace(empty_lead.find("\"L-1001\""), 8, "\"\"");
  empty_lead.replace(empty_lead.find("883953f4"), 8, "99999999");
  reply = c.request("POST", "/v1/webhooks/postmark", empty_lead, {{"Content-Type", "application/json"}});
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_NE(reply.body.find(R"("rejected":1)"), std::string::npos) << reply.body;
  EXPECT_NE(reply.body.find(R"(lead_id: \"\" is empty (Metadata))"), std::string::npos) << reply.body;

  // Canonical events of the same lead: an A/B exposure, a touch with a campaign reference, then a conversion.
  const std::string events =
      R"({"kind":"touchpoint","occurred_at":"2019-11-05T16:30:00Z","touch_type":"experiment_exposure",)"
      R"("lead_id":"L-1001","ab_test_id":"subject-test","variant":"B"})" "\n"
      R"({"kind":"touchpoint","occurred_at":"2019-11-05T16:40:00Z","touch_type":"email_click","lead_id":"L-1001",)"
      R"("campaign_id":"C-42","utm_source":"newsletter","utm_medium":"email"})" "\n"
      R"({"kind":"touchpoint","occurred_at":"2019-11-05T17:00:00Z","touch_type":"conversion","lead_id":"L-1001",)"
      R"("conversion_value":50})" "\n";
  reply = c.request("POST", "/v1/events", events, {{"Content-Type", "application/x-ndjson"}});
  EXPECT_EQ(reply.status, 200) << reply.body;

  ASSERT_EQ(wait_for(dsn, "SELECT count(*) FROM communications", 1), 1) << srv.stderr_text();
  ASSERT_EQ(wait_for(dsn, "SELECT count(*) FROM customer_touchpoints", 3), 3) << srv.stderr_text();
  ASSERT_EQ(wait_for(dsn, "SELECT count(*) FROM rejected_events", 1), 1) << srv.stderr_text();
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications WHERE lead_ref = 'L-1001' AND campaign_ref = 'C-42'"
                                 " AND lead_id = crm_ref_key('lead', 'L-1001')"
                                 " AND campaign_id = crm_ref_key('campaign', 'C-42') AND status = 'delivered'"),
            1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communication_metrics WHERE campaign_ref = 'C-42'"
                                 " AND campaign_id = crm_ref_key('campaign', 'C-42') AND status = 'delivered'"
                                 " AND event_count = 1"),
            1)
      << metrics_text(dsn);
  EXPECT_EQ(crm_test::count(dsn, metrics_from_rows), 0) << metrics_text(dsn);
  // The conversion is attributed to the referenced lead's click, and the campaign gets its credit.
  ASSERT_EQ(wait_for(dsn,
                     "SELECT count(*) FROM attribution_credits WHERE model = 'last_touch' AND credit = 1"
                     " AND lead_id = crm_ref_key('lead', 'L-1001') AND campaign_id = crm_ref_key('campaign', 'C-42')",
                     1),
            1)
      << srv.stderr_text();
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM campaign_attribution_daily WHERE model = 'first_touch'"
                                 " AND campaign_id = crm_ref_key('campaign', 'C-42') AND revenue = 50"),
            1);
  // The referenced lead is one A/B unit, exposed to B and converted.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ab_test_units WHERE ab_test_id = 'subject-test'"
                                 " AND unit = 'lead:' || crm_ref_key('lead', 'L-1001') AND variant = 'B' AND converted"
                                 " AND revenue = 50"),
            1);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
}

// The database computes the same derived keys as the normalizer, for any text (crm_ref.h, 0006_crm_refs.sql).
TEST(CrmRefs, KeysAgreeWithTheDatabase) {
  const auto dsn = crm_test::fresh_database("t_crm_ref_keys");
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  for (const std::string ref : {"L-1001", "C-42", "3f2c8d1e-0b6a-4c3d-9e8f-1a2b3c4d5e6f", "ü-ß-漢字", "x", "a b"}) {
    for (const std::string kind : {"lead", "campaign"}) {
      EXPECT_EQ(tx.exec1("SELECT crm_ref_key(" + tx.quote(kind) + ", " + tx.quote(ref) + ")")[0].as<long long>(),
                crm::transform::crm_ref_key(kind, ref))
          << kind << " " << ref;
    }
  }
  // Written as the CRM may write it: the same key as the normalized reference.
  EXPECT_EQ(tx.exec1("SELECT crm_ref_key('lead', ' 3F2C8D1E-0B6A-4C3D-9E8F-1A2B3C4D5E6F ')")[0].as<long long>(),
            crm::transform::crm_ref_key("lead", "3f2c8d1e-0b6a-4c3d-9e8f-1a2b3c4d5e6f"));
}

}  // namespace
