#include "ingest/observability/logging.h"

#include <gtest/gtest.h>

namespace {

struct log_case {
  const char* payload;
  const char* json;
};

TEST(JsonLog, SentenceAndKeyValueFieldsBecomeMembers) {
  const log_case cases[] = {
      {"Listening. address=0.0.0.0:8080 port=8080",
       R"({"ts":"2026-11-22T23:30:00.123Z","level":"info","msg":"Listening.","address":"0.0.0.0:8080","port":"8080"})"},
      {"No fields here.", R"({"ts":"2026-11-22T23:30:00.123Z","level":"info","msg":"No fields here."})"},
      // A value runs to the next " key=": spaces and quotes inside it survive, escaped.
      {"Refused. error=bad \"thing\" at x=1 n=2",
       R"({"ts":"2026-11-22T23:30:00.123Z","level":"info","msg":"Refused.","error":"bad \"thing\" at","x":"1","n":"2"})"},
      // Reserved names are prefixed; invalid UTF-8 becomes '?'.
      {"Odd. msg=\xff\xfe level=x",
       R"({"ts":"2026-11-22T23:30:00.123Z","level":"info","msg":"Odd.","field_msg":"??","field_level":"x"})"},
      {"Tab\there. k=a\nb", "{\"ts\":\"2026-11-22T23:30:00.123Z\",\"level\":\"info\",\"msg\":\"Tab\\u0009here.\",\"k\":\"a\\u000ab\"}"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(crm::ingest::json_log_line("info", 1795390200123LL, c.payload), std::string(c.json) + "\n") << c.payload;
  }
}

TEST(JsonLog, UnknownFormatIsRefused) {
  EXPECT_THROW(crm::ingest::set_log_format("xml"), std::invalid_argument);
  EXPECT_NO_THROW(crm::ingest::set_log_format("text"));
}

}  // namespace
