#include "transform/normalize/contact.h"

#include <phonenumbers/phonenumberutil.h>

#include <cstring>

#include "transform/text/ascii.h"

namespace crm::transform::detail {
namespace {

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

bool is_ascii_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_space_or_control(unsigned char c) noexcept { return c <= 0x20 || c == 0x7f; }

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

// The singleton is built on first use (it loads all the metadata); GetInstance() is thread-safe.
const PhoneNumberUtil& phone_util() {
  static const PhoneNumberUtil* const util = PhoneNumberUtil::GetInstance();
  return *util;
}

// FNV-1a: short keys, good enough spread for a direct-mapped cache.
std::uint64_t hash_bytes(std::string_view s) noexcept {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// 4-way set associative, FIFO within a set: 16384 numbers, ~1.2 MiB per normalizer.
constexpr std::size_t cache_sets = 4096;
constexpr std::size_t cache_ways = 4;
constexpr std::size_t max_cached_input = 38;

}  // namespace

std::string_view describe(email_error e) noexcept {
  switch (e) {
    case email_error::none: return "ok";
    case email_error::empty: return "is empty after trimming";
    case email_error::whitespace_or_control: return "contains whitespace or a control character";
    case email_error::at_count: return "must contain exactly one '@'";
    case email_error::empty_local: return "has an empty local part before '@'";
    case email_error::empty_domain: return "has an empty domain after '@'";
  }
  return "is invalid";
}

email_error normalize_email(std::string_view in, text_arena& arena, std::string_view& out) {
  std::string_view s = trim(in);
  // A name-addr ("Jane Doe <jane@example.com>", as Resend's `to` and mail headers write it): the address.
  if (!s.empty() && s.back() == '>') {
    if (const auto open = s.rfind('<'); open != std::string_view::npos) s = trim(s.substr(open + 1, s.size() - open - 2));
  }
  if (s.empty()) return email_error::empty;
  std::size_t at = std::string_view::npos;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_space_or_control(c)) return email_error::whitespace_or_control;
    if (c == '@') {
      if (at != std::string_view::npos) return email_error::at_count;
      at = i;
    }
  }
  if (at == std::string_view::npos) return email_error::at_count;
  if (at == 0) return email_error::empty_local;
  if (at + 1 == s.size()) return email_error::empty_domain;
  char* p = arena.allocate(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) p[i] = ascii_lower(s[i]);
  out = {p, s.size()};
  return email_error::none;
}

std::string_view describe(phone_error e) noexcept {
  switch (e) {
    case phone_error::none: return "ok";
    case phone_error::not_a_number: return "is not a phone number";
    case phone_error::invalid_country_code: return "has an invalid country code";
    case phone_error::too_short: return "is too short to be a phone number";
    case phone_error::too_long: return "is too long to be a phone number";
    case phone_error::invalid: return "is not a valid phone number";
  }
  return "is invalid";
}

struct phone_normalizer::cache_entry {
  std::uint64_t hash = 0;
  std::uint8_t key_len = 0;  // 0 = empty slot
  std::uint8_t next_victim = 0;  // in a set's first way only: the way its next miss replaces
  std::uint8_t e164_len = 0;
  phone_error error = phone_error::none;
  char key[max_cached_input];
  char e164[16];  // '+' and at most 15 digits
};

phone_normalizer::phone_normalizer(std::string default_region)
    : region_(std::move(default_region)), cache_(new cache_entry[cache_sets * cache_ways]) {
  phone_util();  // load the metadata now, not on the first event
}

phone_normalizer::~phone_normalizer() = default;

phone_error phone_normalizer::parse_uncached(std::string_view in, char* e164, std::uint8_t& e164_len) {
  const PhoneNumberUtil& util = phone_util();
  PhoneNumber number;
  scratch_.assign(in);
  switch (util.Parse(scratch_, region_, &number)) {
    case PhoneNumberUtil::NO_PARSING_ERROR: break;
    case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR: return phone_error::invalid_country_code;
    case PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
    case PhoneNumberUtil::TOO_SHORT_NSN: return phone_error::too_short;
    case PhoneNumberUtil::TOO_LONG_NSN: return phone_error::too_long;
    default: return phone_error::not_a_number;
  }
  if (!util.IsValidNumber(number)) return phone_error::invalid;
  util.Format(number, PhoneNumberUtil::E164, &scratch_);
  if (scratch_.size() > 16) return phone_error::too_long;
  std::memcpy(e164, scratch_.data(), scratch_.size());
  e164_len = static_cast<std::uint8_t>(scratch_.size());
  return phone_error::none;
}

phone_error phone_normalizer::normalize(std::string_view in, text_arena& arena, std::string_view& out) {
  char e164[16];
  std::uint8_t e164_len = 0;
  phone_error error;
  if (in.size() <= max_cached_input && !in.empty()) {
    const std::uint64_t h = hash_bytes(in);
    cache_entry* set = &cache_[(h % cache_sets) * cache_ways];
    cache_entry* hit = nullptr;
    for (std::size_t w = 0; w < cache_ways; ++w) {
      cache_entry& e = set[w];
      if (e.key_len == in.size() && e.hash == h && std::memcmp(e.key, in.data(), in.size()) == 0) hit = &e;
    }
    if (hit != nullptr) {
      ++hits_;
      error = hit->error;
      e164_len = hit->e164_len;
      std::memcpy(e164, hit->e164, e164_len);
    } else {
      ++misses_;
      error = parse_uncached(in, e164, e164_len);
      cache_entry* slot = &set[set[0].next_victim];
      set[0].next_victim = static_cast<std::uint8_t>((set[0].next_victim + 1) % cache_ways);
      slot->hash = h;
      slot->key_len = static_cast<std::uint8_t>(in.size());
      std::memcpy(slot->key, in.data(), in.size());
      slot->error = error;
      slot->e164_len = e164_len;
      std::memcpy(slot->e164, e164, e164_len);
    }
  } else {
    ++misses_;
    error = parse_uncached(in, e164, e164_len);
  }
  if (error == phone_error::none) out = arena.copy({e164, e164_len});
  return error;
}

}  // namespace crm::transform::detail

namespace crm::transform {

bool is_phone_region(std::string_view region) {
  return region.size() == 2 && detail::phone_util().GetCountryCodeForRegion(std::string(region)) != 0;
}

}  // namespace crm::transform
