// The expected canonical records of every Twilio, WhatsApp and Segment fixture, written field by field from
// reading the fixture and the provider's documented status mapping.
#include <string>
#include <vector>

#include "tests/transform/providers/providers_test_support.h"

namespace crm::transform::providers::test_support {
namespace {

const std::string twilio_sid = "SM1342fe1b2c904d1ab04f0fc7a58abca9";
const std::string wamid_in = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";
const std::string wamid_delivered = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjVBOTE3MDk5QUVFM0YA";
const std::string wamid_failed = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA";
// A Twilio or WhatsApp case: the key is <message id>:<key_status>.
comm_expect message(std::string channel, std::string status, const std::string& message_id,
                    const std::string& key_status, std::string occurred, std::string phone,
                    std::vector<std::string> metadata_has = {}) {
  comm_expect e = comm(std::move(status), message_id, message_id + ":" + key_status, std::move(occurred),
                       std::move(metadata_has));
  e.channel = std::move(channel);
  e.phone = std::move(phone);
  return e;
}

// properties.email_id 18vzF7u3z; no messageId and no time: the key is the e-mail id and the event name, the
// time our receive time; properties.campaign_id "123".
comm_expect segment_email(std::string status, const std::string& event, std::string email) {
  comm_expect e = comm(std::move(status), "18vzF7u3z", "18vzF7u3z:" + event, std::string(received_text),
                       {R"("email_subject":"First shirt on us!")", R"("user_id":"019mr8mf4r")"});
  e.email = std::move(email);
  e.campaign_id = 123;
  return e;
}

}  // namespace

void add_messaging_cases(std::vector<fixture_case>& cases) {
  auto add = [&](fixture_case c) { cases.push_back(std::move(c)); };
  const auto twilio = [&](std::string file, comm_expect e, std::string query = "") {
    add({"twilio/" + file, "twilio", normalize_twilio, {std::move(e)}, {}, {}, std::move(query), form_ct});
  };
  const auto whatsapp = [&](std::string file, std::vector<comm_expect> comms, std::vector<reject_expect> rejects = {}) {
    add({"whatsapp/" + file, "whatsapp", normalize_whatsapp, std::move(comms), {}, std::move(rejects)});
  };
  const std::string wa_phone = "+16505551234";

  // --- Twilio (form bodies; no event time but RawDlrDoneDate) ----------------------------------------------
  {
    comm_expect e = message("sms", "unsubscribed", "SMYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY", "received",  // OptOutType=STOP
                            std::string(received_text), "+14017122661",                               // From
                            {R"("Body":"STOP")", R"("To":"+15558675310")", R"("OptOutType":"STOP")"});
    e.direction = "inbound";
    twilio("inbound-sms-stop-optout.derived.form", e);
  }
  {
    comm_expect e = message("sms", "replied", "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "received",  // SmsStatus=received
                            std::string(received_text), "+14017122661",
                            {R"("Body":"Ahoy! Let's build something amazing.")", R"("FromCity":"SAN FRANCISCO")"});
    e.direction = "inbound";
    twilio("inbound-sms.derived.form", e);
  }
  // RawDlrDoneDate 2308240501; To: a 555 documentation number, kept as Twilio wrote it.
  twilio("status-callback-delivered.derived.form",
         message("sms", "delivered", twilio_sid, "delivered", "2023-08-24T05:01:00Z", "+15558675310",
                 {R"("From":"+15017250604")", R"("RawDlrDoneDate":"2308240501")"}));
  {
    comm_expect e = message("sms", "sent", twilio_sid, "sent", std::string(received_text), "",  // no RawDlrDoneDate
                            {R"("AccountSid":"ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")"});
    twilio("status-callback-sent.docs.form", e);
    // The same callback with the CRM ids we put in the StatusCallback URL.
    e.lead_id = 42;
    e.campaign_id = 7;
    e.ab_test_id = "subject-test";
    e.variant = "B b";
    twilio("status-callback-sent.docs.form", e,
           "lead_id=42&campaign_id=7&ab_test_id=subject-test&variant=B+b&unrelated=1");
  }
  {
    comm_expect e = message("sms", "bounced", twilio_sid, "undelivered:30003", "2023-08-24T05:02:00Z",  // undelivered
                            "+15558675310");
    e.error_code = "30003";
    e.error_reason = "Unreachable destination handset";  // Twilio's error dictionary
    twilio("status-callback-undelivered-30003.derived.form", e);
  }

  // --- WhatsApp Cloud API ------------------------------------------------------------------------------
  {
    comm_expect e = message("whatsapp", "replied", wamid_in, "received", "2025-06-08T20:59:43Z",  // "1749416383"
                            wa_phone,                                                           // from
                            {R"("text":{"body":"Does it come in another color?"})", R"("profile_name":"Sheena Nelson")",
                             R"("phone_number_id":"106540352242922")"});
    e.direction = "inbound";
    whatsapp("docs-inbound-text.json", {e});
    e.metadata_has.push_back(R"("ctwa_clid":"Aff-n8ZTODiE79d22KtAwQKj9e_mIEOOj27vDVwFjN80dp4_0NiNhEgpGo0AHemvuSoifXaytfTzcchptiErTKCqTrJ5nW1h7IHYeYymGb5K5J5iTROpBhWAGaIAeUzHL50")");
    whatsapp("inbound-text-ctwa-referral.derived.json", {e});
  }
  whatsapp("docs-status-delivered.json",  // phone: recipient_id
           {message("whatsapp", "delivered", wamid_delivered, "delivered", "2025-06-18T16:22:53Z", wa_phone,
                    {R"("pricing":{"billable":true,"pricing_model":"CBP","category":"service"})"})});
  whatsapp("status-read.derived.json",  // read
           {message("whatsapp", "opened", wamid_delivered, "read", "2025-06-18T16:25:01Z", wa_phone,
                    {R"("display_phone_number":"15550783881")"})});
  // A change with no event in it is kept as a dead letter naming its field (it was acknowledged and dropped): a
  // value-level error, a field this adapter does not map.
  whatsapp("docs-value-errors.json", {},
           {{std::string(src) + ":0",
             R"(a WhatsApp change of field "messages" holds no status, message or user preference: not mapped to an event)",
             R"({
          "value": {)"}});
  {
    // A user's marketing preference: "resume" -> resubscribed ("stop" -> unsubscribed), inbound, the user's number.
    comm_expect e = comm("resubscribed", "", "user_preferences:16505551234:marketing_messages:resume:1731705721",
                         "2024-11-15T21:22:01Z",
                         {R"("category":"marketing_messages")", R"("detail":"User requested to resume marketing messages")"});
    e.channel = "whatsapp";
    e.direction = "inbound";
    e.phone = wa_phone;
    whatsapp("docs-user-preferences.json", {e});
  }
  {
    // To a group: one event per participant, the participant's phone, the group's id in the metadata.
    std::vector<comm_expect> reads;
    for (const char* participant : {"16505551234", "16505551235"}) {
      reads.push_back(message("whatsapp", "opened", wamid_delivered, std::string("read:") + participant,
                              "2025-06-18T16:25:01Z", std::string("+") + participant,
                              {R"("group_id":"120363400000000001")", R"("recipient_type":"group")"}));
    }
    whatsapp("status-group-read.derived.json", reads);
  }
  {
    comm_expect e = message("whatsapp", "failed", wamid_failed, "failed", "2025-06-28T20:34:48Z", wa_phone,
                            {R"("error_details":"In order to maintain a healthy ecosystem engagement, the message failed to be delivered.")"});
    e.error_code = "131049";
    e.error_reason = "This message was not delivered to maintain healthy ecosystem engagement.";
    whatsapp("docs-status-failed-131049.json", {e});
  }
  whatsapp("docs-status-sent-marketing.json",
           {message("whatsapp", "sent", wamid_sent, "sent", "2025-06-15T23:27:53Z", wa_phone,
                    {R"("origin":{"type":"marketing"})"})});
  {
    comm_expect e = with_crm_refs(message("whatsapp", "sent", wamid_sent, "sent", "2025-06-15T23:27:53Z", wa_phone));
    e.variant = "B";
    whatsapp("status-sent-with-biz-opaque-callback-data.derived.json", {e});
  }

  // --- Segment ------------------------------------------------------------------------------------------
  const auto segment = [&](std::string file, std::vector<comm_expect> comms, std::vector<touch_expect> touches = {},
                           std::vector<reject_expect> rejects = {}) {
    add({"segment/" + file, "segment", normalize_segment, std::move(comms), std::move(touches), std::move(rejects)});
  };
  // The fields every Segment touchpoint case states; a case sets the rest.
  const auto touch = [](std::string type, std::string group, std::string occurred, std::string anonymous_id,
                        std::string message_id, std::vector<std::string> metadata_has = {}) {
    touch_expect t;
    t.type = std::move(type);
    t.group = std::move(group);
    t.occurred = std::move(occurred);
    t.anonymous_id = std::move(anonymous_id);
    t.message_id = std::move(message_id);
    t.metadata_has = std::move(metadata_has);
    return t;
  };
  const auto utm = [](touch_expect& t, std::string source, std::string medium, std::string campaign,
                      std::string term, std::string content) {
    t.utm_source = std::move(source);
    t.utm_medium = std::move(medium);
    t.utm_campaign = std::move(campaign);
    t.utm_term = std::move(term);
    t.utm_content = std::move(content);
  };
  const std::string anon = "507f191e810c19729de860ea";
  {
    // "Report Submitted": neither an e-mail event, a form nor a conversion; group Email from utm_medium email.
    touch_expect t = touch("other", "Email", "2015-12-10T04:08:31.905000Z", anon, "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
                           {R"("event":"Report Submitted")", R"("userId":"97980cfea0067")", R"("ip":"8.8.8.8")"});
    utm(t, "Newsletter", "email", "TPS Innovation Newsletter", "tps reports", "image link");
    t.landing_url = "https://segment.com/academy/";
    segment("docs-common-fields-track-with-campaign.json", {}, {t});
  }
  segment("docs-email-bounced.json", {segment_email("bounced", "Email Bounced", "pgibbons@example.com")});
  segment("docs-email-delivered.json", {segment_email("delivered", "Email Delivered", "pgibbons@example.com")});
  {
    comm_expect e = segment_email("clicked", "Email Link Clicked", "joanna@chotchkies.com");
    e.url = "https://www.buymyshirts.com?promo=NEWCUSTOMER";  // properties.link_url
    segment("docs-email-link-clicked.json", {e});
  }
  segment("docs-email-marked-as-spam.json", {segment_email("spam", "Email Marked as Spam", "mwaddams@example.com")});
  segment("docs-email-opened.json", {segment_email("opened", "Email Opened", "pgibbons@example.com")});
  segment("docs-email-unsubscribed.json", {segment_email("unsubscribed", "Unsubscribed", "pgibbons@example.com")});
  {
    // identify with anonymousId and userId: the visitor is linked to the lead (the CRM's text id -> a reference).
    touch_expect t = touch("identify", "Direct", "2015-02-23T22:28:55.111000Z", anon,
                           "022bb90c-bbac-11e4-8dfc-aa07a5b093db", {R"("traits":{"name":"Peter Gibbons")"});
    t.lead_ref = "97980cfea0067";
    t.lead_id = transform::crm_ref_key("lead", "97980cfea0067");
    touch_expect u = t;  // and userId itself, the visitor key of calls without an anonymousId
    u.anonymous_id = "97980cfea0067";
    u.message_id = "";
    segment("docs-identify-complete.json", {}, {t, u});
  }
  {
    touch_expect t = touch("page_view", "Direct", "2015-02-23T22:28:55.111000Z", anon,
                           "022bb90c-bbac-11e4-8dfc-aa07a5b093db", {R"("name":"Home")", R"("title":"Welcome | Initech")"});
    t.landing_url = "http://www.example.com";  // properties.url
    segment("docs-page-complete.json", {}, {t});
  }
  {
    touch_expect t = touch("other", "Direct", "2015-12-12T19:11:01.249000Z", "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
                           "ajs-f8ca1e4de5024d9430b3928bd8ac6b96", {R"("event":"Course Clicked")"});
    t.landing_url = "https://segment.com/academy/";  // context.page.url
    segment("docs-track-complete.json", {}, {t});
  }
  {
    touch_expect t = touch("page_view", "Paid Search",  // google / cpc
                           "2024-05-01T10:00:01.050000Z", anon, "ajs-next-1f2e3d4c5b6a79880796a5b4c3d2e1f0");
    utm(t, "google", "cpc", "spring_sale", "crm software", "variant_b");
    t.gclid = "EAIaIQobChMI_example_gclid";
    t.landing_url =
        "https://www.example.com/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring_sale&utm_term=crm%20software&"
        "utm_content=variant_b&gclid=EAIaIQobChMI_example_gclid";
    t.referrer = "https://www.google.com/";
    segment("page-utm-gclid.derived.json", {}, {t});
  }
  {
    touch_expect t = touch("experiment_exposure", "Direct", "2024-05-01T12:00:01.050000Z", anon,
                           "022bb90c-bbac-11e4-8dfc-aa07a5b093dc", {R"("variation_name":"Short subject")"});
    t.ab_test_id = "exp_email_subject_q2";  // experiment_id
    t.variant = "B";                        // variation_id
    segment("track-experiment-viewed.derived.json", {}, {t});
  }
  {
    touch_expect t = with_crm_refs(touch("form_submit", "Paid Social", "2024-05-01T10:05:01.050000Z",
                                         "507f191e810c19729de860ea", "ajs-next-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
                                         {R"("form_id":"demo-request")"}),
                                   false);
    t.utm_source = "facebook";
    t.utm_medium = "paid_social";
    t.utm_campaign = "retargeting_q2";
    t.utm_content = "ad_set_7";
    t.fbclid = "IwAR2F4-example_fbclid";
    t.landing_url =
        "https://www.example.com/demo?utm_source=facebook&utm_medium=paid_social&utm_campaign=retargeting_q2&"
        "utm_content=ad_set_7&fbclid=IwAR2F4-example_fbclid";
    segment("track-utm-fbclid-form-submitted.derived.json", {}, {t});
  }
}

}  // namespace crm::transform::providers::test_support
