// PostgreSQL batch writer: one event_batch -> ONE transaction that COPYs into session-local staging
// tables, inserts with ON CONFLICT DO NOTHING, appends the daily counts of the rows really inserted to
// communication_metrics_pending, writes the ledger row, and commits. Communications with an event time and
// touchpoints are COPYed straight into their tables instead when the session may (direct_copy.h), rows stored
// already left out. Replaying a batch inserts nothing and counts nothing.
//
// Thread ownership: a writer and its connection belong to one thread. write() blocks that thread
// while the database is unreachable (capped, jittered backoff), which is how backpressure reaches the
// stage that feeds it: its bounded queue fills and the producer waits.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include <pqxx/pqxx>

#include "sinks/postgres/communication_insert.h"
#include "sinks/postgres/connection.h"
#include "sinks/postgres/copy_encoder.h"
#include "sinks/postgres/direct_copy.h"
#include "sinks/postgres/replication_status.h"
#include "sinks/postgres/retry_policy.h"
#include "sinks/postgres/writer_observer.h"
#include "transform/canonical/canonical_event.h"

namespace crm::sinks::postgres {

struct writer_options {
  std::string dsn;
  std::string application_name = "crm-ingest writer";
  std::chrono::milliseconds backoff_base{100};
  // 1 s: a reconnect through HAProxy costs a millisecond, and a low cap resumes writing within about
  // a second of the new primary becoming reachable, however long the failover took.
  std::chrono::milliseconds backoff_cap{1000};
  // How long one batch may keep failing for reconnectable reasons before write() gives up (logged and
  // counted at every attempt).
  retry_policy retry = retry_policy::for_at_most(std::chrono::seconds(120));
  // Set (by the pool, from any thread) to make a failing write() stop retrying: it throws write_cancelled
  // at its next attempt. A write that succeeds is never interrupted.
  const std::atomic<bool>* cancel = nullptr;
  // Told about failures, reconnects, replays and in-doubt commits (optional; shared by writers).
  std::shared_ptr<writer_observer> observer;
  // Keep attribution_credits, campaign_attribution_daily and the A/B tables current in every batch
  // transaction (sinks/postgres/attribution.h). Off: they go stale until `report attribution --recompute`.
  bool maintain_analytics = true;
  // Read the primary's replication status on the same session right after a batch's last COMMIT, for the
  // confirmation that the cluster has it (commit_point; set by the pool when it confirms).
  bool read_status_after_commit = false;
  // Rows this writer appends to communication_metrics_pending before it folds them (crm_metrics_fold(), schemas/0021)
  // in a transaction of its own after a COMMIT; 0: never (another writer or an operator folds). Readers see the
  // same counts either way; the fold keeps communication_metrics quick to read and the pending table small.
  std::uint64_t metric_fold_rows = 50000;
  // A batch that meets a month without a partition also ensures this many months beyond the newest it needs (before
  // the oldest, when the months it meets run backwards), in the same transaction: see ensure_month_partitions().
  int premake_months = 3;
};

// What a write committed, for the confirmation that the cluster has it (sinks/postgres/confirmer.h).
struct commit_point {
  // The ledger ids of the part's transactions: its own, or those derived from it when a data error split it.
  std::vector<transform::uuid> batch_ids;
  // Read on the writer's session right after the last COMMIT; nullopt when not asked for, or when it could
  // not be read (the connection broke right after COMMIT returned, or the part's transactions committed on more
  // than one session: the part's primary is unknown).
  std::optional<replication_status> status;
  // Every transaction of the part was committed by a COMMIT of this session that returned without a notice, so
  // a synchronous standby seen after it is one the COMMIT waited for (confirmation_at_commit). False when one was
  // settled from the ledger (in doubt) or its COMMIT said something (a wait for the synchronous standbys cut short
  // by pg_cancel_backend returns success with a WARNING).
  bool waited = true;
  // The writer's session its transactions committed on (0: more than one).
  std::uint64_t session = 0;
};

// Where a batch came from; recorded in the ledger.
struct batch_info {
  std::string source;    // e.g. "import:/data/events.ndjson"
  std::string position;  // e.g. "lines 1-20000"
};

struct batch_result {
  std::uint64_t communications_in = 0;
  std::uint64_t communications_inserted = 0;
  std::uint64_t touchpoints_in = 0;
  std::uint64_t touchpoints_inserted = 0;
  std::uint64_t rejected_in = 0;
  std::uint64_t rejected_inserted = 0;
  std::uint64_t duplicates_in_batch = 0;  // same id twice in one batch
  std::uint64_t refused_by_database = 0;  // events turned into rejections after a data error
  std::uint64_t attempts = 0;
  std::uint64_t transactions = 0;
  std::uint64_t settled_from_ledger = 0;  // in-doubt commits found committed

  std::uint64_t events_in() const noexcept { return communications_in + touchpoints_in; }
  std::uint64_t events_inserted() const noexcept { return communications_inserted + touchpoints_inserted; }
  // The one accounting every command reports (summaries, metrics): of the events in, each is inserted,
  // a duplicate (already stored, or repeated in the batch) or rejected (refused by the database and
  // dead-lettered); dead letters in plus those refused are the rejected records.
  std::uint64_t inserted() const noexcept { return events_inserted(); }
  std::uint64_t duplicates() const noexcept { return events_in() - events_inserted() - refused_by_database; }
  std::uint64_t rejected() const noexcept { return rejected_in + refused_by_database; }
  std::uint64_t records_in() const noexcept { return events_in() + rejected_in; }
  batch_result& operator+=(const batch_result& o) noexcept;
};

// A contiguous part of an event_batch (views into its arena): what one writer writes in one transaction.
struct batch_view {
  std::span<const transform::communication> communications;
  std::span<const transform::touchpoint> touchpoints;
  std::span<const transform::rejection> rejections;

  std::size_t record_count() const noexcept {
    return communications.size() + touchpoints.size() + rejections.size();
  }
};

// Reorders the batch's records so that each event lands with the writer its id hashes to, and returns
// one view per writer. Routing by id keeps both copies of a duplicate with the same writer, so
// concurrent writers never wait on each other's uncommitted unique-index entries. Rejections go to
// writer `rejections_to`.
std::vector<batch_view> partition_by_key(transform::event_batch& batch, std::size_t writers,
                                         std::size_t rejections_to = 0);

// The ledger id of a split's half (`branch` 1 or 2) or of its refused row (3): the same for the same parent,
// so that a part written again finds the transactions that are in the ledger already.
transform::uuid derived_batch_id(const transform::uuid& parent, std::uint8_t branch) noexcept;

// Which of `writers` an id belongs to.
std::size_t writer_for(const transform::uuid& id, std::size_t writers) noexcept;

class write_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown by write() when writer_options::cancel was set while the batch was failing.
class write_cancelled : public write_error {
 public:
  using write_error::write_error;
};

// Thrown inside a batch transaction that holds events older than the retention cutoff (schemas/0017): the writer
// writes the batch again without them, each dead-lettered with the cutoff in its reason (write_retained).
class retention_refusal : public std::runtime_error {
 public:
  retention_refusal(transform::timestamp_us cutoff_us, std::string cutoff_day);
  transform::timestamp_us cutoff;  // microseconds since the epoch: events before it are refused
  std::string day;                 // YYYY-MM-DD
};

class writer {
 public:
  explicit writer(writer_options options);
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  // Writes the batch exactly once; throws write_error when the database refuses for good (a fatal
  // failure, or reconnectable failures for longer than the retry policy allows).
  batch_result write(const transform::event_batch& batch, const batch_info& info);
  batch_result write(const batch_view& view, const batch_info& info);
  // The same, as ledger id `id` (the transactions of a split get ids derived from it, the same ones every
  // time), filling `out`. `rewrite`: the part may be in the ledger already (written again after a failover:
  // the new primary's ledger lacked some of it), so every transaction looks its id up before it commits.
  batch_result write(const batch_view& view, const batch_info& info, const transform::uuid& id, bool rewrite,
                     commit_point& out);

  // Connects now (and checks the session is on a primary) instead of on the first write.
  void connect();

  // False from a failed attempt until the next success: for readiness probes (any thread).
  bool reachable() const noexcept { return reachable_.load(std::memory_order_relaxed); }

 private:
  using view = batch_view;
  batch_result write_view(const view& v, const batch_info& info, const transform::uuid& batch_id, bool rewrite,
                          commit_point* out);
  batch_result write_split(const view& v, const batch_info& info, const failure& why, const transform::uuid& batch_id,
                           bool rewrite, commit_point* out);
  batch_result write_retained(const view& v, const batch_info& info, const retention_refusal& why,
                              const transform::uuid& batch_id, bool rewrite, commit_point* out);
  void check_retention_cutoff(pqxx::dbtransaction& tx, const view& v);
  transform::uuid random_id();
  batch_result commit_once(const view& v, const batch_info& info, const transform::uuid& batch_id);
  bool settle_from_ledger(const transform::uuid& batch_id, batch_result& out);
  void note_commit(commit_point* out, const transform::uuid& id, bool waited);
  void prepare_session();
  void ensure_month_partitions(const view& v);
  void encode(const view& v, batch_result& counts);
  // The part's rows of one table (`keep`, their `keys`) that are not stored yet, COPYed into it inside a savepoint
  // (direct_copy.h): true with `copied` rows stored (`c.copied()`), false when the part is to be staged.
  template <class Record, class Layout>
  bool copy_part(pqxx::dbtransaction& tx, direct_copy& c, std::span<const Record> rows,
                 const std::vector<std::uint32_t>& keep, const std::vector<row_key>& keys, Layout layout,
                 std::uint64_t& copied);
  void stage_all_communications(const view& v);
  void stage_all_touchpoints(const view& v);
  template <class Record>
  void order_by_month(std::vector<std::uint32_t>& keep, std::span<const Record> rows);
  void fold_metrics_if_due();
  void drop_connection() noexcept;
  bool cancelled() const noexcept;
  void sleep_unless_cancelled(std::chrono::milliseconds delay) const;

  writer_options options_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<notice_counter> notices_;  // conn_'s, destroyed before it
  std::uint64_t session_ = 0;                // counts the sessions prepare_session() opened
  bool commit_warned_ = false;               // the last COMMIT came with a notice
  backoff backoff_;
  std::unordered_set<std::int32_t> known_months_;  // months this session ensured
  std::vector<std::int32_t> missing_months_;       // ensure_month_partitions()' own, reused
  // Reused across batches and retries.
  copy_encoder comm_rows_, touch_rows_, reject_rows_;
  // The part has a row whose time is its receipt (staged whole, its ids locked before the insert).
  bool comm_receipt_time_ = false;
  // The part's rows for the direct COPY (direct_copy.h); comm_rows_ (touch_rows_) holds either none of them or,
  // once the part is staged (a communication without an event time, or a fallback), all of them.
  direct_copy comm_copy_{"communications", "event_id", communications_copy_target()};
  direct_copy touch_copy_{"customer_touchpoints", "touchpoint_id", touchpoints_copy_target()};
  std::vector<std::pair<std::int32_t, std::uint32_t>> month_order_;  // (month, row) for encode()'s order
  recent_keys recent_;  // keys of the rows of this writer's committed parts, lately (both tables: the ids differ)
  // The rows written, after de-duplication, by month and key, and their keys.
  std::vector<std::uint32_t> comm_keep_, touch_keep_;
  std::vector<row_key> comm_keys_, touch_keys_;
  std::vector<std::uint32_t> touch_copied_;  // the touchpoints a direct COPY stored, for the backlog row
  metric_tally tally_;
  // Rows appended to communication_metrics_pending since this writer's last fold; the first COMMIT folds (what
  // earlier runs left), so short runs do not leave the pending rows growing.
  std::uint64_t metric_rows_ = std::numeric_limits<std::uint64_t>::max() / 2;
  std::vector<std::uint32_t> order_;
  std::mt19937_64 rng_;
  std::atomic<bool> reachable_{true};
  bool reconnecting_ = false;  // a failure dropped the session: the next one is a reconnect
};

}  // namespace crm::sinks::postgres
