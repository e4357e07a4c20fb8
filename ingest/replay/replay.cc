#include "ingest/replay/replay.h"

#include <set>
#include <stdexcept>
#include <vector>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "sinks/postgres/queries.h"
#include "sinks/postgres/writer_pool.h"
#include "transform/text/timestamp.h"
#include "transform/providers/registry.h"

namespace crm::ingest {

namespace pg = crm::sinks::postgres;
namespace tp = crm::transform::providers;

namespace {

constexpr std::string_view webhook_prefix = "POST /v1/webhooks/";

// Re-normalizes one dead letter into `out`. Returns how many events it produced (0 = still failing, the
// reason appended to `out.rejections`), or -1 when the record cannot be re-read on its own. `key`: the dead
// letter's idempotency key, the one its event would have had (already indexed): the event gets the same id.
int renormalize(transform::normalizer& norm, std::string_view source, std::string_view raw, std::string_view key,
                transform::timestamp_us received_at, transform::event_batch& out) {
  const std::size_t events_before = out.communications.size() + out.touchpoints.size();
  const std::size_t rejections_before = out.rejections.size();
  if (source.substr(0, webhook_prefix.size()) == webhook_prefix) {
    std::string_view rest = source.substr(webhook_prefix.size());
    std::string_view name = rest.substr(0, rest.find(':'));
    if (const tp::provider* p = tp::find_provider(name)) {
      std::string body;
      // A provider that posts an array of events: a dead letter holds one element.
      if (p->body == tp::body_format::json_array) body.assign("[").append(raw).append("]");
      else body.assign(raw);
      // WhatsApp: a dead letter holds one status, message or preference object out of its body.
      if (p->name == "whatsapp") {
        if (std::string one = tp::whatsapp_body_of_event(raw); !one.empty()) body = std::move(one);
      }
      const bool form = !raw.empty() && raw.front() != '{' && raw.front() != '[';
      std::string endpoint(webhook_prefix);
      endpoint.append(name);
      tp::webhook_input in{body, form ? "application/x-www-form-urlencoded" : "application/json", "", endpoint,
                           received_at, key, true};
      std::string error;
      if (!p->normalize(norm, in, out, error)) return -1;
      const std::size_t produced = out.communications.size() + out.touchpoints.size() - events_before;
      if (produced + (out.rejections.size() - rejections_before) != 1) return -1;  // not one event on its own
      return static_cast<int>(produced);
    }
    return -1;
  }
  transform::source_ref ref{source, 0};
  auto outcome = norm.normalize(raw, ref, received_at, out, key);
  return outcome == transform::normalize_outcome::rejected ? 0 : 1;
}

// A dead letter that passes the current rules, and the events it gave in the page's batch: [from, to).
struct passed_letter {
  std::string rejection_id;
  std::size_t communications_from, communications_to, touchpoints_from, touchpoints_to;
};

std::vector<std::string> all_ids(const std::vector<passed_letter>& passed) {
  std::vector<std::string> ids;
  ids.reserve(passed.size());
  for (const auto& p : passed) ids.push_back(p.rejection_id);
  return ids;
}

// The dead letters whose every event is stored, each under its own key (after a write in which the database
// refused some: the same id may be stored for another event, e.g. a provider id in another month).
std::vector<std::string> stored_ids(pqxx::connection& conn, const transform::event_batch& batch,
                                    const std::vector<passed_letter>& passed) {
  std::vector<pg::row_key> communications, touchpoints;
  std::vector<bool> receipt;
  for (const auto& c : batch.communications) {
    communications.push_back({c.event_id, c.occurred_at});
    receipt.push_back(c.occurred_at_is_receipt_time);
  }
  for (const auto& t : batch.touchpoints) touchpoints.push_back({t.touchpoint_id, t.occurred_at});
  const pg::stored_flags stored = pg::stored_events(conn, communications, receipt, touchpoints);
  std::vector<std::string> ids;
  for (const auto& p : passed) {
    bool all = true;
    for (std::size_t i = p.communications_from; all && i < p.communications_to; ++i) all = stored.communications[i];
    for (std::size_t i = p.touchpoints_from; all && i < p.touchpoints_to; ++i) all = stored.touchpoints[i];
    if (all) ids.push_back(p.rejection_id);
  }
  return ids;
}

}  // namespace

std::string utc_time_bound(std::string_view text) {
  transform::timestamp_us t = 0;
  const char* problem = transform::detail::parse_rfc3339(text, t);
  if (problem != nullptr) {
    // Without an offset (a bare date: its midnight): UTC, whatever the session's time zone.
    std::string utc(text);
    utc.append(text.size() == 10 ? "T00:00:00Z" : "Z");
    if (transform::detail::parse_rfc3339(utc, t) != nullptr) {
      throw std::invalid_argument("\"" + std::string(text) + "\" is not a time (" + problem +
                                  "): use an RFC 3339 time such as 2026-11-01T00:00:00Z, or a date such as "
                                  "2026-11-01 (read in UTC)");
    }
  }
  char out[40];
  return std::string(out, transform::detail::format_rfc3339(t, out));
}

replay_result replay_rejected(const replay_options& o) {
  if (o.page_rows == 0 || o.page_bytes == 0) throw std::invalid_argument("page size must be at least 1");
  replay_result res;
  pqxx::connection conn(o.dsn);
  pg::pool_options popt;
  popt.writer.dsn = o.dsn;
  popt.writer.application_name = "crm-ingest rejected replay";
  popt.writers = 1;
  std::unique_ptr<pg::writer_pool> pool;
  if (!o.dry_run) pool = std::make_unique<pg::writer_pool>(popt);
  transform::normalizer norm(o.normalize);

  auto bound = [](const std::string& t) { return t.empty() ? t : utc_time_bound(t); };
  const pg::dead_letter_filter filter{o.source_like, o.reason_like, bound(o.since), bound(o.until)};
  // Tells this run's batches (and the dead letters the writer may make of them) from any other run's.
  const std::string run_id = std::to_string(transform::now_us());

  // Keyset pagination over the primary key: one pass over its index whatever the filters, and rows kept
  // (still failing) are stepped over. The order does not matter: ids are deterministic.
  std::string after_id;
  for (int page = 1;; ++page) {
    long long want = static_cast<long long>(o.page_rows);
    if (o.limit > 0) want = std::min(want, o.limit - res.examined);
    if (want <= 0) break;
    const auto rows = pg::read_dead_letters(conn, filter, after_id, want, o.page_bytes);
    if (rows.empty()) break;
    ++res.pages;
    std::size_t page_bytes = 0;
    for (const auto& row : rows) page_bytes += row.raw.size();

    auto batch_ptr = std::make_shared<transform::event_batch>();
    transform::event_batch& batch = *batch_ptr;
    std::vector<passed_letter> passed;
    for (const auto& row : rows) {
      ++res.examined;
      const std::size_t communications_before = batch.communications.size();
      const std::size_t touchpoints_before = batch.touchpoints.size();
      int produced = renormalize(norm, row.source, row.raw, row.idempotency_key, row.received_at_us, batch);
      if (produced > 0 && !row.tenant_id.empty()) {
        // The events keep the tenant of the credential or endpoint that brought the dead letter.
        const auto tenant = batch.text.copy(row.tenant_id);
        for (auto i = communications_before; i < batch.communications.size(); ++i) {
          if (batch.communications[i].tenant_id.empty()) batch.communications[i].tenant_id = tenant;
        }
        for (auto i = touchpoints_before; i < batch.touchpoints.size(); ++i) {
          if (batch.touchpoints[i].tenant_id.empty()) batch.touchpoints[i].tenant_id = tenant;
        }
      }
      if (produced > 0) {
        passed.push_back({row.rejection_id, communications_before, batch.communications.size(), touchpoints_before,
                          batch.touchpoints.size()});
      } else if (produced < 0) {
        ++res.not_replayable;
      } else {
        ++res.still_failing;
        std::string reason(batch.rejections.back().reason);
        if (res.still_failing_reasons.size() < 20 || res.still_failing_reasons.count(reason)) {
          ++res.still_failing_reasons[reason];
        }
      }
    }
    after_id = rows.back().rejection_id;

    long long settled = static_cast<long long>(passed.size());
    if (!passed.empty() && !o.dry_run) {
      // The events only: the new rejections are the dead letters already kept.
      batch.rejections.clear();
      const pg::batch_info info{"replay:rejected_events", "run " + run_id + " page " + std::to_string(page)};
      pool->submit(batch_ptr, info, 0);
      // The dead letters are marked only once their events are safe on the cluster (the standbys have them
      // under asynchronous replication): a failover before it must find them unmarked.
      auto c = pool->next(std::chrono::minutes(5));
      if (!c) {
        throw pg::write_error("the page's events were written but the standbys did not confirm them within 5 minutes; "
                              "its dead letters stay unmarked (running the replay again is safe)");
      }
      if (c->status != pg::batch_status::written) throw pg::write_error(c->error);
      res.inserted += static_cast<long long>(c->result.inserted());
      res.duplicates += static_cast<long long>(c->result.duplicates());
      res.refused += static_cast<long long>(c->result.refused_by_database);
      // Only dead letters whose events are stored are settled: one the database refused (the writer split
      // the page down to it and dead-lettered it with the database's reason) stays as it was.
      const std::vector<std::string> ids =
          c->result.refused_by_database == 0 ? all_ids(passed) : stored_ids(conn, batch, passed);
      settled = static_cast<long long>(ids.size());
      if (!ids.empty()) pg::settle_dead_letters(conn, ids, o.remove);
      if (c->result.refused_by_database > 0) {
        // The writer dead-lettered each refused row anew, with the database's reason. The dead letter being
        // replayed stays as it was (with its raw input), so that copy is dropped and its reason reported.
        for (const auto& reason : pg::drop_dead_letters_from(conn, info.source + " " + info.position)) {
          if (res.refused_reasons.size() < 20 || res.refused_reasons.count(reason)) ++res.refused_reasons[reason];
        }
      }
    }
    res.replayed += settled;
    spdlog::info("Replayed a page of dead letters. page={} examined={} replayed={} still_failing={}", page,
                 res.examined, res.replayed, res.still_failing);
    // A page cut short by its bytes is not the end.
    if (static_cast<long long>(rows.size()) < want && page_bytes < o.page_bytes) break;
  }
  // The attribution and A/B tables include the replayed events when the command returns.
  if (pool && res.inserted > 0 && !pool->catch_up_analytics(std::chrono::minutes(10))) {
    spdlog::warn("The attribution and A/B tables do not include the replayed events yet: the analytics stage kept "
                 "failing; they catch up when a stage runs again. error={}",
                 pool->analytics()->last_error());
  }
  return res;
}

}  // namespace crm::ingest
