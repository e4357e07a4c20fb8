#include "sinks/postgres/copy_encoder.h"

#include "transform/text/utf8.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace crm::sinks::postgres {

const char* const communication_columns =
    "event_id, occurred_at, received_at, lead_id, channel, direction, status, provider, provider_message_id, "
    "provider_event_id, email, phone, campaign_id, ab_test_id, variant, url, error_code, error_reason, metadata, "
    "tenant_id, lead_ref, campaign_ref";
const char* const touchpoint_columns =
    "touchpoint_id, occurred_at, received_at, lead_id, anonymous_id, message_id, touch_type, utm_source, utm_medium, "
    "utm_campaign, utm_term, utm_content, gclid, fbclid, msclkid, landing_url, referrer, channel_group, campaign_id, "
    "is_conversion, conversion_type, conversion_value, currency, ab_test_id, variant, metadata, tenant_id, lead_ref, "
    "campaign_ref";
const char* const rejection_columns = "received_at, source, reason, raw, raw_bytes, tenant_id";

const char* const communication_stage_definition =
    "event_id uuid, occurred_at timestamptz, received_at timestamptz, lead_id bigint, channel text, direction text, "
    "status text, provider text, provider_message_id text, provider_event_id text, email text, phone text, "
    "campaign_id bigint, ab_test_id text, variant text, url text, error_code text, error_reason text, metadata jsonb, "
    "tenant_id text, lead_ref text, campaign_ref text, occurred_at_is_receipt_time boolean";
// conversion_value travels as float8 (binary numeric is awkward); the insert casts it to numeric.
const char* const touchpoint_stage_definition =
    "touchpoint_id uuid, occurred_at timestamptz, received_at timestamptz, lead_id bigint, anonymous_id text, "
    "message_id text, touch_type text, utm_source text, utm_medium text, utm_campaign text, utm_term text, "
    "utm_content text, gclid text, fbclid text, msclkid text, landing_url text, referrer text, channel_group text, "
    "campaign_id bigint, is_conversion boolean, conversion_type text, conversion_value float8, currency text, "
    "ab_test_id text, variant text, metadata jsonb, tenant_id text, lead_ref text, campaign_ref text";
const char* const rejection_stage_definition =
    "received_at timestamptz, source text, reason text, raw text, raw_bytes bytea, tenant_id text, idempotency_key text";

namespace {

// Days since 1970-01-01 -> civil date (Howard Hinnant's algorithm).
void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) noexcept {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += (m <= 2);
}

inline void put2(char* p, unsigned v) noexcept {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

std::size_t format_timestamp(transform::timestamp_us us, char* out) noexcept {
  std::int64_t secs = us / 1000000;
  std::int64_t frac = us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    secs -= 1;
  }
  std::int64_t days = secs / 86400;
  std::int64_t sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    days -= 1;
  }
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  // Four digits, more past 9999 (timestamptz reaches 294276; canonical input stops at the normalizer's range
  // check, records of the `normalized` Kafka format only at the column's). Years before 1 are not written: the
  // database refuses them before anything is formatted.
  unsigned yy = static_cast<unsigned>(std::max<std::int64_t>(y, 0));
  int digits = 4;
  for (unsigned v = yy / 10000; v > 0; v /= 10) ++digits;
  for (int i = digits - 1; i >= 0; --i, yy /= 10) out[i] = static_cast<char>('0' + yy % 10);
  out += digits - 4;  // the rest as in a four-digit year
  out[4] = '-';
  put2(out + 5, m);
  out[7] = '-';
  put2(out + 8, d);
  out[10] = ' ';
  put2(out + 11, static_cast<unsigned>(sod / 3600));
  out[13] = ':';
  put2(out + 14, static_cast<unsigned>(sod / 60 % 60));
  out[16] = ':';
  put2(out + 17, static_cast<unsigned>(sod % 60));
  out[19] = '.';
  unsigned f = static_cast<unsigned>(frac);
  for (int i = 25; i >= 20; --i) {
    out[i] = static_cast<char>('0' + f % 10);
    f /= 10;
  }
  std::memcpy(out + 26, "+00", 3);
  return static_cast<std::size_t>(29 + digits - 4);
}

std::int32_t month_index(transform::timestamp_us us) noexcept {
  std::int64_t secs = us / 1000000 - (us % 1000000 < 0 ? 1 : 0);
  std::int64_t days = secs / 86400 - (secs % 86400 < 0 ? 1 : 0);
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  return static_cast<std::int32_t>(y * 12 + (m - 1));
}

namespace {

constexpr char copy_signature[] = "PGCOPY\n\377\r\n";  // 11 bytes with the NUL
// PostgreSQL timestamps count microseconds from 2000-01-01.
constexpr std::int64_t pg_epoch_offset_us = 946684800LL * 1000000;

}  // namespace

void copy_encoder::put16(std::uint16_t v) {
  char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  out_.append(b, 2);
}

void copy_encoder::put32(std::uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
  out_.append(b, 4);
}

void copy_encoder::put64(std::uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v);
    v >>= 8;
  }
  out_.append(b, 8);
}

void copy_encoder::begin_row(std::int16_t fields) {
  if (rows_ == 0 && out_.empty()) {
    out_.append(copy_signature, 11);
    put32(0);  // flags
    put32(0);  // header extension length
  }
  ++rows_;
  put16(static_cast<std::uint16_t>(fields));
}

const std::string& copy_encoder::finish() {
  if (rows_ > 0 && !finished_) {
    put16(0xFFFF);  // trailer
    finished_ = true;
  }
  return out_;
}

void copy_encoder::null() { put32(0xFFFFFFFFu); }

void copy_encoder::text(std::string_view s) {
  if (s.empty()) return null();
  put32(static_cast<std::uint32_t>(s.size()));
  out_.append(s);
}

void copy_encoder::jsonb(std::string_view s) {
  if (s.empty()) return null();
  put32(static_cast<std::uint32_t>(s.size() + 1));
  out_.push_back('\1');  // jsonb binary format version
  out_.append(s);
}

void copy_encoder::bytea(std::string_view s) {
  put32(static_cast<std::uint32_t>(s.size()));
  out_.append(s);
}

void copy_encoder::int8(std::int64_t v) {
  put32(8);
  put64(static_cast<std::uint64_t>(v));
}

void copy_encoder::float8(double v) {
  std::uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put32(8);
  put64(bits);
}

void copy_encoder::numeric_from_float8(double v) {
  // numeric_recv's layout: ndigits, weight (of the first base-10000 digit), sign, dscale (decimal digits after
  // the point), then the base-10000 digits. float8_numeric formats with "%.*g", DBL_DIG (15) and parses that.
  constexpr std::uint16_t positive = 0x0000, negative = 0x4000, nan = 0xC000, pinf = 0xD000, ninf = 0xF000;
  auto without_digits = [&](std::uint16_t sign) {  // zero, NaN, the infinities
    put32(8);
    put16(0);
    put16(0);
    put16(sign);
    put16(0);
  };
  if (std::isnan(v)) return without_digits(nan);
  if (std::isinf(v)) return without_digits(v > 0 ? pinf : ninf);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  const char* p = buf;
  const bool neg = *p == '-';
  if (neg) ++p;
  std::string digits;  // the mantissa's digits, without the point
  int point = -1;      // digits before the point
  for (; *p && *p != 'e'; ++p) {
    if (*p == '.') {
      point = static_cast<int>(digits.size());
    } else {
      digits.push_back(*p);
    }
  }
  if (point < 0) point = static_cast<int>(digits.size());
  if (*p == 'e') point += std::atoi(p + 1);
  // Leading and trailing zeros carry nothing (the point moves with the leading ones).
  std::size_t lead = 0;
  while (lead < digits.size() && digits[lead] == '0') ++lead;
  digits.erase(0, lead);
  point -= static_cast<int>(lead);
  while (!digits.empty() && digits.back() == '0') digits.pop_back();
  const int dscale = std::max(0, static_cast<int>(digits.size()) - point);
  if (digits.empty()) return without_digits(positive);  // zero
  // Base-10000 groups aligned on the point: `point` decimal digits before it (more than the mantissa has, or
  // negative: zeros after it). The first group holds the first digit, the last the last one (neither is 0), so no
  // group at either end is zero.
  const int weight = point > 0 ? (point + 3) / 4 - 1 : -((-point) / 4) - 1;  // of the first group
  const int offset = point > 0 ? (point + 3) / 4 * 4 - point : (-point) % 4;  // zeros before the first digit in it
  const int size = static_cast<int>(digits.size());
  const int groups = (offset + size + 3) / 4;
  put32(static_cast<std::uint32_t>(8 + 2 * groups));
  put16(static_cast<std::uint16_t>(groups));
  put16(static_cast<std::uint16_t>(weight));
  put16(neg ? negative : positive);
  put16(static_cast<std::uint16_t>(dscale));
  for (int g = 0; g < groups; ++g) {
    int d = 0;
    for (int at = g * 4 - offset; at < g * 4 - offset + 4; ++at) {
      d = d * 10 + (at >= 0 && at < size ? digits[static_cast<std::size_t>(at)] - '0' : 0);
    }
    put16(static_cast<std::uint16_t>(d));
  }
}

void copy_encoder::boolean(bool v) {
  put32(1);
  out_.push_back(v ? '\1' : '\0');
}

void copy_encoder::timestamp(transform::timestamp_us us) {
  put32(8);
  put64(static_cast<std::uint64_t>(us - pg_epoch_offset_us));
}

void copy_encoder::uuid(const transform::uuid& u) {
  put32(16);
  out_.append(reinterpret_cast<const char*>(u.data()), 16);
}

void copy_encoder::array_header(std::uint32_t element_oid, std::uint32_t count) {
  put32(1);  // dimensions
  put32(0);  // flags: no NULLs
  put32(element_oid);
  put32(count);
  put32(1);  // lower bound
}

bool to_valid_utf8(std::string_view s, std::string& clean) {
  clean.clear();
  clean.reserve(s.size());
  bool lossy = false;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = s[i] == '\0' ? 0 : transform::detail::utf8_sequence_length(s.substr(i));
    if (len == 0) {
      clean.append("\xEF\xBF\xBD");  // U+FFFD for each byte that is not (part of) a character, and for NUL
      lossy = true;
      ++i;
      continue;
    }
    clean.append(s.data() + i, len);
    i += len;
  }
  return lossy;
}

void copy_encoder::append(const transform::communication& c, communication_layout layout) {
  const bool staging = layout == communication_layout::staging;
  begin_row(staging ? 23 : 22);
  uuid(c.event_id);
  timestamp(c.occurred_at);
  timestamp(c.received_at);
  id(c.lead_id);
  text(transform::to_string(c.channel_));
  text(transform::to_string(c.direction_));
  text(transform::to_string(c.status));
  text(c.provider);
  text(c.provider_message_id);
  text(c.provider_event_id);
  text(c.email);
  text(c.phone);
  id(c.campaign_id);
  text(c.ab_test_id);
  text(c.variant);
  text(c.url);
  text(c.error_code);
  text(c.error_reason);
  jsonb(c.metadata);
  text(c.tenant_id);
  text(c.lead_ref);
  text(c.campaign_ref);
  if (staging) boolean(c.occurred_at_is_receipt_time);  // see the writer's insert
}

void copy_encoder::append(const transform::touchpoint& t, touchpoint_layout layout) {
  begin_row(29);
  uuid(t.touchpoint_id);
  timestamp(t.occurred_at);
  timestamp(t.received_at);
  id(t.lead_id);
  text(t.anonymous_id);
  text(t.message_id);
  text(transform::to_string(t.type));
  text(t.utm_source);
  text(t.utm_medium);
  text(t.utm_campaign);
  text(t.utm_term);
  text(t.utm_content);
  text(t.gclid);
  text(t.fbclid);
  text(t.msclkid);
  text(t.landing_url);
  text(t.referrer);
  text(transform::to_string(t.group));
  id(t.campaign_id);
  boolean(t.is_conversion);
  text(t.conversion_type);
  if (!t.has_conversion_value) {
    null();
  } else if (layout == touchpoint_layout::staging) {
    float8(t.conversion_value);
  } else {
    numeric_from_float8(t.conversion_value);
  }
  text(t.currency);
  text(t.ab_test_id);
  text(t.variant);
  jsonb(t.metadata);
  text(t.tenant_id);
  text(t.lead_ref);
  text(t.campaign_ref);
}

void copy_encoder::append(const transform::rejection& r) {
  begin_row(7);
  timestamp(r.received_at);
  std::string clean;
  // Source and reason may quote file names or values that are not UTF-8.
  to_valid_utf8(r.source.empty() ? std::string_view("unknown") : r.source, clean);
  text(clean);
  to_valid_utf8(r.reason.empty() ? std::string_view("rejected") : r.reason, clean);
  text(clean);
  bool lossy = to_valid_utf8(r.raw, clean);
  // An empty record is still a record: '' rather than NULL.
  put32(static_cast<std::uint32_t>(clean.size()));
  out_.append(clean);
  if (lossy) {
    bytea(r.raw);  // the exact bytes, which raw could not show
  } else {
    null();
  }
  to_valid_utf8(r.tenant_id, clean);
  text(clean);  // empty -> NULL: no tenant
  to_valid_utf8(r.idempotency_key, clean);
  text(clean);  // empty -> NULL: no key
}

}  // namespace crm::sinks::postgres
