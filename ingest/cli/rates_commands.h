// `crm-ingest rates import FILE`, `rates reporting-currency CODE` and `rates status`: the exchange rates that
// convert conversion revenue into the reporting currency (schemas/0007_currencies.sql, README "Currencies").
#pragma once

#include <CLI/CLI.hpp>

namespace crm::ingest::cli {

// Adds the `rates` subcommand and its children to `app`; they set `exit_code` when they run.
void add_rates_commands(CLI::App& app, int& exit_code);

}  // namespace crm::ingest::cli
