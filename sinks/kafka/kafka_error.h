// A Kafka client could not be created, configured or subscribed (exit code 5): the one boundary where
// librdkafka's start-up failures become an exception. Failures while running are retried by librdkafka
// and logged, never thrown.
#pragma once

#include <stdexcept>

namespace crm::sinks::kafka {

class kafka_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace crm::sinks::kafka
