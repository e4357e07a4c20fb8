// The [[sources]] of the configuration file: read and checked whole (settings.cc calls these two).
#include "ingest/config/sources.h"

#include <array>
#include <chrono>
#include <map>
#include <optional>

#include "ingest/webhooks/schemes.h"
#include "transform/providers/registry.h"

namespace crm::ingest::config::detail {
namespace {

bool valid_source_name(std::string_view n) {
  if (n.empty() || n.size() > 63) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_'))) return false;
  }
  return true;
}

// An HTTP field name (RFC 9110 token).
bool valid_header_name(std::string_view n) {
  if (n.empty() || n.size() > 128) return false;
  for (char c : n) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// "header:<Name>" or "body:<JSON pointer>" (RFC 6901: "/a/b", "~0" and "~1" escapes); "" when valid.
std::string idempotency_key_problem(std::string_view v) {
  if (v.rfind("header:", 0) == 0) {
    if (!valid_header_name(v.substr(7))) return "\"" + std::string(v) + "\" does not name an HTTP header after header:";
    return {};
  }
  if (v.rfind("body:", 0) == 0) {
    const std::string_view ptr = v.substr(5);
    if (ptr.empty() || ptr.front() != '/') return "\"" + std::string(v) + "\": after body: comes a JSON pointer starting with / (e.g. body:/data/id)";
    for (std::size_t i = 0; i < ptr.size(); ++i) {
      if (ptr[i] == '~' && (i + 1 == ptr.size() || (ptr[i + 1] != '0' && ptr[i + 1] != '1'))) {
        return "\"" + std::string(v) + "\": in a JSON pointer ~ is written ~0 and / inside a name ~1";
      }
    }
    return {};
  }
  return "\"" + std::string(v) + "\" must be header:<Name> or body:<JSON pointer> (e.g. header:X-Event-Id, body:/data/id)";
}

constexpr std::array<std::string_view, 8> source_keys_known = {
    "name", "provider", "tenant_id", "secrets", "allow_unsigned", "tolerance_seconds", "idempotency_key", "verify_token"};

}  // namespace

// Reads the [[sources]] array into `out`; every problem into `problems`, each naming the source and the key.
void read_sources(const toml::node& node, const std::string& origin_name, std::vector<webhook_source_definition>& out,
                  std::vector<std::string>& problems) {
  const std::string at_array = origin_name + ":" + std::to_string(node.source().begin.line);
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    problems.push_back(at_array + ": sources must be an array of tables ([[sources]])");
    return;
  }
  std::map<std::string, std::string, std::less<>> seen;  // name -> where
  std::size_t ordinal = 0;
  for (const toml::node& element : *array) {
    ++ordinal;
    const std::string where = origin_name + ":" + std::to_string(element.source().begin.line);
    const toml::table* tbl = element.as_table();
    if (tbl == nullptr) {
      problems.push_back(where + ": sources must be an array of tables ([[sources]])");
      continue;
    }
    webhook_source_definition d;
    d.origin = where;
    if (auto n = (*tbl)["name"].value<std::string>(); n && (*tbl)["name"].is_string()) d.name = *n;
    // How this source is named in a problem: its name when it has a usable one, else its position.
    const std::string who = valid_source_name(d.name) ? "[[sources]] \"" + d.name + "\""
                                                       : "[[sources]] #" + std::to_string(ordinal);
    auto problem = [&](const toml::node* at, std::string_view key, const std::string& what) {
      const std::string line = at ? origin_name + ":" + std::to_string(at->source().begin.line) : where;
      problems.push_back(line + ": " + who + ": " + std::string(key) + " " + what);
    };
    bool ok = true;
    auto fail = [&](const toml::node* at, std::string_view key, const std::string& what) {
      problem(at, key, what);
      ok = false;
    };
    for (const auto& [k, v] : *tbl) {
      const std::string_view key = k.str();
      if (std::find(source_keys_known.begin(), source_keys_known.end(), key) == source_keys_known.end()) {
        std::string known;
        for (auto name : source_keys_known) known.append(known.empty() ? "" : ", ").append(name);
        fail(&v, key, "is not a key of a source (keys: " + known + ")");
        continue;
      }
      auto text = [&](std::string& into) {
        if (auto s = v.value<std::string>(); s && v.is_string()) into = *s;
        else fail(&v, key, "must be a string");
      };
      if (key == "name") {
        if (!v.is_string()) fail(&v, key, "must be a string");
        else if (!valid_source_name(d.name)) {
          fail(&v, key, "\"" + d.name + "\" must be 1-63 of [a-z0-9_-], starting with a letter or digit (it is the route /v1/webhooks/<name>)");
        }
      } else if (key == "provider") {
        text(d.provider);
      } else if (key == "tenant_id") {
        text(d.tenant_id);
      } else if (key == "verify_token") {
        text(d.verify_token);
      } else if (key == "idempotency_key") {
        text(d.idempotency_key);
        if (v.is_string()) {
          if (auto p = idempotency_key_problem(d.idempotency_key); !p.empty()) fail(&v, key, p);
        }
      } else if (key == "allow_unsigned") {
        if (auto b = v.value<bool>(); b && v.is_boolean()) d.allow_unsigned = *b;
        else fail(&v, key, "must be true or false");
      } else if (key == "tolerance_seconds") {
        auto i = v.value<std::int64_t>();
        if (!i || !v.is_integer()) fail(&v, key, "must be an integer");
        else if (*i < 1 || *i > 86400) fail(&v, key, "= " + std::to_string(*i) + " is outside [1, 86400]");
        else d.tolerance_seconds = *i;
      } else if (key == "secrets") {
        const toml::array* list = v.as_array();
        if (list == nullptr) {
          fail(&v, key, "must be an array of strings, e.g. [\"<key>\", \"<next key>\"]");
          continue;
        }
        if (list->size() > 4) fail(&v, key, "holds " + std::to_string(list->size()) + " values; at most 4 are valid at once");
        for (const toml::node& e : *list) {
          auto s = e.value<std::string>();
          if (!s || !e.is_string()) fail(&e, key, "must hold strings only");
          else if (s->empty()) fail(&e, key, "holds an empty secret");
          else d.secrets.push_back(*s);
        }
        if (list->size() == 0) fail(&v, key, "is empty (give 1-4 secrets, or leave it out with allow_unsigned = true)");
      }
    }
    if (!tbl->contains("name")) fail(nullptr, "name", "missing (required: the route /v1/webhooks/<name>)");
    const auto* provider = transform::providers::find_provider(d.provider);
    if (!tbl->contains("provider")) {
      fail(nullptr, "provider", "missing (required)");
    } else if (provider == nullptr && (*tbl)["provider"].is_string()) {
      std::string known;
      for (const auto& p : transform::providers::registry) known.append(known.empty() ? "" : ", ").append(p.name);
      fail((*tbl)["provider"].node(), "provider", "\"" + d.provider + "\" is not a provider (one of " + known + ")");
    }
    if (provider != nullptr) {
      const auto& scheme = webhooks::schemes()[transform::providers::provider_index(d.provider)];
      if (d.tolerance_seconds && !scheme.has_timestamp) {
        fail((*tbl)["tolerance_seconds"].node(), "tolerance_seconds",
             "is not used: " + d.provider + " signs no timestamp (standard, resend, mailgun and sendgrid do)");
      }
      if (!d.verify_token.empty() && d.provider != "whatsapp") {
        fail((*tbl)["verify_token"].node(), "verify_token", "is for whatsapp sources only (the GET hub.challenge handshake)");
      }
      // Keys that could never be found: refused rather than counted as missing on every request.
      if (!d.idempotency_key.empty() && d.provider == "whatsapp") {
        fail((*tbl)["idempotency_key"].node(), "idempotency_key",
             "is not used by whatsapp sources: each status already carries its own key (wamid and status)");
      } else if (d.idempotency_key.starts_with("body:") &&
                 transform::providers::find_provider(d.provider)->body == transform::providers::body_format::form) {
        fail((*tbl)["idempotency_key"].node(), "idempotency_key",
             "cannot be a body: path for " + d.provider + ", which posts a form, not JSON (use a header: key)");
      }
    }
    if (!tbl->contains("secrets") && !d.allow_unsigned) {
      fail(nullptr, "secrets", "missing: give 1-4 secrets, or allow_unsigned = true to accept requests nobody signed");
    }
    if (valid_source_name(d.name)) {
      if (auto it = seen.find(d.name); it != seen.end()) {
        fail((*tbl)["name"].node(), "name", "\"" + d.name + "\" is already the name of the source at " + it->second);
      } else {
        seen.emplace(d.name, where);
      }
    }
    if (ok) out.push_back(std::move(d));
  }
}

// Builds each source's verifier once, as serve will: a secret its provider cannot use is a problem now.
void check_source_secrets(const std::vector<webhook_source_definition>& sources, std::string public_base,
                          std::vector<std::string>& problems) {
  while (!public_base.empty() && public_base.back() == '/') public_base.pop_back();
  for (const auto& d : sources) {
    if (d.secrets.empty()) continue;
    const auto& scheme = webhooks::schemes()[transform::providers::provider_index(d.provider)];
    std::optional<std::chrono::seconds> tolerance;
    if (d.tolerance_seconds) tolerance = std::chrono::seconds(*d.tolerance_seconds);
    try {
      (void)scheme.build_source({d.secrets, public_base, tolerance});
    } catch (const std::exception& e) {
      problems.push_back(d.origin + ": [[sources]] \"" + d.name + "\": secrets unusable for " + d.provider + ": " + e.what());
    }
  }
}

}  // namespace crm::ingest::config::detail
