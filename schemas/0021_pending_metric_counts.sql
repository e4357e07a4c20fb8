-- The writers append their communications' daily counts instead of upserting them; the counts are folded later,
-- and communication_metrics reads both, so it equals a recount of the stored rows at every moment, as before.
--
-- Every batch transaction upserted one communication_metrics row per (day, campaign, channel, status) its rows
-- fell on, and held those rows' locks until its COMMIT. Two costs:
--   - a writer whose batch shares a counter with another writer's uncommitted batch waited for that COMMIT
--     (and, under synchronous replication, for the standby's acknowledgement of it): writers of the same day's
--     traffic took turns;
--   - events in random time order touch thousands of counters per batch: 380,000 counter updates for 1M
--     communications spread over three months (`bench/gen_events --order random --touchpoints 0`, 10,000-row
--     batches), 2.7 s of the writers' 10 s of PostgreSQL time (`pg_stat_statements`), ~4 us per counter where an
--     appended row costs ~0.6 us.
-- Now:
--   - communication_metrics_folded is the table communication_metrics was (its rows, constraint and index);
--   - a batch appends its counts to communication_metrics_pending (no index, no row lock) in its own transaction;
--   - crm_metrics_fold() moves every pending row it sees into communication_metrics_folded in one transaction
--     (a DELETE ... RETURNING summed into one sorted upsert); a writer calls it after its COMMIT once it has
--     appended enough rows (`sinks/postgres/writer.h`), one folder at a time (a second caller returns NULL);
--   - communication_metrics is a view of the sum of both, with the table's columns in the table's order. A fold
--     commits the rows it deleted and the counts it added at once, so no reader sees a count twice or not at all.
-- ab_test_message_counts (the A/B messages' counts by test, variant and status, upserted in the same statement:
-- every writer's batch with messages of a running test met the same few rows) is kept the same way:
-- ab_test_message_counts_folded, ab_test_message_counts_pending and the view ab_test_message_counts, folded by the
-- same function. The recompute truncates both tables before its recount, as it truncated the table (its lock
-- makes the batches that append counts wait until it commits; they add on top of the recount).
-- Writers of a release before this one upsert communication_metrics and ab_test_message_counts, which are views
-- now: stop them before migrating (their batch statements would fail, a fatal error: they stop; an old binary
-- also refuses to start on this schema).
-- Forward-only: never edit this file once released.

ALTER TABLE communication_metrics RENAME TO communication_metrics_folded;

CREATE TABLE communication_metrics_pending (
    day           date    NOT NULL,
    campaign_id   bigint,
    channel       text    NOT NULL,
    status        text    NOT NULL,
    event_count   bigint  NOT NULL,
    campaign_ref  text
);
-- Whole rows identify a deleted row to a publication FOR ALL TABLES (no key here), so a fold's DELETE is allowed.
ALTER TABLE communication_metrics_pending REPLICA IDENTITY FULL;

CREATE VIEW communication_metrics AS
SELECT day, campaign_id, channel, status, sum(event_count)::bigint AS event_count, campaign_ref
FROM (SELECT day, campaign_id, channel, status, event_count, campaign_ref FROM communication_metrics_folded
      UNION ALL
      SELECT day, campaign_id, channel, status, event_count, campaign_ref FROM communication_metrics_pending) m
GROUP BY day, campaign_id, channel, status, campaign_ref;
-- campaign_ref is grouped by, not aggregated: the checks of 0006 make it a function of campaign_id (a key derived
-- from it, or NULL for an integer id), so the rows are the same, and a condition on it (a campaign's reference
-- looked up by key with campaign_ref IS NOT NULL, 0006's partial index) reaches the tables.

ALTER TABLE ab_test_message_counts RENAME TO ab_test_message_counts_folded;

CREATE TABLE ab_test_message_counts_pending (
    ab_test_id  text   NOT NULL,
    variant     text   NOT NULL,
    status      text   NOT NULL,
    events      bigint NOT NULL
);
ALTER TABLE ab_test_message_counts_pending REPLICA IDENTITY FULL;

CREATE VIEW ab_test_message_counts AS
SELECT ab_test_id, variant, status, sum(events)::bigint AS events
FROM (SELECT ab_test_id, variant, status, events FROM ab_test_message_counts_folded
      UNION ALL
      SELECT ab_test_id, variant, status, events FROM ab_test_message_counts_pending) m
GROUP BY ab_test_id, variant, status;

-- The number of pending rows folded (of both tables); NULL when another session is folding (it takes these rows
-- too, or the next fold does). Rows of transactions that commit while it runs are not seen by its DELETEs and wait
-- for the next fold.
CREATE FUNCTION crm_metrics_fold() RETURNS bigint
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('crm_metrics_fold'), 0) THEN
        RETURN NULL;
    END IF;
    WITH d AS (
        DELETE FROM communication_metrics_pending
        RETURNING day, campaign_id, channel, status, event_count, campaign_ref
    ), up AS (
        INSERT INTO communication_metrics_folded AS m (day, campaign_id, channel, status, event_count, campaign_ref)
        SELECT day, campaign_id, channel, status, sum(event_count)::bigint, min(campaign_ref) FROM d
        GROUP BY day, campaign_id, channel, status
        ORDER BY day, campaign_id, channel, status
        ON CONFLICT ON CONSTRAINT communication_metrics_key
        DO UPDATE SET event_count = m.event_count + EXCLUDED.event_count
    )
    SELECT count(*) INTO folded FROM d;
    WITH d AS (
        DELETE FROM ab_test_message_counts_pending RETURNING ab_test_id, variant, status, events
    ), up AS (
        INSERT INTO ab_test_message_counts_folded AS m (ab_test_id, variant, status, events)
        SELECT ab_test_id, variant, status, sum(events)::bigint FROM d
        GROUP BY ab_test_id, variant, status
        ORDER BY ab_test_id, variant, status
        ON CONFLICT (ab_test_id, variant, status) DO UPDATE SET events = m.events + EXCLUDED.events
    )
    SELECT folded + count(*) INTO folded FROM d;
    RETURN folded;
END
$$;
REVOKE EXECUTE ON FUNCTION crm_metrics_fold() FROM PUBLIC;
-- SECURITY DEFINER: the writer folds without the right to delete pending counts or to change a folded one at will
-- (the schema first, pg_temp last, as 0003 does for the partition functions).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION crm_metrics_fold() SECURITY DEFINER SET search_path = %I, pg_catalog, pg_temp',
                   current_schema());
END
$$;

-- The stage's legacy step (the A/B messages of a writer of a release before 0005) and the recompute (its TRUNCATE
-- locks the pending table first, in the order a fold's statement does, so the two cannot deadlock), edited in
-- place as 0020 did: each pattern (a regular expression) must match the current definition exactly once, or the
-- migration stops.
DO $$
DECLARE
    e record;
    def text;
BEGIN
    FOR e IN SELECT * FROM (VALUES
        ('crm_analytics_apply_batch()'::regprocedure,
         'INSERT INTO ab_test_message_counts AS m \(ab_test_id, variant, status, events\)\n'
         '    SELECT ab_test_id, variant, status, count\(\*\) FROM crm_new_ab_messages\n'
         '    GROUP BY ab_test_id, variant, status\n'
         '    ORDER BY ab_test_id, variant, status\n'
         '    ON CONFLICT \(ab_test_id, variant, status\) DO UPDATE SET events = m\.events \+ EXCLUDED\.events;',
         'INSERT INTO ab_test_message_counts_pending (ab_test_id, variant, status, events)
    SELECT ab_test_id, variant, status, count(*) FROM crm_new_ab_messages
    GROUP BY ab_test_id, variant, status;'),
        ('crm_analytics_recompute()'::regprocedure,
         'TRUNCATE ab_test_message_counts;\n    INSERT INTO ab_test_message_counts\n',
         'TRUNCATE ab_test_message_counts_pending, ab_test_message_counts_folded;
    INSERT INTO ab_test_message_counts_folded
')) AS v(fn, pattern, replacement) LOOP
        def := pg_get_functiondef(e.fn);
        IF (SELECT count(*) FROM regexp_matches(def, e.pattern, 'g')) <> 1 THEN
            RAISE EXCEPTION 'migration 0021: % does not match "%" exactly once', e.fn, e.pattern;
        END IF;
        EXECUTE regexp_replace(def, e.pattern, e.replacement);
    END LOOP;
END
$$;

-- Both roles read the views and the pending rows (and the folded tables, which keep the tables' SELECT grants);
-- the writer appends and folds.
DO $$
DECLARE
    role_ text;
BEGIN
    FOREACH role_ IN ARRAY ARRAY['crm_ingest_writer', 'crm_ingest_analytics'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_);
        EXECUTE format('GRANT SELECT ON communication_metrics, communication_metrics_pending, ab_test_message_counts,'
                       ' ab_test_message_counts_pending TO %I', role_);
        IF role_ = 'crm_ingest_writer' THEN
            GRANT INSERT ON communication_metrics_pending, ab_test_message_counts_pending TO crm_ingest_writer;
            GRANT EXECUTE ON FUNCTION crm_metrics_fold() TO crm_ingest_writer;
            -- Only the fold (SECURITY DEFINER) and the owner's recompute change the folded counts now.
            REVOKE INSERT, UPDATE, DELETE ON communication_metrics_folded, ab_test_message_counts_folded
                FROM crm_ingest_writer;
        END IF;
    END LOOP;
END
$$;
