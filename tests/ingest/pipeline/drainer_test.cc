// serve's drainer on its own: a real local log and a real PostgreSQL, no HTTP edge, so that a test can order
// an append and a stop exactly.
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "ingest/pipeline/drainer.h"
#include "support/scratch.h"
#include "support/test_db.h"
#include "transform/canonical/event_codec.h"
#include "transform/normalize/normalize.h"

namespace {

using namespace std::chrono_literals;

// A stop right after an append returned (a request acknowledged just before SIGTERM) writes the record before the
// drainer stops. The drain thread, woken by the record's arrival, used to see the stop first and leave without
// reading it: the record stayed in the log until the next start, and serve exited with it unwritten. The stop
// here follows the append at once, which is the order that lost the race.
TEST(Drainer, AStopRightAfterAnAppendWritesTheRecordFirst) {
  const auto dsn = crm_test::fresh_database("t_drainer_stop_after_append");
  crm::ingest::metrics m;
  crm::transform::normalizer norm;
  for (int i = 0; i < 10; ++i) {
    const auto dir = crm_test::scratch("stop-after-append");
    crm::sinks::spool::durable_log_options lo;
    lo.directory = dir / "log";
    auto log = crm::sinks::spool::durable_log::open(lo);
    crm::ingest::drainer_options o;
    o.pool.writer.dsn = dsn;
    o.pool.writers = 1;
    crm::ingest::drainer drain(o, *log, m);
    drain.start();
    std::this_thread::sleep_for(200ms);  // connected, and waiting for data

    crm::transform::event_batch batch;
    const std::string json = R"({"kind":"touchpoint","occurred_at":"2026-11-02T09:00:00Z","anonymous_id":"a",)"
                             R"("touch_type":"page_view","message_id":"stop-after-append-)" +
                             std::to_string(i) + "\"}";
    ASSERT_EQ(norm.normalize(json, {"test", 1}, crm::transform::now_us(), batch),
              crm::transform::normalize_outcome::touchpoint);
    std::string record;
    crm::transform::encode_event_batch(batch, record);
    const std::string_view records[] = {record};
    ASSERT_TRUE(log->append(records).ok());
    drain.stop();
    ASSERT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), i + 1)
        << "stop " << i << " left an appended record unwritten";
  }
}

}  // namespace
