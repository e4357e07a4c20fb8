// The expected canonical records of every SendGrid, Mailgun, Postmark and Resend fixture, written field by field
// from reading the fixture and the provider's documented status mapping.
#include <string>
#include <vector>

#include "tests/transform/providers/providers_test_support.h"

namespace crm::transform::providers::test_support {
namespace {

// An e-mail case: comm() and the recipient.
comm_expect mail(std::string status, std::string message_id, std::string event_key, std::string occurred,
                 std::string email, std::vector<std::string> metadata_has = {}) {
  comm_expect e = comm(std::move(status), std::move(message_id), std::move(event_key), std::move(occurred),
                       std::move(metadata_has));
  e.email = std::move(email);
  return e;
}

// SendGrid's documented samples share one sg_message_id and time.
const std::string sg_msg = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0";
const std::string sg_time = "2017-12-15T00:59:29Z";  // 1513299569
const std::string ua = "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)";

comm_expect sg(std::string status, std::string event_key, std::string url = "", std::string code = "",
               std::string reason = "") {
  comm_expect e = mail(std::move(status), sg_msg, std::move(event_key), sg_time, "example@test.com",
                       {R"("category":"cat facts")", R"("smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>")"});
  e.url = std::move(url);
  e.error_code = std::move(code);
  e.error_reason = std::move(reason);
  return e;
}

comm_expect sg_all(std::string status, std::string url = "", std::string code = "", std::string reason = "") {
  comm_expect e = sg(std::move(status), "sg_event_id", std::move(url), std::move(code), std::move(reason));
  e.message_id = "sg_message_id";
  return e;
}

const std::string pm_msg = "883953f4-6105-42a2-a16a-77a8eac79483";
const std::string pm_zero = "00000000-0000-0000-0000-000000000000";
const std::string pm_raw_time = "2019-11-05T16:33:54.9070259Z";
const std::string pm_time = "2019-11-05T16:33:54.907025Z";  // pm_raw_time truncated to µs

// Postmark has no event id: the key is RecordType:MessageID:Recipient:<the time as Postmark wrote it>.
comm_expect pm(std::string status, const std::string& record_type, const std::string& message_id,
               const std::string& email, const std::string& raw_time, std::string occurred,
               std::vector<std::string> metadata_has) {
  return mail(std::move(status), message_id, record_type + ":" + message_id + ":" + email + ":" + raw_time,
              std::move(occurred), email, std::move(metadata_has));
}

// Resend (Svix) has no event id either: the key is email_id:type:created_at.
const std::string resend_id = "56761188-7520-42d8-8898-ff6fc54ce618";
comm_expect resend(std::string status, const std::string& type, const std::string& raw_time, std::string occurred,
                   std::vector<std::string> metadata_has = {}) {
  return mail(std::move(status), resend_id, resend_id + ":" + type + ":" + raw_time, std::move(occurred),
              "delivered@resend.dev", std::move(metadata_has));
}

}  // namespace

void add_email_cases(std::vector<fixture_case>& cases) {
  auto adder = [&](std::string provider, provider_fn fn) {
    return [&cases, provider, fn](std::string file, std::vector<comm_expect> comms,
                                  std::vector<reject_expect> rejects = {}) {
      cases.push_back({provider + "/" + file, provider, fn, std::move(comms), {}, std::move(rejects)});
    };
  };
  const auto sendgrid = adder("sendgrid", normalize_sendgrid);
  const auto mailgun = adder("mailgun", normalize_mailgun);
  const auto postmark = adder("postmark", normalize_postmark);
  const auto resend_case = [&](std::string file, std::vector<comm_expect> comms) {
    cases.push_back({"resend-svix/" + file, "resend", normalize_resend, std::move(comms)});
  };

  // --- SendGrid -------------------------------------------------------------------------------------------
  {
    comm_expect e = mail("queued", "5lFl7Fr1Rjme_EyzNNB_5A.stfilter-015.5185.55F883172.0",  // processed
                         "qNOzbkTuTNCdxa1eXEpnXg", "2015-09-15T20:44:08Z",                    // 1442349848
                         "tadpole_0010@stbase-018.sjc1.sendgrid.net",
                         {R"("marketing_campaign_name":"unique args ab")", R"("marketing_campaign_split_id":13471)"});
    e.ab_test_id = "23314";  // marketing_campaign_id of a legacy A/B campaign
    e.variant = "B";         // marketing_campaign_version
    sendgrid("docs-ab-test-processed.array-wrapped.json", {e});
  }
  sendgrid("docs-all-event-types.json",
           {sg_all("queued"), sg_all("queued", "", "", "400 try again later"), sg_all("delivered"), sg_all("opened"),
            sg_all("clicked", "http://www.sendgrid.com/"), sg_all("bounced", "", "5.0.0", "500 unknown recipient"),
            sg_all("failed", "", "5.0.0", "Bounced Address"), sg_all("spam"), sg_all("unsubscribed"),
            sg_all("unsubscribed", "http://www.sendgrid.com/"), sg_all("resubscribed", "http://www.sendgrid.com/")});
  {
    comm_expect e = sg("bounced", "6g4ZI7SA-xmRDv57GoPIPw==", "", "5.0.0", "500 unknown recipient");
    e.metadata_has.push_back(R"("type":"blocked")");
    sendgrid("docs-bounce-blocked.json", {e});
    e.metadata_has.back() = R"("type":"bounce")";
    sendgrid("docs-bounce-hard.json", {e});
  }
  {
    comm_expect e = sg("clicked", "kCAi1KttyQdEKHhdC-nuEA==", "http://www.sendgrid.com/");
    e.metadata_has.push_back(R"("useragent":")" + ua + "\"");
    e.metadata_has.push_back(R"("ip":"255.255.255.255")");
    sendgrid("docs-click.json", {e});
  }
  {
    comm_expect e = sg("queued", "t7LEShmowp86DTdUW8M-GQ==", "", "", "400 try again later");
    e.metadata_has.push_back(R"("attempt":"5")");
    sendgrid("docs-deferred.json", {e});
  }
  {
    comm_expect e = sg("delivered", "rWVYmVk90MjZJ9iohOBa3w==");
    e.metadata_has.push_back(R"("response":"250 OK")");
    sendgrid("docs-delivered.json", {e});
  }
  sendgrid("docs-dropped.json", {sg("failed", "zmzJhfJgAfUSOW80yEbPyw==", "", "5.0.0", "Bounced Address")});
  {
    comm_expect e = sg("resubscribed", "w_u0vJhLT-OFfprar5N93g==", "http://www.sendgrid.com/");
    e.metadata_has.push_back(R"("asm_group_id":10)");
    sendgrid("docs-group-resubscribe.json", {e});
  }
  sendgrid("docs-group-unsubscribe.json", {sg("unsubscribed", "ahSCB7xYcXFb-hEaawsPRw==", "http://www.sendgrid.com/")});
  sendgrid("docs-open.json", {sg("opened", "FOTFFO0ecsBE-zxFXfs6WA==")});
  {
    comm_expect e = sg("queued", "rbtnWrG1DVDGGGFHFyun0A==");
    e.message_id = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000";
    e.metadata_has.push_back(R"("pool":{"name":"new_MY_test","id":210})");
    sendgrid("docs-processed-with-pool.json", {e});
  }
  // 1591726752372: milliseconds, told by magnitude.
  sendgrid("docs-singlesend-open.json",
           {mail("opened", "sendgrid_internal_message_id", "sendgrid_internal_event_id", "2020-06-09T18:19:12.372000Z",
                 "email@example.com", {R"("singlesend_name":"Example Single Send")", R"("category":[])"})});
  sendgrid("docs-spamreport.json", {sg("spam", "37nvH5QBz858KGVYCM4uOA==")});
  {
    // No sg_event_id: the id from message, status and time; the unique args are kept.
    comm_expect e = mail("clicked", "sendgrid_internal_message_id", "", "2012-05-25T17:26:55Z",  // 1337966815
                         "john.doe@sendgrid.com", {R"("userid":"1123")", R"("template":"welcome")"});
    e.url = "https://sendgrid.com";
    sendgrid("docs-unique-args-click.json", {e});
  }
  sendgrid("docs-unsubscribe.json", {sg("unsubscribed", "zz_BjPgU_5pS-J8vlfB1sg==")});

  // --- Mailgun ------------------------------------------------------------------------------------------
  {
    comm_expect e = mail("clicked", "20130821085807.30688.67706@samples.mailgun.org", "G5zMz2ysS6OxZ2C8xb2Tqg",
                         "2013-08-21T08:59:24.094891Z",  // 1377075564.094891
                         "recipient@example.com", {R"("geolocation":{"country":"US","region":"TX","city":"Austin"})"});
    e.url = "http://example.com/signup";
    mailgun("clicked.json", {e});
  }
  mailgun("complained.json", {mail("spam", "20130718032413.263EE2E0926@example.com", "ncV2XwymRUKbPek_MIM-Gw",
                                   "2013-08-22T23:31:00.049634Z", "foo@example.com",
                                   {R"("subject":"This is the subject.")"})});
  {
    // The CRM's text ids ("L-1001", "C-42") are kept as its references.
    comm_expect e = with_crm_refs(mail("delivered", "20180622182958.1.48906CB188F1A454@exmple.org",
                                       "hK7mQVt1QtqRiOfQXta4sw", "2018-06-22T18:29:59.626182Z", "john@example.com",
                                       {R"("user-variables":{"lead_id":"L-1001","campaign_id":"C-42","variant":"B"})"}));
    e.variant = "B";
    mailgun("delivered-with-user-variables.derived.json", {e});
  }
  mailgun("delivered.json", {mail("delivered", "20180622182958.1.48906CB188F1A454@exmple.org", "hK7mQVt1QtqRiOfQXta4sw",
                                  "2018-06-22T18:29:59.626182Z", "john@example.com",
                                  {R"("code":250)", R"("message":"OK")"})});
  {
    comm_expect e = mail("bounced", "20180622211249.1.2A6098970A380E12@example.org",  // failed, severity permanent
                         "pl271FzxTTmGRW8Uj3dUWw", "2018-06-22T21:12:49.818328Z", "slava@mailgun.com",
                         {R"("reason":"suppress-bounce")", R"("severity":"permanent")"});
    e.error_code = "605";
    e.error_reason = "Not delivering to previously bounced address";
    mailgun("failed-permanent.json", {e});
  }
  {
    comm_expect e = mail("failed", "20221006142837.1618e01bf42da9fa@test.com",  // failed, severity temporary
                         "xYrATi63Rke8EC_s7EoJeA", "2022-10-06T14:28:43.871657Z", "test@test.com",
                         {R"("enhanced-code":"4.7.652")", R"("retry-seconds":600)"});
    e.error_code = "451";
    e.error_reason = "4.7.652 The mail server [xxx.xxx.xxx.xxx] has exceeded the maximum number of connections.";
    mailgun("failed-temporary.json", {e});
  }
  mailgun("opened.json", {mail("opened", "20130821005614.19826.35976@samples.mailgun.org", "-laxIqj9QWubsjY_3pTq_g",
                               "2013-08-21T01:09:03.042277Z", "recipient@example.com")});
  mailgun("unsubscribed.json", {mail("unsubscribed", "20130822232216.13966.79700@samples.mailgun.org",
                                     "W3X4JOhFT-OZidZGKKr9iA", "2013-08-22T23:23:11.421473Z", "recipient@example.com")});

  // --- Postmark -----------------------------------------------------------------------------------------
  {
    comm_expect e = pm("bounced", "Bounce", pm_msg, "john@example.com", pm_raw_time, pm_time,  // HardBounce, Inactive
                       {R"("Tag":"Test")", R"("Metadata":{"a_key":"a_value","b_key":"b_value"})",
                        R"("ID":4323372036854775807)"});
    e.error_code = "HardBounce";
    e.error_reason = "The server was unable to deliver your message (ex: unknown user, mailbox not found).";
    postmark("docs-bounce.json", {e});
  }
  {
    comm_expect e = pm("clicked", "Click", pm_zero, "john@example.com", "2017-10-25T15:21:11.9065619Z",
                       "2017-10-25T15:21:11.906561Z", {R"("ClickLocation":"HTML")", R"("Tag":"welcome-email")"});
    e.url = "https://example.com";  // OriginalLink
    postmark("docs-click.json", {e});
  }
  postmark("docs-delivery.json", {pm("delivered", "Delivery", pm_msg, "john@example.com", pm_raw_time, pm_time,
                                     {R"("Details":"Test delivery webhook details")"})});
  postmark("docs-open.json", {pm("opened", "Open", pm_msg, "john@example.com", pm_raw_time, pm_time,
                                 {R"("FirstOpen":true)", R"("Platform":"WebMail")"})});
  postmark("docs-spam-complaint.json",  // occurred_at from BouncedAt
           {pm("spam", "SpamComplaint", pm_zero, "john@example.com", pm_raw_time, pm_time,
               {R"("Details":"Test spam complaint details")"})});
  postmark("docs-subscription-change.json",  // SuppressSending: true
           {pm("unsubscribed", "SubscriptionChange", pm_msg, "bounced-address@wildbit.com",
               "2020-02-01T10:53:34.416071Z", "2020-02-01T10:53:34.416071Z",
               {R"("SuppressionReason":"HardBounce")", R"("Origin":"Recipient")"})});
  postmark("subscription-change-resubscribe.derived.json",  // SuppressSending: false; the key says so
           {pm("resubscribed", "SubscriptionChange", pm_msg, "bounced-address@wildbit.com",
               "2020-02-01T10:53:34.416071Z:resubscribed", "2020-02-01T10:53:34.416071Z", {R"("Origin":"Recipient")"})});

  // --- Resend (Svix) ------------------------------------------------------------------------------------
  {
    comm_expect e = resend("bounced", "email.bounced", "2026-11-22T23:41:12.126Z", "2026-11-22T23:41:12.126000Z",
                           {R"("tags":{"category":"confirm_email"})",
                            R"("broadcast_id":"8b146471-e88e-4322-86af-016cd36fd216")"});
    e.error_code = "Suppressed";
    e.error_reason =
        "The recipient's email address is on the suppression list because it has a recent history of producing "
        "hard bounces.";
    resend_case("docs-resend-email-bounced.json", {e});
  }
  {
    comm_expect e = resend("clicked", "email.clicked", "2024-11-22T23:41:12.126Z", "2024-11-22T23:41:12.126000Z",
                           {R"("ipAddress":"122.115.53.11")"});
    e.url = "https://resend.com";
    resend_case("docs-resend-email-clicked.json", {e});
  }
  resend_case("docs-resend-email-delivered.json",
              {resend("delivered", "email.delivered", "2026-02-22T23:41:12.126Z", "2026-02-22T23:41:12.126000Z",
                      {R"("subject":"Sending this example")"})});
  {
    comm_expect e = resend("failed", "email.failed", "2024-11-22T23:41:12.126Z", "2024-11-22T23:41:12.126000Z");
    e.error_reason = "reached_daily_quota";
    resend_case("docs-resend-email-failed.json", {e});
  }
}

}  // namespace crm::transform::providers::test_support
