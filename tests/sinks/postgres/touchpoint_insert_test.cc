// The touchpoints part of the batch transaction against a real PostgreSQL: rows COPYed straight into
// customer_touchpoints (sinks/postgres/direct_copy.h) with the batch's analytics_backlog row built on the client,
// conversion values stored as the float8-to-numeric cast of the staging path stores them, rows stored already left
// out, and the staging path when the table has a trigger.
//
// Which path stored a row shows in its xmin: the direct COPY runs inside a savepoint, so its rows carry the
// subtransaction's id, while rows the staging statement inserted carry the transaction's own id, the one the
// ledger row of the batch carries too.
#include "sinks/postgres/direct_copy.h"
#include "sinks/postgres/writer.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "direct_copy_checks.h"
#include "support/event_ids.h"
#include "support/test_db.h"
#include "writer_options.h"

namespace pg = crm::sinks::postgres;
namespace tf = crm::transform;

namespace {

using crm_test::id_of, crm_test::nov_2026;
constexpr tf::timestamp_us day = crm_test::day_us, hour = day / 24;

const char* const variants[] = {"A", "b \"2\"", "c\\d", "NULL", "{x,y}"};
const char* const visitors[] = {"anon-1", "anon \"2\"", "anon,3", "NULL", "Besucher Größe"};

tf::touchpoint touch(std::uint64_t n, tf::timestamp_us at) {
  tf::touchpoint t;
  t.touchpoint_id = id_of(1000000 + n);
  t.occurred_at = at;
  t.received_at = nov_2026 + 30 * day;
  switch (n % 3) {
    case 0: t.lead_id = static_cast<std::int64_t>(n % 17) + 1; break;
    case 1: t.anonymous_id = visitors[n % 5]; break;
    default:
      t.lead_id = static_cast<std::int64_t>(n % 11) + 1;
      t.anonymous_id = visitors[n % 5];
  }
  t.type = n % 4 == 0 ? tf::touch_type::conversion : tf::touch_type::page_view;
  t.is_conversion = t.type == tf::touch_type::conversion;
  if (t.is_conversion) {
    t.has_conversion_value = n % 8 != 0;
    t.conversion_value = static_cast<double>(n) * 1.2345678901234 + 0.0000005;
    t.currency = "EUR";
  }
  t.utm_source = "newsletter";
  if (n % 4 < 3) {
    t.ab_test_id = n % 2 ? "hero \"image\"" : "t,1";
    t.variant = variants[(n / 4) % 5];
  }
  if (n % 6 == 1) t.tenant_id = "tenant \\ a";
  return t;
}

using crm_test::writer_options_for;
auto opts = writer_options_for;

// Touchpoints of the batch at `position` that the staging statement inserted (see the file's comment).
long long staged_touchpoints(const std::string& dsn, const std::string& position) {
  return crm_test::staged_rows(dsn, "customer_touchpoints", position);
}

// The analytics backlog holds exactly the stored touchpoints, each once, with the values stored.
void expect_backlog_equals_table(const std::string& dsn) {
  crm_test::expect_same_rows(
      dsn,
      "SELECT u.* FROM analytics_backlog b, unnest(b.touchpoint_id, b.occurred_at, b.lead_id, b.anonymous_id,"
      " b.touch_type, b.ab_test_id, b.variant, b.tenant_id) u",
      "SELECT touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id, variant, tenant_id"
      " FROM customer_touchpoints");
  EXPECT_EQ(crm_test::count(dsn, "SELECT coalesce(sum(touchpoints), 0) FROM analytics_backlog"),
            crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"));
}

// A writer maintaining the analytics: each batch records its backlog row (no stage runs here to apply them).
pg::writer_options keeping_backlog(const std::string& dsn) {
  auto o = opts(dsn);
  o.maintain_analytics = true;
  return o;
}

// The doubles a conversion value can be, as text that float8 reads back exactly.
std::string float8_array(const std::vector<double>& values) {
  std::string s = "{";
  char buf[40];
  for (double v : values) {
    if (s.size() > 1) s.push_back(',');
    if (std::isnan(v)) {
      s += "NaN";
    } else {
      std::snprintf(buf, sizeof buf, "%.17g", v);
      s += buf;
    }
  }
  return s + "}";
}

TEST(TouchpointInsert, ConversionValuesAreTheNumericsTheCastMakes) {
  auto dsn = crm_test::fresh_database("t_touch_numeric");
  std::vector<double> values = {0.0, -0.0, 1.0, 0.5, 0.1, 0.2, 0.3, 1e-7, 5e-7, 4.9999999e-7, 5.0000001e-7, 1.0000005,
                                2.5000005, 0.0000015, 0.0000025, 123.456, 1234567.891234567, 9999999999999.9,
                                99999999999.999999, 1e13, 12345678.9999995, 3.141592653589793, 2.5e-6, 1e-300,
                                5e-324, 1e-20, 7.0, 10000.0, 100000000.0, 0.0001, 0.00010001, 9999.99995, 1e-6,
                                -1.5, -123.4567895, std::numeric_limits<double>::quiet_NaN()};
  std::mt19937_64 rng(2026);
  std::uniform_real_distribution<double> mantissa(1.0, 10.0);
  std::uniform_int_distribution<int> exponent(-9, 13);
  for (int i = 0; i < 2000; ++i) values.push_back(mantissa(rng) * std::pow(10.0, exponent(rng)));
  pqxx::connection conn(dsn);
  {
    pqxx::work tx(conn);
    tx.exec("CREATE TABLE t_values (i bigint, v numeric(20,6))");
    pg::copy_encoder enc;
    for (std::size_t i = 0; i < values.size(); ++i) {
      enc.begin_row(2);
      enc.int8(static_cast<std::int64_t>(i + 1));
      enc.numeric_from_float8(values[i]);
    }
    EXPECT_EQ(pg::copy_into(tx, "t_values (i, v)", enc.finish()), values.size());
    tx.commit();
  }
  pqxx::work tx(conn);
  auto differ = tx.exec_params(
      "SELECT e.i, e.x::text, t.v::text, (e.x::numeric(20,6))::text FROM unnest($1::float8[]) WITH ORDINALITY e(x, i)"
      " JOIN t_values t ON t.i = e.i WHERE t.v IS DISTINCT FROM e.x::numeric(20,6) OR t.v::text <> (e.x::numeric(20,6))::text",
      float8_array(values));
  for (const auto& row : differ) {
    ADD_FAILURE() << "value " << row[1].c_str() << ": copied " << row[2].c_str() << ", the cast makes "
                  << row[3].c_str();
  }
  EXPECT_EQ(tx.exec("SELECT count(*) FROM t_values")[0][0].as<std::size_t>(), values.size());
  tx.abort();

  // Out of numeric(20,6)'s range: refused with the cast's SQLSTATE (a data error: the writer splits the batch and
  // dead-letters the row).
  for (double bad : {1e14, 99999999999999.9999996, 1e300, std::numeric_limits<double>::infinity()}) {
    std::string copy_state, cast_state;
    try {
      pqxx::work t2(conn);
      pg::copy_encoder enc;
      enc.begin_row(2);
      enc.int8(0);
      enc.numeric_from_float8(bad);
      pg::copy_into(t2, "t_values (i, v)", enc.finish());
    } catch (const pqxx::sql_error& e) {
      copy_state = e.sqlstate();
    }
    try {
      pqxx::work t2(conn);
      t2.exec_params("SELECT $1::float8::numeric(20,6)", float8_array({bad}).substr(1, float8_array({bad}).size() - 2));
    } catch (const pqxx::sql_error& e) {
      cast_state = e.sqlstate();
    }
    EXPECT_EQ(copy_state, "22003") << bad;
    EXPECT_EQ(copy_state, cast_state) << bad;
  }
}

TEST(TouchpointInsert, TouchpointsAreCopiedIntoTheTableWithTheirBacklogRow) {
  auto dsn = crm_test::fresh_database("t_touch_direct");
  tf::event_batch b;
  // Across a month's end (the COPY fills one buffer per partition).
  for (std::uint64_t i = 0; i < 400; ++i) b.touchpoints.push_back(touch(i, nov_2026 - day + (i % 9) * 5 * hour));
  b.touchpoints.push_back(touch(3, nov_2026 - day + 3 * 5 * hour));  // a repeat within the batch
  pg::writer w(keeping_backlog(dsn));
  auto r = w.write(b, {"test", "direct"});
  EXPECT_EQ(r.touchpoints_inserted, 400u);
  EXPECT_EQ(r.duplicates(), 1u);
  EXPECT_EQ(staged_touchpoints(dsn, "direct"), 0) << "the touchpoints were not copied directly";
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 400);
  EXPECT_EQ(crm_test::count(dsn, "SELECT sum(touchpoints_inserted) FROM ingest_batches"), 400);
  // What the staging statement's cast stores: the float8 sent, as numeric(20,6); NULL without a value.
  std::string ids = "{";
  std::vector<double> sent;
  for (std::uint64_t i = 0; i < 400; ++i) {
    const auto t = touch(i, 0);
    ids += (i ? "," : "") + tf::to_string(t.touchpoint_id);
    sent.push_back(t.has_conversion_value ? t.conversion_value : std::numeric_limits<double>::quiet_NaN());
  }
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints t JOIN unnest('" + ids + "}'::uuid[], '" +
                                     float8_array(sent) + "'::float8[]) s(id, v) ON t.touchpoint_id = s.id"
                                     " WHERE t.conversion_value IS DISTINCT FROM"
                                     " CASE WHEN s.v = 'NaN' THEN NULL ELSE s.v::numeric(20,6) END"),
            0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(conversion_value) FROM customer_touchpoints"), 50);
  expect_backlog_equals_table(dsn);
  // Every visitor and variant came through its array literal as it was written.
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT a) FROM analytics_backlog, unnest(anonymous_id) a"), 5);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT a) FROM analytics_backlog, unnest(variant) a"), 5);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM analytics_backlog, unnest(tenant_id) a WHERE a = 'tenant \\ a'"),
            crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints WHERE tenant_id = 'tenant \\ a'"));
  // A year past 9999 (the `normalized` Kafka format is checked only against the column's range): its backlog
  // time is the stored one.
  tf::event_batch far;
  far.touchpoints.push_back(touch(500, 317278807200LL * 1000000 + 1));  // 12024-03-01 10:00:00.000001
  EXPECT_EQ(w.write(far, {"test", "far"}).touchpoints_inserted, 1u);
  EXPECT_EQ(staged_touchpoints(dsn, "far"), 0);
  expect_backlog_equals_table(dsn);
  // Without analytics: no backlog row.
  auto o = opts(dsn);
  o.maintain_analytics = false;
  pg::writer plain(o);
  tf::event_batch more;
  for (std::uint64_t i = 400; i < 450; ++i) more.touchpoints.push_back(touch(i, nov_2026 + i * hour));
  EXPECT_EQ(plain.write(more, {"test", "plain"}).touchpoints_inserted, 50u);
  EXPECT_EQ(staged_touchpoints(dsn, "plain"), 0);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM analytics_backlog"), 2);
}

// An INSERT rule on the table: COPY would ignore it, so the batch takes the staging statement, whose ON CONFLICT
// PostgreSQL refuses on a table with rules — the batch is refused, as before the direct path, instead of
// stored past the rule.
TEST(TouchpointInsert, AnInsertRuleIsNeverBypassed) {
  auto dsn = crm_test::fresh_database("t_touch_rule");
  crm_test::execute(dsn, "CREATE TABLE t_seen (touchpoint_id uuid);"
                         " CREATE RULE t_also AS ON INSERT TO customer_touchpoints"
                         " DO ALSO INSERT INTO t_seen VALUES (NEW.touchpoint_id)");
  tf::event_batch b;
  for (std::uint64_t i = 0; i < 10; ++i) b.touchpoints.push_back(touch(i, nov_2026 + i * hour));
  pg::writer w(opts(dsn));
  EXPECT_THROW(w.write(b, {"test", "ruled"}), pg::write_error);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 0);
}

// Two writers of different processes with overlapping parts across a month's end, one held up by a third session's
// uncommitted row (communication_insert_test.cc has the same for communications): touchpoints go in by month, then
// key, too, so neither batch is replayed.
TEST(TouchpointInsert, WritersOfOverlappingPartsAcrossAMonthsEndDoNotDeadlock) {
  auto dsn = crm_test::fresh_database("t_touch_order");
  const auto [a, b] = crm_test::overlapping_batches(
      [](tf::event_batch& batch, std::uint64_t n, tf::timestamp_us at) { batch.touchpoints.push_back(touch(n, at)); });
  const auto& held = a.touchpoints[1];  // touchpoint 2, uncommitted: writer A waits for it
  EXPECT_EQ(crm_test::expect_writers_do_not_deadlock(
                dsn, a, b,
                "INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, lead_id, touch_type,"
                " channel_group) VALUES ('" + tf::to_string(held.touchpoint_id) +
                    "', '2026-11-05 00:00:00+00', now(), 1, 'page_view', 'Direct')"),
            5u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 5);
}

TEST(TouchpointInsert, TouchpointsStoredAlreadyAreLeftOutOfTheCopyAndTheBacklog) {
  auto dsn = crm_test::fresh_database("t_touch_stored");
  tf::event_batch every_other, all;
  for (std::uint64_t i = 0; i < 300; ++i) {
    all.touchpoints.push_back(touch(i, nov_2026 + (i % 5) * day));
    if (i % 2 == 0) every_other.touchpoints.push_back(all.touchpoints.back());
  }
  // Stored by another writer (another process): the writer below has no hint of them.
  EXPECT_EQ(pg::writer(keeping_backlog(dsn)).write(every_other, {"test", "first"}).touchpoints_inserted, 150u);

  auto seen = std::make_shared<crm_test::probe_counter>("customer_touchpoints");
  auto with_observer = keeping_backlog(dsn);
  with_observer.observer = seen;
  pg::writer w(with_observer);
  // The COPY meets a stored row, is rolled back, the part is probed whole, and the 150 others are copied.
  const auto r = w.write(all, {"test", "second"});
  EXPECT_EQ(std::pair(r.touchpoints_inserted, r.duplicates()), std::pair(std::uint64_t{150}, std::uint64_t{150}));
  EXPECT_EQ(staged_touchpoints(dsn, "second"), 0) << "the new rows were not copied directly";
  EXPECT_EQ(std::pair(seen->conflicts, seen->probed_rows), std::pair(std::size_t{1}, std::size_t{300}))
      << "(COPYs that met a stored row, rows probed)";
  // A part the writer sent before is probed first: it inserts nothing and adds no backlog row.
  EXPECT_EQ(w.write(all, {"test", "again"}).touchpoints_inserted, 0u);
  EXPECT_EQ(seen->conflicts, 1u) << "a COPY met a row the writer had sent itself";
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM analytics_backlog"), 2);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints"), 300);
  expect_backlog_equals_table(dsn);
}

// A trigger of the database's on a partition of customer_touchpoints that changes rows: the touchpoints take the
// staging statement, whose RETURNING records the rows really stored in the backlog (a backlog built from the rows
// sent would name the visitor the trigger replaced).
TEST(TouchpointInsert, ATriggerOnAPartitionSendsEveryTouchpointThroughTheStagingStatement) {
  tf::event_batch copied, staged;
  long long relabelled = 0;
  for (std::uint64_t i = 0; i < 90; ++i) {
    auto& b = i < 45 ? copied : staged;
    b.touchpoints.push_back(touch(i, nov_2026 + i * hour));
    if (i >= 45 && b.touchpoints.back().lead_id == 1) ++relabelled;
  }
  ASSERT_GT(relabelled, 0);
  auto dsn = crm_test::fresh_database("t_touch_trigger");
  pg::writer w(keeping_backlog(dsn));
  EXPECT_EQ(w.write(copied, {"test", "before"}).touchpoints_inserted, 45u);
  EXPECT_EQ(staged_touchpoints(dsn, "before"), 0);
  // Created while the writer is connected.
  crm_test::execute(dsn, "CREATE FUNCTION t_relabel() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                         " IF NEW.lead_id = 1 THEN NEW.anonymous_id := 'relabelled'; END IF; RETURN NEW; END $$;"
                         " CREATE TRIGGER t_relabel BEFORE INSERT ON customer_touchpoints_2026_11 FOR EACH ROW"
                         " EXECUTE FUNCTION t_relabel()");
  EXPECT_EQ(w.write(staged, {"test", "after"}).touchpoints_inserted, 45u);
  EXPECT_EQ(staged_touchpoints(dsn, "after"), 45);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM customer_touchpoints WHERE anonymous_id = 'relabelled'"),
            relabelled);
  expect_backlog_equals_table(dsn);
}

}  // namespace
