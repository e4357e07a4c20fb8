-- The analytics stage keeps the statistics of the tables it reads current enough for its plans (0005, 0011).
--
-- The stage's statements are planned from the statistics of every partition of customer_touchpoints (and of the
-- identity and attribution tables). A partition that fills faster than autovacuum analyzes it (a month's partition
-- during a bulk import, the first minutes of a month under serve: autovacuum looks once a minute) has none, or has
-- those of its first few rows, and the planner then guesses. For an anonymous visitor's touchpoints it took an index
-- of leads' touchpoints with `lead_id IS NULL` as its condition (every anonymous-only touchpoint of the window, once
-- per probe) instead of the visitor's own index: 275 to 40,000 rows read per probe, 7 to 77 million buffer hits in
-- one run. Measured on 1M generated events with pooled visitors (`bench/gen_events --visitors 80000 --identified 0.2
-- --conversions 0.03 --exposures 0.02`, 291,000 touchpoints): the stage alone on their unapplied backlog, runs of
-- 100,000 touchpoints, 76 s of CPU with a partition unanalyzed, 9 s once analyzed; `crm-ingest import` of the file,
-- 4 runs each, 16.8-61.5 s without this migration, 12.6-13.3 s with it.
--
-- crm_analytics_statistics() analyzes each table the stage reads
--   * whose rows changed since its last analyze at least as often as it held rows then (and at least 1,000 times):
--     it has doubled since its statistics were taken;
--   * or that was never analyzed nor vacuumed and holds 8 pages (~250 touchpoints) or more: the change counters are
--     lost in a crash and start at zero in a restored or copied database, the statistics (a catalog) are not.
-- The stage calls it in every run that took touchpoints, before the run's statements are planned (a check every
-- 5 s let a run plan against a partition that had filled in between: 50 s instead of 2); the recompute calls it too.
-- The check costs ~0.3 ms (two numbers per table, no statistics view). ANALYZE (SKIP_LOCKED): a table autovacuum is
-- working on is left to it. It runs as the owner of the tables (SECURITY DEFINER: only an owner may ANALYZE), with a
-- fixed path. Autovacuum keeps doing the rest; this closes the gap while a table grows faster than it looks.
--
-- crm_edit_function() is the one way migrations edit a function in place from now on: a regular expression that
-- must match the function's current definition exactly `times` times, or the migration stops.
-- Forward-only: never edit this file once released.

CREATE FUNCTION crm_edit_function(fn regprocedure, times integer, pattern text, replacement text, migration text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    def text := pg_get_functiondef(fn);
    found integer := (SELECT count(*) FROM regexp_matches(def, pattern, 'g'));
BEGIN
    IF found <> times THEN
        RAISE EXCEPTION 'migration %: % matches "%" % times, expected %', migration, fn, pattern, found, times;
    END IF;
    EXECUTE regexp_replace(def, pattern, replacement, 'g');
END
$$;
REVOKE EXECUTE ON FUNCTION crm_edit_function(regprocedure, integer, text, text, text) FROM PUBLIC;

-- Returns the number of tables analyzed.
CREATE FUNCTION crm_analytics_statistics() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t regclass;
    analyzed integer := 0;
BEGIN
    FOR t IN
        SELECT p.relid::regclass
        FROM unnest(ARRAY['customer_touchpoints', 'identity_claims', 'identity_links', 'attribution_credits',
                          'ab_test_units']::regclass[]) r
        CROSS JOIN LATERAL pg_partition_tree(r) p
        JOIN pg_class c ON c.oid = p.relid
        WHERE p.isleaf
          AND (pg_stat_get_mod_since_analyze(p.relid) >= greatest(1000, c.reltuples)
               -- never analyzed nor vacuumed, with 8 pages (~250 touchpoints) or more: the change counters can be lost
               -- (a crash, a restored or copied database)
               OR (c.reltuples < 0 AND pg_relation_size(p.relid) >= 8 * current_setting('block_size')::bigint))
        ORDER BY p.relid
    LOOP
        EXECUTE format('ANALYZE (SKIP_LOCKED) %s', t);
        analyzed := analyzed + 1;
    END LOOP;
    RETURN analyzed;
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION crm_analytics_statistics() SECURITY DEFINER '
                   'SET search_path = %I, pg_catalog, pg_temp', current_schema());
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

-- Before the run's statements are planned: in the stage run when it took touchpoints, and in the recompute.
SELECT crm_edit_function('crm_analytics_stage_run(integer, bigint)', 1,
                         '(\n    IF touchpoints > 0 THEN\n)(        PERFORM crm_analytics_apply_batch\(\);)',
                         '\1        PERFORM crm_analytics_statistics();
\2', '0020');
SELECT crm_edit_function('crm_analytics_recompute()', 1,
                         '(\n    PERFORM crm_analytics_session\(\);\n)',
                         '\1    PERFORM crm_analytics_statistics();
', '0020');

