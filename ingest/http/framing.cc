#include "ingest/http/framing.h"

#include <algorithm>
#include <cctype>

#include <zlib.h>

#include "transform/text/json_text.h"

namespace crm::ingest::http {

namespace {

// What an error body may quote of the client's input.
constexpr std::size_t quote_bytes = 64;

// Every element of the comma-separated lists in all fields `f` (parameters after ';' cut off, trimmed).
std::vector<std::string_view> list_elements(const bhttp::request_header<>& head, bhttp::field f) {
  std::vector<std::string_view> out;
  auto range = head.equal_range(f);
  for (auto it = range.first; it != range.second; ++it) {
    std::string_view v(it->value().data(), it->value().size());
    while (!v.empty()) {
      auto comma = v.find(',');
      auto item = trim(v.substr(0, comma));
      // An empty element is allowed (RFC 9110 section 5.6.1); parameters without a token (";a") are an
      // element too, an empty and so unsupported one, never skipped.
      if (!item.empty()) out.push_back(trim(item.substr(0, item.find(';'))));
      v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    }
  }
  return out;
}

}  // namespace

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string quoted(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, quote_bytes)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  if (s.size() > quote_bytes) out += "...";
  return out;
}

std::string json_error(std::string_view message) {
  std::string out = "{\"error\":";
  transform::append_json_string(out, message);
  return out + "}";
}

std::optional<refusal> framing_refusal(const bhttp::request_header<>& head) {
  const auto hosts = head.count(bhttp::field::host);
  if (hosts > 1) return refusal{400, "more than one Host header"};
  if (hosts == 0 && head.version() >= 11) return refusal{400, "an HTTP/1.1 request needs a Host header"};
  if (head.count(bhttp::field::transfer_encoding) == 0) return std::nullopt;
  if (head.version() < 11) return refusal{400, "Transfer-Encoding in an HTTP/1.0 request"};
  const auto codings = list_elements(head, bhttp::field::transfer_encoding);
  for (auto c : codings) {
    if (c.empty()) return refusal{400, "Transfer-Encoding is not a valid list (a parameter without a coding)"};
  }
  if (codings.empty() || !iequals(codings.back(), "chunked")) {
    return refusal{400, "Transfer-Encoding must end with chunked"};
  }
  for (std::size_t i = 0; i + 1 < codings.size(); ++i) {
    if (iequals(codings[i], "chunked")) return refusal{400, "chunked is applied more than once"};
    return refusal{501, "transfer coding \"" + quoted(codings[i]) + "\" is not supported (only chunked)"};
  }
  return std::nullopt;
}

std::optional<content_coding> coding_of(const bhttp::request_header<>& head, std::string& unsupported) {
  const auto codings = list_elements(head, bhttp::field::content_encoding);
  content_coding out = content_coding::identity;
  std::size_t applied = 0;
  for (auto c : codings) {
    if (iequals(c, "identity")) continue;
    ++applied;
    if (iequals(c, "gzip") || iequals(c, "x-gzip")) out = content_coding::gzip;
    else if (iequals(c, "deflate")) out = content_coding::deflate;
    else {
      unsupported = "Content-Encoding \"" + quoted(c) + "\" is not supported (gzip or deflate)";
      return std::nullopt;
    }
  }
  if (applied > 1) {
    unsupported = "more than one Content-Encoding is not supported";
    return std::nullopt;
  }
  return out;
}

inflate_result inflate_body(std::string_view in, content_coding coding, std::size_t limit, std::string& out,
                            const std::function<bool(std::size_t)>& reserve) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    z_stream zs{};
    // gzip: 16 + 15 (gzip wrapper only); deflate: the zlib format first, then raw deflate.
    const int window = coding == content_coding::gzip ? 16 + MAX_WBITS : (attempt == 0 ? MAX_WBITS : -MAX_WBITS);
    if (inflateInit2(&zs, window) != Z_OK) return inflate_result::corrupt;
    out.clear();
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    int rc = Z_OK;
    char chunk[16384];
    while (rc == Z_OK) {
      zs.next_out = reinterpret_cast<Bytef*>(chunk);
      zs.avail_out = sizeof chunk;
      rc = inflate(&zs, Z_NO_FLUSH);
      const std::size_t produced = sizeof chunk - zs.avail_out;
      if (rc != Z_OK && rc != Z_STREAM_END) break;
      if (out.size() + produced > limit) {
        inflateEnd(&zs);
        return inflate_result::too_large;
      }
      if (produced > 0 && !reserve(produced)) {
        inflateEnd(&zs);
        return inflate_result::too_large;
      }
      out.append(chunk, produced);
      if (rc == Z_OK && zs.avail_in == 0 && produced == 0) break;  // truncated input
    }
    const bool whole = rc == Z_STREAM_END && zs.avail_in == 0;
    inflateEnd(&zs);
    if (whole) return inflate_result::ok;
    if (coding == content_coding::gzip || attempt == 1) break;
  }
  out.clear();
  return inflate_result::corrupt;
}

}  // namespace crm::ingest::http
