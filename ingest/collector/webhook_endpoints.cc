#include "ingest/collector/webhook_endpoints.h"

#include <array>
#include <chrono>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "transform/providers/registry.h"
#include "transform/text/ascii.h"

namespace crm::ingest {

namespace tp = crm::transform::providers;
namespace wh = crm::ingest::webhooks;

namespace {

bool allows_unsigned(const config::settings& cfg, std::string_view provider) {
  return cfg.boolean("webhooks." + std::string(provider), "allow_unsigned");
}

// Why a built-in source without a secret refuses, one per scheme (static: verify_result keeps a view).
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

signature_check over_request(wh::request_check check) {
  return [check = std::move(check)](const http::request& r) {
    return check(wh::signed_request{r.body, *r.headers, r.target});
  };
}

std::string public_base_of(const config::settings& cfg) {
  std::string public_base = cfg.str("http", "public_base_url");
  while (!public_base.empty() && public_base.back() == '/') public_base.pop_back();
  return public_base;
}

// The parts every source has, from its name and provider.
webhook_source named(std::string name, std::size_t provider) {
  webhook_source s;
  s.endpoint = "/v1/webhooks/" + name;
  s.name = std::move(name);
  s.provider = provider;
  s.input_source = "POST /v1/webhooks/" + std::string(tp::registry[provider].name);
  if (tp::registry[provider].name == "standard") s.key_from = idempotency_from::webhook_id;
  return s;
}

// `previous`'s verifier of `s` when it was built from the same definition.
bool reuse(webhook_source& s, const webhook_source_set* previous) {
  if (previous == nullptr) return false;
  auto it = previous->find(s.name);
  if (it == previous->end() || it->second->fingerprint != s.fingerprint) return false;
  s.verify = it->second->verify;
  s.head_only = it->second->head_only;
  return true;
}

// The values of the signing settings of [webhooks.<provider>] (in the scheme's order), each with its key.
std::vector<std::pair<std::string_view, std::string>> signing_values(const config::settings& cfg,
                                                                     const wh::scheme& scheme) {
  const std::string section = "webhooks." + std::string(scheme.provider);
  std::vector<std::pair<std::string_view, std::string>> out;
  for (const wh::scheme_setting& setting : scheme.settings) {
    if (!setting.key.empty() && setting.signing) out.emplace_back(setting.key, cfg.str(section, setting.key));
  }
  return out;
}

// The source [webhooks.<provider>] defines (fingerprint: its secrets, the public URL when the scheme signs it,
// and the opt-in to unsigned requests, joined with a separator no secret contains).
webhook_source builtin(const config::settings& cfg, std::size_t i, const std::string& public_base,
                       const webhook_source_set* previous) {
  const wh::scheme& scheme = wh::schemes()[i];
  const std::string section = "webhooks." + std::string(scheme.provider);
  webhook_source s = named(std::string(scheme.provider), i);
  s.tenant = cfg.str(section, "tenant_id");
  if (scheme.provider == "whatsapp") s.verify_token = cfg.str(section, "verify_token");
  std::vector<std::string> values;
  bool configured = false;
  s.fingerprint = "builtin\x1f";
  for (auto& [key, value] : signing_values(cfg, scheme)) {
    configured = configured || !value.empty();
    s.fingerprint.append(value).push_back('\x1f');
    values.push_back(std::move(value));
  }
  if (scheme.signs_public_url) s.fingerprint.append(public_base).push_back('\x1f');
  const bool open = allows_unsigned(cfg, scheme.provider);
  s.fingerprint += open ? "unsigned" : "signed";
  if (reuse(s, previous)) return s;
  if (configured) {
    s.verify = over_request(scheme.build(values, public_base));
    s.head_only = scheme.provider == "postmark";  // basic auth: refused before the body is read
  } else if (!open) {
    s.verify = [i](const http::request&) -> wh::verify_result {
      return {wh::verify_error::missing_input, no_secret_reason(i)};
    };
    s.head_only = true;
  }
  return s;
}

// The source a [[sources]] table defines.
webhook_source declared(const config::webhook_source_definition& d, const std::string& public_base,
                        const webhook_source_set* previous) {
  const std::size_t i = tp::provider_index(d.provider);
  if (i == tp::registry.size()) throw std::invalid_argument("source " + d.name + ": unknown provider " + d.provider);
  const wh::scheme& scheme = wh::schemes()[i];
  webhook_source s = named(d.name, i);
  s.tenant = d.tenant_id;
  s.verify_token = d.verify_token;
  if (d.idempotency_key.rfind("header:", 0) == 0) {
    s.key_from = idempotency_from::header;
    s.key_name = d.idempotency_key.substr(7);
  } else if (d.idempotency_key.rfind("body:", 0) == 0) {
    s.key_from = idempotency_from::body;
    s.key_name = d.idempotency_key.substr(5);
  }
  s.fingerprint = "source\x1f" + d.provider + "\x1f";
  for (const std::string& secret : d.secrets) s.fingerprint.append(secret).push_back('\x1f');
  if (scheme.signs_public_url) s.fingerprint.append(public_base).push_back('\x1f');
  s.fingerprint += d.tolerance_seconds ? std::to_string(*d.tolerance_seconds) : "-";
  s.fingerprint += d.secrets.empty() && d.allow_unsigned ? "\x1funsigned" : "\x1fsigned";
  if (reuse(s, previous)) return s;
  if (!d.secrets.empty()) {
    std::optional<std::chrono::seconds> tolerance;
    if (d.tolerance_seconds) tolerance = std::chrono::seconds(*d.tolerance_seconds);
    try {
      s.verify = over_request(scheme.build_source({d.secrets, public_base, tolerance}));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("source " + d.name + " (" + d.origin + "): " + e.what());
    }
    s.head_only = scheme.provider == "postmark";
  } else if (!d.allow_unsigned) {
    throw std::invalid_argument("source " + d.name + " (" + d.origin + ") has no secrets and allow_unsigned is false");
  }
  return s;
}

}  // namespace

std::shared_ptr<const webhook_source_set> build_sources(const config::settings& cfg,
                                                        const webhook_source_set* previous) {
  const std::string public_base = public_base_of(cfg);
  auto out = std::make_shared<webhook_source_set>();
  for (std::size_t i = 0; i < tp::registry.size(); ++i) {
    auto s = std::make_shared<const webhook_source>(builtin(cfg, i, public_base, previous));
    (*out)[s->name] = std::move(s);
  }
  // A [[sources]] named after a provider replaces its built-in source; not an unsigned one replacing a built-in
  // source whose secret is set (the secret would be ignored without a word: "a secret, once set, always wins").
  for (const auto& d : cfg.sources()) {
    const std::size_t i = tp::provider_index(d.name);
    if (i < tp::registry.size() && d.secrets.empty() && d.allow_unsigned) {
      for (const auto& [key, value] : signing_values(cfg, wh::schemes()[i])) {
        if (!value.empty()) {
          throw std::invalid_argument("source " + d.name + " (" + d.origin + ") would replace [webhooks." + d.name +
                                      "], whose " + std::string(key) + " is set, with an unsigned endpoint: "
                                      "give the source its secrets, or another name");
        }
      }
    }
    (*out)[d.name] = std::make_shared<const webhook_source>(declared(d, public_base, previous));
  }
  return out;
}

std::string changed_sources(const webhook_source_set* before, const webhook_source_set& after) {
  std::set<std::string> names;  // sorted
  auto add = [&](const std::string& name) { names.insert(name); };
  for (const auto& [name, s] : after) {
    const webhook_source* old = nullptr;
    if (before != nullptr) {
      if (auto it = before->find(name); it != before->end()) old = it->second.get();
    }
    if (old == nullptr || old->fingerprint != s->fingerprint || old->tenant != s->tenant ||
        old->key_from != s->key_from || old->key_name != s->key_name || old->verify_token != s->verify_token) {
      add(name);
    }
  }
  if (before != nullptr) {
    for (const auto& [name, s] : *before) {
      if (after.find(name) == after.end()) add(name);
    }
  }
  std::string changed;
  for (const auto& name : names) changed.append(changed.empty() ? "" : ",").append(name);
  return changed;
}

std::vector<std::string> unsigned_webhooks(const config::settings& cfg) {
  std::vector<std::string> out;
  for (const wh::scheme& scheme : wh::schemes()) {
    const std::string section = "webhooks." + std::string(scheme.provider);
    bool secret = false;
    for (const wh::scheme_setting& s : scheme.settings) {
      if (!s.key.empty() && s.signing && !cfg.str(section, s.key).empty()) secret = true;
    }
    bool replaced = false;
    for (const auto& d : cfg.sources()) replaced = replaced || d.name == scheme.provider;
    if (!secret && !replaced && allows_unsigned(cfg, scheme.provider)) out.emplace_back(scheme.provider);
  }
  for (const auto& d : cfg.sources()) {
    if (d.secrets.empty() && d.allow_unsigned) out.push_back(d.name);
  }
  return out;
}

std::vector<std::string> source_risks(const config::settings& cfg) {
  std::vector<std::string> out;
  const auto& defs = cfg.sources();
  for (const auto& d : defs) {
    if (d.secrets.empty() || !d.idempotency_key.starts_with("header:")) continue;
    const std::string_view header = std::string_view(d.idempotency_key).substr(7);
    // Standard Webhooks and Svix sign their message id header; no scheme signs any other header.
    const bool signed_header = (d.provider == "standard" || d.provider == "resend") &&
                               (transform::detail::ascii_iequals(header, "webhook-id") ||
                                transform::detail::ascii_iequals(header, "svix-id"));
    if (!signed_header) {
      out.push_back("source " + d.name + ": idempotency_key " + d.idempotency_key + " is not covered by the " +
                    d.provider + " signature; a captured request replayed with another value is stored again "
                    "(prefer a body: key)");
    }
  }
  for (std::size_t i = 0; i < defs.size(); ++i) {
    for (std::size_t j = i + 1; j < defs.size(); ++j) {
      if (defs[i].tenant_id == defs[j].tenant_id || defs[i].provider != defs[j].provider) continue;
      bool shared = false;
      for (const auto& a : defs[i].secrets) {
        for (const auto& b : defs[j].secrets) shared = shared || a == b;
      }
      if (shared) {
        out.push_back("sources " + defs[i].name + " and " + defs[j].name +
                      " share a secret but not their tenant: a request signed for one is accepted by the other's "
                      "route and stamped with its tenant (give each tenant its own secret)");
      }
    }
  }
  return out;
}

}  // namespace crm::ingest
