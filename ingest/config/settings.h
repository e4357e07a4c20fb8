// crm-ingest's configuration: every setting declared once (section, key, type, default, bounds,
// description), read from a TOML file, each key overridable by an environment variable
// CRM_INGEST_<SECTION>_<KEY> (dots in the section become underscores, e.g.
// CRM_INGEST_WEBHOOKS_TWILIO_AUTH_TOKEN). Loading validates everything at start and reports every
// mistake at once, with the file position and a suggestion; exceptions are fine here (start-up).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace crm::ingest::config {

enum class setting_type { string, integer, boolean, secret };

struct setting {
  std::string_view section;  // "http", "webhooks.twilio"
  std::string_view key;      // "listen"
  setting_type type;
  std::string_view default_value;  // as text; "" = unset
  std::int64_t min = 0;            // integers only
  std::int64_t max = 0;
  std::string_view description;

  std::string name() const { return std::string(section) + "." + std::string(key); }
  std::string env_name() const;
};

// The registry, in documentation order.
const std::vector<setting>& all_settings();

class config_error : public std::runtime_error {
 public:
  explicit config_error(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const noexcept { return problems_; }

 private:
  std::vector<std::string> problems_;
};

// Looks an environment variable up; tests pass their own.
using env_lookup = std::function<const char*(const char*)>;
const char* process_env(const char* name);

// A webhook source: one [[sources]] table of the file, POST /v1/webhooks/<name>. Checked whole at load (every
// key, the provider, the secrets built into the provider's verifier); see README.md, "Webhook sources".
struct webhook_source_definition {
  std::string name;      // [a-z0-9][a-z0-9_-]{0,62}: the route /v1/webhooks/<name>
  std::string provider;  // a provider of transform/providers/registry.h
  std::string tenant_id;  // stamped on every row and dead letter of the source; empty = none
  std::vector<std::string> secrets;  // 1..4 valid at once (rotation); Postmark: "user:password"
  bool allow_unsigned = false;       // only without secrets
  std::optional<std::int64_t> tolerance_seconds;  // schemes with a signed timestamp; empty = the scheme's
  std::string idempotency_key;  // "header:<Name>" or "body:<JSON pointer>"; empty = the provider's own id
  std::string verify_token;     // whatsapp: the GET hub.challenge handshake's token
  std::string origin;           // "FILE:line" of its [[sources]]
};

class settings {
 public:
  // Reads and validates `path` ("" = defaults only) and the environment. Throws config_error.
  static settings load(const std::string& path, const env_lookup& env = process_env);
  // Same, from TOML text (for tests and `config check -`).
  static settings parse(std::string_view toml_text, const std::string& origin, const env_lookup& env = process_env);

  const std::string& str(std::string_view section, std::string_view key) const;
  std::int64_t integer(std::string_view section, std::string_view key) const;
  bool boolean(std::string_view section, std::string_view key) const;
  // Where a value came from: "default", "FILE:line", "environment CRM_INGEST_…".
  const std::string& origin(std::string_view section, std::string_view key) const;

  // The [[sources]] of the file, in file order (names unique, each valid).
  const std::vector<webhook_source_definition>& sources() const noexcept { return sources_; }

  // A TOML rendering of the effective configuration with secrets masked.
  std::string describe() const;

 private:
  std::vector<webhook_source_definition> sources_;
  struct value {
    std::string text;
    std::string origin;
  };
  std::map<std::string, value, std::less<>> values_;  // "section.key" -> value
};

// A commented TOML file with every setting at its default: the reference configuration.
std::string reference_toml();

}  // namespace crm::ingest::config
