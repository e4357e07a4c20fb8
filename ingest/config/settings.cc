#include "ingest/config/settings.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <sstream>

#include <toml++/toml.h>

#include "ingest/config/sources.h"
#include "ingest/kafka/kafka_source.h"
#include "ingest/webhooks/schemes.h"
#include "transform/normalize/normalize.h"
#include "transform/providers/registry.h"

namespace crm::ingest::config {

namespace {

using T = setting_type;

// The formats of kafka.topics, the providers' included (kafka_formats()).
const std::string kafka_topics_description = [] {
  std::string d = "Topics `crm-ingest consume` reads, each with the format of its messages: \"topic=format, "
                  "topic=format\"; formats: canonical (one canonical JSON event per message), normalized, or a "
                  "provider's webhook body (";
  for (std::size_t i = 0; i < transform::providers::registry.size(); ++i) {
    d.append(i == 0 ? "" : ", ").append(transform::providers::registry[i].name);
  }
  return d + ").";
}();
constexpr std::int64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

// One declaration per type, so that each row states only what its type needs; add() sets the section.
constexpr setting text(std::string_view key, std::string_view default_value, std::string_view description) {
  return {{}, key, T::string, default_value, 0, 0, description};
}
constexpr setting secret(std::string_view key, std::string_view description) {
  return {{}, key, T::secret, "", 0, 0, description};
}
constexpr setting boolean(std::string_view key, bool default_value, std::string_view description) {
  return {{}, key, T::boolean, default_value ? "true" : "false", 0, 0, description};
}
constexpr setting integer(std::string_view key, std::string_view default_value, std::int64_t min, std::int64_t max,
                          std::string_view description) {
  return {{}, key, T::integer, default_value, min, max, description};
}

// Appends the settings of `section`, in documentation order.
void add(std::vector<setting>& out, std::string_view section, std::initializer_list<setting> settings) {
  for (setting s : settings) {
    s.section = section;
    out.push_back(s);
  }
}

// Before the webhooks: the listener, PostgreSQL, the local log, normalization.
void add_before_webhooks(std::vector<setting>& out) {
  add(out, "http", {
    text("listen", "127.0.0.1:8080", "Address and port of the HTTP listener (host:port)."),
    integer("io_threads", "2", 1, 256, "Threads running the HTTP connections (Asio io_context)."),
    text("public_base_url", "",
        "The URL the providers call us at (e.g. https://ingest.example.com), used to verify Twilio signatures behind "
        "a proxy."),
    integer("body_limit_bytes", "4194304", 1 * KiB, 256 * MiB, "Largest request body accepted; a larger one gets 413."),
    integer("header_timeout_ms", "5000", 100, 600000, "Time a client has to send the request headers."),
    integer("request_timeout_ms", "30000", 100, 600000,
        "Time a client has to send a whole request; slow clients are cut off."),
    integer("idle_timeout_ms", "60000", 100, 3600000, "A keep-alive connection idle this long is closed."),
    integer("max_connections", "10000", 1, 1000000,
        "Open connections beyond this are refused at accept. serve lowers it (with a warning) when RLIMIT_NOFILE "
        "cannot hold it plus the descriptors serve needs besides."),
    integer("body_budget_bytes", "268435456", 1 * KiB, 64 * GiB,
        "Request body bytes all connections together may hold at once (bytes received, decoded Content-Encoding; "
        "a declared length or chunk size takes nothing until its bytes arrive), whatever the number of "
        "connections; a request beyond it gets 503 with Retry-After. At least http.body_limit_bytes."),
    integer("max_rejections_per_request", "1000", 1, 10000000,
        "Most records of one request that may be rejected (dead-lettered); beyond it the request is refused whole "
        "(400 with the reasons of the first ones) and nothing of it is stored."),
    text("tls_cert_file", "",
        "PEM certificate chain; set (with tls_key_file) = the listener speaks only HTTPS (TLS 1.2+). Both files are "
        "re-read on SIGHUP."),
    text("tls_key_file", "", "PEM private key of http.tls_cert_file."),
  });
  add(out, "postgres", {
    secret("dsn", "PostgreSQL connection string (libpq URI or key=value); empty = the embedded private PostgreSQL."),
    integer("writers", "2", 1, 64,
        "Writer connections of the write path: serve's drainer of the local log, consume and write."),
    integer("batches_in_flight", "0", 0, 64, "Batches handed to the writers and not yet written (serve's drainer, "
        "consume, write): each writer works through its share at its own pace instead of waiting for the others "
        "after every batch. 0 = automatic: 4 for consume and write, 1 for serve (its HTTP edge shares the CPUs with "
        "PostgreSQL; more in flight raises its latency). Memory: up to batches_in_flight + 1 batches of batch_bytes."),
    boolean("adaptive_writers", true,
        "serve's drainer splits each batch among only as many of the writers as write it faster: it starts with one, "
        "tries one more (or one fewer) every 20 full batches and keeps a writer only while it raises the rows per "
        "second by 30 %. Where PostgreSQL shares the machine with the HTTP edge, a writer that adds no speed takes "
        "CPU and disk from the edge's latency. false = always all of them (consume and write always use all)."),
    integer("batch_rows", "20000", 1, 10000000, "Most records per batch (one transaction each)."),
    integer("batch_bytes", "16777216", 1 * KiB, 1 * GiB, "Most normalized bytes per batch."),
    integer("linger_ms", "50", 0, 60000,
        "Longest time a record waits for its batch to fill before the batch is written anyway."),
    integer("retry_for_s", "0", 0, 604800,
        "consume and write: how long a batch keeps retrying while the database is unreachable; 0 = for ever (logged "
        "and counted). After it the command stops with exit code 3, its offsets uncommitted. serve always retries for "
        "ever (the local log holds the data)."),
    text("confirm", "standbys",
        "When a batch's source position (serve's log checkpoint, consume/write's Kafka offsets) is released: "
        "`standbys` = once the batch is safe on the cluster (its COMMIT with a synchronous standby or on a single "
        "PostgreSQL; under asynchronous replication once the standbys have flushed it), `commit` = as soon as the "
        "primary's COMMIT returns (a crash of the primary can then lose what no standby had yet)."),
    integer("confirm_min_standbys", "-1", -1, 64,
        "Under asynchronous replication, how many standbys must have flushed a batch (besides every standby that "
        "is streaming); -1 = 1 when the primary has a physical replication slot, a standby or "
        "synchronous_standby_names, or showed one since the start, else 0."),
    integer("max_unconfirmed_mb", "256", 1, 65536,
        "Batches committed and waiting for the standbys may hold this much memory; beyond it the source stops "
        "reading (serve keeps accepting into its log) until they are confirmed."),
    integer("months_back", "3", 0, 120, "Monthly partitions kept ready before the current month."),
    integer("months_ahead", "3", 0, 120, "Monthly partitions created ahead of the current month."),
    boolean("allow_superuser", false,
        "Every command that writes events (serve, consume, write; import and rejected replay read "
        "CRM_INGEST_POSTGRES_ALLOW_SUPERUSER or --allow-superuser) refuses a PostgreSQL connection that is a superuser "
        "unless this is true (use the crm_ingest_writer role instead). The embedded database is exempt."),
  });
  add(out, "log", {
    text("dir", "", "Directory of the durable local log; empty = log/ beside the embedded database's data directory."),
    integer("segment_bytes", "67108864", 1 * MiB, 4 * GiB, "Size of one log segment file."),
    integer("max_bytes", "4294967296", 16 * MiB, 1024 * GiB,
        "Bound of the log on disk; when full, requests get 503 with Retry-After."),
    integer("high_water_percent", "90", 1, 100, "Fill level above which /readyz reports not ready."),
    integer("drain_on_stop_s", "30", 0, 86400,
        "serve, once told to stop (SIGTERM/SIGINT), writes the log's backlog into PostgreSQL; when no batch has been "
        "written for this long (the database down, refusing, or not confirming to its standbys), it exits anyway. "
        "What is left stays in the log (the checkpoint is before it) and is written at the next start, so nothing is "
        "lost; keep it below the service manager's stop timeout (systemd TimeoutStopSec), whose kill of a stop that "
        "keeps writing loses nothing either."),
  });
  add(out, "normalize", {
    text("default_region", "US", "Region (ISO 3166 alpha-2) for phone numbers without a country code."),
    integer("max_record_bytes", "1048576", 256, 64 * MiB, "Largest accepted JSON object."),
  });
}

// After the webhooks: logging, catalog, attribution, auth, rate limits, Kafka.
void add_after_webhooks(std::vector<setting>& out) {
  add(out, "logging", {
    text("format", "text",
        "Format of the process log on stderr: text (one human-readable line) or json (one JSON object per line: ts, "
        "level, msg and the line's key=value fields)."),
  });
  add(out, "metrics", {
    text("listen", "",
        "consume and write: address and port (host:port) of their /metrics, /healthz and /readyz listener; empty = "
        "none; port 0 picks a free one (printed as \"metrics on port N\"). No credentials: bind it to a private "
        "address. serve exports on http.listen."),
  });
  add(out, "catalog", {
    integer("check_interval_s", "300", 0, 86400,
        "How often serve reads the partition catalog for crm_ingest_partition_* metrics (next month's partition "
        "present, rows in the default partitions); 0 = never."),
  });
  add(out, "attribution", {
    boolean("maintain", true,
        "Keep attribution_credits, campaign_attribution_daily and the A/B-test tables current in every batch "
        "transaction; false = skip (faster ingest; the tables go stale until `report attribution --recompute`)."),
  });
  add(out, "auth", {
    boolean("required", false,
        "POST /v1/events requires a credential even when none is configured (then every request gets 401). "
        "Authentication is on as soon as a JWT key or an API key is set; without any, /v1/events is open and serve "
        "logs a warning."),
    boolean("protect_metrics", true,
        "With authentication on, GET /metrics takes the same credentials as POST /v1/events (any valid one); false = "
        "open, for a scraper on a private network. /healthz and /readyz are always open (load-balancer probes)."),
    secret("jwt_secret", "HS256 secret (the Supabase project's JWT secret, as text)."),
    text("jwt_public_key_file", "", "PEM public key (RSA for RS256, P-256 for ES256)."),
    text("jwks_file", "", "JWKS file of RSA (RS256) and P-256 (ES256) keys, chosen by kid."),
    text("jwt_audience", "", "Required aud (string or one of an array); empty = not checked."),
    text("jwt_issuer", "", "Required iss; empty = not checked."),
    integer("jwt_leeway_s", "30", 0, 600, "Clock skew allowed on exp and nbf."),
    text("jwt_roles", "service_role",
        "Comma-separated values of the role claim allowed to ingest (others get 403); * = any role."),
    text("jwt_role_claim", "role", "Claim holding the role."),
    text("tenant_claim", "tenant_id", "Claim holding the caller's tenant."),
    secret("api_keys",
        "Comma-separated static API keys, stored hashed: name=sha256:<64 hex digits of SHA-256 of the key>. "
        "Sent as X-API-Key or Authorization: Bearer."),
  });
  add(out, "rate_limit", {
    integer("per_address_rps", "0", 0, 10000000,
        "Requests per second one client address may make (token bucket); 0 = unlimited. Over it: 429 with "
        "Retry-After."),
    integer("per_address_burst", "0", 0, 10000000, "Bucket size per address; 0 = per_address_rps."),
    integer("per_credential_rps", "0", 0, 10000000,
        "Requests per second one credential (JWT subject or API key name) may make; 0 = unlimited."),
    integer("per_credential_burst", "0", 0, 10000000, "Bucket size per credential; 0 = per_credential_rps."),
  });
  add(out, "kafka", {
    text("brokers", "",
        "Kafka bootstrap servers (host:port,host:port) for `consume`, `write` and `serve --log kafka`."),
    text("group", "crm-ingest", "Consumer group of `crm-ingest consume`."),
    text("topics", "", kafka_topics_description),
    text("log_topic", "crm-ingest.events",
        "Topic `serve --log kafka` appends normalized events to and `crm-ingest write` consumes."),
    text("log_group", "crm-ingest-writers", "Consumer group of `crm-ingest write`."),
    integer("session_timeout_ms", "10000", 1000, 3600000,
        "Consumer group session timeout: a member silent this long loses its partitions."),
    integer("delivery_timeout_ms", "30000", 1000, 3600000,
        "`serve --log kafka`: longest wait for a delivery report before the request is answered 503."),
    secret("properties",
        "Extra librdkafka properties for every Kafka client, \"key=value, key=value\" (e.g. security.protocol, "
        "sasl.username)."),
  });
}

// [webhooks.<provider>] for every provider of the registry: its scheme's settings, then tenant_id and
// allow_unsigned.
std::vector<setting> build_registry() {
  static const auto sections = [] {
    std::array<std::string, webhooks::scheme_count> out;
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = "webhooks." + std::string(webhooks::schemes()[i].provider);
    return out;
  }();
  static const auto unsigned_help = [] {
    std::array<std::string, webhooks::scheme_count> out;
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = "Without a secret configured, accept requests nobody signed (anyone who reaches the listener can "
               "write " + std::string(webhooks::schemes()[i].provider) +
               " events; serve warns at start). false = without a secret every request is refused with 401.";
    }
    return out;
  }();
  std::vector<setting> out;
  add_before_webhooks(out);
  for (std::size_t i = 0; i < sections.size(); ++i) {
    for (const webhooks::scheme_setting& s : webhooks::schemes()[i].settings) {
      if (!s.key.empty()) add(out, sections[i], {secret(s.key, s.description)});
    }
    add(out, sections[i], {text("tenant_id", "", "Tenant stamped on every row this webhook brings; empty = none."),
                           boolean("allow_unsigned", false, unsigned_help[i])});
  }
  add_after_webhooks(out);
  return out;
}

const std::vector<setting> registry = build_registry();

std::string upper_env(std::string_view s) {
  std::string out;
  for (char c : s) out.push_back(c == '.' || c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggestion(std::string_view name) {
  std::string best;
  std::size_t best_d = 4;
  for (const auto& s : registry) {
    auto d = edit_distance(name, s.name());
    if (d < best_d) {
      best_d = d;
      best = s.name();
    }
  }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

std::string section_suggestion(std::string_view name) {
  std::string best;
  std::size_t best_d = 3;
  for (const auto& s : registry) {
    auto d = edit_distance(name, s.section);
    if (d < best_d) {
      best_d = d;
      best = s.section;
    }
  }
  return best.empty() ? "" : " (did you mean [" + best + "]?)";
}

const setting* find(std::string_view section, std::string_view key) {
  for (const auto& s : registry) {
    if (s.section == section && s.key == key) return &s;
  }
  return nullptr;
}

bool is_section(std::string_view name) {
  return std::any_of(registry.begin(), registry.end(), [&](const setting& s) {
    return s.section == name || (s.section.size() > name.size() && s.section.substr(0, name.size()) == name &&
                                 s.section[name.size()] == '.');
  });
}

// Checks one textual value against its declaration; returns a problem or "".
std::string validate(const setting& s, const std::string& text, const std::string& where) {
  if (s.type == T::integer) {
    std::int64_t v = 0;
    std::size_t used = 0;
    try {
      v = std::stoll(text, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != text.size()) {
      return where + ": " + s.name() + " must be an integer, got \"" + text + "\"";
    }
    if (v < s.min || v > s.max) {
      return where + ": " + s.name() + " = " + text + " is outside [" + std::to_string(s.min) + ", " +
             std::to_string(s.max) + "]";
    }
  } else if (s.type == T::boolean) {
    if (text != "true" && text != "false") return where + ": " + s.name() + " must be true or false";
  }
  if (s.section == "http" && s.key == "listen" && text.rfind(':') == std::string::npos) {
    return where + ": http.listen must be host:port, got \"" + text + "\"";
  }
  if (s.section == "normalize" && s.key == "default_region" && !transform::is_phone_region(text)) {
    return where + ": normalize.default_region must be a region of phone numbering, two upper-case letters (ISO " +
           "3166, e.g. US, GB), got \"" + text + "\"";
  }
  if (s.section == "webhooks.resend" && s.key == "secret" && !text.empty() && text.rfind("whsec_", 0) != 0) {
    return where + ": webhooks.resend.secret must start with whsec_";
  }
  if (s.section == "kafka" && (s.key == "topics" || s.key == "properties")) {
    try {
      if (s.key == "topics") parse_kafka_topics(text);
      else parse_kafka_properties(text);
    } catch (const std::invalid_argument& e) {
      return where + ": " + e.what();
    }
  }
  if (s.section == "logging" && s.key == "format" && text != "text" && text != "json") {
    return where + ": logging.format must be text or json, got \"" + text + "\"";
  }
  return {};
}


}  // namespace

std::string setting::env_name() const { return "CRM_INGEST_" + upper_env(section) + "_" + upper_env(key); }

const std::vector<setting>& all_settings() { return registry; }

const char* process_env(const char* name) { return std::getenv(name); }

config_error::config_error(std::vector<std::string> problems)
    : std::runtime_error([&] {
        std::string msg = "invalid configuration:";
        for (const auto& p : problems) msg += "\n  - " + p;
        return msg;
      }()),
      problems_(std::move(problems)) {}

settings settings::load(const std::string& path, const env_lookup& env) {
  if (path.empty()) return parse("", "defaults", env);
  std::ifstream in(path);
  if (!in) throw config_error(std::vector<std::string>{"cannot read " + path + ": " + std::strerror(errno)});
  std::string body((std::istreambuf_iterator<char>(in)), {});
  return parse(body, path, env);
}

settings settings::parse(std::string_view toml_text, const std::string& origin_name, const env_lookup& env) {
  settings out;
  std::vector<std::string> problems;
  for (const auto& s : registry) out.values_[s.name()] = value{std::string(s.default_value), "default"};

  toml::table parsed;
  try {
    parsed = toml::parse(toml_text, origin_name);
  } catch (const toml::parse_error& err) {
    throw config_error(std::vector<std::string>{origin_name + ":" + std::to_string(err.source().begin.line) + ":" +
                                                std::to_string(err.source().begin.column) + ": " +
                                                std::string(err.description())});
  }

  // Walk the file: every key must be declared, with the declared type.
  std::function<void(const toml::table&, const std::string&)> walk = [&](const toml::table& tbl,
                                                                         const std::string& prefix) {
    for (const auto& [k, node] : tbl) {
      std::string key(k.str());
      std::string full = prefix.empty() ? key : prefix + "." + key;
      std::string where = origin_name + ":" + std::to_string(node.source().begin.line);
      if (prefix.empty() && key == "sources") {
        detail::read_sources(node, origin_name, out.sources_, problems);
        continue;
      }
      if (node.is_table()) {
        if (!is_section(full)) {
          problems.push_back(where + ": unknown section [" + full + "]" + section_suggestion(full));
          continue;
        }
        walk(*node.as_table(), full);
        continue;
      }
      const setting* s = find(prefix, key);
      if (!s) {
        problems.push_back(where + ": unknown setting " + full + suggestion(full));
        continue;
      }
      std::string text;
      if (s->type == T::integer) {
        if (auto v = node.value<std::int64_t>(); v && node.is_integer()) text = std::to_string(*v);
        else problems.push_back(where + ": " + full + " must be an integer");
      } else if (s->type == T::boolean) {
        if (auto v = node.value<bool>()) text = *v ? "true" : "false";
        else problems.push_back(where + ": " + full + " must be true or false");
      } else {
        if (auto v = node.value<std::string>(); v && node.is_string()) text = *v;
        else problems.push_back(where + ": " + full + " must be a string");
      }
      if (text.empty() && s->type != T::string && s->type != T::secret) continue;
      if (auto p = validate(*s, text, where); !p.empty()) {
        problems.push_back(p);
        continue;
      }
      out.values_[full] = value{text, where};
    }
  };
  walk(parsed, "");

  // The environment overrides the file.
  for (const auto& s : registry) {
    auto name = s.env_name();
    const char* v = env(name.c_str());
    if (!v) continue;
    std::string where = "environment " + name;
    if (auto p = validate(s, v, where); !p.empty()) {
      problems.push_back(p);
      continue;
    }
    out.values_[s.name()] = value{v, where};
  }
  detail::check_source_secrets(out.sources_, out.values_["http.public_base_url"].text, problems);
  if (!problems.empty()) throw config_error(std::move(problems));
  return out;
}

const std::string& settings::str(std::string_view section, std::string_view key) const {
  auto it = values_.find(std::string(section) + "." + std::string(key));
  if (it == values_.end()) throw std::logic_error("undeclared setting " + std::string(section) + "." + std::string(key));
  return it->second.text;
}

std::int64_t settings::integer(std::string_view section, std::string_view key) const {
  return std::stoll(str(section, key));
}

bool settings::boolean(std::string_view section, std::string_view key) const { return str(section, key) == "true"; }

const std::string& settings::origin(std::string_view section, std::string_view key) const {
  return values_.find(std::string(section) + "." + std::string(key))->second.origin;
}

std::string settings::describe() const {
  std::ostringstream out;
  std::string_view section;
  for (const auto& s : registry) {
    if (s.section != section) {
      section = s.section;
      out << "\n[" << section << "]\n";
    }
    const auto& v = values_.find(s.name())->second;
    std::string shown = v.text;
    if (s.type == T::secret && !shown.empty()) shown = "***";
    if (s.type == T::integer || s.type == T::boolean) out << s.key << " = " << shown;
    else out << s.key << " = \"" << shown << "\"";
    out << "  # " << v.origin << "\n";
  }
  for (const auto& d : sources_) {
    out << "\n[[sources]]  # " << d.origin << "\nname = \"" << d.name << "\"\nprovider = \"" << d.provider << "\"\n";
    if (!d.tenant_id.empty()) out << "tenant_id = \"" << d.tenant_id << "\"\n";
    if (!d.secrets.empty()) {
      out << "secrets = [";
      for (std::size_t i = 0; i < d.secrets.size(); ++i) out << (i ? ", " : "") << "\"***\"";
      out << "]\n";
    }
    if (d.allow_unsigned) out << "allow_unsigned = true\n";
    if (d.tolerance_seconds) out << "tolerance_seconds = " << *d.tolerance_seconds << "\n";
    if (!d.idempotency_key.empty()) out << "idempotency_key = \"" << d.idempotency_key << "\"\n";
    if (!d.verify_token.empty()) out << "verify_token = \"***\"\n";
  }
  return out.str();
}

std::string reference_toml() {
  std::ostringstream out;
  out << "# crm-ingest configuration. Every setting is shown at its default. Each can be overridden by an\n"
         "# environment variable CRM_INGEST_<SECTION>_<KEY>, shown beside it.\n";
  std::string_view section;
  for (const auto& s : registry) {
    if (s.section != section) {
      section = s.section;
      out << "\n[" << section << "]\n";
    }
    out << "# " << s.description;
    if (s.type == T::integer) out << " Range " << s.min << ".." << s.max << ".";
    out << " (" << s.env_name() << ")\n";
    if (s.type == T::integer || s.type == T::boolean) out << s.key << " = " << s.default_value << "\n";
    else out << s.key << " = \"" << s.default_value << "\"\n";
  }
  out << "\n# Webhook sources: POST /v1/webhooks/<name>, one [[sources]] table each, many per provider. A source named\n"
         "# after a provider replaces the built-in one of [webhooks.<provider>]. Edit and send SIGHUP to add, change or\n"
         "# remove sources without a restart (a bad definition refuses the reload and keeps the sources in force).\n"
         "# [[sources]]\n"
         "# name = \"acme-sendgrid\"                # the route /v1/webhooks/acme-sendgrid; [a-z0-9][a-z0-9_-]{0,62}\n"
         "# provider = \"sendgrid\"                  # ";
  for (std::size_t i = 0; i < transform::providers::registry.size(); ++i) {
    out << (i ? ", " : "") << transform::providers::registry[i].name;
  }
  out << "\n"
         "# tenant_id = \"acme\"                     # stamped on every row and dead letter of the source\n"
         "# secrets = [\"<key>\", \"<next key>\"]     # 1-4 valid at once (rotation); postmark: \"user:password\"\n"
         "# allow_unsigned = false                 # true and no secrets: accept unsigned requests\n"
         "# tolerance_seconds = 300                # standard, resend, mailgun, sendgrid: signed timestamp window\n"
         "# idempotency_key = \"header:X-Event-Id\"  # or \"body:/data/id\"; default: the provider's own event id\n"
         "# verify_token = \"...\"                   # whatsapp: the GET hub.challenge handshake\n";
  return out.str();
}

}  // namespace crm::ingest::config
