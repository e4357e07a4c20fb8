// The writer options of the write path's tests: a 20 s retry limit and a short backoff.
#pragma once

#include <chrono>
#include <string>

#include "sinks/postgres/writer.h"

namespace crm_test {

inline crm::sinks::postgres::writer_options writer_options_for(const std::string& dsn) {
  crm::sinks::postgres::writer_options o;
  o.dsn = dsn;
  o.retry = crm::sinks::postgres::retry_policy::for_at_most(std::chrono::seconds(20));
  o.backoff_base = std::chrono::milliseconds(20);
  return o;
}

}  // namespace crm_test
