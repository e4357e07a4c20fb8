// `ab_tests` rows that describe no computable test (schemas/0015_ab_test_checks.sql): refused when inserted or
// updated, with the reason; a row stored before the check is refused by `report ab-test` (exit 2) with the same
// reason instead of a report with `chi2 nan` or a control it silently replaced.
#include <string>

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "support/run_command.h"
#include "support/test_db.h"

namespace {

crm_test::command_result run(const std::string& args) { return crm_test::run_ingest("--log-level warn " + args); }

// The message of the error the INSERT (or UPDATE) raised; empty when it was accepted.
std::string refusal(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::work tx(c);
  try {
    tx.exec(sql);
    tx.commit();
    return "";
  } catch (const pqxx::sql_error& e) {
    EXPECT_EQ(e.sqlstate(), "23514") << e.what();  // check_violation
    return e.what();
  }
}

void expect_has(const std::string& out, const std::string& piece) {
  EXPECT_NE(out.find(piece), std::string::npos) << "expected " << piece << " in:\n" << out;
}

std::string insert(const std::string& id, const std::string& variants, const std::string& weights,
                   const std::string& control, const std::string& window = "interval '30 days'") {
  return "INSERT INTO ab_tests (ab_test_id, variants, variant_weights, control_variant, conversion_window) VALUES ('" +
         id + "', " + variants + ", " + weights + ", " + control + ", " + window + ")";
}

TEST(AbTestRows, ARowThatDescribesNoComputableTestIsRefusedWithItsReason) {
  const auto dsn = crm_test::fresh_database("t_ab_rows");
  const std::string ab = "ARRAY['A','B']";
  expect_has(refusal(dsn, insert("nan", ab, "ARRAY[1,'NaN']::float8[]", "'A'")), "must be finite numbers >= 0");
  expect_has(refusal(dsn, insert("inf", ab, "ARRAY[1,'Infinity']::float8[]", "'A'")), "must be finite numbers >= 0");
  expect_has(refusal(dsn, insert("neg", ab, "ARRAY[-1,2]::float8[]", "'A'")), "must be finite numbers >= 0");
  expect_has(refusal(dsn, insert("zero", ab, "ARRAY[0,0]::float8[]", "'A'")), "a weight above 0");
  expect_has(refusal(dsn, insert("count", ab, "ARRAY[1,1,1]::float8[]", "'A'")), "has 3 weights for 2 variants");
  expect_has(refusal(dsn, insert("alone", "NULL", "ARRAY[1,1]::float8[]", "NULL")), "without variants");
  expect_has(refusal(dsn, insert("ctl", ab, "NULL", "'C'")), "control_variant 'C' is not one of the variants");
  expect_has(refusal(dsn, insert("win", ab, "NULL", "'A'", "interval '0'")), "conversion_window must be positive");
  expect_has(refusal(dsn, insert("win2", ab, "NULL", "'A'", "interval '1 mon -40 days'")), "must be positive");
  // The reason names the row.
  expect_has(refusal(dsn, insert("named-test", ab, "ARRAY[1,'NaN']::float8[]", "'A'")), "ab_tests row 'named-test'");

  // What was allowed stays allowed: NULLs where the reports read them as "not given", a zero weight beside a
  // positive one (a variant not served), a NULL weight (weights unknown: equal).
  EXPECT_EQ(refusal(dsn, insert("ok1", ab, "ARRAY[0.9,0.1]::float8[]", "'B'")), "");
  EXPECT_EQ(refusal(dsn, insert("ok2", ab, "NULL", "NULL")), "");
  EXPECT_EQ(refusal(dsn, insert("ok3", "NULL", "NULL", "'A'")), "");
  EXPECT_EQ(refusal(dsn, insert("ok4", "ARRAY['A','B','C']", "ARRAY[1,0,NULL]::float8[]", "'C'")), "");
  EXPECT_EQ(refusal(dsn, insert("ok5", ab, "ARRAY[1,1]::float8[]", "'A'", "interval '1 hour'")), "");
  // An UPDATE is checked as an INSERT is.
  expect_has(refusal(dsn, "UPDATE ab_tests SET control_variant = 'Z' WHERE ab_test_id = 'ok1'"), "is not one of");
  // Whatever the inserting session's search_path.
  expect_has(refusal(dsn, "SET search_path = pg_catalog; INSERT INTO public.ab_tests (ab_test_id, variants,"
                          " control_variant) VALUES ('path', ARRAY['A'], 'Q')"),
             "is not one of");
}

TEST(AbTestRows, AReportRefusesARowStoredBeforeTheCheck) {
  const auto dsn = crm_test::fresh_database("t_ab_rows_old");
  {
    // As such rows were stored before schemas/0015: the constraint is NOT VALID, so they stay.
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec("ALTER TABLE ab_tests DROP CONSTRAINT ab_tests_row_valid");
    tx.exec(insert("old-nan", "ARRAY['A','B']", "ARRAY[1,'NaN']::float8[]", "'A'"));
    tx.exec(insert("old-ctl", "ARRAY['A','B']", "ARRAY[1,1]::float8[]", "'Z'"));
    tx.exec(insert("fine", "ARRAY['A','B']", "ARRAY[1,1]::float8[]", "'B'"));
    tx.exec("ALTER TABLE ab_tests ADD CONSTRAINT ab_tests_row_valid CHECK (crm_ab_test_row_valid(ab_test_id,"
            " variants, variant_weights, control_variant, conversion_window)) NOT VALID");
    tx.commit();
  }
  const std::string db = " --dsn '" + dsn + "'";
  auto r = run("report ab-test --test old-nan" + db);
  EXPECT_EQ(r.status, 2) << r.out;
  expect_has(r.out, "error: ab_tests row old-nan: variant_weights must be finite numbers >= 0");
  EXPECT_EQ(r.out.find("chi2"), std::string::npos) << r.out;
  r = run("report ab-test --test old-ctl --format json" + db);
  EXPECT_EQ(r.status, 2) << r.out;
  expect_has(r.out, "control_variant 'Z' is not one of the variants {A,B}");
  // A valid row reports (no exposures yet: the configured variants with zero units).
  r = run("report ab-test --test fine" + db);
  EXPECT_EQ(r.status, 0) << r.out;
  expect_has(r.out, "(control B)");
}

}  // namespace
