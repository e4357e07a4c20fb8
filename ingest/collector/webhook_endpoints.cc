#include "ingest/collector/webhook_endpoints.h"

#include <chrono>

#include "transform/providers.h"

namespace crm::ingest {

namespace tp = crm::transform::providers;
namespace wh = crm::ingest::webhooks;

namespace {

wh::unix_seconds now_s() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

provider_normalizer make_normalizer(tp::provider_fn fn, std::string source) {
  return [fn, source = std::move(source)](std::string_view body, const http::request& req, transform::normalizer& norm,
                                          transform::timestamp_us received_at, transform::event_batch& out,
                                          std::string& error) {
    tp::webhook_input in{body, req.content_type, req.query, source, received_at};
    return fn(norm, in, out, error);
  };
}

// The secrets of one provider, joined with a separator no secret contains.
std::string fingerprint(std::initializer_list<std::string> parts) {
  std::string out;
  for (const auto& p : parts) out.append(p).push_back('\x1f');
  return out;
}

// Why a provider endpoint without a secret refuses (static: verify_result keeps a view), in the order of
// webhook_secrets::providers.
constexpr std::array<const char*, webhook_secrets::providers.size()> no_secret_reasons = {
    "no secret configured (set webhooks.sendgrid.public_key, or webhooks.sendgrid.allow_unsigned = true)",
    "no secret configured (set webhooks.twilio.auth_token, or webhooks.twilio.allow_unsigned = true)",
    "no secret configured (set webhooks.whatsapp.app_secret, or webhooks.whatsapp.allow_unsigned = true)",
    "no secret configured (set webhooks.mailgun.signing_key, or webhooks.mailgun.allow_unsigned = true)",
    "no credentials configured (set webhooks.postmark.username and password, or webhooks.postmark.allow_unsigned = "
    "true)",
    "no secret configured (set webhooks.resend.secret, or webhooks.resend.allow_unsigned = true)",
    "no secret configured (set webhooks.segment.shared_secret, or webhooks.segment.allow_unsigned = true)",
};

bool allows_unsigned(const config::settings& cfg, std::string_view provider) {
  return cfg.boolean("webhooks." + std::string(provider), "allow_unsigned");
}

// Builds the verifier of every provider: from its configured secret, or a refusal without one (unless
// unsigned requests are allowed); reuses `previous`'s entry when a provider's settings are unchanged.
webhook_secrets::set build(const config::settings& cfg, const webhook_secrets::set* previous) {
  auto secret = [&](const char* section, const char* key) { return cfg.str(section, key); };
  const std::string public_base = cfg.str("http", "public_base_url");
  webhook_secrets::set out;
  // The opt-in to unsigned requests is part of each fingerprint: flipping it is a change like a new secret.
  auto reuse = [&](std::size_t i, std::string fp) {
    fp += allows_unsigned(cfg, webhook_secrets::providers[i]) ? "unsigned" : "signed";
    out[i].fingerprint = fp;
    if (previous && (*previous)[i].fingerprint == fp) {
      out[i].check = (*previous)[i].check;
      out[i].head_only = (*previous)[i].head_only;
      return true;
    }
    return false;
  };

  if (auto key = secret("webhooks.sendgrid", "public_key"); !reuse(0, fingerprint({key})) && !key.empty()) {
    auto v = std::make_shared<wh::sendgrid_verifier>(key);
    out[0].check = [v](const http::request& r) { return v->verify(r.body, *r.headers, now_s()); };
  }
  {
    auto token = secret("webhooks.twilio", "auth_token");
    std::string base = public_base;
    while (!base.empty() && base.back() == '/') base.pop_back();
    if (!reuse(1, fingerprint({token, base})) && !token.empty()) {
      if (base.empty()) {
        throw std::invalid_argument(
            "webhooks.twilio.auth_token is set but http.public_base_url is not: Twilio signs the public URL it "
            "calls, so set http.public_base_url (e.g. https://ingest.example.com)");
      }
      auto v = std::make_shared<wh::twilio_verifier>(wh::secret_list{token});
      out[1].check = [v, base](const http::request& r) {
        return v->verify(base + std::string(r.target), r.body, *r.headers);
      };
    }
  }
  if (auto s = secret("webhooks.whatsapp", "app_secret"); !reuse(2, fingerprint({s})) && !s.empty()) {
    auto v = std::make_shared<wh::meta_verifier>(wh::secret_list{s});
    out[2].check = [v](const http::request& r) { return v->verify(r.body, *r.headers); };
  }
  if (auto key = secret("webhooks.mailgun", "signing_key"); !reuse(3, fingerprint({key})) && !key.empty()) {
    auto v = std::make_shared<wh::mailgun_verifier>(wh::secret_list{key});
    out[3].check = [v](const http::request& r) -> wh::verify_result {
      tp::mailgun_signature_fields f;
      if (!tp::extract_mailgun_signature(r.body, f)) {
        return {wh::verify_error::malformed_input, "body is not a JSON object with a signature"};
      }
      return v->verify(wh::mailgun_signature{f.timestamp, f.token, f.signature, {}}, now_s());
    };
  }
  {
    auto user = secret("webhooks.postmark", "username");
    auto password = secret("webhooks.postmark", "password");
    if (!reuse(4, fingerprint({user, password})) && (!user.empty() || !password.empty())) {
      auto v = std::make_shared<wh::postmark_verifier>(user, password);
      out[4].check = [v](const http::request& r) { return v->verify(*r.headers); };
      out[4].head_only = true;  // basic auth: refused before the body is read
    }
  }
  if (auto s = secret("webhooks.resend", "secret"); !reuse(5, fingerprint({s})) && !s.empty()) {
    auto v = std::make_shared<wh::svix_verifier>(std::vector<std::string>{s});
    out[5].check = [v](const http::request& r) { return v->verify(r.body, *r.headers, now_s()); };
  }
  if (auto s = secret("webhooks.segment", "shared_secret"); !reuse(6, fingerprint({s})) && !s.empty()) {
    auto v = std::make_shared<wh::segment_verifier>(wh::secret_list{s});
    out[6].check = [v](const http::request& r) { return v->verify(r.body, *r.headers); };
  }
  // No secret: refused unless the operator opted in to unsigned requests for that provider.
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i].check || allows_unsigned(cfg, webhook_secrets::providers[i])) continue;
    out[i].check = [i](const http::request&) -> wh::verify_result {
      return {wh::verify_error::missing_input, no_secret_reasons[i]};
    };
    out[i].head_only = true;
  }
  return out;
}

}  // namespace

webhook_secrets::webhook_secrets(const config::settings& cfg)
    : current_(std::make_shared<const set>(build(cfg, nullptr))) {}

std::string webhook_secrets::reload(const config::settings& cfg) {
  auto old = current_.load();
  auto fresh = std::make_shared<const set>(build(cfg, old.get()));
  std::string changed;
  for (std::size_t i = 0; i < providers.size(); ++i) {
    if ((*fresh)[i].fingerprint != (*old)[i].fingerprint) {
      if (!changed.empty()) changed.push_back(',');
      changed.append(providers[i]);
    }
  }
  current_.store(std::move(fresh));
  return changed;
}

webhooks::verify_result webhook_secrets::verify(std::size_t provider, const http::request& req) const {
  auto s = current_.load();
  const auto& check = (*s)[provider].check;
  if (!check) return {};
  return check(req);
}

webhooks::verify_result webhook_secrets::verify_head(std::size_t provider, const http::request& head) const {
  auto s = current_.load();
  const auto& e = (*s)[provider];
  if (!e.check || !e.head_only) return {};
  return e.check(head);
}

std::size_t webhook_secrets::index_of(std::string_view name) {
  for (std::size_t i = 0; i < providers.size(); ++i) {
    if (name == providers[i]) return i;
  }
  throw std::logic_error("unknown provider " + std::string(name));
}

std::vector<std::string> unsigned_webhooks(const config::settings& cfg) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < webhook_secrets::providers.size(); ++i) {
    const std::string section = std::string("webhooks.") + webhook_secrets::providers[i];
    bool secret = false;
    for (const auto& s : config::all_settings()) {
      if (s.section == section && s.type == config::setting_type::secret && s.key != "verify_token" &&
          !cfg.str(s.section, s.key).empty()) {
        secret = true;
      }
    }
    if (!secret && allows_unsigned(cfg, webhook_secrets::providers[i])) out.emplace_back(webhook_secrets::providers[i]);
  }
  return out;
}

void register_providers(collector& c, std::shared_ptr<webhook_secrets> secrets) {
  const std::array<tp::provider_fn, webhook_secrets::providers.size()> fns = {
      &tp::normalize_sendgrid, &tp::normalize_twilio, &tp::normalize_whatsapp, &tp::normalize_mailgun,
      &tp::normalize_postmark, &tp::normalize_resend, &tp::normalize_segment};
  for (std::size_t i = 0; i < fns.size(); ++i) {
    std::string name = webhook_secrets::providers[i];
    provider_endpoint e{make_normalizer(fns[i], "POST /v1/webhooks/" + name), {}, {}};
    // Always installed: a secret added by a reload turns verification on for the next request.
    e.verify = [secrets, i](const http::request& r) { return secrets->verify(i, r); };
    e.verify_head = [secrets, i](const http::request& r) { return secrets->verify_head(i, r); };
    c.add_provider(name, std::move(e));
  }
}

void register_providers(collector& c, const config::settings& cfg) {
  register_providers(c, std::make_shared<webhook_secrets>(cfg));
}

}  // namespace crm::ingest
