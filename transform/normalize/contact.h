// Contact normalization: e-mail addresses (trimmed, lower-cased, checked) and phone numbers (E.164 via
// libphonenumber, with a per-normalizer cache (16384 numbers) because a parse+validate costs ~13 us).
// Thread ownership: one phone_normalizer per normalizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "transform/text/text_arena.h"

namespace crm::transform::detail {

enum class email_error : std::uint8_t { none, empty, whitespace_or_control, at_count, empty_local, empty_domain };

// Describes an email_error for a rejection reason ("must contain exactly one '@'").
std::string_view describe(email_error e) noexcept;

// Trims ASCII whitespace, takes the address of a name-addr ("Name <addr>"), lower-cases ASCII letters, and checks:
// exactly one '@', non-empty local and domain parts, no whitespace or control characters inside. On success `out`
// is a view into `arena`.
[[nodiscard]] email_error normalize_email(std::string_view in, text_arena& arena, std::string_view& out);

enum class phone_error : std::uint8_t { none, not_a_number, invalid_country_code, too_short, too_long, invalid };

std::string_view describe(phone_error e) noexcept;

class phone_normalizer {
 public:
  // `default_region`: ISO 3166 alpha-2 region for numbers written without a country code ("US").
  explicit phone_normalizer(std::string default_region);
  ~phone_normalizer();
  phone_normalizer(const phone_normalizer&) = delete;
  phone_normalizer& operator=(const phone_normalizer&) = delete;

  // Parses and validates `in`; on success `out` is the E.164 form ("+14155552671"), a view into `arena`.
  [[nodiscard]] phone_error normalize(std::string_view in, text_arena& arena, std::string_view& out);

  std::uint64_t cache_hits() const noexcept { return hits_; }
  std::uint64_t cache_misses() const noexcept { return misses_; }

 private:
  struct cache_entry;
  phone_error parse_uncached(std::string_view in, char* e164, std::uint8_t& e164_len);

  std::string region_;
  std::unique_ptr<cache_entry[]> cache_;
  std::string scratch_;
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
};

}  // namespace crm::transform::detail
