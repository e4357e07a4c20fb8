// What the server checks and decodes in a request before the handler sees it: RFC 9112 framing, the
// Content-Encoding, and the error bodies that quote the client's input.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>

namespace crm::ingest::http {

namespace bhttp = boost::beast::http;

std::string_view trim(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
// A short, printable prefix of client input for an error body.
std::string quoted(std::string_view s);
// {"error": message}
std::string json_error(std::string_view message);

struct refusal {
  unsigned status;
  std::string message;
};

// RFC 9112 framing of a request head: a Transfer-Encoding must end with chunked (section 6.3: otherwise
// the body length cannot be determined, and the request could smuggle another one), chunked alone is all
// we decode (501 for other transfer codings), an HTTP/1.0 request has none (section 6.1), and an HTTP/1.1
// request has exactly one Host (section 3.2).
std::optional<refusal> framing_refusal(const bhttp::request_header<>& head);

enum class content_coding { identity, gzip, deflate };

// The request's Content-Encoding: none, identity, gzip (x-gzip) or deflate, one coding at most.
std::optional<content_coding> coding_of(const bhttp::request_header<>& head, std::string& unsupported);

enum class inflate_result { ok, too_large, corrupt };

// Decodes a gzip or deflate (zlib, or raw deflate as some clients send) body into `out`, at most `limit`
// bytes; `reserve` takes budget for the bytes before they are produced.
inflate_result inflate_body(std::string_view in, content_coding coding, std::size_t limit, std::string& out,
                            const std::function<bool(std::size_t)>& reserve);

}  // namespace crm::ingest::http
