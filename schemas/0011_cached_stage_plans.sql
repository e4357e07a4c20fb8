-- The analytics stage's plans, kept for a while instead of made anew at every run (0002, 0008, 0009).
--
-- 0002 runs the statements that join the per-run working tables with the big tables through EXECUTE, so that
-- every run gets a plan for the sizes of the day. Each of them inlines crm_unit_touchpoints (a UNION ALL over
-- every partition of customer_touchpoints and identity_links), and planning one cost 3-7 ms with 8 monthly
-- partitions, more with a longer retention: measured with pg_stat_statements.track_planning at 5,000 events/s
-- (bench/sizing.sh --rates 5000), 4.8 s of the stage's 6.5 s went to planning them (the runs are small at such
-- a rate: a few hundred touchpoints each). They now run through prepared statements of the stage's session
-- (crm_execute_cached), made again
--   * when the statement's text changed (the lookback and half-life are written into it),
--   * when the run that planned it started more than 10 seconds ago (the big tables grew: the sizes of the day),
--   * when the run that planned it failed (its plan was for that run's sizes),
--   * when the run's working set (the rows of the table that drives the statement) is more than 4 x or less
--     than a quarter of the one the plan was made for (sizes under 100 count as 100),
-- and, as every plan, when PostgreSQL invalidates it (ANALYZE of a table it reads, a new partition). The
-- statements, their order and the tables they write are 0009's and 0008's: only how they are planned changed.
-- Forward-only: never edit this file once released.

-- Runs `sql` (one statement without parameters) through the session's prepared statement `name`, preparing it
-- first when there is none, its text is not `sql`, it was made for another run than the one recorded below, its
-- run started more than 10 s ago (pg_prepared_statements.prepare_time is the start of the statement that prepared
-- it: the stage's run), or `size_` left [prepared size / 4, prepared size x 4]. The text is compared with the
-- prepared statement's own: PREPARE and DEALLOCATE are not undone when a run fails. The size and the prepare_time
-- it was made at are kept in the session setting crm.plan_<name>, which a failed run does undo: a statement
-- prepared by a run that failed no longer matches it and is prepared again.
-- It runs any SQL it is given: only the owner and crm_ingest_writer (the stage's role) may call it.
CREATE FUNCTION crm_execute_cached(name text, sql text, size_ bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    setting_ text := 'crm.plan_' || name;
    size_now bigint := greatest(coalesce(size_, 0), 100);
    prepared_at timestamptz;
    prepared_text text;
    made_for text[];
    -- What pg_prepared_statements records as the statement of a PREPARE run through EXECUTE: the command itself.
    prepare_ text := format('PREPARE %I AS %s', name, sql);
BEGIN
    IF octet_length(name) > 40 THEN  -- PREPARE truncates names at 63 bytes, settings' names count too
        RAISE EXCEPTION 'crm_execute_cached: statement name too long: %', name;
    END IF;
    SELECT p.prepare_time, p.statement INTO prepared_at, prepared_text
    FROM pg_prepared_statements p WHERE p.name = crm_execute_cached.name;
    made_for := string_to_array(nullif(current_setting(setting_, true), ''), ' ');  -- {size, prepare_time epoch}
    IF prepared_at IS NULL OR prepared_text <> prepare_ OR made_for IS NULL
       OR made_for[2] IS DISTINCT FROM extract(epoch FROM prepared_at)::text
       OR prepared_at < clock_timestamp() - interval '10 seconds'
       OR size_now > 4 * made_for[1]::bigint OR 4 * size_now < made_for[1]::bigint THEN
        IF prepared_at IS NOT NULL THEN
            EXECUTE format('DEALLOCATE %I', name);
        END IF;
        EXECUTE prepare_;
        SELECT p.prepare_time INTO prepared_at FROM pg_prepared_statements p WHERE p.name = crm_execute_cached.name;
        PERFORM set_config(setting_, size_now || ' ' || extract(epoch FROM prepared_at)::text, false);
    END IF;
    EXECUTE format('EXECUTE %I', name);
END
$$;

REVOKE EXECUTE ON FUNCTION crm_execute_cached(text, text, bigint) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        GRANT EXECUTE ON FUNCTION crm_execute_cached(text, text, bigint) TO crm_ingest_writer;
    END IF;
END
$$;

-- The four functions of the stage that ran these statements through EXECUTE, edited in place: each edit below
-- replaces text that must occur exactly once in the function's current definition (0008's crm_attribution_replace
-- and crm_ab_refresh, 0009's crm_attribution_refresh and crm_analytics_apply_batch), so that only how the
-- statements are planned changes and an unexpected definition stops the migration. What changes:
--   * EXECUTE $q$ ... $q$ [USING ...] becomes crm_execute_cached(name, $q$ ... $q$, size), the parameters written
--     into the text as literals (lookback, half-life), the size the rows of the statement's driving table;
--   * GET DIAGNOSTICS ... ROW_COUNT becomes a count of the emptied working table the statement filled (a prepared
--     statement run through EXECUTE reports no row count).
CREATE TEMP TABLE crm_stage_plan_edits (f regprocedure, seq int, old text, new text);
INSERT INTO crm_stage_plan_edits VALUES
    ('crm_analytics_apply_batch()', 1,
     $e$    todo bigint;
BEGIN$e$,
     $e$    todo bigint;
    new_rows bigint;
BEGIN$e$),
    ('crm_analytics_apply_batch()', 2,
     $e$        PERFORM crm_identity_apply();
$e$,
     $e$        PERFORM crm_identity_apply();
        SELECT count(*) INTO new_rows FROM crm_new_touchpoints;
$e$),
    ('crm_analytics_apply_batch()', 3, E'        EXECUTE $q$\n    INSERT INTO crm_attr_todo',
     E'        PERFORM crm_execute_cached(\'crm_stage_attr_todo\', replace($q$\n    INSERT INTO crm_attr_todo'),
    ('crm_analytics_apply_batch()', 4,
     $e$    $q$ USING lookback_;
        GET DIAGNOSTICS todo = ROW_COUNT;$e$,
     $e$    $q$, '$1', quote_literal(lookback_) || '::interval'), new_rows);
        SELECT count(*) INTO todo FROM crm_attr_todo;  -- emptied above$e$),
    ('crm_analytics_apply_batch()', 5, E'        EXECUTE $q$\n    INSERT INTO crm_ab_todo',
     E'        PERFORM crm_execute_cached(\'crm_stage_ab_todo\', $q$\n    INSERT INTO crm_ab_todo'),
    ('crm_analytics_apply_batch()', 6,
     $e$    $q$;
        GET DIAGNOSTICS todo = ROW_COUNT;$e$,
     $e$    $q$, new_rows);
        SELECT count(*) INTO todo FROM crm_ab_todo;  -- emptied above$e$),
    ('crm_attribution_refresh()', 7,
     $e$    half_life_s double precision;
BEGIN$e$,
     $e$    half_life_s double precision;
    todo_rows bigint;
BEGIN$e$),
    ('crm_attribution_refresh()', 8,
     $e$    DELETE FROM crm_attr_new;
$e$,
     $e$    DELETE FROM crm_attr_new;
    SELECT count(*) INTO todo_rows FROM crm_attr_todo;
$e$),
    ('crm_attribution_refresh()', 9, E'    EXECUTE $q$\n    INSERT INTO crm_attr_new',
     E'    PERFORM crm_execute_cached(\'crm_stage_attr_new\', replace(replace($q$\n    INSERT INTO crm_attr_new'),
    ('crm_attribution_refresh()', 10,
     $e$    $q$ USING lookback_, half_life_s;$e$,
     $e$    $q$, '$1', quote_literal(lookback_) || '::interval'), '$2', quote_literal(half_life_s) || '::double precision'),
        todo_rows);$e$),
    ('crm_attribution_replace()', 11, E'    EXECUTE $q$\n    WITH old AS (',
     E'    PERFORM crm_execute_cached(\'crm_stage_attr_replace\', $q$\n    WITH old AS ('),
    ('crm_attribution_replace()', 12,
     $e$    $q$;
$e$,
     $e$    $q$, (SELECT count(*) FROM crm_attr_todo));
$e$),
    ('crm_ab_refresh()', 13,
     $e$
BEGIN
    DELETE FROM crm_ab_new;
$e$,
     $e$
DECLARE
    todo_rows bigint;
BEGIN
    DELETE FROM crm_ab_new;
    SELECT count(*) INTO todo_rows FROM crm_ab_todo;
$e$),
    ('crm_ab_refresh()', 14, E'    EXECUTE $q$\n    INSERT INTO crm_ab_new',
     E'    PERFORM crm_execute_cached(\'crm_stage_ab_new\', $q$\n    INSERT INTO crm_ab_new'),
    ('crm_ab_refresh()', 15,
     $e$    ) cv ON true
    $q$;$e$,
     $e$    ) cv ON true
    $q$, todo_rows);$e$),
    ('crm_ab_refresh()', 16, E'    EXECUTE $q$\n    WITH old AS (',
     E'    PERFORM crm_execute_cached(\'crm_stage_ab_stats\', $q$\n    WITH old AS ('),
    ('crm_ab_refresh()', 17,
     $e$pre_revenue_cross + EXCLUDED.pre_revenue_cross
    $q$;$e$,
     $e$pre_revenue_cross + EXCLUDED.pre_revenue_cross
    $q$, todo_rows);$e$);

DO $do$
DECLARE
    e record;
    def text;
    fn regprocedure;
    occurrences int;
BEGIN
    FOR fn IN SELECT DISTINCT f FROM crm_stage_plan_edits ORDER BY f LOOP
        def := pg_get_functiondef(fn);
        FOR e IN SELECT * FROM crm_stage_plan_edits WHERE f = fn ORDER BY seq LOOP
            occurrences := (length(def) - length(replace(def, e.old, ''))) / length(e.old);
            IF occurrences <> 1 THEN
                RAISE EXCEPTION 'migration 0011: % holds % copies of the text edit % expects once', fn, occurrences, e.seq;
            END IF;
            def := replace(def, e.old, e.new);
        END LOOP;
        EXECUTE def;
    END LOOP;
END
$do$;
DROP TABLE crm_stage_plan_edits;
