// The expected canonical records of every SendGrid, Mailgun, Postmark and Resend fixture, written field by field
// from reading the fixture and the provider's documented status mapping.
#include <string>
#include <vector>

#include "tests/transform/providers/providers_test_support.h"

namespace crm::transform::providers::test_support {
namespace {

// SendGrid's documented samples share one sg_message_id and time.
const std::string sg_msg = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0";
const std::string sg_time = "2017-12-15T00:59:29Z";  // 1513299569
const std::string ua = "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)";

comm_expect sg(std::string status, std::string event_key, std::string url = "", std::string code = "",
               std::string reason = "") {
  comm_expect e;
  e.status = std::move(status);
  e.message_id = sg_msg;
  e.event_key = std::move(event_key);
  e.occurred = sg_time;
  e.email = "example@test.com";
  e.url = std::move(url);
  e.error_code = std::move(code);
  e.error_reason = std::move(reason);
  e.metadata_has = {R"("category":"cat facts")", R"("smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>")"};
  return e;
}

comm_expect sg_all(std::string status, std::string url = "", std::string code = "", std::string reason = "") {
  comm_expect e = sg(std::move(status), "sg_event_id", std::move(url), std::move(code), std::move(reason));
  e.message_id = "sg_message_id";
  return e;
}

const std::string pm_msg = "883953f4-6105-42a2-a16a-77a8eac79483";
const std::string pm_zero = "00000000-0000-0000-0000-000000000000";
const std::string pm_time = "2019-11-05T16:33:54.907025Z";  // "2019-11-05T16:33:54.9070259Z", truncated to µs
const std::string resend_id = "56761188-7520-42d8-8898-ff6fc54ce618";

}  // namespace

void add_email_cases(std::vector<fixture_case>& cases) {
  auto add = [&](fixture_case c) { cases.push_back(std::move(c)); };

  // --- SendGrid -------------------------------------------------------------------------------------------
  {
    comm_expect e;
    e.status = "queued";  // processed
    e.message_id = "5lFl7Fr1Rjme_EyzNNB_5A.stfilter-015.5185.55F883172.0";
    e.event_key = "qNOzbkTuTNCdxa1eXEpnXg";
    e.occurred = "2015-09-15T20:44:08Z";  // 1442349848
    e.email = "tadpole_0010@stbase-018.sjc1.sendgrid.net";
    e.ab_test_id = "23314";  // marketing_campaign_id of a legacy A/B campaign
    e.variant = "B";         // marketing_campaign_version
    e.metadata_has = {R"("marketing_campaign_name":"unique args ab")", R"("marketing_campaign_split_id":13471)"};
    add({"sendgrid/docs-ab-test-processed.array-wrapped.json", "sendgrid", normalize_sendgrid, {e}});
  }
  add({"sendgrid/docs-all-event-types.json", "sendgrid", normalize_sendgrid,
       {sg_all("queued"), sg_all("queued", "", "", "400 try again later"), sg_all("delivered"), sg_all("opened"),
        sg_all("clicked", "http://www.sendgrid.com/"), sg_all("bounced", "", "5.0.0", "500 unknown recipient"),
        sg_all("failed", "", "5.0.0", "Bounced Address"), sg_all("spam"), sg_all("unsubscribed"),
        sg_all("unsubscribed", "http://www.sendgrid.com/"), sg_all("resubscribed", "http://www.sendgrid.com/")}});
  {
    comm_expect e = sg("bounced", "6g4ZI7SA-xmRDv57GoPIPw==", "", "5.0.0", "500 unknown recipient");
    e.metadata_has.push_back(R"("type":"blocked")");
    add({"sendgrid/docs-bounce-blocked.json", "sendgrid", normalize_sendgrid, {e}});
    e.metadata_has.back() = R"("type":"bounce")";
    add({"sendgrid/docs-bounce-hard.json", "sendgrid", normalize_sendgrid, {e}});
  }
  {
    comm_expect e = sg("clicked", "kCAi1KttyQdEKHhdC-nuEA==", "http://www.sendgrid.com/");
    e.metadata_has.push_back(R"("useragent":")" + ua + "\"");
    e.metadata_has.push_back(R"("ip":"255.255.255.255")");
    add({"sendgrid/docs-click.json", "sendgrid", normalize_sendgrid, {e}});
  }
  {
    comm_expect e = sg("queued", "t7LEShmowp86DTdUW8M-GQ==", "", "", "400 try again later");
    e.metadata_has.push_back(R"("attempt":"5")");
    add({"sendgrid/docs-deferred.json", "sendgrid", normalize_sendgrid, {e}});
  }
  {
    comm_expect e = sg("delivered", "rWVYmVk90MjZJ9iohOBa3w==");
    e.metadata_has.push_back(R"("response":"250 OK")");
    add({"sendgrid/docs-delivered.json", "sendgrid", normalize_sendgrid, {e}});
  }
  add({"sendgrid/docs-dropped.json", "sendgrid", normalize_sendgrid,
       {sg("failed", "zmzJhfJgAfUSOW80yEbPyw==", "", "5.0.0", "Bounced Address")}});
  {
    comm_expect e = sg("resubscribed", "w_u0vJhLT-OFfprar5N93g==", "http://www.sendgrid.com/");
    e.metadata_has.push_back(R"("asm_group_id":10)");
    add({"sendgrid/docs-group-resubscribe.json", "sendgrid", normalize_sendgrid, {e}});
  }
  add({"sendgrid/docs-group-unsubscribe.json", "sendgrid", normalize_sendgrid,
       {sg("unsubscribed", "ahSCB7xYcXFb-hEaawsPRw==", "http://www.sendgrid.com/")}});
  add({"sendgrid/docs-open.json", "sendgrid", normalize_sendgrid, {sg("opened", "FOTFFO0ecsBE-zxFXfs6WA==")}});
  {
    comm_expect e = sg("queued", "rbtnWrG1DVDGGGFHFyun0A==");
    e.message_id = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000";
    e.metadata_has.push_back(R"("pool":{"name":"new_MY_test","id":210})");
    add({"sendgrid/docs-processed-with-pool.json", "sendgrid", normalize_sendgrid, {e}});
  }
  {
    comm_expect e;
    e.status = "opened";
    e.message_id = "sendgrid_internal_message_id";
    e.event_key = "sendgrid_internal_event_id";
    e.occurred = "2020-06-09T18:19:12.372000Z";  // 1591726752372: milliseconds, told by magnitude
    e.email = "email@example.com";
    e.metadata_has = {R"("singlesend_name":"Example Single Send")", R"("category":[])"};
    add({"sendgrid/docs-singlesend-open.json", "sendgrid", normalize_sendgrid, {e}});
  }
  add({"sendgrid/docs-spamreport.json", "sendgrid", normalize_sendgrid, {sg("spam", "37nvH5QBz858KGVYCM4uOA==")}});
  {
    comm_expect e;
    e.status = "clicked";
    e.message_id = "sendgrid_internal_message_id";  // no sg_event_id: id from message, status and time
    e.occurred = "2012-05-25T17:26:55Z";            // 1337966815
    e.email = "john.doe@sendgrid.com";
    e.url = "https://sendgrid.com";
    e.metadata_has = {R"("userid":"1123")", R"("template":"welcome")"};  // unique args, kept
    add({"sendgrid/docs-unique-args-click.json", "sendgrid", normalize_sendgrid, {e}});
  }
  add({"sendgrid/docs-unsubscribe.json", "sendgrid", normalize_sendgrid,
       {sg("unsubscribed", "zz_BjPgU_5pS-J8vlfB1sg==")}});

  // --- Mailgun ------------------------------------------------------------------------------------------
  {
    comm_expect e;
    e.status = "clicked";
    e.message_id = "20130821085807.30688.67706@samples.mailgun.org";
    e.event_key = "G5zMz2ysS6OxZ2C8xb2Tqg";
    e.occurred = "2013-08-21T08:59:24.094891Z";  // 1377075564.094891
    e.email = "recipient@example.com";
    e.url = "http://example.com/signup";
    e.metadata_has = {R"("geolocation":{"country":"US","region":"TX","city":"Austin"})"};
    add({"mailgun/clicked.json", "mailgun", normalize_mailgun, {e}});
  }
  {
    comm_expect e;
    e.status = "spam";  // complained
    e.message_id = "20130718032413.263EE2E0926@example.com";
    e.event_key = "ncV2XwymRUKbPek_MIM-Gw";
    e.occurred = "2013-08-22T23:31:00.049634Z";
    e.email = "foo@example.com";
    e.metadata_has = {R"("subject":"This is the subject.")"};
    add({"mailgun/complained.json", "mailgun", normalize_mailgun, {e}});
  }
  add({"mailgun/delivered-with-user-variables.derived.json", "mailgun", normalize_mailgun, {}, {},
       {{std::string(src) + ":0", R"(lead_id: "L-1001" (user-variables) is not an integer >= 1)", "{\n  \"signature\""}}});
  {
    comm_expect e;
    e.status = "delivered";
    e.message_id = "20180622182958.1.48906CB188F1A454@exmple.org";
    e.event_key = "hK7mQVt1QtqRiOfQXta4sw";
    e.occurred = "2018-06-22T18:29:59.626182Z";
    e.email = "john@example.com";
    e.metadata_has = {R"("code":250)", R"("message":"OK")"};
    add({"mailgun/delivered.json", "mailgun", normalize_mailgun, {e}});
  }
  {
    comm_expect e;
    e.status = "bounced";  // failed, severity permanent
    e.message_id = "20180622211249.1.2A6098970A380E12@example.org";
    e.event_key = "pl271FzxTTmGRW8Uj3dUWw";
    e.occurred = "2018-06-22T21:12:49.818328Z";
    e.email = "slava@mailgun.com";
    e.error_code = "605";
    e.error_reason = "Not delivering to previously bounced address";
    e.metadata_has = {R"("reason":"suppress-bounce")", R"("severity":"permanent")"};
    add({"mailgun/failed-permanent.json", "mailgun", normalize_mailgun, {e}});
  }
  {
    comm_expect e;
    e.status = "failed";  // failed, severity temporary
    e.message_id = "20221006142837.1618e01bf42da9fa@test.com";
    e.event_key = "xYrATi63Rke8EC_s7EoJeA";
    e.occurred = "2022-10-06T14:28:43.871657Z";
    e.email = "test@test.com";
    e.error_code = "451";
    e.error_reason = "4.7.652 The mail server [xxx.xxx.xxx.xxx] has exceeded the maximum number of connections.";
    e.metadata_has = {R"("enhanced-code":"4.7.652")", R"("retry-seconds":600)"};
    add({"mailgun/failed-temporary.json", "mailgun", normalize_mailgun, {e}});
  }
  {
    comm_expect e;
    e.status = "opened";
    e.message_id = "20130821005614.19826.35976@samples.mailgun.org";
    e.event_key = "-laxIqj9QWubsjY_3pTq_g";
    e.occurred = "2013-08-21T01:09:03.042277Z";
    e.email = "recipient@example.com";
    add({"mailgun/opened.json", "mailgun", normalize_mailgun, {e}});
  }
  {
    comm_expect e;
    e.status = "unsubscribed";
    e.message_id = "20130822232216.13966.79700@samples.mailgun.org";
    e.event_key = "W3X4JOhFT-OZidZGKKr9iA";
    e.occurred = "2013-08-22T23:23:11.421473Z";
    e.email = "recipient@example.com";
    add({"mailgun/unsubscribed.json", "mailgun", normalize_mailgun, {e}});
  }

  // --- Postmark -----------------------------------------------------------------------------------------
  {
    comm_expect e;
    e.status = "bounced";  // HardBounce (and Inactive)
    e.message_id = pm_msg;
    e.event_key = "Bounce:" + pm_msg + ":john@example.com:2019-11-05T16:33:54.9070259Z";
    e.occurred = pm_time;
    e.email = "john@example.com";
    e.error_code = "HardBounce";
    e.error_reason = "The server was unable to deliver your message (ex: unknown user, mailbox not found).";
    e.metadata_has = {R"("Tag":"Test")", R"("Metadata":{"a_key":"a_value","b_key":"b_value"})",
                      R"("ID":4323372036854775807)"};
    add({"postmark/docs-bounce.json", "postmark", normalize_postmark, {e}});
  }
  {
    comm_expect e;
    e.status = "clicked";
    e.message_id = pm_zero;
    e.event_key = "Click:" + pm_zero + ":john@example.com:2017-10-25T15:21:11.9065619Z";
    e.occurred = "2017-10-25T15:21:11.906561Z";
    e.email = "john@example.com";
    e.url = "https://example.com";  // OriginalLink
    e.metadata_has = {R"("ClickLocation":"HTML")", R"("Tag":"welcome-email")"};
    add({"postmark/docs-click.json", "postmark", normalize_postmark, {e}});
  }
  {
    comm_expect e;
    e.status = "delivered";
    e.message_id = pm_msg;
    e.event_key = "Delivery:" + pm_msg + ":john@example.com:2019-11-05T16:33:54.9070259Z";
    e.occurred = pm_time;
    e.email = "john@example.com";
    e.metadata_has = {R"("Details":"Test delivery webhook details")"};
    add({"postmark/docs-delivery.json", "postmark", normalize_postmark, {e}});
    e.status = "opened";
    e.event_key = "Open:" + pm_msg + ":john@example.com:2019-11-05T16:33:54.9070259Z";
    e.metadata_has = {R"("FirstOpen":true)", R"("Platform":"WebMail")"};
    add({"postmark/docs-open.json", "postmark", normalize_postmark, {e}});
  }
  {
    comm_expect e;
    e.status = "spam";
    e.message_id = pm_zero;
    e.event_key = "SpamComplaint:" + pm_zero + ":john@example.com:2019-11-05T16:33:54.9070259Z";
    e.occurred = pm_time;  // BouncedAt
    e.email = "john@example.com";
    e.metadata_has = {R"("Details":"Test spam complaint details")"};
    add({"postmark/docs-spam-complaint.json", "postmark", normalize_postmark, {e}});
  }
  {
    comm_expect e;
    e.status = "unsubscribed";  // SuppressSending: true
    e.message_id = pm_msg;
    e.event_key = "SubscriptionChange:" + pm_msg + ":bounced-address@wildbit.com:2020-02-01T10:53:34.416071Z";
    e.occurred = "2020-02-01T10:53:34.416071Z";
    e.email = "bounced-address@wildbit.com";
    e.metadata_has = {R"("SuppressionReason":"HardBounce")", R"("Origin":"Recipient")"};
    add({"postmark/docs-subscription-change.json", "postmark", normalize_postmark, {e}});
  }

  // --- Resend (Svix) ------------------------------------------------------------------------------------
  {
    comm_expect e;
    e.status = "bounced";
    e.message_id = resend_id;
    e.event_key = resend_id + ":email.bounced:2026-11-22T23:41:12.126Z";
    e.occurred = "2026-11-22T23:41:12.126000Z";
    e.email = "delivered@resend.dev";
    e.error_code = "Suppressed";
    e.error_reason =
        "The recipient's email address is on the suppression list because it has a recent history of producing "
        "hard bounces.";
    e.metadata_has = {R"("tags":{"category":"confirm_email"})", R"("broadcast_id":"8b146471-e88e-4322-86af-016cd36fd216")"};
    add({"resend-svix/docs-resend-email-bounced.json", "resend", normalize_resend, {e}});
  }
  {
    comm_expect e;
    e.status = "clicked";
    e.message_id = resend_id;
    e.event_key = resend_id + ":email.clicked:2024-11-22T23:41:12.126Z";
    e.occurred = "2024-11-22T23:41:12.126000Z";
    e.email = "delivered@resend.dev";
    e.url = "https://resend.com";
    e.metadata_has = {R"("ipAddress":"122.115.53.11")"};
    add({"resend-svix/docs-resend-email-clicked.json", "resend", normalize_resend, {e}});
  }
  {
    comm_expect e;
    e.status = "delivered";
    e.message_id = resend_id;
    e.event_key = resend_id + ":email.delivered:2026-02-22T23:41:12.126Z";
    e.occurred = "2026-02-22T23:41:12.126000Z";
    e.email = "delivered@resend.dev";
    e.metadata_has = {R"("subject":"Sending this example")"};
    add({"resend-svix/docs-resend-email-delivered.json", "resend", normalize_resend, {e}});
  }
  {
    comm_expect e;
    e.status = "failed";
    e.message_id = resend_id;
    e.event_key = resend_id + ":email.failed:2024-11-22T23:41:12.126Z";
    e.occurred = "2024-11-22T23:41:12.126000Z";
    e.email = "delivered@resend.dev";
    e.error_reason = "reached_daily_quota";
    add({"resend-svix/docs-resend-email-failed.json", "resend", normalize_resend, {e}});
  }

}

}  // namespace crm::transform::providers::test_support
