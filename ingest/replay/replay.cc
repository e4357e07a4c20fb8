#include "ingest/replay/replay.h"

#include <stdexcept>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "sinks/postgres/queries.h"
#include "sinks/postgres/writer_pool.h"
#include "transform/providers.h"

namespace crm::ingest {

namespace pg = crm::sinks::postgres;
namespace tp = crm::transform::providers;

namespace {

constexpr std::string_view webhook_prefix = "POST /v1/webhooks/";

struct provider_entry {
  std::string_view name;
  tp::provider_fn fn;
  bool array_body;  // the provider posts an array of events; a dead letter holds one element
};

constexpr provider_entry provider_table[] = {
    {"sendgrid", &tp::normalize_sendgrid, true},  {"twilio", &tp::normalize_twilio, false},
    {"mailgun", &tp::normalize_mailgun, false},   {"postmark", &tp::normalize_postmark, false},
    {"resend", &tp::normalize_resend, false},     {"segment", &tp::normalize_segment, false},
    {"whatsapp", &tp::normalize_whatsapp, false},
};

// Re-normalizes one dead letter into `out`. Returns how many events it produced (0 = still failing, the
// reason appended to `out.rejections`), or -1 when the record cannot be re-read on its own.
int renormalize(transform::normalizer& norm, std::string_view source, std::string_view raw,
                transform::timestamp_us received_at, transform::event_batch& out) {
  const std::size_t events_before = out.communications.size() + out.touchpoints.size();
  const std::size_t rejections_before = out.rejections.size();
  if (source.substr(0, webhook_prefix.size()) == webhook_prefix) {
    std::string_view rest = source.substr(webhook_prefix.size());
    std::string_view name = rest.substr(0, rest.find(':'));
    for (const auto& p : provider_table) {
      if (p.name != name) continue;
      std::string body;
      if (p.array_body) body.assign("[").append(raw).append("]");
      else body.assign(raw);
      const bool form = !raw.empty() && raw.front() != '{' && raw.front() != '[';
      std::string endpoint(webhook_prefix);
      endpoint.append(name);
      tp::webhook_input in{body, form ? "application/x-www-form-urlencoded" : "application/json", "", endpoint,
                           received_at};
      std::string error;
      if (!p.fn(norm, in, out, error)) return -1;
      const std::size_t produced = out.communications.size() + out.touchpoints.size() - events_before;
      if (produced + (out.rejections.size() - rejections_before) != 1) return -1;  // not one event on its own
      return static_cast<int>(produced);
    }
    return -1;
  }
  transform::source_ref ref{source, 0};
  auto outcome = norm.normalize(raw, ref, received_at, out);
  return outcome == transform::normalize_outcome::rejected ? 0 : 1;
}

}  // namespace

replay_result replay_rejected(const replay_options& o) {
  if (o.page_rows == 0) throw std::invalid_argument("page size must be at least 1");
  replay_result res;
  pqxx::connection conn(o.dsn);
  pg::pool_options popt;
  popt.writer.dsn = o.dsn;
  popt.writer.application_name = "crm-ingest rejected replay";
  popt.writers = 1;
  std::unique_ptr<pg::writer_pool> pool;
  if (!o.dry_run) pool = std::make_unique<pg::writer_pool>(popt);
  transform::normalizer norm(o.normalize);

  const pg::dead_letter_filter filter{o.source_like, o.reason_like, o.since, o.until};

  // Keyset pagination over the primary key: one pass over its index whatever the filters, and rows kept
  // (still failing) are stepped over. The order does not matter: ids are deterministic.
  std::string after_id;
  for (int page = 1;; ++page) {
    long long want = static_cast<long long>(o.page_rows);
    if (o.limit > 0) want = std::min(want, o.limit - res.examined);
    if (want <= 0) break;
    const auto rows = pg::read_dead_letters(conn, filter, after_id, want);
    if (rows.empty()) break;

    auto batch_ptr = std::make_shared<transform::event_batch>();
    transform::event_batch& batch = *batch_ptr;
    std::vector<std::string> passed_ids;
    for (const auto& row : rows) {
      ++res.examined;
      const std::size_t communications_before = batch.communications.size();
      const std::size_t touchpoints_before = batch.touchpoints.size();
      int produced = renormalize(norm, row.source, row.raw, row.received_at_us, batch);
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
        passed_ids.push_back(row.rejection_id);
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

    if (!passed_ids.empty() && !o.dry_run) {
      // The events only: the new rejections are the dead letters already kept.
      batch.rejections.clear();
      pool->submit(batch_ptr, {"replay:rejected_events", "page " + std::to_string(page)}, 0);
      auto c = pool->next();
      if (c->status != pg::batch_status::written) throw pg::write_error(c->error);
      res.inserted += static_cast<long long>(c->result.inserted());
      res.duplicates += static_cast<long long>(c->result.duplicates());
      pg::settle_dead_letters(conn, passed_ids, o.remove);
    }
    res.replayed += static_cast<long long>(passed_ids.size());
    spdlog::info("Replayed a page of dead letters. page={} examined={} replayed={} still_failing={}", page,
                 res.examined, res.replayed, res.still_failing);
    if (static_cast<long long>(rows.size()) < want) break;
  }
  return res;
}

}  // namespace crm::ingest
