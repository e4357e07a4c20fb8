// The write path every command shares (sinks/postgres/writer_pool.h), against a real PostgreSQL:
// completions in submission order with the source's tokens, one accounting, the observer's calls, and
// the retry policy's three modes against a database that is not there.
#include "sinks/postgres/writer_pool.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "support/event_ids.h"
#include "support/test_db.h"

namespace pg = crm::sinks::postgres;
namespace tf = crm::transform;
using namespace std::chrono_literals;

namespace {

using crm_test::nov_2026;

using crm_test::id_of;

tf::communication comm(std::uint64_t n) {
  tf::communication c;
  c.event_id = id_of(n);
  c.occurred_at = nov_2026 + static_cast<std::int64_t>(n) * 1000000;
  c.received_at = c.occurred_at;
  c.lead_id = static_cast<std::int64_t>(n % 5 + 1);
  c.channel_ = tf::channel::email;
  c.status = tf::comm_status::delivered;
  c.provider = "test";
  return c;
}

// Events [from, to), each once.
std::shared_ptr<tf::event_batch> batch_of(std::uint64_t from, std::uint64_t to) {
  auto b = std::make_shared<tf::event_batch>();
  for (std::uint64_t i = from; i < to; ++i) b->communications.push_back(comm(i));
  return b;
}

struct recording_observer : pg::writer_observer {
  std::atomic<int> connected_calls{0}, connect_failures{0}, written{0}, refused{0};
  std::mutex mode_mu;
  std::string mode;  // the replication mode reported last
  void replication_mode(std::string_view m) override {
    std::lock_guard lock(mode_mu);
    mode = m;
  }
  std::atomic<std::uint64_t> inserted{0}, duplicates{0}, rejected{0}, records{0};
  void connected() override { ++connected_calls; }
  void connect_failed(std::string_view) override { ++connect_failures; }
  void batch_written(const pg::batch_result& r, std::size_t n, double) override {
    ++written;
    inserted += r.inserted();
    duplicates += r.duplicates();
    rejected += r.rejected();
    records += n;
  }
  void batch_refused(std::string_view, bool) override { ++refused; }
  std::atomic<int> in_use{0};
  void writers_in_use(int n) override { in_use = n; }
};

pg::pool_options options(const std::string& dsn, int writers, std::shared_ptr<pg::writer_observer> obs = {}) {
  pg::pool_options o;
  o.writer.dsn = dsn;
  o.writer.backoff_base = 20ms;
  o.writer.backoff_cap = 100ms;
  o.writer.retry = pg::retry_policy::for_at_most(20s);
  o.writer.observer = std::move(obs);
  o.writers = writers;
  o.max_in_flight = 8;
  o.refusal_pause = 100ms;
  return o;
}

// A DSN nothing listens on (port 1), refused at once.
const std::string nowhere = "postgresql://crm@127.0.0.1:1/none?connect_timeout=1";

}  // namespace

TEST(WriterPool, CompletionsComeBackInSubmissionOrderWithTheSourcesTokens) {
  auto dsn = crm_test::fresh_database("t_pool_order");
  auto obs = std::make_shared<recording_observer>();
  pg::writer_pool pool(options(dsn, 3, obs));
  // Sizes differ, so the writers finish them in another order than they were submitted.
  const std::uint64_t sizes[] = {3000, 10, 2000, 1, 500, 40};
  std::uint64_t next_id = 0;
  for (std::uint64_t k = 0; k < std::size(sizes); ++k) {
    ASSERT_FALSE(pool.full());
    pool.submit(batch_of(next_id, next_id + sizes[k]), {"pool test", "batch " + std::to_string(k)}, 100 + k);
    next_id += sizes[k];
  }
  EXPECT_TRUE(pool.full() == (std::size(sizes) >= 8));
  for (std::uint64_t k = 0; k < std::size(sizes); ++k) {
    auto c = pool.next();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->token, 100 + k);
    EXPECT_EQ(c->status, pg::batch_status::written) << c->error;
    EXPECT_EQ(c->batch->record_count(), sizes[k]) << "the completion hands back the batch submitted";
    EXPECT_EQ(c->result.inserted(), sizes[k]);
  }
  EXPECT_FALSE(pool.next(10ms));
  EXPECT_EQ(pool.in_flight(), 0u);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), static_cast<long long>(next_id));
  EXPECT_EQ(obs->written.load(), static_cast<int>(std::size(sizes)));
  EXPECT_EQ(obs->records.load(), next_id);
  EXPECT_EQ(obs->connected_calls.load(), 3) << "every writer connects at start, before any batch";
  // Each batch is in the ledger once per writer that had a part of it: the ids (which differ only in their
  // last bytes) are spread over all three writers for every batch of more than a few records.
  EXPECT_GE(crm_test::count(dsn, "SELECT count(*) FROM ingest_batches"), static_cast<long long>(std::size(sizes)));
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ingest_batches WHERE source_position LIKE 'batch 0 part %'"), 3);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ingest_batches WHERE source_position LIKE 'batch 2 part %'"), 3);
}

TEST(WriterPool, OneAccountingInsertedDuplicatesRejectedAddUpToTheRecords) {
  auto dsn = crm_test::fresh_database("t_pool_accounting");
  auto obs = std::make_shared<recording_observer>();
  pg::writer_pool pool(options(dsn, 2, obs));
  pool.submit(batch_of(0, 100), {"pool test", "first"}, 1);
  auto first = pool.next();
  ASSERT_TRUE(first && first->status == pg::batch_status::written);
  // 50 already stored, 50 new, 10 repeated inside the batch, 2 dead letters, and one event the database
  // refuses (a NUL byte in text): split off and dead-lettered with the database's reason.
  auto b = batch_of(50, 150);
  for (std::uint64_t i = 140; i < 150; ++i) b->communications.push_back(comm(i));
  b->rejections.push_back({nov_2026, "pool test:1", "status: bad", "{\"status\":1}", {}});
  b->rejections.push_back({nov_2026, "pool test:2", "status: bad", "{\"status\":2}", {}});
  static const std::string with_nul("te\0st", 5);
  auto refused = comm(900);
  refused.provider = with_nul;
  b->communications.push_back(refused);
  const std::size_t records = b->record_count();
  pool.submit(b, {"pool test", "second"}, 2);
  auto c = pool.next();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, pg::batch_status::written) << c->error;
  const auto& r = c->result;
  EXPECT_EQ(r.inserted(), 50u);
  EXPECT_EQ(r.duplicates(), 60u);  // 50 stored before + 10 repeated in the batch
  EXPECT_EQ(r.rejected(), 3u);     // 2 dead letters + 1 refused by the database
  EXPECT_EQ(r.refused_by_database, 1u);
  EXPECT_EQ(r.inserted() + r.duplicates() + r.rejected(), records);
  EXPECT_EQ(r.records_in(), records);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 150);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM rejected_events"), 3);
  EXPECT_EQ(obs->inserted.load(), 150u);
  EXPECT_EQ(obs->duplicates.load(), 60u);
  EXPECT_EQ(obs->rejected.load(), 3u);
}

TEST(WriterPool, GiveUpFailsTheBatchAtTheFirstFailure) {
  auto obs = std::make_shared<recording_observer>();
  auto o = options(nowhere, 1, obs);
  o.writer.retry = pg::retry_policy::give_up();
  pg::writer_pool pool(o);
  const auto started = std::chrono::steady_clock::now();
  pool.submit(batch_of(0, 10), {"pool test", "nowhere"}, 7);
  auto c = pool.next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->token, 7u);
  EXPECT_EQ(c->status, pg::batch_status::failed);
  EXPECT_FALSE(c->error.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(obs->connect_failures.load(), 1);
  EXPECT_EQ(obs->refused.load(), 1);
  EXPECT_EQ(obs->written.load(), 0);
}

TEST(WriterPool, ForAtMostRetriesForThatLongThenFails) {
  auto o = options(nowhere, 1);
  o.writer.retry = pg::retry_policy::for_at_most(1s);
  pg::writer_pool pool(o);
  const auto started = std::chrono::steady_clock::now();
  pool.submit(batch_of(0, 10), {"pool test", "nowhere"}, 1);
  auto c = pool.next();
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, pg::batch_status::failed);
  EXPECT_GE(took, 1s);
  EXPECT_LT(took, 10s);
}

TEST(WriterPool, ForEverKeepsTryingUntilTheSourceStopsRetrying) {
  auto o = options(nowhere, 2);
  o.writer.retry = pg::retry_policy::for_ever();
  pg::writer_pool pool(o);
  pool.submit(batch_of(0, 100), {"pool test", "nowhere"}, 1);
  pool.submit(batch_of(100, 200), {"pool test", "nowhere"}, 2);
  EXPECT_FALSE(pool.next(1500ms)) << "for ever: still trying after 1.5 s";
  EXPECT_FALSE(pool.reachable());
  pool.stop_retrying();
  for (std::uint64_t token : {1u, 2u}) {
    auto c = pool.next(10s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->token, token);
    EXPECT_EQ(c->status, pg::batch_status::abandoned);
  }
}

// From a review: a batch refused for good in the middle of its split (here the dead letter of its one bad row,
// refused once with insufficient_privilege) is retried by the pool, and the parts of the split that had committed
// met their own ledger ids: 23505 on ingest_batches_pkey, taken for a data error, so their stored events were
// dead-lettered as "refused" too. A retry after a refusal looks each part's ledger id up first.
TEST(WriterPool, ARetryAfterARefusalDoesNotWriteTheCommittedPartsAgain) {
  auto dsn = crm_test::fresh_database("t_pool_retry_split");
  {
    pqxx::connection c(dsn);
    pqxx::work tx(c);
    tx.exec("CREATE SEQUENCE refuse_once");
    tx.exec("CREATE FUNCTION refuse_first_dead_letter() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF nextval('refuse_once') = 1 THEN RAISE EXCEPTION 'not now' USING ERRCODE = '42501'; END IF;"
            " RETURN NEW; END $$");
    tx.exec("CREATE TRIGGER refuse_first BEFORE INSERT ON rejected_events FOR EACH ROW"
            " EXECUTE FUNCTION refuse_first_dead_letter()");
    tx.commit();
  }
  auto obs = std::make_shared<recording_observer>();
  auto o = options(dsn, 1, obs);
  o.writer.retry = pg::retry_policy::for_ever();  // refusals are retried after refusal_pause
  pg::writer_pool pool(o);
  auto b = batch_of(0, 20);
  b->communications[13].lead_id = -5;  // the CHECK refuses it (23514): the batch is split
  pool.submit(b, {"pool test", "split then refused"}, 1);
  auto c = pool.next(20s);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, pg::batch_status::written) << c->error;
  EXPECT_GE(obs->refused.load(), 1) << "the first attempt was refused";
  // Stored: 19 events; kept: one dead letter, the refused row's. Counted so too.
  EXPECT_EQ(crm_test::count(dsn, "SELECT (SELECT count(*) FROM communications) * 10000 + (SELECT count(*) FROM"
                                 " rejected_events) * 100 + (SELECT count(*) FROM rejected_events WHERE reason LIKE"
                                 " '%(23514)%')"),
            190101);
  EXPECT_EQ(std::to_string(c->result.inserted()) + " " + std::to_string(c->result.rejected()) + " " +
                std::to_string(c->result.duplicates()),
            "19 1 0");
}

TEST(WriterPool, AbandonSkipsWhatIsQueued) {
  auto dsn = crm_test::fresh_database("t_pool_abandon");
  pg::writer_pool pool(options(dsn, 1));
  pool.abandon();
  pool.submit(batch_of(0, 10), {"pool test", "abandoned"}, 1);
  auto c = pool.next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, pg::batch_status::abandoned);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 0);
}

// Confirmation (sinks/postgres/confirmation.md) on a single PostgreSQL, the embedded default: no standby
// exists, so a COMMIT is the confirmation: every batch completes as soon as it is written, nothing waits
// for standbys, and the mode is reported as standalone.
TEST(WriterPool, ASinglePostgresConfirmsAtCommitWithoutWaiting) {
  auto dsn = crm_test::fresh_database("t_pool_standalone");
  auto obs = std::make_shared<recording_observer>();
  pg::writer_pool pool(options(dsn, 2, obs));
  for (std::uint64_t k = 0; k < 5; ++k) pool.submit(batch_of(k * 100, k * 100 + 100), {"pool test", "standalone"}, k);
  for (std::uint64_t k = 0; k < 5; ++k) {
    auto c = pool.next(10s);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->status, pg::batch_status::written) << c->error;
    EXPECT_EQ(c->confirm_seconds, 0) << "a batch waited for standbys that do not exist";
  }
  EXPECT_EQ(pool.unconfirmed().batches, 0u);
  std::lock_guard lock(obs->mode_mu);
  EXPECT_EQ(obs->mode, "standalone");
}

// A primary that needs a standby to confirm (here: confirm_min_standbys = 1 on the single server, as on a
// replicated primary whose standbys are all gone): batches are committed but not complete, so their source
// keeps their positions; they count as unconfirmed, and once they hold max_unconfirmed_bytes the pool is
// full (the source stops reading). `confirm = commit` completes them at once.
TEST(WriterPool, BatchesWaitForTheRequiredStandbysAndFillTheWindow) {
  auto dsn = crm_test::fresh_database("t_pool_unconfirmed");
  auto o = options(dsn, 2);
  o.confirm = {true, 1};
  o.max_unconfirmed_bytes = 1;  // the first unconfirmed batch fills it
  {
    pg::writer_pool pool(o);
    pool.submit(batch_of(0, 50), {"pool test", "waits"}, 1);
    EXPECT_FALSE(pool.next(1s)) << "completed although no standby has it";
    EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 50) << "committed, only not released";
    const auto st = pool.unconfirmed();
    EXPECT_EQ(st.batches, 1u);
    EXPECT_GT(st.bytes, 0u);
    EXPECT_GT(st.oldest_seconds, 0.5);
    EXPECT_TRUE(pool.full()) << "the window of unconfirmed bytes is full";
    ASSERT_EQ(pool.outstanding().size(), 1u);
    EXPECT_EQ(pool.outstanding()[0].position, "waits");
  }
  o.confirm = {false, -1};
  pg::writer_pool pool(o);
  pool.submit(batch_of(50, 60), {"pool test", "commit is enough"}, 2);
  auto c = pool.next(10s);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, pg::batch_status::written);
}

// Ledger ids of a split part are derived from the part's id, the same every time, so that a part written
// again after a failover finds the transactions that are in the ledger already.
TEST(WriterPool, SplitLedgerIdsDeriveFromThePartsId) {
  const auto parent = id_of(7);
  EXPECT_EQ(pg::derived_batch_id(parent, 1), pg::derived_batch_id(parent, 1));
  EXPECT_NE(pg::derived_batch_id(parent, 1), pg::derived_batch_id(parent, 2));
  EXPECT_NE(pg::derived_batch_id(parent, 1), parent);
  EXPECT_NE(pg::derived_batch_id(parent, 1), pg::derived_batch_id(id_of(8), 1));
}

// A part written again with `rewrite` (what the pool does when a new primary's ledger lacks it) whose
// transaction is in the ledger already is settled from it: nothing is inserted twice, nothing counted twice.
TEST(Writer, ARewrittenPartFoundInTheLedgerIsNotWrittenTwice) {
  auto dsn = crm_test::fresh_database("t_writer_rewrite");
  pg::writer w(options(dsn, 1).writer);
  auto b = batch_of(0, 20);
  const pg::batch_view v{b->communications, b->touchpoints, b->rejections};
  const auto id = id_of(99);
  pg::commit_point first, again;
  auto r1 = w.write(v, {"rewrite test", "1"}, id, false, first);
  auto r2 = w.write(v, {"rewrite test", "1"}, id, true, again);
  EXPECT_EQ(r1.inserted(), 20u);
  EXPECT_EQ(r2.settled_from_ledger, 1u);
  EXPECT_EQ(first.batch_ids, again.batch_ids);
  // Its own COMMIT, silent: it waited for any synchronous standby. Settled from the ledger: nothing says it did.
  EXPECT_TRUE(first.waited);
  EXPECT_FALSE(again.waited);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ingest_batches"), 1);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 20);
  EXPECT_EQ(crm_test::count(dsn, "SELECT coalesce(sum(event_count), 0) FROM communication_metrics"), 20);
}

TEST(RetryPolicy, SettingsConventionAndModes) {
  EXPECT_TRUE(pg::retry_policy::from_seconds(0).forever());
  EXPECT_FALSE(pg::retry_policy::from_seconds(5).forever());
  EXPECT_EQ(pg::retry_policy::from_seconds(5).limit(), 5s);
  EXPECT_TRUE(pg::retry_policy::for_ever().may_retry(24h));
  EXPECT_TRUE(pg::retry_policy::for_at_most(5s).may_retry(4s));
  EXPECT_FALSE(pg::retry_policy::for_at_most(5s).may_retry(6s));
  EXPECT_FALSE(pg::retry_policy::give_up().may_retry(0s));
  EXPECT_TRUE(pg::retry_policy::for_ever().retries_refusals());
  EXPECT_FALSE(pg::retry_policy::for_at_most(5s).retries_refusals());
}

// An adaptive pool (serve's drainer) changes how many writers a batch is split among between batches;
// every batch still lands once, its completion accounts for all its records, and the ledger names the
// parts of the split batches.
TEST(WriterPool, AnAdaptivePoolSplitsAmongChangingWritersAndWritesEveryRecordOnce) {
  auto dsn = crm_test::fresh_database("t_pool_adaptive");
  auto obs = std::make_shared<recording_observer>();
  auto o = options(dsn, 2, obs);
  o.max_in_flight = 1;
  o.batch.rows = 200;  // every batch below is full: each one is a measure
  o.adaptive = true;
  o.adaptive_options = {.window = 1, .probe_every = 1};
  pg::writer_pool pool(o);
  EXPECT_EQ(pool.writers_in_use(), 1) << "it starts with one writer";
  EXPECT_EQ(obs->in_use.load(), 1) << "and says so before any batch";
  std::vector<int> split;
  for (std::uint64_t k = 0; k < 12; ++k) {
    split.push_back(pool.writers_in_use());
    pool.submit(batch_of(k * 200, k * 200 + 200), {"pool test", "batch " + std::to_string(k)}, k);
    auto c = pool.next();
    ASSERT_TRUE(c);
    ASSERT_EQ(c->status, pg::batch_status::written) << c->error;
    EXPECT_EQ(c->result.inserted(), 200u);
  }
  EXPECT_NE(std::find(split.begin(), split.end(), 2), split.end()) << "a second writer was tried";
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM communications"), 12 * 200);
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(DISTINCT source_position) FROM ingest_batches"),
            static_cast<long long>(std::count(split.begin(), split.end(), 1) + 2 * std::count(split.begin(), split.end(), 2)));
  EXPECT_EQ(crm_test::count(dsn, "SELECT count(*) FROM ingest_batches WHERE source_position LIKE '% part 2/2'"),
            static_cast<long long>(std::count(split.begin(), split.end(), 2)));
  EXPECT_EQ(obs->records.load(), 12u * 200u);
}

// Readiness follows the writers batches go to. An adaptive pool whose writers could not connect at start
// (the database came up later) is reachable again once its one writer in use has written: the others get
// no part until a trial and must not keep /readyz at 503 for good.
TEST(WriterPool, AnAdaptivePoolIsReachableOnceTheWritersInUseWrite) {
  const std::string name = "t_pool_adaptive_late";
  {
    pqxx::connection admin(crm_test::admin_dsn());
    pqxx::nontransaction tx(admin);
    tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name) + " WITH (FORCE)");
  }
  auto o = options(crm_test::dsn_for(name), 2);
  o.max_in_flight = 1;
  o.adaptive = true;
  pg::writer_pool pool(o);
  // Both writers try to connect at start and fail: the database does not exist yet.
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(pool.reachable());
  const auto dsn = crm_test::fresh_database(name);
  pool.submit(batch_of(0, 10), {"pool test", "late"}, 1);  // not full: no measure, one writer stays in use
  auto c = pool.next();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->status, pg::batch_status::written) << c->error;
  EXPECT_EQ(pool.writers_in_use(), 1);
  EXPECT_TRUE(pool.reachable()) << "the writer in use has written; the idle one must not hold readiness down";
}
