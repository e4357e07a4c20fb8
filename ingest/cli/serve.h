// `crm-ingest serve --config FILE`: the webhook collector, its durable log and the PostgreSQL drainer.
#pragma once

#include <string>

namespace crm::ingest::cli {

struct serve_args {
  std::string config_file;
  std::string data_dir;  // embedded database, when postgres.dsn is empty
  std::string log = "local";  // "local": the durable local log; "kafka": append to kafka.log_topic
};

int run_serve(const serve_args& args);

}  // namespace crm::ingest::cli
