#include "ingest/collector/collector.h"

#include <chrono>

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "ingest/webhooks/schemes.h"
#include "transform/providers/registry.h"

#include "transform/text/json_copy.h"
#include "transform/text/json_text.h"
#include "transform/normalize/record_splitter.h"
#include "transform/text/utf8.h"

namespace crm::ingest {

namespace {

http::response json_response(unsigned status, std::string body) {
  return http::response{status, "application/json", std::move(body), {}};
}

http::response error_response(unsigned status, std::string_view message) {
  return json_response(status, "{\"error\":" + json_quote(message) + "}");
}

bool media_type_is(std::string_view content_type, std::string_view wanted) {
  auto semi = content_type.find(';');
  auto type = content_type.substr(0, semi);
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  if (type.size() != wanted.size()) return false;
  for (std::size_t i = 0; i < type.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(type[i])) != wanted[i]) return false;
  }
  return true;
}

// A short prefix of client input for a response body: at most `max` bytes, cut on a character boundary,
// bytes that are not UTF-8 shown as U+FFFD (a 404 must not echo a 60 KB path).
std::string excerpt(std::string_view s, std::size_t max = 64) {
  std::string out;
  while (!s.empty() && out.size() < max) {
    std::size_t n = transform::detail::utf8_sequence_length(s);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");
      n = 1;
    } else {
      out.append(s.substr(0, n));
    }
    s.remove_prefix(n);
  }
  if (!s.empty()) out.append("...");
  return out;
}

// The field a rejection reason names ("status: ..." -> "status"), a label for metrics: only a canonical
// field's name (or malformed_json), never a key the client chose, so the label set is bounded.
std::string_view reason_field(std::string_view reason) {
  auto colon = reason.find(':');
  auto field = colon == std::string_view::npos ? reason : reason.substr(0, colon);
  if (field.rfind("malformed JSON", 0) == 0) return "malformed_json";
  return transform::is_canonical_field(field) ? field : "other";
}

}  // namespace

std::string json_quote(std::string_view s) {
  std::string out;
  transform::append_json_string(out, s);
  return out;
}

collector::collector(collector_options options, batch_sink& sink, metrics& m, std::function<bool()> database_ready)
    : options_(std::move(options)),
      sink_(sink),
      metrics_(m),
      database_ready_(std::move(database_ready)),
      auth_(options_.auth),
      auth_results_(prometheus::BuildCounter()
                        .Name("crm_ingest_auth_requests_total")
                        .Help("Credential checks on POST /v1/events, by result (ok, unauthenticated = 401, "
                              "forbidden = 403)")
                        .Register(m.registry())),
      rate_limited_(prometheus::BuildCounter()
                        .Name("crm_ingest_rate_limited_total")
                        .Help("Requests refused with 429, by limit (address, credential)")
                        .Register(m.registry())),
      key_missing_(prometheus::BuildCounter()
                       .Name("crm_ingest_webhook_idempotency_key_missing_total")
                       .Help("Webhook requests whose source declares an idempotency_key the request lacks (its events "
                             "were stored with the provider's own ids), by source")
                       .Register(m.registry())) {}

void collector::set_authenticator(std::shared_ptr<const auth::authenticator> a) { auth_.store(std::move(a)); }

collector::~collector() = default;

void collector::set_sources(std::shared_ptr<const webhook_source_set> sources) { sources_.store(std::move(sources)); }

namespace {
// The source of a /v1/webhooks/<name> path in `set`, or null.
std::shared_ptr<const webhook_source> find_source(const std::shared_ptr<const webhook_source_set>& set,
                                                  std::string_view name) {
  if (!set) return nullptr;
  auto it = set->find(name);
  return it == set->end() ? nullptr : it->second;
}
}  // namespace

namespace {
// The I/O thread's batch, reused by its requests (cleared, capacity kept): a request's events live in it
// only until the sink's submit() has encoded them.
transform::event_batch& thread_batch() {
  thread_local transform::event_batch batch;
  batch.clear();
  return batch;
}
}  // namespace

transform::normalizer& collector::thread_normalizer() {
  // One normalizer per I/O thread: it owns a simdjson parser and its buffers.
  thread_local std::unique_ptr<transform::normalizer> norm;
  thread_local const collector* owner = nullptr;
  if (!norm || owner != this) {
    norm = std::make_unique<transform::normalizer>(options_.normalize);
    owner = this;
  }
  return *norm;
}

namespace {
// The label of a response's metrics: a fixed path, the endpoint of the webhook source the path names (`source`,
// null when it names none), or "other". Only configured sources name a label: the set of labels stays bounded
// whatever paths are sent.
std::string_view endpoint_label(std::string_view path, const webhook_source* source) {
  for (std::string_view fixed : {"/v1/events", "/healthz", "/readyz", "/metrics"}) {
    if (path == fixed) return fixed;
  }
  if (source != nullptr && path.starts_with("/v1/webhooks/")) return source->endpoint;
  return "other";
}
}  // namespace

std::string collector::endpoint_of(std::string_view path) const {
  std::shared_ptr<const webhook_source> source;
  if (path.starts_with("/v1/webhooks/")) source = find_source(sources_.load(), path.substr(13));
  return std::string(endpoint_label(path, source.get()));
}

std::optional<http::response> collector::screen(const http::request& head, http::admission& admitted) {
  auto refused = admit(head, admitted);
  if (refused) metrics_.http_request(endpoint_of(head.path), refused->status).Increment();
  return refused;
}

std::optional<http::response> collector::admit(const http::request& req, http::admission& admitted) {
  auto method_not_allowed = [&](std::string_view allow) {
    auto r = error_response(405, excerpt(req.method) + " is not allowed on " + excerpt(req.path));
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
  };
  auto unauthenticated = [&](const std::string& reason) {
    auth_results_.Add({{"result", "unauthenticated"}}).Increment();
    auto r = error_response(401, reason);
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"crm-ingest\"");
    return r;
  };
  auto credential_of = [&](const auth::authenticator& a) {
    return req.headers ? a.check(*req.headers, transform::now_us() / 1000000)
                       : auth::result{auth::outcome::unauthenticated, "no credential", {}, {}, {}};
  };
  // 429 (counted by `which` limit) when `limit` has no request left for `key` now; nullopt otherwise.
  auto over_limit = [&](auth::rate_limiter& limit, std::string_view key, const char* which,
                        const char* message) -> std::optional<http::response> {
    int retry_after = 1;
    if (limit.allow(key, std::chrono::steady_clock::now(), retry_after)) return std::nullopt;
    rate_limited_.Add({{"limit", which}}).Increment();
    auto r = error_response(429, message);
    r.headers.emplace_back("Retry-After", std::to_string(retry_after));
    return r;
  };
  if (req.path == "/healthz" || req.path == "/readyz") {
    if (req.method != "GET") return method_not_allowed("GET");
    return std::nullopt;
  }
  if (req.path == "/metrics") {
    if (req.method != "GET") return method_not_allowed("GET");
    if (auto a = auth_.load(); options_.protect_metrics && a && a->enabled()) {
      auto who = credential_of(*a);
      // A valid credential of a role that may not ingest may still read the metrics.
      if (!who.ok() && who.status != auth::outcome::forbidden) return unauthenticated(who.reason);
    }
    return std::nullopt;
  }
  // Per client address, before anything else is looked at: every POST (events and webhooks).
  if (options_.address_limit && req.method == "POST") {
    if (auto r = over_limit(*options_.address_limit, req.remote_address, "address",
                            "too many requests from this address")) {
      return r;
    }
  }
  if (req.path == "/v1/events") {
    if (req.method != "POST") return method_not_allowed("POST");
    auto a = auth_.load();
    if (!a || !a->enabled()) return std::nullopt;
    auto who = credential_of(*a);
    if (!who.ok()) {
      if (who.status != auth::outcome::forbidden) return unauthenticated(who.reason);
      auth_results_.Add({{"result", "forbidden"}}).Increment();
      // The body is not read: an unauthenticated request leaves nothing behind but this counter.
      return error_response(403, who.reason);
    }
    auth_results_.Add({{"result", "ok"}}).Increment();
    if (options_.credential_limit) {
      if (auto r = over_limit(*options_.credential_limit, who.credential, "credential",
                              "too many requests for this credential")) {
        return r;
      }
    }
    admitted.tenant = std::move(who.tenant);
    admitted.credential = std::move(who.credential);
    return std::nullopt;
  }
  if (req.path.rfind("/v1/webhooks/", 0) == 0) {
    const std::string_view name = req.path.substr(13);
    auto source = find_source(sources_.load(), name);
    if (!source) return error_response(404, "no such webhook source: " + excerpt(name));
    const bool whatsapp = transform::providers::registry[source->provider].name == "whatsapp";
    if (!(req.method == "POST" || (whatsapp && req.method == "GET"))) {
      return method_not_allowed(whatsapp ? "GET, POST" : "POST");
    }
    if (req.method == "POST" && source->verify && source->head_only) {
      auto v = source->verify(req);
      if (!v.ok()) {
        metrics_.signature_failure(source->name, v.reason).Increment();
        return error_response(401, "signature verification failed: " + std::string(v.reason));
      }
    }
    admitted.route = std::move(source);  // handle() uses the source of this set, even after a reload
    return std::nullopt;
  }
  return error_response(404, "no such endpoint: " + excerpt(req.path));
}

void collector::handle(const http::request& req, http::respond_fn respond) {
  const auto started = std::chrono::steady_clock::now();
  auto count = [this, started](std::string_view endpoint, unsigned status) {
    metrics_.http_request(endpoint, status).Increment();
    metrics_.http_duration(endpoint).Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  };
  // The server screened the head already; a caller that did not gets the same checks here.
  http::admission local;
  const http::admission* admitted = req.admitted;
  if (!admitted) {
    if (auto refused = admit(req, local)) {
      count(endpoint_of(req.path), refused->status);
      return respond(std::move(*refused));
    }
    admitted = &local;
  }
  // Count every response by endpoint and code, and time it. The label is a fixed path or the admitted
  // source's (which the response keeps alive with its route): nothing is looked up or copied per request.
  const std::string_view endpoint =
      endpoint_label(req.path, static_cast<const webhook_source*>(admitted->route.get()));
  http::respond_fn counted = [count, endpoint, route = admitted->route,
                              respond = std::move(respond)](http::response r) {
    count(endpoint, r.status);
    respond(std::move(r));
  };

  if (req.path == "/healthz") return counted(json_response(200, "{\"status\":\"ok\"}"));
  if (req.path == "/readyz") {
    bool db = database_ready_ ? database_ready_() : true;
    bool below = !sink_.above_high_water();
    bool failed = sink_.failed();  // a write error stopped the local log: appends are refused until it has room
    bool ready = db && below && !failed;
    std::string body = std::string("{\"ready\":") + (ready ? "true" : "false") + ",\"database\":" +
                       (db ? "true" : "false") + ",\"log_below_high_water\":" + (below ? "true" : "false") +
                       ",\"log_failed\":" + (failed ? "true" : "false") + "}";
    return counted(json_response(ready ? 200 : 503, std::move(body)));
  }
  if (req.path == "/metrics") return counted(http::response{200, "text/plain; version=0.0.4", metrics_.serialize(), {}});
  if (req.path == "/v1/events") return handle_events(req, counted, endpoint, admitted->tenant);
  // /v1/webhooks/<name>: admit() let nothing else through, and resolved its source.
  const auto* source = static_cast<const webhook_source*>(admitted->route.get());
  if (source == nullptr) return counted(error_response(404, "no such webhook source: " + excerpt(req.path.substr(13))));
  if (req.method == "GET") return handle_whatsapp_handshake(req, counted, *source);
  return handle_webhook(req, counted, *source);
}

void collector::stamp_tenant(transform::event_batch& batch, std::string_view tenant) {
  if (tenant.empty()) return;
  for (auto& c : batch.communications) {
    if (c.tenant_id.empty()) c.tenant_id = tenant;
  }
  for (auto& t : batch.touchpoints) {
    if (t.tenant_id.empty()) t.tenant_id = tenant;
  }
  // Dead letters hold the tenant's raw bodies: theirs too, or row security would show them to tenant-less
  // readers and hide them from the tenant.
  for (auto& r : batch.rejections) {
    if (r.tenant_id.empty()) r.tenant_id = tenant;
  }
}

void collector::handle_events(const http::request& req, http::respond_fn& respond, std::string_view endpoint,
                              std::string_view tenant) {
  transform::input_format format;
  if (media_type_is(req.content_type, "application/x-ndjson") || media_type_is(req.content_type, "application/jsonl")) {
    format = transform::input_format::ndjson;
  } else if (media_type_is(req.content_type, "application/json")) {
    format = transform::input_format::auto_detect;  // a JSON array, or one object
  } else {
    return respond(error_response(415, "content type must be application/json or application/x-ndjson, got \"" +
                                           excerpt(req.content_type) + "\""));
  }
  auto& norm = thread_normalizer();
  transform::event_batch& batch = thread_batch();
  const auto now = transform::now_us();
  transform::record_splitter splitter(format, options_.normalize.max_record_bytes);
  std::size_t records = 0;
  bool too_many = false;
  auto on_record = [&](const transform::split_record& rec) {
    if (++records > options_.max_records_per_request) {
      too_many = true;
      return;
    }
    const transform::source_ref src{endpoint, rec.line};
    if (!rec.error.empty()) {
      norm.reject(rec.text, src, now, rec.error, batch);
    } else {
      norm.normalize(rec.text, src, now, batch);
    }
  };
  splitter.feed(req.body, on_record);
  splitter.finish(on_record);
  if (too_many) {
    return respond(error_response(413, "more than " + std::to_string(options_.max_records_per_request) +
                                           " records in one request"));
  }
  if (batch.record_count() == 0) return respond(error_response(400, "the body holds no event"));
  // Nothing usable at all: the body is not what this endpoint takes. Still kept, and said so.
  const bool nothing_valid = batch.communications.empty() && batch.touchpoints.empty();
  stamp_tenant(batch, tenant);  // `tenant` outlives submit(), which encodes the batch before returning
  submit(req, batch, respond, endpoint, nothing_valid ? 400 : 200);
}

std::string_view collector::idempotency_key(const http::request& req, const webhook_source& source,
                                            std::string& storage) {
  switch (source.key_from) {
    case idempotency_from::provider: return {};
    case idempotency_from::header:
    case idempotency_from::webhook_id: {
      if (!req.headers) return {};
      std::optional<std::string_view> v;
      if (source.key_from == idempotency_from::header) {
        v = req.headers->find(source.key_name);
      } else {
        v = webhooks::standard_webhooks_verifier::message_id(*req.headers);
      }
      if (!v) return {};
      storage.assign(webhooks::detail::trim_ows(*v));
      return storage;
    }
    case idempotency_from::body: {
      // A string member as its text, a number as written; anything else (or malformed JSON) is no key.
      thread_local simdjson::ondemand::parser parser;
      simdjson::padded_string padded(req.body);
      simdjson::ondemand::document doc;
      if (parser.iterate(padded).get(doc)) return {};
      simdjson::ondemand::value value;
      if (doc.at_pointer(source.key_name).get(value)) return {};
      simdjson::ondemand::json_type type;
      if (value.type().get(type)) return {};
      if (type == simdjson::ondemand::json_type::string) {
        std::string_view text;
        if (value.get_string().get(text)) return {};
        storage.assign(text);
      } else if (type == simdjson::ondemand::json_type::number) {
        storage.assign(transform::detail::trim_token(value.raw_json_token()));
      } else {
        return {};
      }
      return storage;
    }
  }
  return {};
}

void collector::handle_webhook(const http::request& req, http::respond_fn& respond, const webhook_source& source) {
  std::function<void()> forget_accepted;
  if (source.verify && !source.head_only) {
    auto v = source.verify(req);
    if (!v.ok()) {
      metrics_.signature_failure(source.name, v.reason).Increment();
      if (v.error == webhooks::verify_error::replayed_token) {
        // Mailgun: this signature was accepted once and its event handed on (a request answered 503 has its
        // token forgotten, below): a retry of what is kept, or the signature reused on another body. Nothing
        // is stored; 200 so that the sender stops.
        return respond(json_response(200, "{\"accepted\":0,\"rejected\":0,\"replayed\":true}"));
      }
      // The body is not stored: an unauthenticated body never reaches the log.
      return respond(error_response(401, "signature verification failed: " + std::string(v.reason)));
    }
    forget_accepted = webhooks::take_forget_accepted();
  }
  thread_local std::string key_storage;
  key_storage.clear();
  std::string_view key = idempotency_key(req, source, key_storage);
  if (!key.empty()) {
    // The sender's key is unique only within its source (two tenants' CRMs may both count from 1): scoped by
    // the source's name, so that two sources' keys never derive the same id.
    key_storage.insert(0, source.name + ":");
    key = key_storage;
  }
  if (key.empty() && (source.key_from == idempotency_from::header || source.key_from == idempotency_from::body)) {
    // Never lose an event for a missing key: its events keep the provider's own ids.
    key_missing_.Add({{"source", source.name}}).Increment();
    spdlog::warn("A webhook request lacks the idempotency key its source declares; its events keep the provider's "
                 "own ids. source={} idempotency_key={}:{}", source.name,
                 source.key_from == idempotency_from::header ? "header" : "body", source.key_name);
  }
  auto& norm = thread_normalizer();
  transform::event_batch& batch = thread_batch();
  std::string error;
  const transform::providers::webhook_input in{req.body, req.content_type, req.query, source.input_source,
                                               transform::now_us(), key};
  const auto& provider = transform::providers::registry[source.provider];
  if (!provider.normalize(norm, in, batch, error)) {
    // A body its adapter cannot read as a whole (a payload shape it does not know, malformed JSON). Signed (its
    // signature verified above): kept whole as a dead letter (replay takes it once the adapter reads it),
    // answered 200 so that the provider does not retry what would fail the same way, as consume does with such
    // a message. Unsigned (a source that allows it) or empty: 400 and nothing kept, as before, so that an
    // anonymous client cannot fill the dead letters with whatever it posts.
    if (!source.verify || req.body.empty()) return respond(error_response(400, excerpt(error, 256)));
    batch.clear();
    norm.reject_whole(req.body, {source.input_source, 0}, in.received_at, std::string(provider.name) + ": " + error,
                      batch);
  }
  if (batch.record_count() == 0) {
    return respond(json_response(200, "{\"accepted\":0,\"rejected\":0}"));  // e.g. a test ping
  }
  stamp_tenant(batch, source.tenant);  // the source outlives submit(), which encodes the batch before returning
  submit(req, batch, respond, source.endpoint, 200, std::move(forget_accepted));
}

void collector::handle_whatsapp_handshake(const http::request& req, http::respond_fn& respond,
                                          const webhook_source& source) {
  auto r = webhooks::verify_meta_subscription(req.query, source.verify_token);
  if (!r.result.ok()) return respond(error_response(403, r.result.reason));
  respond(http::response{200, "text/plain", std::string(r.challenge), {}});
}

std::optional<http::response> collector::too_many_rejections(const transform::event_batch& batch) const {
  if (batch.rejections.size() <= options_.max_rejections_per_request) return std::nullopt;
  std::string body = "{\"error\":" +
                     json_quote(std::to_string(batch.rejections.size()) + " records of this request were rejected, more "
                                "than the limit of " + std::to_string(options_.max_rejections_per_request) +
                                " per request (http.max_rejections_per_request); nothing was stored") +
                     ",\"accepted\":0,\"rejected\":" + std::to_string(batch.rejections.size()) + ",\"rejections\":[";
  for (std::size_t i = 0; i < batch.rejections.size() && i < 10; ++i) {
    const auto& r = batch.rejections[i];
    body += (i ? "," : "");
    body += "{\"source\":" + json_quote(excerpt(r.source, 128)) + ",\"reason\":" + json_quote(excerpt(r.reason, 256)) + "}";
  }
  return json_response(400, body + "]}");
}

void collector::submit(const http::request&, transform::event_batch& batch, http::respond_fn& respond,
                       std::string_view endpoint, int status_on_success, std::function<void()> on_unavailable) {
  // One body must not write an unbounded number of dead letters: beyond the cap nothing is kept at all.
  if (auto refused = too_many_rejections(batch)) return respond(std::move(*refused));
  // The response body is built now, while the batch is at hand.
  const std::size_t accepted = batch.communications.size() + batch.touchpoints.size();
  std::string body = "{\"accepted\":" + std::to_string(accepted) + ",\"rejected\":" +
                     std::to_string(batch.rejections.size());
  if (!batch.rejections.empty()) {
    body += ",\"rejections\":[";
    std::size_t shown = 0;
    for (const auto& r : batch.rejections) {
      if (shown == 100) break;
      body += (shown++ ? "," : "");
      body += "{\"source\":" + json_quote(excerpt(r.source, 128)) + ",\"reason\":" + json_quote(excerpt(r.reason, 256)) + "}";
    }
    body += "]";
  }
  body += "}";
  for (const auto& r : batch.rejections) metrics_.events_rejected(reason_field(r.reason)).Increment();
  auto& accepted_counter = metrics_.events_accepted(endpoint);

  metrics_.log_append_queue.Set(static_cast<double>(sink_.queued()));
  // The sink encodes what it keeps before submit() returns: the batch is this I/O thread's, reused.
  sink_.submit(batch, [this, respond = std::move(respond), body = std::move(body), status_on_success,
                                    accepted, &accepted_counter,
                                    on_unavailable = std::move(on_unavailable)](sink_status s) mutable {
    if (s != sink_status::durable && on_unavailable) on_unavailable();
    switch (s) {
      case sink_status::durable:
        accepted_counter.Increment(static_cast<double>(accepted));
        return respond(json_response(static_cast<unsigned>(status_on_success), std::move(body)));
      case sink_status::full: {
        metrics_.log_appends_refused.Increment();
        auto r = error_response(503, "the local log is full; retry later");
        r.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
        return respond(std::move(r));
      }
      case sink_status::failed: {
        auto r = error_response(503, "the local log cannot store the request; retry later");
        r.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
        return respond(std::move(r));
      }
    }
  });
}

}  // namespace crm::ingest
