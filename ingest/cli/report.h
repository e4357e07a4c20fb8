// `crm-ingest report attribution` and `crm-ingest report ab-test`: read the attribution and A/B tables that
// the writers keep current (schemas/0002_attribution.sql), or rebuild them from scratch (--recompute).
#pragma once

#include <CLI/CLI.hpp>

namespace crm::ingest::cli {

// Adds the `report` subcommand and its children to `app`; they set `exit_code` when they run.
void add_report_commands(CLI::App& app, int& exit_code);

}  // namespace crm::ingest::cli
