-- Attribution and A/B maintenance off the insert path.
--
-- Before: every batch transaction ran crm_analytics_apply_batch() (0002) itself, holding bucket locks, so the
-- analytics cost about half of the import's throughput and made concurrent writers wait on each other.
-- Now a batch transaction only records what the analytics need, in one row of analytics_backlog (the
-- touchpoints it really inserted, as arrays), and the analytics stage applies the backlog in transactions of
-- its own (crm_analytics_stage_run below), deleting the rows it applied in the same transaction as the
-- changes it makes: each backlog row is applied exactly once, whatever crashes, and a batch that rolls back
-- leaves no row. `crm-ingest` runs the stage in every command that writes (sinks/postgres/analytics_stage.h);
-- `import` and `rejected replay` wait for it at their end, so their tables are current when they return.
--
-- Why this is order independent (the property the attribution tests check): the stage only ever runs the
-- recompute-from-stored-rows functions of 0002 (crm_attribution_refresh, crm_ab_refresh), which are
-- idempotent, and one stage transaction at a time (the crm_analytics lock, exclusive). Take a conversion C and a
-- touchpoint t of its path, applied by stage transactions X_C and X_t. Every statement of a stage transaction
-- takes its snapshot after the backlog rows it applies were visible, hence after C (resp. t) committed. If X_t
-- runs at or after X_C, its late-data probe sees C and refreshes it with t visible; if before, X_C's refresh
-- of C sees t. So the last refresh of every conversion sees its whole path, as a recompute does; the same
-- argument holds for a unit's exposures and conversions (crm_ab_refresh).
--
-- Locks: the stage takes the crm_analytics lock (hashtext('crm_analytics'), 0) EXCLUSIVE and without waiting
-- (pg_try_advisory_xact_lock: another process's stage is at work, so this one need not be); a recompute takes
-- it exclusive too; a writer of an older release that still applies analytics in its batches takes it shared,
-- so a rolling upgrade cannot race. New batch transactions take no analytics lock at all.
-- ab_test_message_counts (a pure counter) stays in the batch transaction, bumped in one sorted statement
-- next to communication_metrics at the end of the batch: a recompute's TRUNCATE of it waits for the batches
-- that bumped it (table lock), and batches that come after it add on top of the recount.

CREATE TABLE analytics_backlog (
    seq            bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id       uuid          NOT NULL,  -- the batch's ingest_batches row
    committed_at   timestamptz   NOT NULL DEFAULT clock_timestamp(),  -- written just before its batch commits
    touchpoints    integer       NOT NULL,
    -- One element per touchpoint the batch really inserted (parallel arrays, like crm_new_touchpoints).
    touchpoint_id  uuid[]        NOT NULL,
    occurred_at    timestamptz[] NOT NULL,
    lead_id        bigint[]      NOT NULL,
    anonymous_id   text[]        NOT NULL,
    touch_type     text[]        NOT NULL,
    ab_test_id     text[]        NOT NULL,
    variant        text[]        NOT NULL
);

-- One run of the analytics stage, inside the caller's transaction: applies (and deletes) the oldest backlog
-- rows in backlog order: at most max_batches rows, and no further row once max_touchpoints are taken. Returns at once
-- with busy = true when another session holds the crm_analytics lock (another process's stage, a recompute).
-- delays: for each applied row, seconds from its batch's commit to now (the end of this run).
CREATE FUNCTION crm_analytics_stage_run(max_batches integer, max_touchpoints bigint,
                                        OUT busy boolean, OUT batches integer, OUT touchpoints bigint,
                                        OUT delays double precision[])
LANGUAGE plpgsql
SET jit = off
AS $$
BEGIN
    batches := 0;
    touchpoints := 0;
    busy := NOT pg_try_advisory_xact_lock(hashtext('crm_analytics'), 0);
    IF busy THEN
        RETURN;
    END IF;
    PERFORM crm_analytics_session();
    DELETE FROM crm_new_touchpoints;
    -- Every statement from here on reads with a snapshot taken after the lock was granted and after the rows
    -- taken here were committed (see the top of this file).
    WITH pick AS (
        SELECT b.seq, sum(b.touchpoints) OVER (ORDER BY b.seq) - b.touchpoints AS before
        FROM (SELECT seq, analytics_backlog.touchpoints FROM analytics_backlog ORDER BY seq LIMIT max_batches) b
    ), taken AS (
        DELETE FROM analytics_backlog b USING pick
        WHERE b.seq = pick.seq AND pick.before < max_touchpoints
        RETURNING b.*
    ), unpacked AS (
        INSERT INTO crm_new_touchpoints (touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id,
                                         variant)
        SELECT u.* FROM taken t,
               unnest(t.touchpoint_id, t.occurred_at, t.lead_id, t.anonymous_id, t.touch_type, t.ab_test_id,
                      t.variant) u
        RETURNING 1
    )
    SELECT count(*), (SELECT count(*) FROM unpacked),
           coalesce(array_agg(extract(epoch FROM clock_timestamp() - t.committed_at)::double precision), '{}')
    INTO batches, touchpoints, delays
    FROM taken t;
    -- 0002's batch step on the unpacked touchpoints (its locks are ours already or free: the global one is held
    -- exclusively by this transaction, the bucket locks are taken by no one else now). crm_new_ab_messages is
    -- empty here: the A/B message counts are bumped by the batch transactions themselves.
    IF touchpoints > 0 THEN
        PERFORM crm_analytics_apply_batch();
    END IF;
END
$$;

-- How far behind the analytics tables are: backlog rows (batches committed, not yet applied), their
-- touchpoints, and the commit time of the oldest (NULL when current).
-- SECURITY DEFINER: readers (crm_ingest_analytics) learn how far behind the tables are without reading the
-- backlog's ids, which span every tenant.
CREATE FUNCTION crm_analytics_lag(OUT pending_batches bigint, OUT pending_touchpoints bigint,
                                  OUT oldest_committed_at timestamptz, OUT lag_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT count(*), coalesce(sum(touchpoints), 0), min(committed_at),
           coalesce(extract(epoch FROM clock_timestamp() - min(committed_at))::double precision, 0)
    FROM analytics_backlog
$$;

-- The recompute (0002) rebuilds everything from the stored rows, so the backlog it can see is applied by it.
-- It deletes that backlog first: every later statement of the recompute sees those rows' batches. Batches
-- committed after that statement keep their backlog rows and are applied again on top (idempotent).
CREATE OR REPLACE FUNCTION crm_analytics_recompute() RETURNS void
LANGUAGE plpgsql
SET jit = off
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('crm_analytics'), 0);
    PERFORM crm_analytics_session();
    DELETE FROM analytics_backlog;
    TRUNCATE attribution_credits, campaign_attribution_daily, ab_test_units, ab_test_variant_stats;

    DELETE FROM crm_attr_todo;
    INSERT INTO crm_attr_todo (conversion_id, occurred_at)
    SELECT touchpoint_id, occurred_at FROM customer_touchpoints WHERE touch_type = 'conversion';
    PERFORM crm_attribution_refresh();

    DELETE FROM crm_ab_todo;
    INSERT INTO crm_ab_todo (ab_test_id, unit, lead_id, anonymous_id)
    SELECT DISTINCT ab_test_id, crm_unit_key(lead_id, anonymous_id), lead_id, anonymous_id
    FROM customer_touchpoints
    WHERE touch_type = 'experiment_exposure' AND ab_test_id IS NOT NULL AND variant IS NOT NULL;
    PERFORM crm_ab_refresh();

    -- Last: the TRUNCATE's lock makes every batch that bumps these counters wait until the recompute commits
    -- (and add on top of the recount), so it is held only for the recount, not for the whole recompute.
    TRUNCATE ab_test_message_counts;
    INSERT INTO ab_test_message_counts (ab_test_id, variant, status, events)
    SELECT ab_test_id, variant, status, count(*) FROM communications
    WHERE ab_test_id IS NOT NULL AND variant IS NOT NULL
    GROUP BY ab_test_id, variant, status;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        -- The writer records its batches' backlog rows and, as the stage, applies and deletes them.
        GRANT SELECT, INSERT, DELETE ON analytics_backlog TO crm_ingest_writer;
    END IF;
END
$$;
