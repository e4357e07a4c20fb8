#include "sinks/postgres/copy_encoder.h"

#include <charconv>
#include <cstring>

namespace crm::sinks::postgres {

const char* const communication_columns =
    "event_id, occurred_at, received_at, lead_id, channel, direction, status, provider, provider_message_id, "
    "provider_event_id, email, phone, campaign_id, ab_test_id, variant, url, error_code, error_reason, metadata, "
    "tenant_id";
const char* const touchpoint_columns =
    "touchpoint_id, occurred_at, received_at, lead_id, anonymous_id, message_id, touch_type, utm_source, utm_medium, "
    "utm_campaign, utm_term, utm_content, gclid, fbclid, msclkid, landing_url, referrer, channel_group, campaign_id, "
    "is_conversion, conversion_type, conversion_value, currency, ab_test_id, variant, metadata, tenant_id";
const char* const rejection_columns = "received_at, source, reason, raw, raw_bytes";

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
  // Years are within 0000..9999 by the normalizer's range check.
  unsigned yy = static_cast<unsigned>(y);
  out[0] = static_cast<char>('0' + yy / 1000 % 10);
  out[1] = static_cast<char>('0' + yy / 100 % 10);
  out[2] = static_cast<char>('0' + yy / 10 % 10);
  out[3] = static_cast<char>('0' + yy % 10);
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
  return 29;
}

std::int32_t month_index(transform::timestamp_us us) noexcept {
  std::int64_t secs = us / 1000000 - (us % 1000000 < 0 ? 1 : 0);
  std::int64_t days = secs / 86400 - (secs % 86400 < 0 ? 1 : 0);
  std::int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  return static_cast<std::int32_t>(y * 12 + (m - 1));
}

void copy_encoder::text(std::string_view s) {
  if (s.empty()) {
    null();
    return;
  }
  // Fast path: copy runs of bytes that need no escaping.
  const char* p = s.data();
  const char* end = p + s.size();
  const char* run = p;
  for (; p != end; ++p) {
    char c = *p;
    char esc;
    switch (c) {
      case '\\': esc = '\\'; break;
      case '\t': esc = 't'; break;
      case '\n': esc = 'n'; break;
      case '\r': esc = 'r'; break;
      default: continue;
    }
    out_.append(run, static_cast<std::size_t>(p - run));
    out_.push_back('\\');
    out_.push_back(esc);
    run = p + 1;
  }
  out_.append(run, static_cast<std::size_t>(end - run));
}

void copy_encoder::utf8_lossy(std::string_view s, bool& was_lossy) {
  // Re-encode as valid UTF-8 without NUL, replacing each offending byte with U+FFFD, then escape.
  std::string clean;
  clean.reserve(s.size());
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size(), i = 0;
  was_lossy = false;
  auto bad = [&] {
    clean.append("\xEF\xBF\xBD");
    was_lossy = true;
    ++i;
  };
  while (i < n) {
    unsigned char c = b[i];
    if (c == 0) {
      bad();
    } else if (c < 0x80) {
      clean.push_back(static_cast<char>(c));
      ++i;
    } else {
      std::size_t len = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
      if (len == 0 || i + len > n) {
        bad();
        continue;
      }
      bool ok = true;
      for (std::size_t k = 1; k < len; ++k) ok = ok && (b[i + k] & 0xC0) == 0x80;
      // Overlongs, surrogates and > U+10FFFF.
      if (ok && c == 0xE0 && b[i + 1] < 0xA0) ok = false;
      if (ok && c == 0xED && b[i + 1] > 0x9F) ok = false;
      if (ok && c == 0xF0 && b[i + 1] < 0x90) ok = false;
      if (ok && c == 0xF4 && b[i + 1] > 0x8F) ok = false;
      if (!ok) {
        bad();
        continue;
      }
      clean.append(s.data() + i, len);
      i += len;
    }
  }
  if (clean.empty()) {
    out_.append("");  // an empty raw record is still a record: '' not NULL
    return;
  }
  text(clean);
}

void copy_encoder::bytea_hex(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out_.append("\\\\x");  // COPY text escapes the backslash of bytea's \x prefix
  for (unsigned char c : s) {
    out_.push_back(hex[c >> 4]);
    out_.push_back(hex[c & 15]);
  }
}

void copy_encoder::id(std::int64_t v) {
  if (v == 0) {
    null();
    return;
  }
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

void copy_encoder::timestamp(transform::timestamp_us us) {
  char buf[32];
  out_.append(buf, format_timestamp(us, buf));
}

void copy_encoder::uuid(const transform::uuid& u) {
  char buf[36];
  transform::format_uuid(u, buf);
  out_.append(buf, 36);
}

void copy_encoder::append(const transform::communication& c) {
  uuid(c.event_id); tab();
  timestamp(c.occurred_at); tab();
  timestamp(c.received_at); tab();
  id(c.lead_id); tab();
  out_.append(transform::to_string(c.channel_)); tab();
  out_.append(transform::to_string(c.direction_)); tab();
  out_.append(transform::to_string(c.status)); tab();
  text(c.provider); tab();
  text(c.provider_message_id); tab();
  text(c.provider_event_id); tab();
  text(c.email); tab();
  text(c.phone); tab();
  id(c.campaign_id); tab();
  text(c.ab_test_id); tab();
  text(c.variant); tab();
  text(c.url); tab();
  text(c.error_code); tab();
  text(c.error_reason); tab();
  text(c.metadata); tab();
  text(c.tenant_id);
  end_row();
}

void copy_encoder::append(const transform::touchpoint& t) {
  uuid(t.touchpoint_id); tab();
  timestamp(t.occurred_at); tab();
  timestamp(t.received_at); tab();
  id(t.lead_id); tab();
  text(t.anonymous_id); tab();
  text(t.message_id); tab();
  out_.append(transform::to_string(t.type)); tab();
  text(t.utm_source); tab();
  text(t.utm_medium); tab();
  text(t.utm_campaign); tab();
  text(t.utm_term); tab();
  text(t.utm_content); tab();
  text(t.gclid); tab();
  text(t.fbclid); tab();
  text(t.msclkid); tab();
  text(t.landing_url); tab();
  text(t.referrer); tab();
  out_.append(transform::to_string(t.group)); tab();
  id(t.campaign_id); tab();
  out_.append(t.is_conversion ? "t" : "f"); tab();
  text(t.conversion_type); tab();
  if (t.has_conversion_value) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, t.conversion_value, std::chars_format::fixed, 6);
    if (r.ec == std::errc()) {
      out_.append(buf, static_cast<std::size_t>(r.ptr - buf));
    } else {
      null();
    }
  } else {
    null();
  }
  tab();
  text(t.currency); tab();
  text(t.ab_test_id); tab();
  text(t.variant); tab();
  text(t.metadata); tab();
  text(t.tenant_id);
  end_row();
}

void copy_encoder::append(const transform::rejection& r) {
  timestamp(r.received_at); tab();
  text(r.source.empty() ? std::string_view("unknown") : r.source); tab();
  text(r.reason.empty() ? std::string_view("rejected") : r.reason); tab();
  bool lossy = false;
  utf8_lossy(r.raw, lossy); tab();
  if (lossy) {
    bytea_hex(r.raw);
  } else {
    null();
  }
  end_row();
}

}  // namespace crm::sinks::postgres
