// What the provider adapter tests share: the receive instant, fixture files, the expected records of each
// fixture (fixture_case) and the checks that compare them with what an adapter gave. The cases themselves are
// in provider_cases_email.cc (SendGrid, Mailgun, Postmark, Resend) and provider_cases_messaging.cc (Twilio,
// WhatsApp, Segment).
#pragma once

#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "transform/normalize/crm_ref.h"
#include "transform/normalize/uuid_v5.h"
#include "transform/providers/providers.h"
#include "transform/text/timestamp.h"

namespace crm::transform::providers::test_support {

namespace fs = std::filesystem;
using namespace std::string_literals;

// Every test receives at this instant: 2026-11-18T11:06:40Z.
inline constexpr timestamp_us received = 1795000000LL * 1000000;
inline constexpr std::string_view received_text = "2026-11-18T11:06:40Z";
inline constexpr std::string_view src = "POST /v1/webhooks/test";

inline std::string fixture(const std::string& relative) {
  std::ifstream in(std::string(CRM_FIXTURES_DIR) + "/webhooks/" + relative, std::ios::binary);
  EXPECT_TRUE(in.good()) << relative;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

inline std::string rfc3339(timestamp_us t) {
  char buf[48];
  return std::string(buf, transform::detail::format_rfc3339(t, buf));
}

// The CRM's "L-1001" and "C-42" of the derived fixtures, as the records carry them.
template <typename Expect>
Expect with_crm_refs(Expect e, bool campaign = true) {
  e.lead_ref = "L-1001";
  e.lead_id = transform::crm_ref_key("lead", "L-1001");
  if (campaign) {
    e.campaign_ref = "C-42";
    e.campaign_id = transform::crm_ref_key("campaign", "C-42");
  }
  return e;
}

inline uuid v5(std::string_view name) {
  transform::detail::uuid_v5_generator gen;
  return gen.generate(transform::detail::event_id_namespace, name);
}

// ---------------------------------------------------------------------------------------------------------
// Expectations

struct comm_expect {
  std::string status;
  std::string channel = "email";
  std::string direction = "outbound";
  std::string message_id;  // provider_message_id
  std::string event_key;   // provider_event_id
  std::string occurred;    // RFC 3339 as format_rfc3339 writes it
  std::string email;
  std::string phone;
  std::int64_t lead_id = 0;
  std::int64_t campaign_id = 0;
  std::string lead_ref, campaign_ref;  // a text CRM id: lead_id/campaign_id then hold crm_ref_key() of it
  std::string ab_test_id;
  std::string variant;
  std::string url;
  std::string error_code;
  std::string error_reason;
  std::vector<std::string> metadata_has;  // text the metadata object must contain
  bool receipt_time = false;              // no event time in the payload: occurred_at is received_at
};

// The fields every communication case states; a case sets the rest. An `occurred` of received_text means
// the payload has no event time: occurred_at is the receive time.
inline comm_expect comm(std::string status, std::string message_id, std::string event_key, std::string occurred,
                        std::vector<std::string> metadata_has = {}) {
  comm_expect e;
  e.status = std::move(status);
  e.message_id = std::move(message_id);
  e.event_key = std::move(event_key);
  e.receipt_time = occurred == received_text;
  e.occurred = std::move(occurred);
  e.metadata_has = std::move(metadata_has);
  return e;
}

struct touch_expect {
  std::string type;
  std::string group;
  std::string occurred;
  std::string anonymous_id;
  std::string message_id;
  std::int64_t lead_id = 0;
  std::int64_t campaign_id = 0;
  std::string lead_ref, campaign_ref;
  std::string utm_source, utm_medium, utm_campaign, utm_term, utm_content;
  std::string gclid, fbclid, msclkid;
  std::string landing_url, referrer;
  std::string ab_test_id, variant;
  bool is_conversion = false;
  double conversion_value = -1;  // -1: none
  std::string currency;
  std::vector<std::string> metadata_has;
};

struct reject_expect {
  std::string source;
  std::string reason;
  std::string raw_starts;  // the raw text begins with this
};

inline const std::string json_ct = "application/json";
inline const std::string form_ct = "application/x-www-form-urlencoded";

struct fixture_case {
  fixture_case(std::string file_, std::string provider_, provider_fn fn_, std::vector<comm_expect> comms_ = {},
               std::vector<touch_expect> touches_ = {}, std::vector<reject_expect> rejects_ = {},
               std::string query_ = "", std::string content_type_ = json_ct)
      : file(std::move(file_)), provider(std::move(provider_)), fn(fn_), comms(std::move(comms_)),
        touches(std::move(touches_)), rejects(std::move(rejects_)), query(std::move(query_)),
        content_type(std::move(content_type_)) {}

  std::string file;
  std::string provider;  // provider column
  provider_fn fn;
  std::vector<comm_expect> comms;
  std::vector<touch_expect> touches;
  std::vector<reject_expect> rejects;
  std::string query;
  std::string content_type;
};

inline void PrintTo(const fixture_case& c, std::ostream* os) { *os << c.file; }

// Shared by the cases and the tests.
inline const std::string wamid_sent = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=";

// The expected records of every fixture file, by provider family.
void add_email_cases(std::vector<fixture_case>& cases);      // SendGrid, Mailgun, Postmark, Resend
void add_messaging_cases(std::vector<fixture_case>& cases);  // Twilio, WhatsApp, Segment
inline std::vector<fixture_case> fixture_cases() {
  std::vector<fixture_case> cases;
  add_email_cases(cases);
  add_messaging_cases(cases);
  return cases;
}

struct run_result {
  bool ok = false;
  std::string error;
  event_batch batch;
};

inline run_result run(provider_fn fn, std::string_view body, std::string_view content_type = json_ct,
               std::string_view query = "", normalizer* shared = nullptr) {
  static normalizer default_normalizer;
  normalizer& norm = shared != nullptr ? *shared : default_normalizer;
  run_result r;
  const webhook_input in{body, content_type, query, src, received, {}};
  r.ok = fn(norm, in, r.batch, r.error);
  return r;
}

inline void expect_json_object(std::string_view text) {
  if (text.empty()) return;
  simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  simdjson::dom::element doc;
  ASSERT_FALSE(parser.parse(padded).get(doc)) << text;
  EXPECT_TRUE(doc.is_object()) << text;
}

inline void check(const comm_expect& e, const communication& c, const std::string& provider) {
  EXPECT_EQ(to_string(c.status), e.status);
  EXPECT_EQ(to_string(c.channel_), e.channel);
  EXPECT_EQ(to_string(c.direction_), e.direction);
  EXPECT_EQ(c.provider, provider);
  EXPECT_EQ(c.provider_message_id, e.message_id);
  EXPECT_EQ(c.provider_event_id, e.event_key);
  EXPECT_EQ(rfc3339(c.occurred_at), e.occurred);
  EXPECT_EQ(c.received_at, received);
  EXPECT_EQ(c.occurred_at_is_receipt_time, e.receipt_time);
  EXPECT_EQ(c.email, e.email);
  EXPECT_EQ(c.phone, e.phone);
  EXPECT_EQ(c.lead_id, e.lead_id);
  EXPECT_EQ(c.campaign_id, e.campaign_id);
  EXPECT_EQ(c.lead_ref, e.lead_ref);
  EXPECT_EQ(c.campaign_ref, e.campaign_ref);
  EXPECT_EQ(c.ab_test_id, e.ab_test_id);
  EXPECT_EQ(c.variant, e.variant);
  EXPECT_EQ(c.url, e.url);
  EXPECT_EQ(c.error_code, e.error_code);
  EXPECT_EQ(c.error_reason, e.error_reason);
  // The same UUIDv5 scheme as the canonical normalizer (transform/README.md, "Derived ids").
  const std::string name = !e.event_key.empty()
                               ? "communication\x1f" + provider + "\x1f" + e.event_key
                               : "communication\x1f" + provider + "\x1f" + e.message_id + "\x1f" + e.status + "\x1f" +
                                     std::to_string(c.occurred_at);
  EXPECT_EQ(to_string(c.event_id), to_string(v5(name)));
  expect_json_object(c.metadata);
  for (const std::string& part : e.metadata_has) EXPECT_NE(c.metadata.find(part), std::string_view::npos) << part << "\n in " << c.metadata;
}

inline void check(const touch_expect& e, const touchpoint& t) {
  EXPECT_EQ(to_string(t.type), e.type);
  EXPECT_EQ(to_string(t.group), e.group);
  EXPECT_EQ(rfc3339(t.occurred_at), e.occurred);
  EXPECT_EQ(t.anonymous_id, e.anonymous_id);
  EXPECT_EQ(t.message_id, e.message_id);
  EXPECT_EQ(t.lead_id, e.lead_id);
  EXPECT_EQ(t.campaign_id, e.campaign_id);
  EXPECT_EQ(t.lead_ref, e.lead_ref);
  EXPECT_EQ(t.campaign_ref, e.campaign_ref);
  EXPECT_EQ(t.utm_source, e.utm_source);
  EXPECT_EQ(t.utm_medium, e.utm_medium);
  EXPECT_EQ(t.utm_campaign, e.utm_campaign);
  EXPECT_EQ(t.utm_term, e.utm_term);
  EXPECT_EQ(t.utm_content, e.utm_content);
  EXPECT_EQ(t.gclid, e.gclid);
  EXPECT_EQ(t.fbclid, e.fbclid);
  EXPECT_EQ(t.msclkid, e.msclkid);
  EXPECT_EQ(t.landing_url, e.landing_url);
  EXPECT_EQ(t.referrer, e.referrer);
  EXPECT_EQ(t.ab_test_id, e.ab_test_id);
  EXPECT_EQ(t.variant, e.variant);
  EXPECT_EQ(t.is_conversion, e.is_conversion);
  EXPECT_EQ(t.has_conversion_value, e.conversion_value >= 0);
  if (e.conversion_value >= 0) {
    EXPECT_DOUBLE_EQ(t.conversion_value, e.conversion_value);
  }
  EXPECT_EQ(t.currency, e.currency);
  if (!e.message_id.empty()) {
    EXPECT_EQ(to_string(t.touchpoint_id),
              to_string(v5("touchpoint\x1f" + e.message_id + "\x1f" + std::to_string(t.occurred_at))));
  }
  expect_json_object(t.metadata);
  for (const std::string& part : e.metadata_has) EXPECT_NE(t.metadata.find(part), std::string_view::npos) << part << "\n in " << t.metadata;
}

}  // namespace crm::transform::providers::test_support
