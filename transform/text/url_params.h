// URL and form text: '&'-separated key[=value] pairs (query strings, application/x-www-form-urlencoded
// bodies), percent-decoding ('+' as space), the host of a URL, and filling named slots from a query string.
// Not a full URL parser: just enough for UTM/click-id extraction, referrer matching and webhook forms.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "transform/text/text_arena.h"

namespace crm::transform::detail {

// Calls on_pair(std::string_view raw_key, std::string_view raw_value) for every non-empty key[=value] pair of
// '&'-separated `pairs`, in order; raw_value is empty when there is no '='. on_pair may return bool: false
// stops the walk, and then for_each_pair returns false.
template <typename F>
bool for_each_pair(std::string_view pairs, F&& on_pair) {
  while (!pairs.empty()) {
    const std::size_t amp = pairs.find('&');
    const std::string_view pair = pairs.substr(0, amp);
    pairs = amp == std::string_view::npos ? std::string_view{} : pairs.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if constexpr (std::is_same_v<std::invoke_result_t<F&, std::string_view, std::string_view>, bool>) {
      if (!on_pair(key, value)) return false;
    } else {
      on_pair(key, value);
    }
  }
  return true;
}

// for_each_pair over the query string of `url` (between the first '?' and the '#').
template <typename F>
void for_each_query_param(std::string_view url, F&& on_param) {
  const std::size_t q = url.find('?');
  if (q == std::string_view::npos) return;
  std::string_view query = url.substr(q + 1);
  for_each_pair(query.substr(0, query.find('#')), std::forward<F>(on_param));
}

// Appends the decoded `in` to `out`: %XX -> byte, '+' -> ' '. A malformed escape ("%zz", a trailing '%')
// is kept as is.
void percent_decode(std::string_view in, std::string& out);

// Host of an absolute URL ("https://user@www.Example.com:8080/x" -> "www.Example.com"), also of a
// scheme-relative one ("//host/x") or a bare "host/path". Empty when there is none.
std::string_view url_host(std::string_view url) noexcept;

// For each slot still empty, the first parameter of `url`'s query string whose key matches its name
// (names[i] for slots[i]) ignoring ASCII case, percent-decoded into `arena` (`scratch` is reused). A value
// that decodes to NUL or invalid UTF-8 is kept as written: decoded, no text column could hold it.
void fill_query_params(std::string_view url, std::span<const std::string_view> names,
                       std::span<std::string_view* const> slots, std::string& scratch, text_arena& arena);

}  // namespace crm::transform::detail
