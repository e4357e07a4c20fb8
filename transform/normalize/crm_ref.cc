#include "transform/normalize/crm_ref.h"

#include <openssl/evp.h>

#include <charconv>
#include <cstdlib>
#include <cstring>

#include <simdjson.h>

#include "transform/canonical/canonical_event.h"
#include "transform/text/json_input.h"
#include "transform/text/reason_text.h"

namespace crm::transform {
namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// A JSON-like number: optional sign, digits, optional fraction and exponent.
bool looks_numeric(std::string_view s) noexcept {
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  const std::size_t digits_from = i;
  while (i < s.size() && is_digit(s[i])) ++i;
  bool digits = i > digits_from;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const std::size_t from = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    digits = digits || i > from;
  }
  if (!digits) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const std::size_t from = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i == from) return false;
  }
  return i == s.size();
}

bool refuse(std::string_view field, std::string_view text, const char* rule, std::string& reason) {
  if (detail::begin_reason(reason, field)) {
    detail::append_quoted(reason, text);
    reason.push_back(' ');
    reason.append(rule);
  }
  return false;
}

}  // namespace

std::int64_t crm_ref_key(std::string_view kind, std::string_view ref) noexcept {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
            EVP_DigestUpdate(ctx, "crm-ingest:", 11) == 1 && EVP_DigestUpdate(ctx, kind.data(), kind.size()) == 1 &&
            EVP_DigestUpdate(ctx, ":", 1) == 1 && EVP_DigestUpdate(ctx, ref.data(), ref.size()) == 1 &&
            EVP_DigestFinal_ex(ctx, digest, &n) == 1 && n >= 8;
  EVP_MD_CTX_free(ctx);
  if (!ok) std::abort();  // SHA-256 is built into OpenSSL: failing means memory is exhausted or corrupt
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | digest[i];
  v &= 0x7fffffffffffffffULL;
  if (v == 0) v = 1;
  return -static_cast<std::int64_t>(v);
}

bool resolve_crm_id(std::string_view field, std::string_view text, text_arena& arena, std::int64_t& id,
                    std::string_view& ref, std::string& reason) {
  const std::string_view written = text;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty()) return refuse(field, written, "is empty (give the id, or leave the field out)", reason);
  bool all_digits = true;
  for (const char c : text) all_digits = all_digits && is_digit(c);
  if (all_digits) {
    std::int64_t v = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    if (r.ec == std::errc::result_out_of_range) {
      return refuse(field, written, "is not an integer >= 1 (beyond the 64-bit integer range)", reason);
    }
    if (r.ec != std::errc{} || v < 1) return refuse(field, written, "is not an integer >= 1", reason);
    id = v;
    ref = {};
    return true;
  }
  if (looks_numeric(text)) return refuse(field, written, "is not an integer >= 1", reason);
  if (text.size() > max_crm_ref_bytes) {
    return refuse(field, written, "is longer than 128 bytes (not a CRM id)", reason);
  }
  if (!simdjson::validate_utf8(text.data(), text.size())) return refuse(field, written, "is not valid UTF-8", reason);
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return refuse(field, written, "contains a control character", reason);
  }
  uuid as_uuid;
  if (parse_uuid(text, as_uuid)) {
    char* out = arena.allocate(36);
    format_uuid(as_uuid, out);
    ref = {out, 36};
  } else {
    ref = arena.copy(text);
  }
  id = crm_ref_key(field.starts_with("campaign") ? "campaign" : "lead", ref);
  return true;
}

}  // namespace crm::transform
