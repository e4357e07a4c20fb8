// Twilio request validation: base64 HMAC-SHA1 over the public URL followed by the POST parameters
// sorted by name (then value), each as name+value; for JSON bodies the URL carries bodySHA256.
#include "ingest/webhooks/signatures.h"

#include <algorithm>
#include <array>
#include <vector>

#include "transform/text/ascii.h"
#include "transform/text/url_params.h"

namespace crm::ingest::webhooks {

namespace {

constexpr std::size_t twilio_mac_size = 20;

using transform::detail::ascii_iequals;
using transform::detail::hex_value;

// One name=value pair of the form body, still percent-encoded (validated).
struct form_param {
  std::string_view name;
  std::string_view value;
};

// Walks the decoded bytes of a validated form component without materialising them, so that sorting
// and hashing need no per-parameter allocation.
class decoded_bytes {
 public:
  explicit decoded_bytes(std::string_view encoded) noexcept : s_(encoded) {}
  bool done() const noexcept { return i_ >= s_.size(); }
  unsigned char next() noexcept {
    const char c = s_[i_];
    if (c == '+') {
      ++i_;
      return ' ';
    }
    if (c == '%') {
      const auto v = static_cast<unsigned char>(hex_value(s_[i_ + 1]) << 4 | hex_value(s_[i_ + 2]));
      i_ += 3;
      return v;
    }
    ++i_;
    return static_cast<unsigned char>(c);
  }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

// Byte-wise order of the decoded strings: Twilio's SDKs sort UTF-8/ASCII names, and byte order of
// UTF-8 equals code point order.
int compare_decoded(std::string_view a, std::string_view b) noexcept {
  decoded_bytes x(a), y(b);
  while (!x.done() && !y.done()) {
    const unsigned char cx = x.next(), cy = y.next();
    if (cx != cy) return cx < cy ? -1 : 1;
  }
  if (x.done() && y.done()) return 0;
  return x.done() ? -1 : 1;
}

bool param_less(const form_param& l, const form_param& r) noexcept {
  const int by_name = compare_decoded(l.name, r.name);
  if (by_name != 0) return by_name < 0;
  return compare_decoded(l.value, r.value) < 0;  // repeated names: values sorted, as the SDKs do
}

void update_decoded(detail::mac_stream& mac, std::string_view encoded) noexcept {
  std::array<char, 256> chunk;
  std::size_t used = 0;
  decoded_bytes bytes(encoded);
  while (!bytes.done()) {
    chunk[used++] = static_cast<char>(bytes.next());
    if (used == chunk.size()) {
      mac.update({chunk.data(), used});
      used = 0;
    }
  }
  mac.update({chunk.data(), used});
}

// The signed URL split around its port: head = "scheme://[userinfo@]host", tail = path?query.
struct url_split {
  std::string_view head;
  std::string_view port;  // digits, or the scheme's default when the URL has none
  std::string_view tail;
};

std::optional<url_split> split_url(std::string_view url) noexcept {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  const std::string_view scheme = url.substr(0, scheme_end);
  std::string_view default_port;
  if (ascii_iequals(scheme, "https")) {
    default_port = "443";
  } else if (ascii_iequals(scheme, "http")) {
    default_port = "80";
  } else {
    return std::nullopt;
  }
  const std::size_t authority_begin = scheme_end + 3;
  std::size_t authority_end = url.find_first_of("/?#", authority_begin);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  const std::string_view authority = url.substr(authority_begin, authority_end - authority_begin);
  const std::size_t at = authority.rfind('@');
  const std::size_t host_begin = at == std::string_view::npos ? 0 : at + 1;
  const std::string_view host_port = authority.substr(host_begin);

  std::size_t host_len = host_port.size();
  if (!host_port.empty() && host_port.front() == '[') {  // IPv6 literal
    const std::size_t close = host_port.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host_len = close + 1;
    if (host_len < host_port.size() && host_port[host_len] != ':') return std::nullopt;
  } else {
    host_len = std::min(host_port.find(':'), host_port.size());
  }
  if (host_len == 0) return std::nullopt;

  url_split out;
  out.head = url.substr(0, authority_begin + host_begin + host_len);
  out.tail = url.substr(authority_end);
  out.port = default_port;
  if (host_len < host_port.size()) {
    const std::string_view port = host_port.substr(host_len + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    out.port = port;
  }
  return out;
}

// The raw value of the bodySHA256 query parameter; nullopt when absent, "" (malformed) when repeated.
std::optional<std::string_view> body_sha256_param(std::string_view url, bool& repeated) noexcept {
  repeated = false;
  std::optional<std::string_view> found;
  transform::detail::for_each_query_param(url, [&](std::string_view name, std::string_view value) {
    if (name != "bodySHA256") return;
    if (found) repeated = true;
    found = value;
  });
  return found;
}

enum class form_status { ok, malformed, too_many };

form_status parse_form(std::string_view body, std::vector<form_param>& out) {
  out.clear();
  form_status status = form_status::ok;
  transform::detail::for_each_pair(body, [&](std::string_view name, std::string_view value) {
    if (!detail::form_component_valid(name) || !detail::form_component_valid(value)) {
      status = form_status::malformed;
    } else if (out.size() == twilio_verifier::max_form_params) {
      status = form_status::too_many;
    } else {
      out.push_back({name, value});
    }
    return status == form_status::ok;
  });
  return status;
}

}  // namespace

twilio_verifier::twilio_verifier(const secret_list& auth_tokens) : keys_(detail::mac_digest::sha1, auth_tokens) {}

verify_result twilio_verifier::verify(std::string_view public_url, std::string_view body,
                                      const header_map& headers) const noexcept {
  try {
    const auto header = headers.find(signature_header);
    if (!header) return {verify_error::missing_input, "missing header X-Twilio-Signature"};
    std::array<unsigned char, detail::max_mac_size> given;
    const auto given_len = detail::base64_decode(detail::trim_ows(*header), given);
    if (!given_len || *given_len == 0) return {verify_error::malformed_input, "malformed header X-Twilio-Signature"};
    const std::span<const unsigned char> candidate(given.data(), *given_len);

    const auto url = split_url(public_url);
    if (!url) return {verify_error::malformed_input, "malformed public url"};

    bool repeated = false;
    const auto body_hash_hex = body_sha256_param(public_url, repeated);
    std::array<unsigned char, 32> body_hash_given{};
    // Reused per thread: the common request needs no allocation once the vector has grown.
    thread_local std::vector<form_param> params;
    params.clear();
    if (body_hash_hex) {
      const auto n = detail::hex_decode(*body_hash_hex, body_hash_given);
      if (repeated || !n || *n != body_hash_given.size()) {
        return {verify_error::malformed_input, "malformed bodySHA256 query parameter"};
      }
    } else {
      switch (parse_form(body, params)) {
        case form_status::ok: break;
        case form_status::malformed: return {verify_error::malformed_input, "malformed form body"};
        case form_status::too_many: return {verify_error::malformed_input, "too many form parameters"};
      }
      std::sort(params.begin(), params.end(), param_less);
    }

    // Twilio's SDKs accept the URL with its port removed or with it present (the scheme default added
    // when absent): Twilio has signed both forms over the years.
    bool matched = false;
    if (candidate.size() == twilio_mac_size) {
      for (std::size_t k = 0; k < keys_.size(); ++k) {
        for (int with_port = 0; with_port < 2; ++with_port) {
          detail::mac_stream mac(keys_, k);
          mac.update(url->head);
          if (with_port) {
            mac.update(":");
            mac.update(url->port);
          }
          mac.update(url->tail);
          for (const auto& p : params) {
            update_decoded(mac, p.name);
            update_decoded(mac, p.value);
          }
          std::array<unsigned char, detail::max_mac_size> expected;
          if (!mac.finish(expected)) return {verify_error::internal_error, "internal error"};
          matched |= detail::ct_equal(std::span(expected).first(twilio_mac_size), candidate);
        }
      }
    }
    if (!matched) return {verify_error::signature_mismatch, "signature mismatch"};

    if (body_hash_hex) {
      detail::sha256_digest actual;
      if (!detail::sha256(body, actual)) return {verify_error::internal_error, "internal error"};
      if (!detail::ct_equal(actual, body_hash_given)) return {verify_error::body_hash_mismatch, "body hash mismatch"};
    }
    return {};
  } catch (...) {  // std::bad_alloc from the parameter vector
    return {verify_error::internal_error, "internal error"};
  }
}

}  // namespace crm::ingest::webhooks
