// ISO 4217 currency codes, as ICU knows them (libicu, the Unicode CLDR's currency data): the codes that carry
// an ISO 4217 numeric code, current ones and withdrawn ones alike (the ECB's historical reference rates quote
// CYP, EEK, LTL...). CLDR's own codes without an ISO number (CNH, CNX, the old Argentine ARL...) are refused.
// The conversions' `currency` (record_appender.cc) and the exchange rates (`crm-ingest rates import`) are checked
// by these functions, so both speak of the same set.
#pragma once

#include <string_view>

namespace crm::transform {

// `code` is exactly 3 upper-case ASCII letters naming an ISO 4217 currency.
bool is_iso4217(std::string_view code) noexcept;

// Upper-cases `text` into `code` and checks it with is_iso4217(). False (code unspecified) when `text` is not 3
// ASCII letters or not an ISO 4217 code.
bool normalize_currency(std::string_view text, char (&code)[3]) noexcept;

}  // namespace crm::transform
