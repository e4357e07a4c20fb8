// Canonical events as a client posts them (JSON), for the tests that drive a running serve.
#pragma once

#include <string>

namespace crm_test {

// One communication (an email sent on 2026-11-02), told apart by its provider_message_id.
inline std::string communication_json(const std::string& message_id) {
  return R"({"kind":"communication","occurred_at":"2026-11-02T09:00:00Z","channel":"email","status":"sent",)"
         R"("email":"a@b.co","provider_message_id":")" +
         message_id + "\"}";
}

}  // namespace crm_test
