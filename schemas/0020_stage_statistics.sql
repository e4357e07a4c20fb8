-- The analytics stage reads an anonymous visitor's touchpoints through the visitor's own index, whatever the
-- statistics and however long ago its plan was made (0005, 0009, 0011, 0012).
--
-- For an anonymous visitor's touchpoints (the late-data probe, a conversion's path, a visitor that changed hands)
-- the planner took an index of leads' touchpoints with `lead_id IS NULL` as its condition: every anonymous-only
-- touchpoint of the window, read again for each probe (275 to 40,000 rows per probe, 7 to 228 million buffer hits in
-- one run). It did so whenever it could not tell the indexes apart: a partition without statistics, or with those of
-- its first rows (a month's partition during an import or in the first minutes of a month: autovacuum looks once a
-- minute), or a plan the stage keeps for up to 10 s (0011) made while the partition was still small. Measured on 1M
-- generated events with pooled visitors (`bench/gen_events --visitors 80000 --identified 0.2 --conversions 0.03
-- --exposures 0.02`, 291,000 touchpoints): the stage alone on their unapplied backlog, runs of 100,000 touchpoints,
-- 76 s of CPU with a partition unanalyzed, 9 s once analyzed; `crm-ingest import` of the file 72-101 s before.
-- Three changes, each with its test (tests/sinks/postgres/analytics_stage_test.cc):
--   1. crm_analytics_statistics(), called by the stage before every run in a transaction of its own, analyzes each
--      table the stage reads that has doubled since its statistics were taken (at least 1,000 changes), or that
--      holds 8 pages (~250 touchpoints) or more and has no analyze on record (never analyzed; or the counters were
--      lost: a crash, a failover, a restored or copied database: then each such table once). The check costs
--      ~0.3 ms; at most ~0.5 s of ANALYZE per call; a table locked for more than 100 ms (autovacuum at it) is left
--      for a later run. `report attribution --recompute` calls it first too. It runs as the owner of the tables
--      (SECURITY DEFINER: only an owner may ANALYZE), with a fixed path.
--   2. The anonymous-only branch of crm_unit_touchpoints and crm_unit_touchpoints_between reads inside a subquery a
--      caller's filter on touch_type does not enter, so that the partial indexes of leads' conversions and path
--      touchpoints (0010) are no candidates there.
--   3. The index of a lead's touchpoints (customer_touchpoints_lead_idx) holds leads' touchpoints only.
-- Forward-only: never edit this file once released.

-- 1. Returns the number of tables analyzed. Called in a transaction of its own (sinks/postgres/analytics_stage.cc),
-- not inside a stage run: ANALYZE's row count in pg_class and its reset of the change counters outlive a rollback,
-- its statistics do not, so a run that failed after it would leave a table counted as analyzed without statistics;
-- and the run does not hold the tables' locks while it applies.
CREATE FUNCTION crm_analytics_statistics() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t regclass;
    analyzed integer := 0;
    started timestamptz := clock_timestamp();
BEGIN
    -- The parent before its partitions (pg_partition_tree locks each partition, not the parent), the order every
    -- statement on them follows: a writer creating a month's partition or a retain run detaching one takes the
    -- parent, then the DEFAULT partition.
    BEGIN
        LOCK TABLE customer_touchpoints IN ACCESS SHARE MODE;
    EXCEPTION WHEN lock_not_available THEN
        RETURN 0;  -- a partition is being created or detached: next run
    END;
    FOR t IN
        SELECT l.relid
        FROM unnest(ARRAY['customer_touchpoints', 'identity_claims', 'identity_links', 'attribution_credits',
                          'ab_test_units']::regclass[]) r
        CROSS JOIN LATERAL (
            SELECT p.relid FROM pg_partition_tree(r) p WHERE p.isleaf  -- a partitioned table's partitions
            UNION ALL
            SELECT r FROM pg_class k WHERE k.oid = r AND k.relkind = 'r') l  -- a plain table (no tree)
        JOIN pg_class c ON c.oid = l.relid
        CROSS JOIN LATERAL (
            SELECT pg_stat_get_mod_since_analyze(l.relid) AS changed,
                   pg_stat_get_last_analyze_time(l.relid) IS NULL
                   AND pg_stat_get_last_autoanalyze_time(l.relid) IS NULL AS never) a
        -- what this function's owner may ANALYZE (else ANALYZE skips it with a warning, at every run)
        WHERE (pg_has_role(c.relowner, 'USAGE')
               OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE'))
          AND (a.changed >= greatest(1000, c.reltuples)
               -- no analyze known and 8 pages (~250 touchpoints) or more: the counters start at zero after a crash
               -- or a failover and in a restored or copied database (then each such table is analyzed once)
               OR (a.never AND pg_relation_size(l.relid) >= 8 * current_setting('block_size')::bigint))
        ORDER BY a.never DESC, a.changed / greatest(c.reltuples, 1) DESC
    LOOP
        -- At most ~0.5 s per run: a backlog of tables (after a restore or a failover) is caught up over a few runs.
        EXIT WHEN analyzed > 0 AND clock_timestamp() - started > interval '500 milliseconds';
        BEGIN
            EXECUTE format('ANALYZE %s', t);
            analyzed := analyzed + 1;
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- autovacuum or another process's stage is at it (lock_timeout below): left to it
        END;
    END LOOP;
    RETURN analyzed;
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION crm_analytics_statistics() SECURITY DEFINER '
                   'SET search_path = pg_catalog, %I, pg_temp SET lock_timeout = ''100ms''', current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION crm_analytics_statistics() FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        GRANT EXECUTE ON FUNCTION crm_analytics_statistics() TO crm_ingest_writer;  -- the stage's role
    END IF;
END
$$;

-- 2. The anonymous-only branch of a unit's touchpoints (crm_unit_touchpoints, crm_unit_touchpoints_between) reads the
-- visitor's touchpoints inside a subquery that a caller's filter does not enter (OFFSET 0, as 0012 did for the
-- stitched branch). A caller's filter on touch_type (conversions only, path touchpoints only) pushed into the branch
-- made the partial indexes of leads' touchpoints (0010's `WHERE touch_type = 'conversion'` and `WHERE touch_type NOT
-- IN (...)`) candidates, with `lead_id IS NULL` as their condition: every anonymous-only touchpoint of the window.
-- While a partition is small every estimate is one row, and the smaller index wins the tie; the stage keeps such a
-- plan for up to 10 s (0011) while an import grows the partition a hundredfold: 275 rows read per probe, 7-52
-- million buffer hits in one run (planned at 300-3,000 rows, run at 20,000: 0.9-1.0 million rows fetched through
-- indexes for 2,000 probes instead of 3,000-22,000). Inside the subquery only the visitor's own index
-- (customer_touchpoints_anonymous_idx) can serve, with 3. below. The same rows.
-- Edited in place: each pattern must match the function's current definition exactly once, or the migration stops.
CREATE FUNCTION pg_temp.crm_edit_function(fn regprocedure, times integer, pattern text, replacement text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    def text := pg_get_functiondef(fn);
    found integer := (SELECT count(*) FROM regexp_matches(def, pattern, 'g'));
BEGIN
    IF found <> times THEN
        RAISE EXCEPTION 'migration 0020: % matches "%" % times, expected %', fn, pattern, found, times;
    END IF;
    EXECUTE regexp_replace(def, pattern, replacement, 'g');
END
$$;
SELECT pg_temp.crm_edit_function('crm_unit_touchpoints(bigint, text)', 1,
    'FROM customer_touchpoints x\n    WHERE lead IS NULL AND x\.lead_id IS NULL'
    ' AND x\.anonymous_id = anonymous\n      AND NOT EXISTS',
    'FROM (SELECT y.* FROM customer_touchpoints y
          WHERE lead IS NULL AND y.lead_id IS NULL AND y.anonymous_id = anonymous
          OFFSET 0) x
    WHERE NOT EXISTS');
SELECT pg_temp.crm_edit_function('crm_unit_touchpoints_between(bigint, text, timestamptz, timestamptz)', 1,
    'FROM customer_touchpoints x\n    WHERE lead IS NULL AND x\.lead_id IS NULL'
    ' AND x\.anonymous_id = anonymous AND x\.occurred_at >= lo\n      AND x\.occurred_at <= hi\n      AND NOT EXISTS',
    'FROM (SELECT y.* FROM customer_touchpoints y
          WHERE lead IS NULL AND y.lead_id IS NULL AND y.anonymous_id = anonymous AND y.occurred_at >= lo
            AND y.occurred_at <= hi
          OFFSET 0) x
    WHERE NOT EXISTS');

-- 3. The index of a lead's touchpoints holds leads' touchpoints only. Without a predicate it served `lead_id IS NULL`
-- too, and the subquery above still had it as a candidate: while a partition is new (a month starting, an import
-- reaching the next month) the planner may estimate it at one row like the visitor's index, and a plan made then
-- is kept while writers fill the partition: one statement of one run read 67 million buffers through it for 1,475
-- probes (46.8 s). Every query on a lead (`lead_id = ...`) implies the predicate and uses it as before; anonymous-only
-- touchpoints (most web traffic) no longer cost an entry in it. Rebuilt here: writes wait for the build (measured on
-- a scratch server: 63 ms for 296,000 touchpoints of which 59,000 with a lead; the whole migration 0.16 s for 291,000
-- touchpoints, all with a lead).
DROP INDEX customer_touchpoints_lead_idx;
CREATE INDEX customer_touchpoints_lead_idx ON customer_touchpoints (lead_id, occurred_at) WHERE lead_id IS NOT NULL;
