#include "ingest/collector/webhook_endpoints.h"

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "transform/providers/registry.h"

namespace crm::ingest {

namespace tp = crm::transform::providers;
namespace wh = crm::ingest::webhooks;

namespace {

provider_normalizer make_normalizer(tp::provider_fn fn, std::string source) {
  return [fn, source = std::move(source)](std::string_view body, const http::request& req, transform::normalizer& norm,
                                          transform::timestamp_us received_at, transform::event_batch& out,
                                          std::string& error) {
    tp::webhook_input in{body, req.content_type, req.query, source, received_at, {}};
    return fn(norm, in, out, error);
  };
}

bool allows_unsigned(const config::settings& cfg, std::string_view provider) {
  return cfg.boolean("webhooks." + std::string(provider), "allow_unsigned");
}

// Why a provider endpoint without a secret refuses, one per scheme (static: verify_result keeps a view).
const std::string& no_secret_reason(std::size_t i) {
  static const auto reasons = [] {
    std::array<std::string, wh::scheme_count> out;
    for (std::size_t k = 0; k < out.size(); ++k) {
      const wh::scheme& scheme = wh::schemes()[k];
      const std::string section = "webhooks." + std::string(scheme.provider);
      std::string keys;
      for (const wh::scheme_setting& s : scheme.settings) {
        if (s.key.empty() || !s.signing) continue;
        keys += (keys.empty() ? "" : " and ") + section + "." + std::string(s.key);
      }
      out[k] = "no secret configured (set " + keys + ", or " + section + ".allow_unsigned = true)";
    }
    return out;
  }();
  return reasons[i];
}

// Builds the check of every provider: from its configured secret, or a refusal without one (unless unsigned
// requests are allowed); reuses `previous`'s entry when a provider's settings are unchanged (fingerprint: its
// secrets, the public URL when the scheme signs it, and the opt-in to unsigned requests, joined with a
// separator no secret contains).
webhook_secrets::set build(const config::settings& cfg, const webhook_secrets::set* previous) {
  std::string public_base = cfg.str("http", "public_base_url");
  while (!public_base.empty() && public_base.back() == '/') public_base.pop_back();
  webhook_secrets::set out;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const wh::scheme& scheme = wh::schemes()[i];
    const std::string section = "webhooks." + std::string(scheme.provider);
    std::vector<std::string> values;
    bool configured = false;
    for (const wh::scheme_setting& s : scheme.settings) {
      if (s.key.empty() || !s.signing) continue;
      values.push_back(cfg.str(section, s.key));
      configured = configured || !values.back().empty();
      out[i].fingerprint.append(values.back()).push_back('\x1f');
    }
    if (scheme.signs_public_url) out[i].fingerprint.append(public_base).push_back('\x1f');
    const bool open = allows_unsigned(cfg, scheme.provider);
    out[i].fingerprint += open ? "unsigned" : "signed";
    if (previous != nullptr && (*previous)[i].fingerprint == out[i].fingerprint) {
      out[i].check = (*previous)[i].check;
      out[i].head_only = (*previous)[i].head_only;
    } else if (configured) {
      out[i].check = [check = scheme.build(values, public_base)](const http::request& r) {
        return check(wh::signed_request{r.body, *r.headers, r.target});
      };
      out[i].head_only = scheme.provider == "postmark";  // basic auth: refused before the body is read
    } else if (!open) {
      out[i].check = [i](const http::request&) -> wh::verify_result {
        return {wh::verify_error::missing_input, no_secret_reason(i)};
      };
      out[i].head_only = true;
    }
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
  for (std::size_t i = 0; i < fresh->size(); ++i) {
    if ((*fresh)[i].fingerprint != (*old)[i].fingerprint) {
      if (!changed.empty()) changed.push_back(',');
      changed.append(tp::registry[i].name);
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
  const std::size_t i = tp::provider_index(name);
  if (i == tp::registry.size()) throw std::logic_error("unknown provider " + std::string(name));
  return i;
}

std::vector<std::string> unsigned_webhooks(const config::settings& cfg) {
  std::vector<std::string> out;
  for (const wh::scheme& scheme : wh::schemes()) {
    const std::string section = "webhooks." + std::string(scheme.provider);
    bool secret = false;
    for (const wh::scheme_setting& s : scheme.settings) {
      if (!s.key.empty() && s.signing && !cfg.str(section, s.key).empty()) secret = true;
    }
    if (!secret && allows_unsigned(cfg, scheme.provider)) out.emplace_back(scheme.provider);
  }
  return out;
}

void register_providers(collector& c, std::shared_ptr<webhook_secrets> secrets) {
  for (std::size_t i = 0; i < tp::registry.size(); ++i) {
    std::string name(tp::registry[i].name);
    provider_endpoint e{make_normalizer(tp::registry[i].normalize, "POST /v1/webhooks/" + name), {}, {}};
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
