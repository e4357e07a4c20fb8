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
    edit text[];
    def text;
BEGIN
    FOREACH edit SLICE 1 IN ARRAY ARRAY[
        ['crm_attribution_refresh()',
         $o$    PERFORM crm_attribution_replace();
$o$,
         $n$    PERFORM crm_attribution_replace();
    UPDATE attribution_watermark
    SET credited_until = greatest(credited_until, (SELECT max(occurred_at) FROM crm_attr_todo));
$n$],
        ['crm_analytics_apply_batch()',
         $o$              WHERE touch_type NOT IN ('conversion', 'experiment_exposure', 'identify') OFFSET 0) n
$o$,
         $n$              WHERE touch_type NOT IN ('conversion', 'experiment_exposure', 'identify')
                AND occurred_at < (SELECT w.credited_until FROM attribution_watermark w) OFFSET 0) n
$n$]] LOOP
        def := pg_get_functiondef(edit[1]::regprocedure);
        IF array_length(string_to_array(def, edit[2]), 1) <> 2 THEN
            RAISE EXCEPTION 'migration 0013: % does not hold exactly one copy of: %', edit[1], edit[2];
        END IF;
        EXECUTE replace(def, edit[2], edit[3]);
    END LOOP;
END
$do$;
