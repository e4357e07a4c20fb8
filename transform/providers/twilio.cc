// Twilio Messaging: status callbacks (MessageStatus) and incoming messages (SmsStatus=received), both
// application/x-www-form-urlencoded, one message per request. The CRM ids ride in the StatusCallback URL's
// query string, which we set when sending (webhook_input::query).
#include <array>
#include <cstring>
#include <utility>

#include "transform/text/ascii.h"
#include "transform/providers/provider_common.h"
#include "transform/providers/providers.h"
#include "transform/text/reason_text.h"
#include "transform/text/timestamp.h"
#include "transform/text/url_params.h"

namespace crm::transform::providers {
namespace {

using namespace detail;

constexpr status_words twilio_statuses =
    "accepted=queued|scheduled=queued|queued|sending=queued|sent|delivered|partially_delivered=delivered|"
    "undelivered=bounced|failed|canceled=failed|read=opened|receiving=replied|received=replied";

// Twilio's error dictionary (twilio.com/docs/api/errors) for the codes a status callback carries most;
// used when the callback has no ErrorMessage.
constexpr std::array<std::pair<std::string_view, std::string_view>, 12> twilio_errors = {{
    {"30001", "Queue overflow"},
    {"30002", "Account suspended"},
    {"30003", "Unreachable destination handset"},
    {"30004", "Message blocked"},
    {"30005", "Unknown destination handset"},
    {"30006", "Landline or unreachable carrier"},
    {"30007", "Message filtered (carrier violation)"},
    {"30008", "Unknown error"},
    {"30009", "Missing segment"},
    {"30010", "Message price exceeds max price"},
    {"21610", "Attempt to send to unsubscribed recipient"},
    {"63016", "Failed to send freeform message because you are outside the allowed window"},
}};

constexpr std::size_t max_params = 1024;

struct param {
  std::string_view key, value;  // decoded, or raw when the decoded text is not valid UTF-8 / holds NUL
};

bool media_type_is(std::string_view content_type, std::string_view want) {
  const std::size_t semi = content_type.find(';');
  std::string_view t = content_type.substr(0, semi);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  return transform::detail::ascii_iequals(t, want);
}

// Percent-decoded ('+' is a space); text a column and jsonb can hold (see usable_text).
std::string_view decode(workspace& ws, std::string_view raw) {
  if (raw.find_first_of("%+") == std::string_view::npos) return usable_text(ws, raw);
  ws.decoded.clear();
  transform::detail::percent_decode(raw, ws.decoded);
  if (std::memchr(ws.decoded.data(), 0, ws.decoded.size()) != nullptr ||
      !simdjson::validate_utf8(ws.decoded.data(), ws.decoded.size())) {
    return usable_text(ws, raw);  // keep it encoded: decoded it cannot be stored
  }
  return ws.scratch.copy(ws.decoded);
}

// "YYMMDDhhmm" (the carrier's delivery receipt "done date", passed through by Twilio; taken as UTC).
bool parse_dlr_done_date(std::string_view s, timestamp_us& out) {
  if (s.size() != 10) return false;
  int v[5];
  for (int i = 0; i < 5; ++i) {
    const char a = s[static_cast<std::size_t>(2 * i)], b = s[static_cast<std::size_t>(2 * i + 1)];
    if (a < '0' || a > '9' || b < '0' || b > '9') return false;
    v[i] = (a - '0') * 10 + (b - '0');
  }
  const int year = 2000 + v[0];
  const auto month = static_cast<unsigned>(v[1]), day = static_cast<unsigned>(v[2]);
  if (month < 1 || month > 12 || day < 1 || day > transform::detail::days_in_month(year, month) || v[3] > 23 ||
      v[4] > 59) {
    return false;
  }
  const std::int64_t days = transform::detail::days_from_civil(year, month, day);
  out = ((days * 24 + v[3]) * 60 + v[4]) * 60 * 1'000'000LL;
  return true;
}

// Strips a channel prefix ("whatsapp:+1415...") and says which channel it names.
std::string_view address_of(std::string_view a, channel& ch, bool& is_phone) {
  is_phone = true;
  if (a.rfind("whatsapp:", 0) == 0) {
    ch = channel::whatsapp;
    return a.substr(9);
  }
  if (a.rfind("messenger:", 0) == 0) {
    ch = channel::chat;
    is_phone = false;
    return a.substr(10);
  }
  return a;
}

}  // namespace

bool normalize_twilio(normalizer& norm, const webhook_input& in, event_batch& out, std::string& error) {
  if (!in.content_type.empty() && !media_type_is(in.content_type, "application/x-www-form-urlencoded")) {
    error.assign("not a Twilio messaging webhook: the body must be application/x-www-form-urlencoded, got \"");
    for (const char c : in.content_type.substr(0, 64)) error.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    error.push_back('"');
    return false;
  }
  workspace& ws = thread_workspace();
  begin_call(ws);

  // Split and decode once; Twilio posts ~15-40 parameters.
  thread_local std::vector<param> params;
  params.clear();
  const bool within_limit = transform::detail::for_each_pair(in.body, [&](std::string_view key, std::string_view value) {
    if (params.size() == max_params) return false;
    params.push_back({decode(ws, key), decode(ws, value)});
    return true;
  });
  if (!within_limit) {
    error.assign("not a Twilio messaging webhook: more than 1024 parameters");
    return false;
  }
  auto get = [&](std::string_view key) -> std::string_view {
    for (const param& p : params) {
      if (p.key == key && !p.value.empty()) return p.value;
    }
    return {};
  };

  std::string_view sid = get("MessageSid");
  if (sid.empty()) sid = get("SmsSid");
  if (sid.empty()) {
    error.assign("not a Twilio messaging webhook: no MessageSid (or SmsSid) parameter");
    return false;
  }
  const std::string_view message_status = get("MessageStatus");
  const std::string_view sms_status = get("SmsStatus");
  const bool inbound = message_status.empty() && (sms_status == "received" || sms_status == "receiving" ||
                                                  (sms_status.empty() && !get("Body").empty()));
  const std::string_view status_text = !message_status.empty() ? message_status
                                       : !sms_status.empty()    ? sms_status
                                       : inbound                ? std::string_view("received")
                                                                : std::string_view{};

  communication_fields f;
  f.provider = "twilio";
  f.channel_ = channel::sms;
  f.direction_ = inbound ? direction::inbound : direction::outbound;
  f.provider_message_id = sid;
  if (status_text.empty()) {
    rule_missing(ws, "MessageStatus");
  } else {
    map_status(ws, "MessageStatus", status_text, twilio_statuses, f.status, " is not a Twilio message status");
  }
  if (inbound) {
    f.status = comm_status::replied;
    const std::string_view opt_out = get("OptOutType");
    if (transform::detail::ascii_iequals(opt_out, "STOP")) f.status = comm_status::unsubscribed;
    if (transform::detail::ascii_iequals(opt_out, "START")) f.status = comm_status::resubscribed;
  }
  const std::string_view party = get(inbound ? "From" : "To");
  bool is_phone = true;
  const std::string_view address = address_of(party, f.channel_, is_phone);
  if (is_phone) {
    f.phone = address;
    f.phone_from_provider = true;
  }

  // The idempotency key: one callback per message and status (and error).
  const std::string_view error_code = get("ErrorCode");
  ws.event_key.assign(sid).append(":").append(status_text);
  if (!error_code.empty()) ws.event_key.append(":").append(error_code);
  f.provider_event_id = ws.event_key;
  if (!error_code.empty() && error_code != "0") {
    f.error_code = error_code;
    f.error_reason = get("ErrorMessage");
    if (f.error_reason.empty()) lookup(twilio_errors, error_code, f.error_reason);
  }

  // Twilio sends no event time; the carrier's receipt time when there is one, else our receive time (then
  // a retry arrives with another occurred_at: the writer recognizes it by event_id near that time).
  f.occurred_at = in.received_at;
  f.occurred_at_is_receipt_time = true;
  timestamp_us done = 0;
  if (parse_dlr_done_date(get("RawDlrDoneDate"), done)) {
    f.occurred_at = done;
    f.occurred_at_is_receipt_time = false;
  }

  crm_ids ids;
  offer_query(ws, ids, in.query, "StatusCallback query", 2);
  for (const param& p : params) {
    if (p.key == "MessageSid" || p.key == "MessageStatus" || p.key == "ErrorCode" || p.key == "ErrorMessage" ||
        p.key.empty()) {
      continue;
    }
    ws.metadata.push_back(',');
    append_json_string(ws.metadata, p.key);
    ws.metadata.push_back(':');
    append_json_string(ws.metadata, p.value);
  }
  emit_event(norm, in, ws, ids, f, in.body, 0, out);
  return true;
}

}  // namespace crm::transform::providers
