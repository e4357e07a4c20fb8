// `crm-ingest serve` under load from bench/http_load, and the checks of what its acknowledgements promised:
// shared by the crash tests (tests/ingest/pipeline) and the fault tests on the Patroni cluster (tests/fault).
// The includer defines CRM_INGEST_EXE and HTTP_LOAD_EXE (the paths of the two programs).
//
// http_load's ids carry the load's seed and say where they are stored:
//   m-...  communications.provider_message_id    t-...  customer_touchpoints.message_id
//   SM...  communications.provider_message_id (Twilio MessageSid)
#pragma once

#include <chrono>
#include <ctime>
#include <filesystem>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/child_process.h"
#include "support/db_count.h"
#include "support/scratch.h"

namespace crm_test {

// A running `crm-ingest serve` and the port it reported.
struct server {
  std::unique_ptr<child> proc;
  unsigned port = 0;
};

// Starts `crm-ingest serve --config config`, its output in dir/serve-<tag>.out and .err. Port 0 (and a
// test failure) when it reported none within 30 s.
inline server start_server(const std::filesystem::path& dir, const std::filesystem::path& config,
                           const std::string& tag) {
  using namespace std::chrono_literals;
  server s;
  s.proc = std::make_unique<child>(std::vector<std::string>{CRM_INGEST_EXE, "serve", "--config", config.string()},
                                   dir / ("serve-" + tag + ".out"), dir / ("serve-" + tag + ".err"));
  static const std::regex line("listening on port ([0-9]+)");
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    auto out = s.proc->out();
    if (std::regex_search(out, m, line)) {
      s.port = static_cast<unsigned>(std::stoul(m[1]));
      return s;
    }
    if (s.proc->wait_for(0ms)) break;
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "crm-ingest serve did not report its port; stderr:\n" << s.proc->err();
  return s;
}

// What bench/http_load sends (open loop): `rate` requests/s of `events_per_request` events for `duration_s`.
struct load_args {
  std::string mode = "events";
  double rate = 100;
  double duration_s = 3;
  unsigned events_per_request = 50;
  unsigned connections = 16;
  unsigned seed = 1;
  double timeout_s = 2;
  double drain_timeout_s = 2;
};

// http_load against serve's `port`: its JSON summary in dir/load-<tag>.json, the ids every 2xx acknowledged
// in dir/acks-<tag>.
inline std::unique_ptr<child> start_load(const std::filesystem::path& dir, unsigned port, const load_args& a,
                                         const std::string& tag) {
  return std::make_unique<child>(
      std::vector<std::string>{HTTP_LOAD_EXE, "--url", "http://127.0.0.1:" + std::to_string(port), "--mode", a.mode,
                               "--rate", std::to_string(a.rate), "--duration", std::to_string(a.duration_s),
                               "--events-per-request", std::to_string(a.events_per_request), "--connections",
                               std::to_string(a.connections), "--seed", std::to_string(a.seed), "--timeout",
                               std::to_string(a.timeout_s), "--drain-timeout", std::to_string(a.drain_timeout_s),
                               "--epoch", std::to_string(std::time(nullptr) / 86400 * 86400), "--ack-log",
                               (dir / ("acks-" + tag)).string()},
      dir / ("load-" + tag + ".json"), dir / ("load-" + tag + ".err"));
}

// The number after "key": in http_load's JSON summary (its keys are unique); -1 when absent.
inline long long json_number(const std::string& json, const std::string& key) {
  auto p = json.find("\"" + key + "\":");
  if (p == std::string::npos) return -1;
  return std::stoll(json.substr(p + key.size() + 3));
}

// The ids of one ack log appended to `all`, space-separated (a parameter for string_to_array).
inline void append_ids(const std::filesystem::path& ack_log, std::string& all, std::size_t& count) {
  std::istringstream in(read_file(ack_log));
  std::string id;
  while (in >> id) all += (count++ ? " " : "") + id;
}

// Every id in the ack logs (acks-*) of `dir`; their number in `count`.
inline std::string acked_ids(const std::filesystem::path& dir, std::size_t& count) {
  std::string all;
  count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("acks-", 0) == 0) append_ids(entry.path(), all, count);
  }
  return all;
}

// The count `sql` gives with `ids` (space-separated) as the relation ids(id), a row per occurrence.
inline long long count_with_ids(const std::string& dsn, const std::string& ids, const std::string& sql) {
  return count(dsn, "WITH ids AS (SELECT unnest(string_to_array($1, ' ')) AS id) " + sql, ids);
}

// How many of `ids` (space-separated) are stored in neither table.
inline long long missing_acked(const std::string& dsn, const std::string& ids) {
  return count_with_ids(dsn, ids,
                        "SELECT count(*) FROM ids"
                        " WHERE NOT EXISTS (SELECT 1 FROM communications c WHERE c.provider_message_id = ids.id)"
                        "   AND NOT EXISTS (SELECT 1 FROM customer_touchpoints t WHERE t.message_id = ids.id)");
}

// Rows holding one of `ids` (space-separated, each counted once), in both tables.
inline long long rows_with(const std::string& dsn, const std::string& ids) {
  return count_with_ids(dsn, ids,
                        "SELECT (SELECT count(*) FROM communications WHERE provider_message_id IN (SELECT id FROM ids))"
                        "     + (SELECT count(*) FROM customer_touchpoints WHERE message_id IN (SELECT id FROM ids))");
}

// Polls every 250 ms until every id is stored (the writers caught up) or `timeout` passes; the number still
// missing (-1 when the last look could not reach the database).
inline long long wait_until_stored(const std::string& dsn, const std::string& ids, std::chrono::seconds timeout) {
  long long missing = -1;
  wait_until(
      [&] {
        try {
          missing = missing_acked(dsn, ids);
        } catch (const std::exception&) {
          missing = -1;
        }
        return missing == 0;
      },
      timeout, std::chrono::milliseconds(250));
  return missing;
}

// Daily metrics rows that a recount of communications does not give, and recounted days they lack.
inline constexpr const char* metrics_mismatch_sql =
    "SELECT count(*) FROM ("
    " SELECT day, campaign_id, channel, status, event_count FROM communication_metrics WHERE event_count <> 0"
    " EXCEPT SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "   FROM communications GROUP BY 1, 2, 3, 4) a";
inline constexpr const char* metrics_missing_sql =
    "SELECT count(*) FROM ("
    " SELECT (occurred_at AT TIME ZONE 'UTC')::date, campaign_id, channel, status, count(*)"
    "   FROM communications GROUP BY 1, 2, 3, 4"
    " EXCEPT SELECT day, campaign_id, channel, status, event_count FROM communication_metrics) a";

// Exactly once: no event id or provider id twice, no dead letter (http_load sends valid events only), the
// daily metrics equal a recount, and the ledger's inserted counts equal the rows. Call with the writers stopped.
inline void expect_stored_exactly_once(const std::string& dsn) {
  for (const char* sql : {"SELECT count(*) - count(DISTINCT provider_message_id) FROM communications",
                          "SELECT count(*) - count(DISTINCT event_id) FROM communications",
                          "SELECT count(*) - count(DISTINCT message_id) FROM customer_touchpoints",
                          "SELECT count(*) - count(DISTINCT touchpoint_id) FROM customer_touchpoints",
                          "SELECT count(*) FROM rejected_events", metrics_mismatch_sql, metrics_missing_sql}) {
    EXPECT_EQ(count(dsn, sql), 0) << sql;
  }
  EXPECT_EQ(count(dsn, "SELECT coalesce(sum(communications_inserted), 0) FROM ingest_batches"),
            count(dsn, "SELECT count(*) FROM communications"));
  EXPECT_EQ(count(dsn, "SELECT coalesce(sum(touchpoints_inserted), 0) FROM ingest_batches"),
            count(dsn, "SELECT count(*) FROM customer_touchpoints"));
}

}  // namespace crm_test
