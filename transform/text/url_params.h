// URL pieces the touchpoint rules need: the query string's parameters (percent-decoded, '+' as space)
// and the host. Not a full URL parser: just enough for UTM/click-id extraction and referrer matching.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace crm::transform::detail {

// Calls on_param(std::string_view raw_key, std::string_view raw_value) for every key[=value] pair of the
// query string of `url` (between the first '?' and the '#'). Pairs are '&'-separated; values are raw.
template <typename F>
void for_each_query_param(std::string_view url, F&& on_param) {
  const std::size_t q = url.find('?');
  if (q == std::string_view::npos) return;
  std::string_view query = url.substr(q + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      on_param(pair, std::string_view{});
    } else {
      on_param(pair.substr(0, eq), pair.substr(eq + 1));
    }
  }
}

// Appends the decoded `in` to `out`: %XX -> byte, '+' -> ' '. A malformed escape ("%zz", a trailing '%')
// is kept as is.
void percent_decode(std::string_view in, std::string& out);

// Host of an absolute URL ("https://user@www.Example.com:8080/x" -> "www.Example.com"), also of a
// scheme-relative one ("//host/x") or a bare "host/path". Empty when there is none.
std::string_view url_host(std::string_view url) noexcept;

}  // namespace crm::transform::detail
