#include "transform/normalize/currency.h"

#include <bitset>

#include <unicode/ucurr.h>
#include <unicode/uenum.h>
#include <unicode/ustring.h>

#include "transform/text/ascii.h"

namespace crm::transform {

namespace {

constexpr std::size_t letters = 26;

int slot(std::string_view code) noexcept {
  if (code.size() != 3) return -1;
  int s = 0;
  for (char ch : code) {
    if (ch < 'A' || ch > 'Z') return -1;
    s = s * static_cast<int>(letters) + (ch - 'A');
  }
  return s;
}

using code_set = std::bitset<letters * letters * letters>;

// Every code ICU enumerates (current, withdrawn, funds, metals) that has an ISO 4217 numeric code. Read once.
code_set read_iso_codes() noexcept {
  code_set set;
  UErrorCode err = U_ZERO_ERROR;
  UEnumeration* codes = ucurr_openISOCurrencies(UCURR_ALL, &err);
  if (U_FAILURE(err)) return set;
  int32_t length = 0;
  while (const char* c = uenum_next(codes, &length, &err)) {
    if (U_FAILURE(err) || length != 3) continue;
    UChar wide[4];
    u_charsToUChars(c, wide, 3);
    wide[3] = 0;
    const int s = slot({c, 3});
    if (s >= 0 && ucurr_getNumericCode(wide) > 0) set.set(static_cast<std::size_t>(s));
  }
  uenum_close(codes);
  return set;
}

}  // namespace

bool is_iso4217(std::string_view code) noexcept {
  static const code_set known = read_iso_codes();
  const int s = slot(code);
  return s >= 0 && known.test(static_cast<std::size_t>(s));
}

bool normalize_currency(std::string_view text, char (&code)[3]) noexcept {
  if (text.size() != 3) return false;
  for (std::size_t i = 0; i < 3; ++i) {
    code[i] = detail::ascii_upper(text[i]);
  }
  return is_iso4217({code, 3});
}

}  // namespace crm::transform
