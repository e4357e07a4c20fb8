-- The late-data probe skips the touchpoints that no credited conversion can follow (0009's crm_analytics_apply_batch).
--
-- For every new path touchpoint, the stage looked for the conversions of its unit that it falls in the lookback
-- window of (occurred after it, within the lookback), to attribute them again: one call of
-- crm_unit_touchpoints_between per touchpoint, a probe of every partition the window covers. Such a conversion
-- matters only if it has credits already: a conversion the stage has not applied yet gets its whole path when it
-- is applied, and one applied in the same run is in that run's list anyway. So a touchpoint that occurred at or
-- after the latest credited conversion cannot find one: with events arriving in time order, nearly all of them.
-- Measured on the default import (`bench/import_bench.sh --events 1000000`, pg_stat_statements): the probe's
-- statement took 3.6 s of the stage's 21 s.
--
-- attribution_watermark.credited_until is an upper bound of the occurred_at of every conversion with credits:
-- crm_attribution_refresh (the one function that computes credits: the stage, the recompute, a change of rates)
-- raises it to the latest conversion it was given, in the same transaction. The probe then takes only the
-- touchpoints that occurred before it. A bound that is too high only probes more; it is never lowered (not by a
-- recompute either). NULL: no conversion has credits.
-- Both functions are edited in place, as 0011 and 0012 edited the stage's: each text below must occur exactly once
-- in the function's current definition, or the migration stops.
-- Forward-only: never edit this file once released.

-- No stage run, recompute or change of rates is under way while the bound is set, and those that follow use the
-- edited functions.
SELECT pg_advisory_xact_lock(hashtext('crm_analytics'), 0);

CREATE TABLE attribution_watermark (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    credited_until timestamptz
);
-- Every conversion stored now: those with credits and those still waiting in the backlog (a higher bound than
-- needed until the stage has applied them, never a lower one).
INSERT INTO attribution_watermark (credited_until)
SELECT max(occurred_at) FROM customer_touchpoints WHERE touch_type = 'conversion';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        GRANT SELECT, UPDATE ON attribution_watermark TO crm_ingest_writer;  -- the analytics stage's role
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_analytics') THEN
        GRANT SELECT ON attribution_watermark TO crm_ingest_analytics;
    END IF;
END
$$;

DO $do$
DECLARE
    refresh_def text := pg_get_functiondef('crm_attribution_refresh()'::regprocedure);
    apply_def text := pg_get_functiondef('crm_analytics_apply_batch()'::regprocedure);
    -- crm_attribution_refresh: the bound rises with the conversions it credited.
    replace_call text := $o$    PERFORM crm_attribution_replace();
$o$;
    -- crm_analytics_apply_batch: the late-data probe's touchpoints.
    probe_rows text := $o$              WHERE touch_type NOT IN ('conversion', 'experiment_exposure', 'identify') OFFSET 0) n
$o$;
BEGIN
    IF array_length(string_to_array(refresh_def, replace_call), 1) <> 2
       OR array_length(string_to_array(apply_def, probe_rows), 1) <> 2 THEN
        RAISE EXCEPTION 'migration 0013: crm_attribution_refresh() or crm_analytics_apply_batch() is not as 0012 left it';
    END IF;
    EXECUTE replace(refresh_def, replace_call, replace_call || $n$    UPDATE attribution_watermark
    SET credited_until = greatest(credited_until, (SELECT max(occurred_at) FROM crm_attr_todo));
$n$);
    EXECUTE replace(apply_def, probe_rows, $n$              WHERE touch_type NOT IN ('conversion', 'experiment_exposure', 'identify')
                AND occurred_at < (SELECT w.credited_until FROM attribution_watermark w) OFFSET 0) n
$n$);
END
$do$;
