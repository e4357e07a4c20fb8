#include "ingest/cli/cli.h"

int main(int argc, char** argv) { return crm::ingest::cli::run(argc, argv); }
