#include "ingest/auth/auth_settings.h"

#include <fstream>
#include <sstream>

namespace crm::ingest::auth {

namespace {

std::string read_file(const std::string& setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error(setting + ": cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto b = item.find_first_not_of(" \t");
    auto e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

}  // namespace

options options_from_settings(const config::settings& cfg) {
  options o;
  o.required = cfg.boolean("auth", "required");
  o.hs256_secret = cfg.str("auth", "jwt_secret");
  if (const auto& f = cfg.str("auth", "jwt_public_key_file"); !f.empty()) {
    try {
      o.keys.push_back(parse_public_key_pem(read_file("auth.jwt_public_key_file", f)));
    } catch (const config_error& e) {
      throw config_error("auth.jwt_public_key_file " + f + ": " + e.what());
    }
  }
  if (const auto& f = cfg.str("auth", "jwks_file"); !f.empty()) {
    try {
      for (auto& k : parse_jwks(read_file("auth.jwks_file", f))) o.keys.push_back(std::move(k));
    } catch (const config_error& e) {
      throw config_error("auth.jwks_file " + f + ": " + e.what());
    }
  }
  o.audiences = split_list(cfg.str("auth", "jwt_audience"));
  o.issuer = cfg.str("auth", "jwt_issuer");
  o.leeway_s = cfg.integer("auth", "jwt_leeway_s");
  o.roles = split_list(cfg.str("auth", "jwt_roles"));
  o.role_claim = cfg.str("auth", "jwt_role_claim");
  o.tenant_claim = cfg.str("auth", "tenant_claim");
  try {
    o.api_keys = parse_api_keys(cfg.str("auth", "api_keys"));
  } catch (const config_error& e) {
    throw config_error(std::string("auth.api_keys: ") + e.what());
  }
  return o;
}

namespace {
std::shared_ptr<rate_limiter> limiter(const config::settings& cfg, const char* rps, const char* burst) {
  auto r = cfg.integer("rate_limit", rps);
  if (r <= 0) return nullptr;
  return std::make_shared<rate_limiter>(static_cast<double>(r), static_cast<double>(cfg.integer("rate_limit", burst)));
}
}  // namespace

std::shared_ptr<rate_limiter> address_limiter(const config::settings& cfg) {
  return limiter(cfg, "per_address_rps", "per_address_burst");
}

std::shared_ptr<rate_limiter> credential_limiter(const config::settings& cfg) {
  return limiter(cfg, "per_credential_rps", "per_credential_burst");
}

}  // namespace crm::ingest::auth
