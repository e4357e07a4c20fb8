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
comm_expect segment_email(std::string status, const std::string& event, std::string email) {
  comm_expect e;
  e.status = std::move(status);
  e.message_id = "18vzF7u3z";         // properties.email_id
  e.event_key = "18vzF7u3z:" + event;  // no messageId and no time: the e-mail and the event name
  e.occurred = received_text;          // no timestamp at all: our receive time
  e.receipt_time = true;
  e.email = std::move(email);
  e.campaign_id = 123;                // properties.campaign_id "123"
  e.metadata_has = {R"("email_subject":"First shirt on us!")", R"("user_id":"019mr8mf4r")"};
  return e;
}

}  // namespace

void add_messaging_cases(std::vector<fixture_case>& cases) {
  auto add = [&](fixture_case c) { cases.push_back(std::move(c)); };

  // --- Twilio (form bodies; no event time but RawDlrDoneDate) ----------------------------------------------
  {
    comm_expect e;
    e.status = "unsubscribed";  // inbound with OptOutType=STOP
    e.channel = "sms";
    e.direction = "inbound";
    e.message_id = "SMYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY";
    e.event_key = "SMYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY:received";
    e.occurred = received_text;
    e.receipt_time = true;
    e.phone = "+14017122661";  // From
    e.metadata_has = {R"("Body":"STOP")", R"("To":"+15558675310")", R"("OptOutType":"STOP")"};
    add({"twilio/inbound-sms-stop-optout.derived.form", "twilio", normalize_twilio, {e}, {}, {}, "", form_ct});
  }
  {
    comm_expect e;
    e.status = "replied";  // SmsStatus=received, no MessageStatus
    e.channel = "sms";
    e.direction = "inbound";
    e.message_id = "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    e.event_key = "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:received";
    e.occurred = received_text;
    e.receipt_time = true;
    e.phone = "+14017122661";
    e.metadata_has = {R"("Body":"Ahoy! Let's build something amazing.")", R"("FromCity":"SAN FRANCISCO")"};
    add({"twilio/inbound-sms.derived.form", "twilio", normalize_twilio, {e}, {}, {}, "", form_ct});
  }
  {
    comm_expect e;
    e.status = "delivered";
    e.channel = "sms";
    e.message_id = twilio_sid;
    e.event_key = twilio_sid + ":delivered";
    e.occurred = "2023-08-24T05:01:00Z";  // RawDlrDoneDate 2308240501
    e.phone = "+15558675310";              // To: a 555 documentation number, kept as Twilio wrote it
    e.metadata_has = {R"("From":"+15017250604")", R"("RawDlrDoneDate":"2308240501")"};
    add({"twilio/status-callback-delivered.derived.form", "twilio", normalize_twilio, {e}, {}, {}, "", form_ct});
  }
  {
    comm_expect e;
    e.status = "sent";
    e.channel = "sms";
    e.message_id = twilio_sid;
    e.event_key = twilio_sid + ":sent";
    e.occurred = received_text;  // no RawDlrDoneDate
    e.receipt_time = true;
    e.metadata_has = {R"("AccountSid":"ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")"};
    add({"twilio/status-callback-sent.docs.form", "twilio", normalize_twilio, {e}, {}, {}, "", form_ct});
    // The same callback with the CRM ids we put in the StatusCallback URL.
    e.lead_id = 42;
    e.campaign_id = 7;
    e.ab_test_id = "subject-test";
    e.variant = "B b";
    add({"twilio/status-callback-sent.docs.form", "twilio", normalize_twilio, {e}, {}, {},
         "lead_id=42&campaign_id=7&ab_test_id=subject-test&variant=B+b&unrelated=1", form_ct});
  }
  {
    comm_expect e;
    e.status = "bounced";  // undelivered
    e.channel = "sms";
    e.message_id = twilio_sid;
    e.event_key = twilio_sid + ":undelivered:30003";
    e.occurred = "2023-08-24T05:02:00Z";
    e.phone = "+15558675310";
    e.error_code = "30003";
    e.error_reason = "Unreachable destination handset";  // Twilio's error dictionary
    add({"twilio/status-callback-undelivered-30003.derived.form", "twilio", normalize_twilio, {e}, {}, {}, "",
         form_ct});
  }

  // --- WhatsApp Cloud API ------------------------------------------------------------------------------
  {
    comm_expect e;
    e.status = "replied";
    e.channel = "whatsapp";
    e.direction = "inbound";
    e.message_id = wamid_in;
    e.event_key = wamid_in + ":received";
    e.occurred = "2025-06-08T20:59:43Z";  // "1749416383"
    e.phone = "+16505551234";             // from
    e.metadata_has = {R"("text":{"body":"Does it come in another color?"})", R"("profile_name":"Sheena Nelson")",
                      R"("phone_number_id":"106540352242922")"};
    add({"whatsapp/docs-inbound-text.json", "whatsapp", normalize_whatsapp, {e}});
    e.metadata_has.push_back(R"("ctwa_clid":"Aff-n8ZTODiE79d22KtAwQKj9e_mIEOOj27vDVwFjN80dp4_0NiNhEgpGo0AHemvuSoifXaytfTzcchptiErTKCqTrJ5nW1h7IHYeYymGb5K5J5iTROpBhWAGaIAeUzHL50")");
    add({"whatsapp/inbound-text-ctwa-referral.derived.json", "whatsapp", normalize_whatsapp, {e}});
  }
  {
    comm_expect e;
    e.status = "delivered";
    e.channel = "whatsapp";
    e.message_id = wamid_delivered;
    e.event_key = wamid_delivered + ":delivered";
    e.occurred = "2025-06-18T16:22:53Z";
    e.phone = "+16505551234";  // recipient_id
    e.metadata_has = {R"("pricing":{"billable":true,"pricing_model":"CBP","category":"service"})"};
    add({"whatsapp/docs-status-delivered.json", "whatsapp", normalize_whatsapp, {e}});
    e.status = "opened";  // read
    e.event_key = wamid_delivered + ":read";
    e.occurred = "2025-06-18T16:25:01Z";
    e.metadata_has = {R"("display_phone_number":"15550783881")"};
    add({"whatsapp/status-read.derived.json", "whatsapp", normalize_whatsapp, {e}});
  }
  {
    comm_expect e;
    e.status = "failed";
    e.channel = "whatsapp";
    e.message_id = wamid_failed;
    e.event_key = wamid_failed + ":failed";
    e.occurred = "2025-06-28T20:34:48Z";
    e.phone = "+16505551234";
    e.error_code = "131049";
    e.error_reason = "This message was not delivered to maintain healthy ecosystem engagement.";
    e.metadata_has = {
        R"("error_details":"In order to maintain a healthy ecosystem engagement, the message failed to be delivered.")"};
    add({"whatsapp/docs-status-failed-131049.json", "whatsapp", normalize_whatsapp, {e}});
  }
  {
    comm_expect e;
    e.status = "sent";
    e.channel = "whatsapp";
    e.message_id = wamid_sent;
    e.event_key = wamid_sent + ":sent";
    e.occurred = "2025-06-15T23:27:53Z";
    e.phone = "+16505551234";
    e.metadata_has = {R"("origin":{"type":"marketing"})"};
    add({"whatsapp/docs-status-sent-marketing.json", "whatsapp", normalize_whatsapp, {e}});
  }
  add({"whatsapp/status-sent-with-biz-opaque-callback-data.derived.json", "whatsapp", normalize_whatsapp, {}, {},
       {{std::string(src) + ":0", R"(lead_id: "L-1001" (biz_opaque_callback_data) is not an integer >= 1)",
         "{\n                \"id\": \"" + wamid_sent}}});

  // --- Segment ------------------------------------------------------------------------------------------
  {
    touch_expect t;
    t.type = "other";  // "Report Submitted": neither an e-mail event, a form nor a conversion
    t.group = "Email";  // utm_medium email
    t.occurred = "2015-12-10T04:08:31.905000Z";
    t.anonymous_id = "507f191e810c19729de860ea";
    t.message_id = "022bb90c-bbac-11e4-8dfc-aa07a5b093db";
    t.utm_source = "Newsletter";
    t.utm_medium = "email";
    t.utm_campaign = "TPS Innovation Newsletter";
    t.utm_term = "tps reports";
    t.utm_content = "image link";
    t.landing_url = "https://segment.com/academy/";
    t.metadata_has = {R"("event":"Report Submitted")", R"("userId":"97980cfea0067")", R"("ip":"8.8.8.8")"};
    add({"segment/docs-common-fields-track-with-campaign.json", "segment", normalize_segment, {}, {t}});
  }
  add({"segment/docs-email-bounced.json", "segment", normalize_segment,
       {segment_email("bounced", "Email Bounced", "pgibbons@example.com")}});
  add({"segment/docs-email-delivered.json", "segment", normalize_segment,
       {segment_email("delivered", "Email Delivered", "pgibbons@example.com")}});
  {
    comm_expect e = segment_email("clicked", "Email Link Clicked", "joanna@chotchkies.com");
    e.url = "https://www.buymyshirts.com?promo=NEWCUSTOMER";  // properties.link_url
    add({"segment/docs-email-link-clicked.json", "segment", normalize_segment, {e}});
  }
  add({"segment/docs-email-marked-as-spam.json", "segment", normalize_segment,
       {segment_email("spam", "Email Marked as Spam", "mwaddams@example.com")}});
  add({"segment/docs-email-opened.json", "segment", normalize_segment,
       {segment_email("opened", "Email Opened", "pgibbons@example.com")}});
  add({"segment/docs-email-unsubscribed.json", "segment", normalize_segment,
       {segment_email("unsubscribed", "Unsubscribed", "pgibbons@example.com")}});
  add({"segment/docs-identify-complete.json", "segment", normalize_segment});  // no event
  {
    touch_expect t;
    t.type = "page_view";
    t.group = "Direct";
    t.occurred = "2015-02-23T22:28:55.111000Z";
    t.anonymous_id = "507f191e810c19729de860ea";
    t.message_id = "022bb90c-bbac-11e4-8dfc-aa07a5b093db";
    t.landing_url = "http://www.example.com";  // properties.url
    t.metadata_has = {R"("name":"Home")", R"("title":"Welcome | Initech")"};
    add({"segment/docs-page-complete.json", "segment", normalize_segment, {}, {t}});
  }
  {
    touch_expect t;
    t.type = "other";
    t.group = "Direct";
    t.occurred = "2015-12-12T19:11:01.249000Z";
    t.anonymous_id = "23adfd82-aa0f-45a7-a756-24f2a7a4c895";
    t.message_id = "ajs-f8ca1e4de5024d9430b3928bd8ac6b96";
    t.landing_url = "https://segment.com/academy/";  // context.page.url
    t.metadata_has = {R"("event":"Course Clicked")"};
    add({"segment/docs-track-complete.json", "segment", normalize_segment, {}, {t}});
  }
  {
    touch_expect t;
    t.type = "page_view";
    t.group = "Paid Search";  // google / cpc
    t.occurred = "2024-05-01T10:00:01.050000Z";
    t.anonymous_id = "507f191e810c19729de860ea";
    t.message_id = "ajs-next-1f2e3d4c5b6a79880796a5b4c3d2e1f0";
    t.utm_source = "google";
    t.utm_medium = "cpc";
    t.utm_campaign = "spring_sale";
    t.utm_term = "crm software";
    t.utm_content = "variant_b";
    t.gclid = "EAIaIQobChMI_example_gclid";
    t.landing_url =
        "https://www.example.com/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring_sale&utm_term=crm%20software&"
        "utm_content=variant_b&gclid=EAIaIQobChMI_example_gclid";
    t.referrer = "https://www.google.com/";
    add({"segment/page-utm-gclid.derived.json", "segment", normalize_segment, {}, {t}});
  }
  {
    touch_expect t;
    t.type = "experiment_exposure";
    t.group = "Direct";
    t.occurred = "2024-05-01T12:00:01.050000Z";
    t.anonymous_id = "507f191e810c19729de860ea";
    t.message_id = "022bb90c-bbac-11e4-8dfc-aa07a5b093dc";
    t.ab_test_id = "exp_email_subject_q2";  // experiment_id
    t.variant = "B";                        // variation_id
    t.metadata_has = {R"("variation_name":"Short subject")"};
    add({"segment/track-experiment-viewed.derived.json", "segment", normalize_segment, {}, {t}});
  }
  add({"segment/track-utm-fbclid-form-submitted.derived.json", "segment", normalize_segment, {}, {},
       {{std::string(src) + ":0", R"(lead_id: "L-1001" (properties.lead_id) is not an integer >= 1)",
         "{\n  \"anonymousId\""}}});
}

}  // namespace crm::transform::providers::test_support
