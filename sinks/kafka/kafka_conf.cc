#include "sinks/kafka/kafka_conf.h"

#include <stdexcept>

#include <fmt/format.h>

namespace crm::sinks::kafka {

rd_kafka_conf_t* make_kafka_conf(const kafka_properties& ours, const kafka_properties& operators) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto* list : {&ours, &operators}) {
    for (const auto& [k, v] : *list) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw std::invalid_argument(fmt::format("kafka: {}={}: {}", k, v, err));
      }
    }
  }
  return conf;
}

}  // namespace crm::sinks::kafka
