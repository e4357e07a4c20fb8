// schemas/0003_security.sql with real roles: Row Level Security as a PostgREST/Supabase reader meets it
// (SET ROLE + request.jwt.claims per transaction, as PostgREST does), the read-only analytics role, and
// what the writer role may not do.
#include <string>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "support/test_db.h"

namespace {

// Rows of tenants A, B and none, inserted by the owner (not subject to RLS).
std::string seeded_database(const std::string& name) {
  auto dsn = crm_test::fresh_database(name);
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  const char* insert =
      "INSERT INTO communications (event_id, occurred_at, received_at, channel, status, email, tenant_id) "
      "SELECT gen_random_uuid(), now(), now(), 'email', 'sent', 'x@y.co', t "
      "FROM unnest(ARRAY['A','A','A','B','B',NULL]) AS t";
  tx.exec(insert);
  tx.exec("INSERT INTO customer_touchpoints (touchpoint_id, occurred_at, received_at, touch_type, channel_group, anonymous_id, "
          "tenant_id) SELECT gen_random_uuid(), now(), now(), 'page_view', 'Direct', 'anon', t FROM unnest(ARRAY['A','B','B']) t");
  tx.exec("INSERT INTO rejected_events (rejection_id, received_at, source, reason, raw, tenant_id) "
          "VALUES (gen_random_uuid(), now(), 's', 'r', '{}', 'B')");
  tx.commit();
  return dsn;
}

// Counts `table` as `role` with the JWT claims PostgREST would set ("" = none), in one transaction.
long long count_as(const std::string& dsn, const std::string& role, const std::string& claims, const std::string& table) {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  tx.exec("SET LOCAL ROLE " + role);
  if (!claims.empty()) tx.exec("SELECT set_config('request.jwt.claims', " + tx.quote(claims) + ", true)");
  return tx.exec("SELECT count(*) FROM " + table)[0][0].as<long long>();
}

// The SQLSTATE `sql` fails with as `role` ("" = it succeeded).
std::string failure_as(const std::string& dsn, const std::string& role, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  tx.exec("SET LOCAL ROLE " + role);
  try {
    tx.exec(sql);
    return "";
  } catch (const pqxx::sql_error& e) {
    if (!e.sqlstate().empty()) return e.sqlstate();
    // libpqxx 6.4 leaves sqlstate() empty for some classes (insufficient_privilege among them).
    std::string what = e.what();
    if (what.find("permission denied") != std::string::npos || what.find("must be owner") != std::string::npos) {
      return "42501";
    }
    return "other: " + what;
  }
}

TEST(RowLevelSecurity, TenantReaderSeesOnlyItsTenantsRows) {
  auto dsn = seeded_database("t_rls_tenants");
  const std::string a = R"({"role":"authenticated","sub":"u1","tenant_id":"A"})";
  const std::string b = R"({"role":"authenticated","sub":"u2","tenant_id":"B"})";
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", a, "communications"), 3);
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", b, "communications"), 2);
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", a, "communications WHERE tenant_id = 'B'"), 0);
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", a, "customer_touchpoints"), 1);
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", b, "customer_touchpoints"), 2);
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", a, "rejected_events"), 0);
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", b, "rejected_events"), 1);
  // No tenant claim: only the rows without a tenant.
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", "", "communications"), 1);
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", R"({"role":"authenticated"})", "communications"), 1);
  // The older PostgREST setting (request.jwt.claim.<name>) is honoured too.
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec("SET LOCAL ROLE crm_ingest_analytics");
    tx.exec("SELECT set_config('request.jwt.claim.tenant_id', 'B', true)");
    EXPECT_EQ(tx.exec("SELECT count(*) FROM communications")[0][0].as<long long>(), 2);
  }
  // A Supabase-style API role granted the analytics role is filtered the same way.
  {
    pqxx::connection admin(crm_test::admin_dsn());
    pqxx::nontransaction tx(admin);
    tx.exec("DROP ROLE IF EXISTS t_rls_authenticated");
    tx.exec("CREATE ROLE t_rls_authenticated NOLOGIN IN ROLE crm_ingest_analytics");
  }
  EXPECT_EQ(count_as(dsn, "t_rls_authenticated", a, "communications"), 3);
  EXPECT_EQ(count_as(dsn, "t_rls_authenticated", b, "communications WHERE tenant_id = 'A'"), 0);
  // The monthly metrics carry no tenant: readable, aggregated.
  EXPECT_EQ(count_as(dsn, "crm_ingest_analytics", a, "communication_metrics"), 0);
}

TEST(RowLevelSecurity, AnalyticsRoleIsReadOnlyAndCannotBypassThroughPartitions) {
  auto dsn = seeded_database("t_rls_analytics");
  EXPECT_EQ(failure_as(dsn, "crm_ingest_analytics",
                       "INSERT INTO communications (event_id, occurred_at, received_at, channel, status, tenant_id) "
                       "VALUES (gen_random_uuid(), now(), now(), 'email', 'sent', 'A')"),
            "42501");
  EXPECT_EQ(failure_as(dsn, "crm_ingest_analytics", "UPDATE communications SET status = 'failed'"), "42501");
  EXPECT_EQ(failure_as(dsn, "crm_ingest_analytics", "DELETE FROM ingest_batches"), "42501");
  // A partition read directly would escape the parent's policies: not granted.
  auto partition = crm_test::count(dsn, "SELECT count(*) FROM pg_class WHERE relname = 'communications_default'");
  ASSERT_EQ(partition, 1);
  EXPECT_EQ(failure_as(dsn, "crm_ingest_analytics", "SELECT * FROM communications_default"), "42501");
  pqxx::connection c(dsn);
  pqxx::read_transaction tx(c);
  auto month = tx.exec("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = 'communications'::regclass AND c.relname <> 'communications_default' "
                       "LIMIT 1")[0][0].as<std::string>();
  EXPECT_EQ(failure_as(dsn, "crm_ingest_analytics", "SELECT * FROM " + month), "42501");
  EXPECT_EQ(failure_as(dsn, "crm_ingest_analytics", "SELECT count(*) FROM campaigns"), "");
  // The analytics stage's statement cache runs any SQL it is given (schemas/0011): a reader must not reach it, or
  // it could set another tenant's claims and read around the policies.
  EXPECT_EQ(failure_as(dsn, "crm_ingest_analytics", "SELECT crm_execute_cached('crm_x', 'SELECT 1', 1)"), "42501");
}

TEST(WriterRole, CannotReadOrAlterOutsideItsGrant) {
  auto dsn = seeded_database("t_writer_grants");
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec("CREATE TABLE crm_private_notes (note text)");
    tx.commit();
  }
  const std::string w = "crm_ingest_writer";
  // What ingestion needs works (inside a transaction that is rolled back).
  EXPECT_EQ(failure_as(dsn, w, "SELECT count(*) FROM communications"), "");
  // The daily counts: appended by the batches, folded after (schemas/0021), read through the view.
  EXPECT_EQ(failure_as(dsn, w,
                       "INSERT INTO communication_metrics_pending (day, campaign_id, channel, status, event_count) "
                       "VALUES (current_date, NULL, 'email', 'sent', 1)"),
            "");
  EXPECT_EQ(failure_as(dsn, w, "SELECT crm_metrics_fold()"), "");
  EXPECT_EQ(failure_as(dsn, w, "SELECT sum(event_count) FROM communication_metrics"), "");
  EXPECT_EQ(failure_as(dsn, w, "CREATE TEMP TABLE staging (x int)"), "");
  EXPECT_EQ(failure_as(dsn, w, "SELECT crm_execute_cached('crm_x', 'SELECT 1', 1)"), "");  // the analytics stage's
  // `rejected replay` (run as a writer role) marks or deletes the dead letters it replayed (schemas/0018).
  EXPECT_EQ(failure_as(dsn, w, "UPDATE rejected_events SET replayed_at = now()"), "");
  EXPECT_EQ(failure_as(dsn, w, "DELETE FROM rejected_events"), "");
  // What it does not need is refused.
  for (const char* refused : {
           "SELECT * FROM crm_private_notes",
           "UPDATE communications SET status = 'failed'",
           "DELETE FROM communications",
           "TRUNCATE communications",
           "DELETE FROM ingest_batches",
           "UPDATE rejected_events SET raw = 'x', reason = 'y'",  // a dead letter's content stays as it came
           "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'x', 'y')",
           "INSERT INTO campaigns (campaign_id) VALUES (1)",
           // Only the fold (SECURITY DEFINER) and the owner's recompute change the counts once appended.
           "DELETE FROM communication_metrics_folded",
           "UPDATE communication_metrics_folded SET event_count = 0",
           "INSERT INTO communication_metrics_folded (day, channel, status, event_count)"
           " VALUES (current_date, 'email', 'sent', 1)",
           "DELETE FROM ab_test_message_counts_folded",
           "UPDATE ab_test_message_counts_folded SET events = 0",
           "DELETE FROM communication_metrics_pending",
           "DELETE FROM ab_test_message_counts_pending",
           "ALTER TABLE communications ADD COLUMN x int",
           "ALTER TABLE communications DISABLE ROW LEVEL SECURITY",
           "DROP TABLE rejected_events",
           "CREATE TABLE public.planted (x int)",
       }) {
    EXPECT_EQ(failure_as(dsn, w, refused), "42501") << refused;
  }
}

TEST(Roles, MigrationIsRepeatableAcrossDatabasesOfOneCluster) {
  // The roles are cluster-wide: a second database's migration finds them and only grants.
  auto one = crm_test::fresh_database("t_roles_one");
  auto two = crm_test::fresh_database("t_roles_two");
  EXPECT_EQ(crm_test::count(two, "SELECT count(*) FROM pg_roles WHERE rolname IN ('crm_ingest_writer', "
                                 "'crm_ingest_analytics') AND NOT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls"),
            2);
  // How many of `privileges` (a SQL list) `grantee` holds on the tables in `tables` (a SQL list).
  auto grants = [&](const std::string& grantee, const std::string& tables, const std::string& privileges) {
    return crm_test::count(two, "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = '" +
                                    grantee + "' AND table_name IN (" + tables + ") AND privilege_type IN (" +
                                    privileges + ")");
  };
  EXPECT_EQ(grants("crm_ingest_writer", "'communications'", "'UPDATE', 'DELETE', 'TRUNCATE'"), 0);
  // The analytics tables of 0002, maintained by the analytics stage as the writer role, are granted to it.
  EXPECT_EQ(grants("crm_ingest_writer",
                   "'attribution_credits', 'campaign_attribution_daily', 'ab_test_units', 'ab_test_variant_stats', "
                   "'ab_test_message_counts_pending'",
                   "'INSERT'"),
            5);
  EXPECT_EQ(grants("crm_ingest_analytics", "'campaign_attribution_daily'", "'SELECT'"), 1);
  // The analytics backlog (0005): the writer records and the stage deletes its rows; readers only learn the lag
  // (a definer function), never the backlog's ids, which span every tenant.
  EXPECT_EQ(grants("crm_ingest_writer", "'analytics_backlog'", "'INSERT', 'DELETE'"), 2);
  EXPECT_EQ(grants("crm_ingest_analytics", "'analytics_backlog'", "'SELECT', 'INSERT', 'UPDATE', 'DELETE'"), 0);
  EXPECT_EQ(crm_test::count(two, "SELECT count(*) FROM pg_proc WHERE proname = 'crm_analytics_lag' AND prosecdef AND "
                                 "has_function_privilege('crm_ingest_analytics', oid, 'EXECUTE')"),
            1);
}

}  // namespace
