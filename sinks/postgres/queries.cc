#include "sinks/postgres/queries.h"

#include "sinks/postgres/communication_insert.h"

namespace crm::sinks::postgres {

namespace {

const char* or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

// A campaign only touchpoints named (the usual case for attribution) is neither registered nor in the
// communications' metrics: the rows that still show its derived key (a negative integer) get its reference
// from the touchpoints, in one pass for all of them (no index has campaign_id; only run when there is one).
void name_touchpoint_campaigns(pqxx::dbtransaction& tx, std::vector<attribution_row>& rows) {
  std::string keys;
  for (const auto& r : rows) {
    if (r.first && r.first->size() > 1 && (*r.first)[0] == '-' &&
        r.first->find_first_not_of("0123456789", 1) == std::string::npos) {
      keys.append(keys.empty() ? "{" : ",").append(*r.first);
    }
  }
  if (keys.empty()) return;
  std::map<std::string, std::string> refs;
  for (const auto& row : tx.exec_params("SELECT DISTINCT ON (campaign_id) campaign_id::text, campaign_ref"
                                        " FROM customer_touchpoints WHERE campaign_id = ANY($1::bigint[])"
                                        " AND campaign_ref IS NOT NULL",
                                        keys + "}")) {
    refs.emplace(row[0].as<std::string>(), row[1].as<std::string>());
  }
  for (auto& r : rows) {
    if (auto it = r.first ? refs.find(*r.first) : refs.end(); it != refs.end()) r.first = it->second;
  }
}

}  // namespace

partition_catalog read_partition_catalog(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  auto r = tx.exec(
      "WITH next AS (SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month', "
      "'YYYY_MM') AS suffix) "
      "SELECT (SELECT count(*) FROM next, unnest(ARRAY['communications', 'customer_touchpoints']) AS p(parent) "
      "        WHERE EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
      "                      WHERE i.inhparent = p.parent::regclass AND c.relname = p.parent || '_' || next.suffix)), "
      // Capped per table so that a DEFAULT partition filled by mistake does not cost a full scan every time.
      "       (SELECT count(*) FROM (SELECT 1 FROM communications_default LIMIT 1000000) c) + "
      "       (SELECT count(*) FROM (SELECT 1 FROM customer_touchpoints_default LIMIT 1000000) t)");
  return {r[0][0].as<long long>() == 2, r[0][1].as<long long>()};
}

std::vector<dead_letter> read_dead_letters(pqxx::connection& conn, const dead_letter_filter& f,
                                           const std::string& after_id, long long limit, std::size_t max_bytes) {
  pqxx::read_transaction tx(conn);
  // The raw the client keeps (raw_bytes when set, else raw) is sent once; a row is taken while the rows before it
  // hold less than max_bytes (octet_length reads a stored value's size without decompressing it).
  auto rows = tx.exec_params(
      "SELECT rejection_id::text, (extract(epoch FROM received_at) * 1000000)::bigint, source, reason,"
      " CASE WHEN raw_bytes IS NULL THEN raw END, raw_bytes, tenant_id, idempotency_key FROM"
      " (SELECT *, sum(coalesce(octet_length(raw_bytes), octet_length(raw))) OVER (ORDER BY rejection_id) AS upto,"
      " coalesce(octet_length(raw_bytes), octet_length(raw)) AS size FROM rejected_events WHERE replayed_at IS NULL"
      " AND ($1::text IS NULL OR source LIKE $1) AND ($2::text IS NULL OR reason LIKE $2)"
      " AND ($3::timestamptz IS NULL OR received_at >= $3::timestamptz)"
      " AND ($4::timestamptz IS NULL OR received_at < $4::timestamptz)"
      " AND ($5::uuid IS NULL OR rejection_id > $5::uuid)"
      " ORDER BY rejection_id LIMIT $6) page WHERE upto - size < $7 ORDER BY rejection_id",
      or_null(f.source_like), or_null(f.reason_like), or_null(f.since), or_null(f.until), or_null(after_id), limit,
      static_cast<long long>(max_bytes));
  std::vector<dead_letter> out;
  out.reserve(rows.size());
  for (const auto& row : rows) {
    dead_letter d;
    d.rejection_id = row[0].as<std::string>();
    d.received_at_us = row[1].as<long long>();
    d.source = row[2].as<std::string>();
    d.reason = row[3].as<std::string>();
    d.raw = row[5].is_null() ? row[4].as<std::string>() : pqxx::binarystring(row[5]).str();
    if (!row[6].is_null()) d.tenant_id = row[6].as<std::string>();
    if (!row[7].is_null()) d.idempotency_key = row[7].as<std::string>();
    out.push_back(std::move(d));
  }
  return out;
}

void settle_dead_letters(pqxx::connection& conn, const std::vector<std::string>& rejection_ids, bool remove) {
  std::string ids = "{";
  for (std::size_t i = 0; i < rejection_ids.size(); ++i) {
    if (i) ids.push_back(',');
    ids.append(rejection_ids[i]);  // uuid text from the database: no quoting needed
  }
  ids.push_back('}');
  pqxx::work tx(conn);
  if (remove) tx.exec_params("DELETE FROM rejected_events WHERE rejection_id = ANY($1::uuid[])", ids);
  else tx.exec_params("UPDATE rejected_events SET replayed_at = now() WHERE rejection_id = ANY($1::uuid[])", ids);
  tx.commit();
}

std::vector<std::string> drop_dead_letters_from(pqxx::connection& conn, const std::string& source_prefix) {
  pqxx::work tx(conn);
  std::vector<std::string> reasons;
  for (const auto& row : tx.exec_params("DELETE FROM rejected_events WHERE starts_with(source, $1) AND replayed_at IS NULL"
                                        " RETURNING reason",
                                        source_prefix)) {
    reasons.push_back(row[0].as<std::string>());
  }
  tx.commit();
  return reasons;
}

stored_flags stored_events(pqxx::connection& conn, std::span<const row_key> communications,
                           const std::vector<bool>& receipt, std::span<const row_key> touchpoints) {
  stored_flags out{std::vector<bool>(communications.size()), std::vector<bool>(touchpoints.size())};
  pqxx::read_transaction tx(conn);
  // Both parents in the one order (schemas/0022): a partition being created meanwhile cannot deadlock with this.
  tx.exec("LOCK TABLE ONLY communications, ONLY customer_touchpoints IN ACCESS SHARE MODE");
  for (std::size_t i : stored_already(tx, "customer_touchpoints", "touchpoint_id", touchpoints)) out.touchpoints[i] = true;
  // Communications: the key, or the writer's retry window for one whose time is its receipt. Arrays as text:
  // uuids we formatted, times as microseconds since the epoch (bigint), made exact in SQL.
  std::string ids = "{", times = "{", flags = "{";
  for (std::size_t i = 0; i < communications.size(); ++i) {
    ids.append(i ? "," : "").append(transform::to_string(communications[i].id));
    times.append(i ? "," : "").append(std::to_string(communications[i].at));
    flags.append(i ? "," : "").append(receipt.at(i) ? "t" : "f");
  }
  const std::string at = "(timestamptz 'epoch' + (u.us / 1000000) * interval '1 second'"
                         " + (u.us % 1000000) * interval '1 microsecond')";
  for (const auto& row : tx.exec_params(
           "SELECT u.i FROM unnest($1::uuid[], $2::bigint[], $3::boolean[]) WITH ORDINALITY AS u(id, us, receipt, i)"
           " WHERE EXISTS (SELECT 1 FROM communications c WHERE c.event_id = u.id AND c.occurred_at = " + at + ")"
           " OR (u.receipt AND EXISTS (SELECT 1 FROM communications c WHERE " +
               receipt_retry_match("c", "u.id", at) + "))",
           ids + "}", times + "}", flags + "}")) {
    out.communications.at(row[0].as<std::size_t>() - 1) = true;
  }
  return out;
}

std::vector<attribution_row> read_attribution(pqxx::connection& conn, const std::string& by, const std::string& model,
                                              const std::string& from, const std::string& to) {
  std::string first, second;
  // A campaign the CRM keys by text shows its reference (schemas/0006_crm_refs.sql): as registered in
  // campaigns, else as its communications carried it, else as its touchpoints did (below).
  if (by == "campaign") {
    first = "CASE WHEN campaign_id < 0 THEN coalesce((SELECT c.campaign_ref FROM campaigns c"
            " WHERE c.campaign_id = d.campaign_id), (SELECT m.campaign_ref FROM communication_metrics m"
            " WHERE m.campaign_id = d.campaign_id AND m.campaign_ref IS NOT NULL LIMIT 1), campaign_id::text)"
            " ELSE campaign_id::text END";
    second = "utm_campaign";
  } else if (by == "source") {
    first = "utm_source";
    second = "utm_medium";
  } else {
    first = "channel_group";
    second = "NULL::text";
  }
  const std::string dims = first + " AS f, " + second + " AS s";
  // The conversions awaiting a rate: one factor per currency and UTC day, then their credit rows.
  const std::string conversions =
      // (a value without a currency counts as the reporting currency: it never awaits a rate)
      " FROM customer_touchpoints t WHERE t.touch_type = 'conversion' AND t.conversion_value <> 0"
      " AND t.currency IS NOT NULL"
      " AND ($2::date IS NULL OR t.occurred_at >= ($2::date::timestamp AT TIME ZONE 'UTC'))"
      " AND ($3::date IS NULL OR t.occurred_at < (($3::date + 1)::timestamp AT TIME ZONE 'UTC'))";
  pqxx::read_transaction tx(conn);
  auto rows = tx.exec_params(
      "WITH main AS (SELECT model, " + dims + ", sum(conversions) AS conversions, sum(revenue) AS revenue"
          " FROM campaign_attribution_daily d"
          " WHERE ($1::text IS NULL OR model = $1) AND ($2::date IS NULL OR day >= $2::date)"
          " AND ($3::date IS NULL OR day <= $3::date) GROUP BY 1, 2, 3),"
          " missing AS (SELECT x.currency, x.day FROM (SELECT DISTINCT t.currency,"
          " (t.occurred_at AT TIME ZONE 'UTC')::date AS day" + conversions + ") x, attribution_settings st"
          " WHERE crm_fx_factor(x.currency, x.day, st.reporting_currency) IS NULL),"
          " waiting AS (SELECT t.touchpoint_id, t.occurred_at" + conversions +
          " AND EXISTS (SELECT 1 FROM missing m WHERE m.currency IS NOT DISTINCT FROM t.currency"
          " AND m.day = (t.occurred_at AT TIME ZONE 'UTC')::date)),"
          " aw AS (SELECT model, " + dims + ", sum(credit) AS n FROM attribution_credits d"
          " JOIN waiting w ON d.conversion_id = w.touchpoint_id AND d.conversion_occurred_at = w.occurred_at"
          " WHERE ($1::text IS NULL OR model = $1) GROUP BY 1, 2, 3)"
          " SELECT main.model, main.f, main.s, main.conversions::text, round(main.revenue, 6)::text,"
          " trim_scale(coalesce(aw.n, 0))::text FROM main LEFT JOIN aw ON aw.model = main.model"
          " AND aw.f IS NOT DISTINCT FROM main.f AND aw.s IS NOT DISTINCT FROM main.s"
          " ORDER BY 1, main.revenue DESC, 2, 3",
      or_null(model), or_null(from), or_null(to));
  auto opt = [](const pqxx::field& f) { return f.is_null() ? std::nullopt : std::optional(f.as<std::string>()); };
  auto text = [](const pqxx::field& f) { return f.is_null() ? std::string() : f.as<std::string>(); };
  std::vector<attribution_row> out;
  for (const auto& row : rows) {
    out.push_back({row[0].as<std::string>(), opt(row[1]), opt(row[2]), text(row[3]), text(row[4]), text(row[5])});
  }
  if (by == "campaign") name_touchpoint_campaigns(tx, out);
  return out;
}

identity_summary read_identity_summary(pqxx::connection& conn) {
  pqxx::read_transaction tx(conn);
  const pqxx::row row = tx.exec(
      "SELECT (SELECT count(*) FROM identity_links), (SELECT count(*) FROM identity_links WHERE claims > 1),"
      " (SELECT count(*) FROM (SELECT DISTINCT conversion_id, conversion_occurred_at FROM attribution_credits"
      " WHERE stitched) s),"
      " (SELECT count(*) FROM (SELECT DISTINCT tenant, anonymous_id FROM identity_claims) v)")[0];
  return {row[0].as<long long>(), row[1].as<long long>(), row[2].as<long long>(), row[3].as<long long>()};
}

ab_test_data read_ab_test(pqxx::connection& conn, const std::string& ab_test_id) {
  ab_test_data d;
  pqxx::read_transaction tx(conn);
  // The row's problem, if any, by the function its CHECK constraint calls (schemas/0015): rows stored before that
  // constraint are not checked by it.
  auto test = tx.exec_params(
      "SELECT control_variant, crm_ab_test_problem(variants, variant_weights, control_variant, conversion_window)"
      " FROM ab_tests WHERE ab_test_id = $1",
      ab_test_id);
  if (!test.empty()) {
    d.configured = true;
    if (!test[0][1].is_null()) d.problem = test[0][1].as<std::string>();
    // One row per configured variant (unnest pads the shorter array with NULLs).
    auto vs = tx.exec_params("SELECT unnest(variants), unnest(variant_weights) FROM ab_tests WHERE ab_test_id = $1",
                             ab_test_id);
    for (const auto& row : vs) {
      if (row[0].is_null()) continue;
      d.variants.push_back(row[0].as<std::string>());
      if (!row[1].is_null()) d.weights[row[0].as<std::string>()] = row[1].as<double>();
    }
    if (d.weights.size() != d.variants.size()) d.weights.clear();  // no (or partial) weights: equal
    if (!test[0][0].is_null()) d.control = test[0][0].as<std::string>();
  }
  auto stats = tx.exec_params(
      "SELECT variant, units, converted_units, revenue_sum::float8, revenue_sum_squares::float8, contaminated_units,"
      " pre_conversions::float8, pre_conversions_squares::float8, pre_conversions_cross::float8,"
      " pre_revenue::float8, pre_revenue_squares::float8, pre_revenue_cross::float8"
      " FROM ab_test_variant_stats WHERE ab_test_id = $1",
      ab_test_id);
  for (const auto& row : stats) {
    transform::ab::variant_counts v;
    v.variant = row[0].as<std::string>();
    v.units = row[1].as<std::uint64_t>();
    v.conversions = row[2].as<std::uint64_t>();
    v.revenue = row[3].as<double>();
    v.revenue_squares = row[4].as<double>();
    v.contaminated = row[5].as<std::uint64_t>();
    v.pre_conversions = row[6].as<double>();
    v.pre_conversions_squares = row[7].as<double>();
    v.pre_conversions_cross = row[8].as<double>();
    v.pre_revenue = row[9].as<double>();
    v.pre_revenue_squares = row[10].as<double>();
    v.pre_revenue_cross = row[11].as<double>();
    d.stats.push_back(std::move(v));
  }
  auto messages = tx.exec_params(
      "SELECT variant, status, events FROM ab_test_message_counts WHERE ab_test_id = $1 ORDER BY variant, status",
      ab_test_id);
  for (const auto& row : messages) {
    d.message_counts[row[0].as<std::string>()][row[1].as<std::string>()] = row[2].as<long long>();
  }
  return d;
}

}  // namespace crm::sinks::postgres
