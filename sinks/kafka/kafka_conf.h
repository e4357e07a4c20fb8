// librdkafka configuration for every Kafka client of the product (the collectors' producer, the consumers
// of consume and write): our settings first, then the operator's kafka.properties, which may override them.
// Start-up only, on the caller's thread.
#pragma once

#include <librdkafka/rdkafka.h>

#include <string>
#include <utility>
#include <vector>

namespace crm::sinks::kafka {

using kafka_properties = std::vector<std::pair<std::string, std::string>>;

// A new configuration the caller owns (rd_kafka_new takes it, or rd_kafka_conf_destroy). Throws
// std::invalid_argument naming the property librdkafka refused.
rd_kafka_conf_t* make_kafka_conf(const kafka_properties& ours, const kafka_properties& operators);

}  // namespace crm::sinks::kafka
