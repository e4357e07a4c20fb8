// The Kafka commands: `crm-ingest consume` (the Kafka source over [kafka] topics), `crm-ingest write`
// (the writer of the scale-out topology, over kafka.log_topic) and `crm-ingest serve --log kafka` (the
// collector appending to kafka.log_topic instead of the local log).
#pragma once

#include <string>

#include "ingest/cli/serve.h"

namespace crm::ingest::cli {

struct kafka_args {
  std::string config_file;
  std::string data_dir;  // embedded database, when postgres.dsn is empty
};

int run_consume(const kafka_args& args);
int run_write(const kafka_args& args);
int run_serve_kafka(const serve_args& args);

}  // namespace crm::ingest::cli
