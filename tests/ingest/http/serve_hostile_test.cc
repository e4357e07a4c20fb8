// `crm-ingest serve` facing a hostile or careless client: each test sends the request shape that broke
// an earlier version, with a raw socket to the real process (plain HTTP, TLS and [auth] listeners), and
// checks that the process survives, answers as documented, and stores nothing it should not.
// Here: what a request carries (trailers, framing, heads and bodies, encodings, many shapes at once);
// the server around the requests (webhook secrets, TLS, descriptors, log files, counters):
// serve_hostile_server_test.cc.
#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

#include "serve_hostile.h"
#include "support/scratch.h"

namespace {

using namespace crm_test::hostile;

// A chunked POST of one event whose trailer is `trailer` (complete lines, each ending in CRLF).
std::string chunked_with_trailer(const std::string& body, const std::string& trailer, const std::string& extra = "") {
  char size[32];
  std::snprintf(size, sizeof size, "%zx", body.size());
  return "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra +
         "Transfer-Encoding: chunked\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n" + trailer + "\r\n";
}

std::string big_trailer(std::size_t value_bytes) { return "X-Pad: " + std::string(value_bytes, 'a') + "\r\n"; }

// Item 1 of the probe: one unauthenticated request with a 64 KiB trailer field aborted the process
// (Beast threw std::length_error out of io_context::run), on every kind of listener.
TEST(ServeHostile, HugeTrailerFieldEndsOnlyItsConnection) {
  auto dsn = crm_test::fresh_database("t_hostile_trailer");
  auto dir = scratch("trailer");
  issue_certificate(dir);
  crm_test::serve_process plain(dsn, dir / "plain");
  crm_test::serve_process tls(dsn, dir / "tls", "", tls_settings(dir));
  crm_test::serve_process authed(dsn, dir / "auth", auth_settings());
  plain.start();
  tls.start();
  authed.start();

  for (std::size_t value : {std::size_t{65534}, std::size_t{65535}, std::size_t{70000}}) {
    auto r = send_plain(plain.port(), chunked_with_trailer(event("plain"), big_trailer(value)));
    EXPECT_NE(r.status, 200) << value;
    auto t = send_tls(tls.port(), chunked_with_trailer(event("tls"), big_trailer(value)));
    EXPECT_NE(t.status, 200) << value;
    auto a = send_plain(authed.port(), chunked_with_trailer(event("auth"), big_trailer(value),
                                                            "X-API-Key: " + api_key + "\r\n"));
    EXPECT_NE(a.status, 200) << value;
  }
  // Every process is alive and answers the next request.
  ASSERT_TRUE(plain.running());
  ASSERT_TRUE(tls.running());
  ASSERT_TRUE(authed.running());
  EXPECT_EQ(crm_test::http_request(plain.port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(send_tls(tls.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  EXPECT_EQ(crm_test::http_request(authed.port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(plain.stop(SIGTERM), 0);
  EXPECT_EQ(tls.stop(SIGTERM), 0);
  EXPECT_EQ(authed.stop(SIGTERM), 0);
}

// A trailer is bounded like a header (60 MB of trailer fields were accepted), and a small one is fine.
TEST(ServeHostile, TrailersAreBoundedAndASmallOneIsIgnored) {
  hostile_serve srv("trailer-bound");
  std::string many;
  while (many.size() < 4 << 20) many += "X-T" + std::to_string(many.size()) + ": v\r\n";
  auto refused = send_plain(srv.port(), chunked_with_trailer(event("many"), many));
  EXPECT_NE(refused.status, 200);
  auto fine = send_plain(srv.port(), chunked_with_trailer(event("small-trailer"), "X-Checksum: abc\r\n"));
  EXPECT_EQ(fine.status, 200) << fine.body;
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications", 1), 1);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'many'"), 0);
  EXPECT_TRUE(srv.running());
}

// Trailer fields are not header fields: an API key sent as a trailer authenticates nothing.
TEST(ServeHostile, ACredentialInATrailerDoesNotAuthenticate) {
  hostile_serve srv("trailer-key", auth_settings());
  auto r = send_plain(srv.port(), chunked_with_trailer(event("trailer-key"), "X-API-Key: " + api_key + "\r\n"));
  EXPECT_EQ(r.status, 401) << r.body;
  auto ok = send_plain(srv.port(), chunked_with_trailer(event("header-key"), "", "X-API-Key: " + api_key + "\r\n"));
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications", 1), 1);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'trailer-key'"), 0);
}


// Item 6: RFC 9112 framing. A Transfer-Encoding that does not end in chunked left the body to be parsed as
// the next request: a smuggled inner POST was stored.
TEST(ServeHostile, TransferEncodingNotEndingInChunkedIsRefusedAndTheConnectionClosed) {
  hostile_serve srv("smuggling");
  const std::string inner = event("smuggled");
  const std::string smuggled = post_head("", inner.size()) + inner;
  struct shape {
    std::string te;
    int status;
  };
  for (const auto& s : {shape{"identity", 400}, shape{"chunked, identity", 400}, shape{"gzip", 400},
                        shape{"chunked, chunked", 400}, shape{"gzip, chunked", 501}, shape{"x, chunked", 501},
                        // Lists our check and Beast's parser read differently: Beast finds no chunked in them.
                        shape{";a, chunked", 400}, shape{" ;, chunked", 400}, shape{";,chunked", 400}}) {
    crm_test::http_connection c(srv.port());
    c.send_raw("POST /v1/events HTTP/1.1\r\nHost: x\r\n" + ndjson_head + "Transfer-Encoding: " + s.te + "\r\n\r\n" +
               smuggled);
    auto r = c.read_reply();
    EXPECT_EQ(r.status, s.status) << s.te << ": " << r.body;
    EXPECT_EQ(r.headers["connection"], "close") << s.te;
    EXPECT_EQ(c.read_reply().status, 0) << s.te << ": a second answer means the body was parsed as a request";
  }
  // Two Transfer-Encoding fields are one list: the last coding counts.
  {
    crm_test::http_connection c(srv.port());
    c.send_raw("POST /v1/events HTTP/1.1\r\nHost: x\r\n" + ndjson_head +
               "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + smuggled);
    EXPECT_EQ(c.read_reply().status, 400);
    EXPECT_EQ(c.read_reply().status, 0);
  }
  // HTTP/1.0 has no Transfer-Encoding (RFC 9112 section 6.1).
  EXPECT_EQ(send_plain(srv.port(), "POST /v1/events HTTP/1.0\r\n" + ndjson_head + "Transfer-Encoding: chunked\r\n\r\n" +
                                       "5\r\nhello\r\n0\r\n\r\n")
                .status,
            400);
  // Host: exactly one in HTTP/1.1; HTTP/1.0 may go without.
  auto no_host = send_plain(srv.port(), "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_EQ(no_host.status, 400) << no_host.body;
  EXPECT_EQ(send_plain(srv.port(), "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status, 400);
  EXPECT_EQ(send_plain(srv.port(), "GET /healthz HTTP/1.0\r\n\r\n").status, 200);
  // Content-Length and Transfer-Encoding together, or two different lengths: refused too.
  EXPECT_EQ(send_plain(srv.port(), "POST /v1/events HTTP/1.1\r\nHost: x\r\n" + ndjson_head +
                                       "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                .status,
            400);
  EXPECT_EQ(send_plain(srv.port(), "POST /v1/events HTTP/1.1\r\nHost: x\r\n" + ndjson_head +
                                       "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde")
                .status,
            400);
  // A well-framed request after all that is stored; the smuggled one never was.
  auto ok = crm_test::http_request(srv.port(), "POST", "/v1/events", event("marker"), {{"Content-Type", "application/x-ndjson"}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'marker'", 1), 1);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM communications WHERE provider_message_id = 'smuggled'"), 0);
}

// Item 9: the header timeout applied only to a connection's first request; the next one could trickle its
// head for idle_timeout (60 s).
TEST(ServeHostile, HeaderTimeoutAppliesToEveryRequestOnAKeptAliveConnection) {
  hostile_serve srv("keepalive-timeout", "", "header_timeout_ms = 500\nidle_timeout_ms = 60000\n");
  crm_test::http_connection c(srv.port());
  EXPECT_EQ(c.request("GET", "/healthz").status, 200);
  // Idling between requests longer than the header timeout is fine (idle_timeout governs that)...
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  EXPECT_EQ(c.request("GET", "/healthz").status, 200);
  // ...but once a request has begun, its head must arrive within the header timeout.
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(100, 'a');
    for (char ch : head) {
      if (stop) return;
      try {
        c.send_raw(std::string(1, ch));
      } catch (const std::exception&) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  const auto started = std::chrono::steady_clock::now();
  const bool closed = c.closed_by_server();
  const auto took = std::chrono::steady_clock::now() - started;
  stop = true;
  trickle.join();
  EXPECT_TRUE(closed);
  EXPECT_LT(took, std::chrono::milliseconds(3000));
}

// Item 5: credentials are checked on the head: 401 at once, before any body byte, and the connection closed.
TEST(ServeHostile, CredentialsAreCheckedBeforeTheBodyIsRead) {
  hostile_serve srv("early-auth", auth_settings());
  for (const std::string& extra : {std::string(), std::string("Expect: 100-continue\r\n"),
                                   std::string("X-API-Key: wrong-key\r\n")}) {
    crm_test::http_connection c(srv.port());
    c.send_raw(post_head(extra, (4 << 20) - 1));  // the body never comes
    const auto started = std::chrono::steady_clock::now();
    auto r = c.read_reply();
    EXPECT_EQ(r.status, 401) << extra << r.body;
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
    EXPECT_TRUE(c.closed_by_server());
  }
  // An unsigned webhook endpoint, likewise, and a client that sends its body anyway still reads the answer.
  {
    crm_test::http_connection c(srv.port());
    c.send_raw(post_head("", 300000, "/v1/webhooks/segment") + std::string(300000, ' '));
    EXPECT_EQ(c.read_reply().status, 401);
  }
  // With the credential, the body is read and stored.
  crm_test::http_connection ok(srv.port());
  const std::string body = event("with-key");
  ok.send_raw(post_head("X-API-Key: " + api_key + "\r\n", body.size()) + body);
  EXPECT_EQ(ok.read_reply().status, 200);
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications", 1), 1);
  auto metrics = crm_test::http_request(srv.port(), "GET", "/metrics", "", {{"X-API-Key", api_key}}).body;
  EXPECT_NE(metrics.find("crm_ingest_http_refused_before_body_total 4"), std::string::npos) << metrics;
}

// Item 5: all connections' bodies together are bounded (503 + Retry-After), whatever their number.
TEST(ServeHostile, InFlightBodiesShareOneBudget) {
  hostile_serve srv("budget", "", "body_limit_bytes = 65536\nbody_budget_bytes = 131072\n");
  const std::string line = event("budget") + "\n";
  std::string body;
  while (body.size() + line.size() <= 60000) body += line;
  // Two bodies sent but for their last byte hold what arrived (a body takes the budget as its bytes come).
  crm_test::http_connection a(srv.port()), b(srv.port());
  a.send_raw(post_head("", body.size()) + body.substr(0, body.size() - 1));
  b.send_raw(post_head("", body.size()) + body.substr(0, body.size() - 1));
  // Until both are held whole: a body arriving in pieces holds only its buffer so far, and with one of
  // them still short the chunk below would fit.
  const double held = 2.0 * static_cast<double>(body.size() - 1);
  double in_flight = 0;
  ASSERT_TRUE(crm_test::wait_until([&] {
    in_flight = crm_test::metric_sum(srv.port(), "crm_ingest_http_body_bytes_in_flight");
    return in_flight >= held;
  }, std::chrono::seconds(10), std::chrono::milliseconds(50))) << in_flight << " of " << held;
  // A third declared body does not fit: refused at once.
  auto over = send_plain(srv.port(), post_head("", body.size()));
  EXPECT_EQ(over.status, 503) << over.body;
  EXPECT_EQ(over.headers["retry-after"], "1");
  // Nor does a chunk announced larger than what is free.
  {
    crm_test::http_connection c(srv.port());
    c.send_raw("POST /v1/events HTTP/1.1\r\nHost: x\r\n" + ndjson_head + "Transfer-Encoding: chunked\r\n\r\n");
    char size[16];
    std::snprintf(size, sizeof size, "%zx\r\n", std::size_t{20000});
    c.send_raw(size);
    EXPECT_EQ(c.read_reply().status, 503);
  }
  // The held bodies complete; their budget is given back and the next request fits.
  a.send_raw(body.substr(body.size() - 1));
  b.send_raw(body.substr(body.size() - 1));
  EXPECT_EQ(a.read_reply().status, 200);
  EXPECT_EQ(b.read_reply().status, 200);
  auto after = crm_test::http_request(srv.port(), "POST", "/v1/events", body, {{"Content-Type", "application/x-ndjson"}});
  EXPECT_EQ(after.status, 200) << after.body;
  // A body's bytes are given back before its answer is written, so the next scrape finds them free.
  const auto metrics = crm_test::http_request(srv.port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("crm_ingest_http_body_budget_refusals_total 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("crm_ingest_http_body_bytes_in_flight 0"), std::string::npos) << metrics;
  EXPECT_TRUE(srv.running());
}

// From a review: a body took its whole declared length (or chunk size) from the budget before any of its
// bytes arrived, so a few clients sending only heads (on a webhook route whose signature covers the body,
// nothing is checked before the body) held the budget until their request timeout: every other client got
// 503 for 30 s. A body now holds only what arrived (its buffer as it grows); a head or a chunk-size line
// holds nothing.
TEST(ServeHostile, HeadsWithoutTheirBodiesHoldNoBudget) {
  hostile_serve srv("budget-heads", "[webhooks.segment]\nshared_secret = \"hostile-budget\"\n",
                    "body_limit_bytes = 65536\nbody_budget_bytes = 131072\n");
  const std::string line = event("heads") + "\n";
  std::string body;
  while (body.size() + line.size() <= 60000) body += line;
  std::vector<std::unique_ptr<crm_test::http_connection>> idle;
  for (int i = 0; i < 6; ++i) {  // 6 x 65536 declared: three times the budget
    idle.push_back(std::make_unique<crm_test::http_connection>(srv.port()));
    idle.back()->send_raw(post_head("", 65536, "/v1/webhooks/segment"));
  }
  for (int i = 0; i < 6; ++i) {  // and as many chunked bodies that announce a chunk and send none of it
    idle.push_back(std::make_unique<crm_test::http_connection>(srv.port()));
    idle.back()->send_raw("POST /v1/events HTTP/1.1\r\nHost: x\r\n" + ndjson_head +
                          "Transfer-Encoding: chunked\r\n\r\nfff0\r\n");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto metrics = crm_test::http_request(srv.port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("crm_ingest_http_body_bytes_in_flight 0"), std::string::npos) << metrics;
  for (int i = 0; i < 2; ++i) {  // two bodies of 60000 bytes at once would not have fit beside them
    auto ok = crm_test::http_request(srv.port(), "POST", "/v1/events", body, {{"Content-Type", "application/x-ndjson"}});
    EXPECT_EQ(ok.status, 200) << ok.body;
  }
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications", 1), 1);  // one event id, sent twice
  EXPECT_TRUE(srv.running());
}


// The server's resident memory in bytes (VmRSS).
long long resident_bytes(pid_t pid) {
  std::istringstream in(crm_test::read_file("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// A head of 16,000 empty fields fits in 64 KiB but held ~1.3 MB per connection until the body came (each field is
// an allocation of its own, counted by no budget): 1,000 such connections took 1.3 GB. More than 128 fields is
// 431 now, and the connection is closed.
TEST(ServeHostile, AHeadOfManyTinyFieldsIsRefused) {
  hostile_serve srv("many-fields", "[webhooks.segment]\nshared_secret = \"hostile-fields\"\n");
  std::string fields;
  for (int i = 0; i < 16000; ++i) fields += "a:\r\n";
  const std::string bomb = post_head(fields, 100, "/v1/webhooks/segment");
  ASSERT_LT(bomb.size(), 64u * 1024);
  auto r = send_plain(srv.port(), bomb);
  EXPECT_EQ(r.status, 431) << r.body;
  EXPECT_NE(r.body.find("more than 128 fields"), std::string::npos) << r.body;
  const long long before = resident_bytes(srv.pid());
  std::vector<std::unique_ptr<crm_test::http_connection>> held;
  for (int i = 0; i < 200; ++i) {  // heads sent, bodies never: 260 MB before
    held.push_back(std::make_unique<crm_test::http_connection>(srv.port()));
    try {
      held.back()->send_raw(bomb);
    } catch (const std::exception&) {
      // refused and closed while the head was still being sent
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long long grown = resident_bytes(srv.pid()) - before;
  EXPECT_LT(grown, 40ll << 20) << "resident memory grew by " << grown << " bytes";
  // 128 fields are fine.
  std::string many;
  for (int i = 0; i < 120; ++i) many += "X-F" + std::to_string(i) + ": v\r\n";
  const std::string ok_body = event("many-fields") + "\n";
  auto ok = send_plain(srv.port(), post_head(many, ok_body.size()) + ok_body);
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_TRUE(srv.running());
}

// zlib's formats: 16 + 15 = gzip, 15 = zlib ("deflate" in HTTP), -15 = raw deflate.
std::string compress(const std::string& in, int window_bits) {
  z_stream zs{};
  deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Item 10: Expect: 100-continue is answered (curl waited ~1 s per request), and only when the request is
// acceptable.
TEST(ServeHostile, ExpectContinueIsAnsweredForAnAcceptableRequestOnly) {
  hostile_serve srv("continue", auth_settings());
  const std::string body = event("continued");
  crm_test::http_connection c(srv.port());
  c.send_raw(post_head("Expect: 100-continue\r\nX-API-Key: " + api_key + "\r\n", body.size()));
  const auto started = std::chrono::steady_clock::now();
  auto interim = c.read_reply();
  EXPECT_EQ(interim.status, 100);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(900));
  c.send_raw(body);
  EXPECT_EQ(c.read_reply().status, 200);
  // Refused on its head: the final answer comes instead of 100 Continue.
  EXPECT_EQ(send_plain(srv.port(), post_head("Expect: 100-continue\r\n", body.size())).status, 401);
  // An expectation we cannot meet.
  EXPECT_EQ(send_plain(srv.port(), post_head("Expect: something-else\r\nX-API-Key: " + api_key + "\r\n", 2) + "{}")
                .status,
            417);
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications", 1), 1);
}

// Item 10: gzip/deflate bodies are decoded (they were dead-lettered as garbage), within the body limit.
TEST(ServeHostile, CompressedBodiesAreDecodedWithinTheBodyLimit) {
  hostile_serve srv("gzip", "", "body_limit_bytes = 1048576\n");
  auto post = [&](const std::string& coding, const std::string& bytes) {
    return crm_test::http_request(srv.port(), "POST", "/v1/events", bytes,
                                  {{"Content-Type", "application/x-ndjson"}, {"Content-Encoding", coding}});
  };
  auto gz = post("gzip", compress(event("gzip"), 16 + 15));
  EXPECT_EQ(gz.status, 200) << gz.body;
  EXPECT_NE(gz.body.find("\"accepted\":1,\"rejected\":0"), std::string::npos) << gz.body;
  EXPECT_EQ(post("deflate", compress(event("zlib"), 15)).status, 200);
  EXPECT_EQ(post("deflate", compress(event("raw-deflate"), -15)).status, 200);
  EXPECT_EQ(post("x-gzip", compress(event("x-gzip"), 16 + 15)).status, 200);
  // A bomb: 64 MiB of newlines in ~64 KiB.
  auto bomb = post("gzip", compress(std::string(64 << 20, '\n'), 16 + 15));
  EXPECT_EQ(bomb.status, 413) << bomb.body;
  auto corrupt = post("gzip", "\x1f\x8b not really gzip");
  EXPECT_EQ(corrupt.status, 400) << corrupt.body;
  auto truncated = compress(event("truncated"), 16 + 15);
  EXPECT_EQ(post("gzip", truncated.substr(0, truncated.size() - 6)).status, 400);
  auto brotli = post("br", event("br"));
  EXPECT_EQ(brotli.status, 415) << brotli.body;
  EXPECT_EQ(post("gzip, gzip", compress(compress(event("twice"), 16 + 15), 16 + 15)).status, 415);
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications", 4), 4);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM rejected_events"), 0);
}

// Item 10: one body of many invalid records wrote as many dead letters (100k, 33 MB of WAL); beyond the cap
// the request is refused whole and nothing of it is stored.
TEST(ServeHostile, DeadLettersPerRequestAreCapped) {
  hostile_serve srv("dead-letter-cap", "", "max_rejections_per_request = 10\n");
  auto lines = [](int bad, int good) {
    std::string body;
    for (int i = 0; i < bad; ++i) body += R"({"kind":"communication","channel":"pigeon","n":)" + std::to_string(i) + "}\n";
    for (int i = 0; i < good; ++i) body += event("cap-good-" + std::to_string(i)) + "\n";
    return body;
  };
  const std::map<std::string, std::string> ndjson = {{"Content-Type", "application/x-ndjson"}};
  auto over = crm_test::http_request(srv.port(), "POST", "/v1/events", lines(11, 5), ndjson);
  EXPECT_EQ(over.status, 400) << over.body;
  EXPECT_NE(over.body.find("11 records of this request were rejected, more than the limit of 10"), std::string::npos)
      << over.body;
  EXPECT_NE(over.body.find("\"reason\":"), std::string::npos) << over.body;
  auto at = crm_test::http_request(srv.port(), "POST", "/v1/events", lines(10, 1), ndjson);
  EXPECT_EQ(at.status, 200) << at.body;
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM rejected_events", 10), 10);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM communications"), 1);
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM communications WHERE provider_message_id LIKE 'cap-good-%'"), 1);
}


// From a review of the change above: the buffer grew with std::string::reserve, which libstdc++ rounds up to
// twice the capacity when asked for less than that, so a body capped at its declared length held up to twice
// it; with the budget equal to the body limit (allowed), a body of 2.1 MB or 3 MB got 503 on an idle server.
TEST(ServeHostile, ABodyHoldsItsLengthNotTwiceIt) {
  hostile_serve srv("budget-exact", "", "body_limit_bytes = 3000000\nbody_budget_bytes = 3000000\n");
  const std::string line = event("exact") + "\n";
  for (std::size_t size : {std::size_t{2100000}, std::size_t{3000000}}) {
    std::string body;
    while (body.size() + line.size() <= size) body += line;
    body.append(size - body.size() - 1, ' ').push_back('\n');  // exactly `size` bytes
    crm_test::http_connection c(srv.port());
    c.send_raw(post_head("", body.size()) + body.substr(0, body.size() - 1));
    std::string metrics;
    crm_test::wait_until([&] {
      metrics = crm_test::http_request(srv.port(), "GET", "/metrics").body;
      return metrics.find("crm_ingest_http_body_bytes_in_flight " + std::to_string(size)) != std::string::npos;
    }, std::chrono::seconds(10), std::chrono::milliseconds(50));
    EXPECT_NE(metrics.find("crm_ingest_http_body_bytes_in_flight " + std::to_string(size)), std::string::npos)
        << size << "\n" << metrics;
    c.send_raw(body.substr(body.size() - 1));
    EXPECT_EQ(c.read_reply().status, 200) << size;
  }
}

// From a review: the rejection counter's reason label was the field a reason names, also a key the client
// made up ("zz1: contains a number out of PostgreSQL's numeric range"), so each request could add series
// to /metrics for ever. Only canonical field names (and malformed_json) are labels; the rest is "other".
TEST(ServeHostile, RejectionReasonsMakeABoundedSetOfLabels) {
  hostile_serve srv("reason-labels");
  std::string body;
  for (int i = 0; i < 40; ++i) {
    body += R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent",)"
            R"("email":"a@b.co","zzlabel)" + std::to_string(i) + R"(":1e999999})" "\n";
  }
  body += R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"pigeon","status":"sent"})" "\n";
  body += event("labels-good") + "\n";
  auto r = crm_test::http_request(srv.port(), "POST", "/v1/events", body, {{"Content-Type", "application/x-ndjson"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM rejected_events", 41), 41);  // every one kept
  auto metrics = crm_test::http_request(srv.port(), "GET", "/metrics").body;
  EXPECT_EQ(metrics.find("zzlabel"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("crm_ingest_events_rejected_total{reason=\"other\"} 40"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("crm_ingest_events_rejected_total{reason=\"channel\"} 1"), std::string::npos) << metrics;
}


// Beyond the probe's list: other shapes an attacker (or a broken client) sends, each answered as RFC 9112
// says or cut off, none leaving anything behind; the process serves throughout.
TEST(ServeHostile, AttackerShapesAreAnsweredOrCutOffAndTheServerStaysHealthy) {
  hostile_serve srv("battery", "", "header_timeout_ms = 500\nrequest_timeout_ms = 1500\nbody_limit_bytes = 65536\n");
  const auto port = srv.port();
  auto status_of = [&](const std::string& bytes) { return send_plain(port, bytes).status; };
  const std::string post = "POST /v1/events HTTP/1.1\r\nHost: x\r\n" + ndjson_head;

  // Content-Length that is negative, overflowing, not decimal, or two different values: 400.
  for (const char* length : {"-1", "99999999999999999999999", "1e3", "+5", "0x10", "5, 6", ""}) {
    EXPECT_EQ(status_of(post + "Content-Length: " + length + "\r\n\r\nhello"), 400) << length;
  }
  // The same length twice is one length (RFC 9110 8.6).
  EXPECT_EQ(status_of("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}"), 200);
  // Chunk sizes that overflow 64 bits, exceed the body limit, or come with a 100 KB extension.
  EXPECT_EQ(status_of(post + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n"), 400);
  EXPECT_EQ(status_of(post + "Transfer-Encoding: chunked\r\n\r\n100000\r\n"), 413);
  EXPECT_EQ(status_of(post + "Transfer-Encoding: chunked\r\n\r\n1;" + std::string(100000, 'e') + "\r\nx\r\n0\r\n\r\n"),
            431);
  // Header bombs: up to 128 fields are fine, more is 431 (each field is an allocation: AHeadOfManyTinyFieldsIsRefused),
  // as is a header beyond 64 KiB. A NUL or a space before the colon: 400.
  std::string fields;
  for (int i = 0; i < 127; ++i) fields += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(status_of("GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + "\r\n"), 200);
  EXPECT_EQ(status_of("GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + fields + "\r\n"), 431);
  EXPECT_EQ(status_of("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70000, 'v') + "\r\n\r\n"), 431);
  EXPECT_EQ(status_of("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a" + std::string(1, '\0') + "b\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
  // obs-fold (RFC 9112 5.2: refused or replaced by a space), bare LF, HTTP/2's preface, other versions, odd targets.
  const int folded = status_of("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n");
  EXPECT_TRUE(folded == 200 || folded == 400) << folded;
  EXPECT_NE(status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 200);
  EXPECT_NE(status_of("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"), 500);
  EXPECT_EQ(status_of("GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n"), 404);
  EXPECT_EQ(status_of("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example\r\n\r\n"), 404);
  EXPECT_EQ(status_of("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
  // Bytes after a complete request are the next request: garbage there is 400, not a second request's body.
  {
    crm_test::http_connection c(port);
    c.send_raw(post + "Content-Length: 0\r\n\r\nGARBAGE\r\n\r\n");
    EXPECT_EQ(c.read_reply().status, 400);
    EXPECT_EQ(c.read_reply().status, 400);
    EXPECT_EQ(c.read_reply().status, 0);
  }
  // A pipelining flood: 3000 requests in one write are answered one after another, in order.
  {
    crm_test::http_connection c(port);
    std::string flood;
    for (int i = 0; i < 3000; ++i) flood += "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    flood += "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    std::thread sender([&] {
      try {
        c.send_raw(flood);
      } catch (const std::exception&) {
      }
    });
    int ok = 0;
    for (int i = 0; i < 3000; ++i) ok += c.read_reply().status == 200;
    EXPECT_EQ(c.read_reply().status, 404);
    sender.join();
    EXPECT_EQ(ok, 3000);
    EXPECT_TRUE(c.closed_by_server());
  }
  // Slowloris: many connections each trickling a head are all cut off by the header timeout, and the server
  // answers others meanwhile; a body trickled past the request timeout likewise.
  {
    std::vector<std::unique_ptr<crm_test::http_connection>> slow;
    for (int i = 0; i < 100; ++i) {
      slow.push_back(std::make_unique<crm_test::http_connection>(port));
      slow.back()->send_raw("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    }
    crm_test::http_connection body(port);
    body.send_raw(post + "Content-Length: 1000\r\n\r\n{");
    EXPECT_EQ(crm_test::http_request(port, "GET", "/healthz").status, 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    for (auto& c : slow) EXPECT_TRUE(c->closed_by_server());
    const auto started = std::chrono::steady_clock::now();
    EXPECT_TRUE(body.closed_by_server());
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
  }
  // Many small requests on one connection.
  {
    crm_test::http_connection c(port);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(c.request("GET", "/healthz").status, 200) << i;
  }
  // SIGHUP reloads while requests are in flight on several connections: every request is answered.
  {
    std::atomic<int> answered{0}, failed{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        crm_test::http_connection c(port);
        for (int i = 0; i < 100; ++i) {
          auto r = c.request("POST", "/v1/events", event("hup-" + std::to_string(t) + "-" + std::to_string(i)),
                             {{"Content-Type", "application/x-ndjson"}});
          (r.status == 200 ? answered : failed)++;
        }
      });
    }
    for (int i = 0; i < 20; ++i) {
      kill(srv.pid(), SIGHUP);
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    for (auto& c : clients) c.join();
    EXPECT_EQ(answered.load(), 400);
    EXPECT_EQ(failed.load(), 0);
    EXPECT_EQ(wait_for(srv.dsn, "SELECT count(*) FROM communications WHERE provider_message_id LIKE 'hup-%'", 400), 400);
  }
  ASSERT_TRUE(srv.running());
  EXPECT_EQ(crm_test::http_request(port, "GET", "/healthz").status, 200);
  auto m = crm_test::http_request(port, "GET", "/metrics").body;
  EXPECT_NE(m.find("\ncrm_ingest_http_connection_errors_total 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("\ncrm_ingest_http_body_bytes_in_flight 0\n"), std::string::npos) << m;
  EXPECT_EQ(crm_test::count(srv.dsn, "SELECT count(*) FROM rejected_events"), 0);
}

}  // namespace
