// The [[sources]] tables of the configuration file (README.md, "Webhook sources"): internal to settings.cc.
#pragma once

#include <string>
#include <vector>

#include <toml++/toml.h>

#include "ingest/config/settings.h"

namespace crm::ingest::config::detail {

// Reads the [[sources]] array into `out`; every problem into `problems`, each naming the source and the key.
void read_sources(const toml::node& node, const std::string& origin_name, std::vector<webhook_source_definition>& out,
                  std::vector<std::string>& problems);

// Builds each source's verifier once, as serve will: a secret its provider cannot use is a problem now.
void check_source_secrets(const std::vector<webhook_source_definition>& sources, std::string public_base,
                          std::vector<std::string>& problems);

}  // namespace crm::ingest::config::detail
