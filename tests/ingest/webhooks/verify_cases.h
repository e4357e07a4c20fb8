// What the signature tests share (signatures_test.cc, mailgun_signature_test.cc, standard_webhooks_test.cc): times as the verifiers take
// them, and the check of a refusal's error and reason, one at a time or as a table of named cases.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include <gtest/gtest.h>

#include "ingest/webhooks/signatures.h"

namespace signature_tests {

namespace w = crm::ingest::webhooks;
using w::verify_error;
using namespace std::chrono_literals;

inline w::unix_seconds at(std::int64_t s) { return w::unix_seconds(std::chrono::seconds(s)); }

inline void expect_result(const w::verify_result& r, verify_error error, std::string_view reason) {
  EXPECT_EQ(r.error, error) << "reason: " << r.reason;
  EXPECT_EQ(r.reason, reason);
}

// A refusal: what a verifier answered for the input `name` describes, and what it should have said.
struct failure_case {
  const char* name;
  w::verify_result result;
  verify_error error;
  std::string_view reason;
};

inline void expect_failures(std::initializer_list<failure_case> cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    expect_result(c.result, c.error, c.reason);
  }
}

}  // namespace signature_tests
