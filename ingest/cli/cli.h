// The crm-ingest command line: one executable, one subcommand per job, --help on each.
#pragma once

namespace crm::ingest::cli {

// Parses the arguments, runs the subcommand and returns the process exit code.
int run(int argc, char** argv);

}  // namespace crm::ingest::cli
