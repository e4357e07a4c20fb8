#include "sinks/postgres/writer.h"

#include "sinks/postgres/attribution.h"
#include "sinks/postgres/communication_insert.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

namespace crm::sinks::postgres {

namespace {

constexpr const char* stage_communications = "crm_stage_communications";
constexpr const char* stage_touchpoints = "crm_stage_touchpoints";
constexpr const char* stage_rejections = "crm_stage_rejections";

bool same_key(const transform::uuid& a, transform::timestamp_us ta, const transform::uuid& b,
              transform::timestamp_us tb) {
  return ta == tb && a == b;
}

}  // namespace

batch_result& batch_result::operator+=(const batch_result& o) noexcept {
  communications_in += o.communications_in;
  communications_inserted += o.communications_inserted;
  touchpoints_in += o.touchpoints_in;
  touchpoints_inserted += o.touchpoints_inserted;
  rejected_in += o.rejected_in;
  rejected_inserted += o.rejected_inserted;
  duplicates_in_batch += o.duplicates_in_batch;
  refused_by_database += o.refused_by_database;
  attempts += o.attempts;
  transactions += o.transactions;
  settled_from_ledger += o.settled_from_ledger;
  return *this;
}

writer::writer(writer_options options)
    : options_(std::move(options)),
      backoff_(options_.backoff_base, options_.backoff_cap),
      rng_(std::random_device{}()) {}

bool writer::cancelled() const noexcept {
  return options_.cancel && options_.cancel->load(std::memory_order_relaxed);
}

void writer::sleep_unless_cancelled(std::chrono::milliseconds delay) const {
  const auto until = std::chrono::steady_clock::now() + delay;
  while (!cancelled()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(50)));
  }
}

void writer::drop_connection() noexcept {
  try {
    notices_.reset();
    conn_.reset();
  } catch (...) {
  }
}

void writer::connect() {
  try {
    prepare_session();
    reachable_ = true;
  } catch (...) {
    reachable_ = false;
    throw;
  }
}

void writer::prepare_session() {
  if (conn_) return;
  auto conn = connect_primary(options_.dsn, options_.application_name);
  {
    pqxx::nontransaction tx(*conn);
    // Staging lives in session-local buffers: make room for a large batch (the 8 MB default holds about
    // 20k rows; beyond it the staging table spills to disk). Must precede the first temp-table access.
    tx.exec("SET temp_buffers = '128MB'");
    // Batch inserts gain nothing from JIT, and a large batch could cross its cost threshold.
    tx.exec("SET jit = off");
    // Session-local staging tables: no WAL, no indexes, emptied at every commit.
    for (auto [table, definition] : {std::pair{stage_communications, communication_stage_definition},
                                     std::pair{stage_touchpoints, touchpoint_stage_definition},
                                     std::pair{stage_rejections, rejection_stage_definition}}) {
      tx.exec(std::string("CREATE TEMP TABLE IF NOT EXISTS ") + table + " (" + definition + ") ON COMMIT DELETE ROWS");
    }
  }
  // Rows go in in key order, so two writers inserting overlapping batches cannot deadlock on the unique index.
  // encode() writes the staging rows sorted by key (communications by month, then key: see encode()), and a scan of
  // a fresh temporary table returns them in insertion order (temporary tables live in local buffers: no
  // synchronized or parallel scans), so no ORDER BY is needed.
  // The communications statement appends the batch's counts (communication_metrics_pending,
  // ab_test_message_counts_pending: no counter row is locked, schemas/0021).
  conn->prepare("crm_insert_communications",
                communications_insert_statement(stage_communications, options_.maintain_analytics));
  conn->prepare("crm_lock_receipt_events", receipt_time_locks_statement(stage_communications));
  conn->prepare("crm_insert_touchpoints",
                std::string("WITH ins AS (INSERT INTO customer_touchpoints (") + touchpoint_columns + ") SELECT " +
                    touchpoint_columns + " FROM " + stage_touchpoints +
                    " ON CONFLICT DO NOTHING RETURNING " + touchpoint_returning(options_.maintain_analytics) + ")" +
                    touchpoint_backlog(options_.maintain_analytics) + " SELECT count(*) FROM ins");
  if (options_.maintain_analytics) conn->prepare("crm_touchpoint_backlog", touchpoint_backlog_insert());
  conn->prepare("crm_insert_rejections",
                // The id is the dead letter's source and bytes, and its tenant and idempotency key when it has
                // them: two tenants' identical bad bodies (a provider's test payload) are two dead letters, each
                // theirs; so are two deliveries of one body under two keys (replay stores two events).
                std::string("WITH s AS (SELECT md5(convert_to(source, 'UTF8') || '\\x1f'::bytea ||"
                            " coalesce(convert_to(tenant_id, 'UTF8') || '\\x1e'::bytea, ''::bytea) ||"
                            " coalesce(raw_bytes, convert_to(raw, 'UTF8')) ||"
                            " coalesce('\\x1d'::bytea || convert_to(idempotency_key, 'UTF8'), ''::bytea))::uuid"
                            " AS rejection_id, * FROM ") +
                    stage_rejections +
                    "), ins AS (INSERT INTO rejected_events (rejection_id, received_at, source, reason, raw, raw_bytes,"
                    " tenant_id, idempotency_key)"
                    " SELECT DISTINCT ON (rejection_id) rejection_id, received_at, source, reason, raw, raw_bytes,"
                    " tenant_id, idempotency_key"
                    " FROM s ORDER BY rejection_id ON CONFLICT (rejection_id) DO NOTHING RETURNING 1)"
                    " SELECT count(*) FROM ins");
  // The retention cutoff, read after the locks on both parents (schemas/0017_retention_cutoff.sql).
  conn->prepare("crm_retention_cutoff",
                "SELECT (extract(epoch FROM d::timestamp AT TIME ZONE 'UTC') * 1000000)::bigint,"
                " to_char(d, 'YYYY-MM-DD') FROM crm_retention_cutoff_for_write() d");
  conn->prepare("crm_ledger",
                "INSERT INTO ingest_batches (batch_id, source, source_position, communications_in,"
                " communications_inserted, touchpoints_in, touchpoints_inserted, rejected)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
  conn->prepare("crm_ledger_lookup",
                "SELECT communications_in, communications_inserted, touchpoints_in, touchpoints_inserted, rejected"
                " FROM ingest_batches WHERE batch_id = $1");
  conn_ = std::move(conn);
  notices_ = std::make_unique<notice_counter>(*conn_);
  ++session_;
  known_months_.clear();
  if (reconnecting_) {
    reconnecting_ = false;
    spdlog::info("Reconnected to a primary. dsn={}", redact_dsn(options_.dsn));
    if (options_.observer) options_.observer->reconnected();
  }
}

// Rows go in by month, then key, on both paths: a COPY into a partitioned table fills one buffer per partition
// and inserts them in the order it met the partitions, so only this order is the same on both, and every writer
// (of any process) takes the unique index's entries in one global order. `keep` is in key order.
template <class Record>
void writer::order_by_month(std::vector<std::uint32_t>& keep, std::span<const Record> rows) {
  month_order_.resize(keep.size());
  for (std::size_t k = 0; k < keep.size(); ++k) month_order_[k] = {month_index(rows[keep[k]].occurred_at), keep[k]};
  std::stable_sort(month_order_.begin(), month_order_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::size_t k = 0; k < keep.size(); ++k) keep[k] = month_order_[k].second;
}

void writer::encode(const view& v, batch_result& counts) {
  comm_rows_.clear();
  comm_keep_.clear();
  touch_rows_.clear();
  touch_keep_.clear();
  reject_rows_.clear();
  counts.communications_in = v.communications.size();
  counts.touchpoints_in = v.touchpoints.size();
  counts.rejected_in = v.rejections.size();

  comm_receipt_time_ = false;
  // De-duplicate within the batch (first occurrence wins) and write in key order.
  auto sorted = [&](auto span, auto key_of) {
    order_.resize(span.size());
    for (std::uint32_t i = 0; i < order_.size(); ++i) order_[i] = i;
    std::sort(order_.begin(), order_.end(), [&](std::uint32_t a, std::uint32_t b) {
      const auto& ka = key_of(span[a]);
      const auto& kb = key_of(span[b]);
      if (ka != kb) return ka < kb;
      if (span[a].occurred_at != span[b].occurred_at) return span[a].occurred_at < span[b].occurred_at;
      return a < b;
    });
  };
  sorted(v.communications, [](const transform::communication& c) -> const transform::uuid& { return c.event_id; });
  for (std::size_t i = 0; i < order_.size(); ++i) {
    const auto& c = v.communications[order_[i]];
    if (i > 0) {
      const auto& p = v.communications[order_[i - 1]];
      // A receipt-time copy of an event id seen just before is a retry of it, whatever its time.
      if (same_key(p.event_id, p.occurred_at, c.event_id, c.occurred_at) ||
          (c.occurred_at_is_receipt_time && p.event_id == c.event_id)) {
        ++counts.duplicates_in_batch;
        continue;
      }
    }
    comm_keep_.push_back(order_[i]);
    comm_receipt_time_ |= c.occurred_at_is_receipt_time;
  }
  order_by_month(comm_keep_, v.communications);
  comm_keys_.clear();
  for (auto i : comm_keep_) comm_keys_.push_back({v.communications[i].event_id, v.communications[i].occurred_at});
  comm_copy_.rows().clear();
  if (comm_receipt_time_) {
    // Rows without an event time are looked for near their time, which must not see the part's own rows
    // copied a moment before: a part with one stages all of its rows, in one statement.
    stage_all_communications(v);
  } else {
    for (auto i : comm_keep_) comm_copy_.rows().append(v.communications[i], communication_layout::table);
  }
  sorted(v.touchpoints, [](const transform::touchpoint& t) -> const transform::uuid& { return t.touchpoint_id; });
  for (std::size_t i = 0; i < order_.size(); ++i) {
    const auto& t = v.touchpoints[order_[i]];
    if (i > 0) {
      const auto& p = v.touchpoints[order_[i - 1]];
      if (same_key(p.touchpoint_id, p.occurred_at, t.touchpoint_id, t.occurred_at)) {
        ++counts.duplicates_in_batch;
        continue;
      }
    }
    touch_keep_.push_back(order_[i]);
  }
  order_by_month(touch_keep_, v.touchpoints);
  touch_keys_.clear();
  touch_copy_.rows().clear();
  for (auto i : touch_keep_) {
    touch_keys_.push_back({v.touchpoints[i].touchpoint_id, v.touchpoints[i].occurred_at});
    touch_copy_.rows().append(v.touchpoints[i], touchpoint_layout::table);
  }
  for (const auto& r : v.rejections) reject_rows_.append(r);
}

void writer::stage_all_communications(const view& v) {
  comm_rows_.clear();
  for (auto i : comm_keep_) comm_rows_.append(v.communications[i]);
}

void writer::stage_all_touchpoints(const view& v) {
  touch_rows_.clear();
  for (auto i : touch_keep_) touch_rows_.append(v.touchpoints[i]);
}

template <class Record, class Layout>
bool writer::copy_part(pqxx::dbtransaction& tx, direct_copy& c, std::span<const Record> rows,
                       const std::vector<std::uint32_t>& keep, const std::vector<row_key>& keys, Layout layout,
                       std::uint64_t& copied) {
  return may_copy_into(tx, c.table()) &&
         c.copy(tx, keys, recent_, options_.observer.get(),
                [&](std::uint32_t k, copy_encoder& out) { out.append(rows[keep[k]], layout); }, copied);
}

batch_result writer::commit_once(const view& v, const batch_info& info, const transform::uuid& batch_id) {
  prepare_session();
  ensure_month_partitions(v);
  batch_result r;
  std::uint64_t pending_rows = 0;
  const std::string id = transform::to_string(batch_id);
  pqxx::work tx(*conn_);
  check_retention_cutoff(tx, v);
  // Touchpoints (with the batch's analytics_backlog row: sinks/postgres/analytics_stage.h) and dead letters
  // first; communications last (their statement appends the batch's counts).
  if (!touch_keep_.empty()) {
    std::uint64_t copied = 0;
    // Not staged (by an earlier attempt's fallback): try the COPY.
    if (touch_rows_.empty() &&
        !copy_part(tx, touch_copy_, v.touchpoints, touch_keep_, touch_keys_, touchpoint_layout::table, copied)) {
      stage_all_touchpoints(v);
    }
    if (!touch_rows_.empty()) {
      copy_into(tx, stage_touchpoints, touch_rows_.finish());
      auto res = options_.maintain_analytics ? tx.exec_prepared("crm_insert_touchpoints", id)
                                             : tx.exec_prepared("crm_insert_touchpoints");
      r.touchpoints_inserted = res[0][0].as<std::uint64_t>();
    } else {
      r.touchpoints_inserted = copied;
      if (options_.maintain_analytics && copied > 0) {
        touch_copied_.clear();
        for (auto k : touch_copy_.copied()) touch_copied_.push_back(touch_keep_[k]);
        const auto a = touchpoint_backlog_arrays(v.touchpoints, touch_copied_);
        tx.exec_prepared("crm_touchpoint_backlog", id, static_cast<std::int64_t>(copied), a[0], a[1], a[2], a[3],
                         a[4], a[5], a[6], a[7]);
      }
    }
  }
  if (!reject_rows_.empty()) {
    copy_into(tx, stage_rejections, reject_rows_.finish());
    r.rejected_inserted = tx.exec_prepared("crm_insert_rejections")[0][0].as<std::uint64_t>();
  }
  if (!comm_keep_.empty()) {
    std::uint64_t copied = 0;
    tally_.clear();
    // Not staged (by encode(), or by an earlier attempt's fallback): try the COPY.
    if (comm_rows_.empty()) {
      if (copy_part(tx, comm_copy_, v.communications, comm_keep_, comm_keys_, communication_layout::table, copied)) {
        for (auto k : comm_copy_.copied()) tally_.add(v.communications[comm_keep_[k]]);
      } else {
        stage_all_communications(v);
      }
    }
    if (!comm_rows_.empty()) {
      copy_into(tx, stage_communications, comm_rows_.finish());
      if (comm_receipt_time_) tx.exec_prepared("crm_lock_receipt_events");
    }
    const auto p = tally_.params();
    pending_rows = tally_.size() + comm_rows_.rows();  // at most: the statement appends a row per key
    r.communications_inserted =
        copied + tx.exec_prepared("crm_insert_communications", p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7])[0][0]
                     .as<std::uint64_t>();
  }
  tx.exec_prepared("crm_ledger", id, info.source, info.position,
                   static_cast<std::int64_t>(v.communications.size()), static_cast<std::int64_t>(r.communications_inserted),
                   static_cast<std::int64_t>(v.touchpoints.size()), static_cast<std::int64_t>(r.touchpoints_inserted),
                   static_cast<std::int64_t>(v.rejections.size()));
  const std::uint64_t notices = notices_->count();
  commit_warned_ = false;
  tx.commit();
  metric_rows_ += pending_rows;
  // Every row of the committed parts is stored now (copied, staged, or stored already): the hint names them.
  for (const auto& k : touch_keys_) recent_.add(k);
  for (const auto& k : comm_keys_) recent_.add(k);
  // A COMMIT is silent unless its wait for the synchronous standbys was cut short ("canceling wait for synchronous
  // replication", in the server's language): it committed on the primary alone, maybe.
  commit_warned_ = notices_->count() != notices;
  if (commit_warned_ && options_.read_status_after_commit) {
    spdlog::warn("A COMMIT returned with a notice (its wait for the synchronous standbys may have been cut short); the "
                 "batch is confirmed once the standbys' positions show it. batch_id={} source={} position={}",
                 id, info.source, info.position);
  }
  r.transactions = 1;
  return r;
}

// First in the batch transaction: the parents' locks, then the cutoff a retain run recorded (one that has detached a
// partition and not committed yet is waited for). An event older than it makes the transaction stop here.
void writer::check_retention_cutoff(pqxx::dbtransaction& tx, const view& v) {
  const auto row = tx.exec_prepared("crm_retention_cutoff")[0];
  if (row[0].is_null()) return;
  const auto cutoff = row[0].as<transform::timestamp_us>();
  auto old = [cutoff](const auto& e) { return e.occurred_at < cutoff; };
  if (std::any_of(v.communications.begin(), v.communications.end(), old) ||
      std::any_of(v.touchpoints.begin(), v.touchpoints.end(), old)) {
    throw retention_refusal(cutoff, row[1].as<std::string>());
  }
}

bool writer::settle_from_ledger(const transform::uuid& batch_id, batch_result& out) {
  pqxx::read_transaction tx(*conn_);
  auto rows = tx.exec_prepared("crm_ledger_lookup", transform::to_string(batch_id));
  if (rows.empty()) return false;
  out.communications_inserted = rows[0][1].as<std::uint64_t>();
  out.touchpoints_inserted = rows[0][3].as<std::uint64_t>();
  out.rejected_inserted = 0;  // the ledger does not keep it; the rows are there
  out.transactions = 1;
  out.settled_from_ledger = 1;
  return true;
}

// A transaction of the part committed (or was found committed) on the current session: its id, whether its COMMIT
// proves it waited for the synchronous standbys, and the session (a part whose transactions committed on several
// sessions has no one session whose status speaks for all of them).
void writer::note_commit(commit_point* out, const transform::uuid& id, bool waited) {
  if (!out) return;
  if (out->batch_ids.empty()) {
    out->session = session_;
  } else if (out->session != session_) {
    out->session = 0;
  }
  out->batch_ids.push_back(id);
  out->waited = out->waited && waited;
}

batch_result writer::write(const transform::event_batch& batch, const batch_info& info) {
  return write(view{batch.communications, batch.touchpoints, batch.rejections}, info);
}

batch_result writer::write(const batch_view& v, const batch_info& info) {
  if (v.record_count() == 0) return {};
  commit_point ignored;
  return write(v, info, random_id(), false, ignored);
}

batch_result writer::write(const batch_view& v, const batch_info& info, const transform::uuid& id, bool rewrite,
                           commit_point& out) {
  out = {};
  if (v.record_count() == 0) return {};
  batch_result r = write_view(v, info, id, rewrite, &out);
  if (options_.read_status_after_commit) {
    // The commit stands whatever happens here: a status that cannot be read leaves the part's primary
    // unknown, and the confirmer looks it up in the ledger of the primary it reaches next.
    try {
      // Only on the session that committed (or settled the commit from its ledger): a new session could
      // reach another primary, whose position says nothing about this commit.
      if (!conn_) throw std::runtime_error("the session that committed is gone");
      if (out.session != session_) throw std::runtime_error("the part's transactions committed on more than one session");
      pqxx::nontransaction tx(*conn_);
      out.status = read_replication_status(tx);
    } catch (const std::exception& e) {
      spdlog::warn("The replication status could not be read after a commit; the batch is looked up in the "
                   "primary's ledger before it is confirmed. source={} position={} error={}",
                   info.source, info.position, e.what());
      reconnecting_ = true;
      drop_connection();
      out.status.reset();
    }
  }
  fold_metrics_if_due();
  return r;
}

// After the part's COMMIT (and its status read), on the same session, in a transaction of its own. The counts are
// exact with or without it (communication_metrics reads the pending rows too), so a failure is only logged and the
// fold tried again after as many rows; a session the failure broke is replaced by the next batch.
void writer::fold_metrics_if_due() {
  if (options_.metric_fold_rows == 0 || metric_rows_ < options_.metric_fold_rows || !conn_) return;
  metric_rows_ = 0;
  try {
    pqxx::nontransaction tx(*conn_);
    const auto row = tx.exec("SELECT crm_metrics_fold()")[0];
    // NULL: another session was folding (it takes these rows, or the next fold does).
    spdlog::debug("Folded {} pending metric rows.", row[0].is_null() ? 0 : row[0].as<long long>());
  } catch (const std::exception& e) {
    spdlog::warn("The pending metric counts could not be folded; they stay counted and are folded later. error={}",
                 e.what());
    if (!conn_->is_open()) {
      reconnecting_ = true;
      drop_connection();
    }
  }
}

transform::uuid writer::random_id() {
  transform::uuid id;
  std::uint64_t a = rng_(), b = rng_();
  std::memcpy(id.data(), &a, 8);
  std::memcpy(id.data() + 8, &b, 8);
  id[6] = static_cast<std::uint8_t>((id[6] & 0x0F) | 0x40);  // version 4
  id[8] = static_cast<std::uint8_t>((id[8] & 0x3F) | 0x80);  // RFC 4122 variant
  return id;
}

batch_result writer::write_view(const view& v, const batch_info& info, const transform::uuid& batch_id, bool rewrite,
                                commit_point* out) {
  batch_result counts;
  encode(v, counts);

  const auto started = std::chrono::steady_clock::now();
  // After any failure the batch may have committed (the connection can drop while COMMIT is in
  // flight): look the batch up in the ledger before replaying it. A part written again after a failover
  // may be there already too.
  bool check_ledger = rewrite;
  bool last_in_doubt = false;  // the last failure hit a COMMIT whose outcome is unknown
  writer_observer* obs = options_.observer.get();
  for (std::uint64_t attempt = 1;; ++attempt) {
    try {
      batch_result r;
      if (check_ledger) {
        prepare_session();
        if (settle_from_ledger(batch_id, r)) {
          if (!rewrite || attempt > 1) {
            spdlog::warn("An in-doubt commit was found committed in the ledger; not replaying. batch_id={} source={}",
                         transform::to_string(batch_id), info.source);
          }
          note_commit(out, batch_id, false);  // settled from the ledger: its COMMIT may not have waited
          counts.communications_inserted = r.communications_inserted;
          counts.touchpoints_inserted = r.touchpoints_inserted;
          counts.settled_from_ledger = 1;
          counts.transactions = 1;
          counts.attempts = attempt;
          backoff_.reset();
          reachable_ = true;
          if (obs) {
            if (!rewrite || attempt > 1) obs->in_doubt_settled(true);
            obs->batch_committed();
          }
          return counts;
        }
        if (!rewrite || attempt > 1) {
          spdlog::info("The failed batch is not in the ledger, so it did not commit; replaying it. batch_id={} "
                       "in_doubt={}",
                       transform::to_string(batch_id), last_in_doubt);
          if (obs) {
            if (last_in_doubt) obs->in_doubt_settled(false);
            obs->batch_replayed();
          }
        }
        check_ledger = false;
        last_in_doubt = false;
      }
      r = commit_once(v, info, batch_id);
      note_commit(out, batch_id, !commit_warned_);
      reachable_ = true;
      counts.communications_inserted = r.communications_inserted;
      counts.touchpoints_inserted = r.touchpoints_inserted;
      counts.rejected_inserted = r.rejected_inserted;
      counts.transactions = r.transactions;
      counts.attempts = attempt;
      backoff_.reset();
      if (obs) obs->batch_committed();
      return counts;
    } catch (const retention_refusal& e) {
      reachable_ = true;
      return write_retained(v, info, e, batch_id, rewrite, out);
    } catch (const std::exception& e) {
      failure f = classify(e);
      switch (f.kind) {
        case failure_kind::data:
          spdlog::warn("The database refused rows of a batch; splitting it. source={} position={} sqlstate={} error={}",
                       info.source, info.position, f.reason, f.message);
          return write_split(v, info, f, batch_id, rewrite, out);
        case failure_kind::fatal:
          reachable_ = false;
          drop_connection();
          throw write_error("the database refused the batch (" + f.reason + "): " + f.message);
        case failure_kind::in_doubt:
        case failure_kind::reconnect: {
          reachable_ = false;
          check_ledger = true;
          // Stays set through failed reconnects until the ledger settles it.
          last_in_doubt = last_in_doubt || f.kind == failure_kind::in_doubt;
          reconnecting_ = true;
          drop_connection();
          auto waited = std::chrono::steady_clock::now() - started;
          const bool give_up = !options_.retry.may_retry(waited);
          if (obs) obs->attempt_failed(f, !give_up);
          if (give_up) {
            spdlog::error("Giving up on a batch: the database stayed unreachable. source={} attempts={} waited_s={} "
                          "reason={} error={}",
                          info.source, attempt,
                          std::chrono::duration_cast<std::chrono::seconds>(waited).count(), f.reason, f.message);
            throw write_error("gave up after " + std::to_string(attempt) + " attempts over " +
                              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(waited).count()) +
                              " s; last failure (" + f.reason + "): " + f.message);
          }
          auto delay = backoff_.next();
          spdlog::warn("A batch attempt failed; reconnecting and replaying. source={} attempt={} reason={} "
                       "retry_in_ms={} error={}",
                       info.source, attempt, f.reason, delay.count(), f.message);
          sleep_unless_cancelled(delay);
          if (cancelled()) {
            throw write_cancelled("stopped retrying a failing batch (stopping); last failure (" + f.reason +
                                  "): " + f.message);
          }
          break;
        }
      }
    }
  }
}

}  // namespace crm::sinks::postgres
