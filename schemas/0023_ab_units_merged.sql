-- The analytics stage merges a unit's new exposures into the row it left for the unit, instead of reading all of
-- the unit's exposures again (0008's crm_ab_refresh, as 0011 prepared it).
--
-- For every unit of an A/B test that a run touches (a new exposure, a new conversion), the refresh read the unit's
-- exposures of the test from customer_touchpoints: a lookup by lead (or visitor) that no partition bound narrows,
-- so one index descent per monthly partition and unit. With a long history that was most of the A/B step: 300,000
-- generated events over 120 months, all partitions made first (`bench/gen_events --months 120`, a plain import on
-- a scratch server with pg_stat_statements): the A/B refresh 3.0-3.2 s of the stage's 6.9-7.9 s, against 0.6 s of
-- 3.9 s over 3 months; 3,000 units: 0.15 ms per unit for the exposures (125 partitions), 0.02 ms over 3 months.
--
-- What a unit's row keeps of its exposures (the first one: id, time, variant, visitor; contaminated: more than one
-- variant) is a merge that gives the same result whatever the order and however often an exposure is counted: the
-- earliest (time, id) wins, contamination is "some two differ". So a run now computes, for a unit it touches,
-- merge(the unit's row, the run's new exposures of the unit) — the conversions in the window around the first
-- exposure are read as before. The whole read stays where the unit's members changed hands in this run (a visitor
-- of an identity change: its old lead's, its new lead's and its own unit) and for `report attribution --recompute`
-- (it calls the refresh without the stage's mark, below).
-- Why the merge sees every exposure: a stored exposure reaches the stage through its batch's backlog row, which
-- the stage applies once; the run that applies it puts its unit in the to-do list and merges it. An exposure a
-- whole read met before its backlog row was applied is merged twice: the merge does not change. A unit whose
-- members change is read whole. Left to the next `report attribution --recompute`, as conversions' credits are
-- since 0013: exposures stored with the upkeep switched off (`import --no-attribution`, `attribution.maintain =
-- false`: no backlog row, so never merged; before 0023 a later exposure or conversion of their unit read them by
-- chance), and a first exposure of a month `partitions retain` dropped (the unit keeps it; before 0023 the unit's
-- next exposure or conversion read the rows left).
-- The stage marks its call with the transaction's id (crm.ab_merge, local to the transaction): a value set for a
-- role, a database or a session cannot make the recompute, which starts from empty tables, merge.
-- The functions are edited in place (grants stay); each text replaced must stand in them exactly once, as 0009
-- and 0011 wrote it, or the migration stops.
-- Forward-only: never edit this file once released.

-- Edits `fn` in place: each pair's first text must stand in its definition exactly once, or the migration stops.
CREATE FUNCTION pg_temp.crm_edit(fn regprocedure, edits text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    def text := pg_get_functiondef(fn);
BEGIN
    FOR i IN 1 .. array_length(edits, 1) / 2 LOOP
        IF (length(def) - length(replace(def, edits[2 * i - 1], ''))) / length(edits[2 * i - 1]) <> 1 THEN
            RAISE EXCEPTION 'migration 0023: % does not read as 0009 and 0011 wrote it: %', fn, edits[2 * i - 1];
        END IF;
        def := replace(def, edits[2 * i - 1], edits[2 * i]);
    END LOOP;
    EXECUTE def;
END
$$;

SELECT pg_temp.crm_edit('crm_analytics_apply_batch()', ARRAY[$o$            PERFORM crm_ab_refresh();$o$,
$n$            -- 0023: units whose members did not change merge their new exposures into their rows.
            PERFORM set_config('crm.ab_merge', txid_current()::text, true);
            PERFORM crm_ab_refresh();
            PERFORM set_config('crm.ab_merge', '', true);$n$]);

SELECT pg_temp.crm_edit('crm_ab_refresh()', ARRAY[
$o$ END AS anonymous_id
        FROM crm_ab_todo
    ), exposures AS ($o$,
$n$ END AS anonymous_id,
               -- 0023: merged, unless called without the stage's mark or the unit's members changed hands
               coalesce(current_setting('crm.ab_merge', true), '') = txid_current()::text AND changed.unit_ IS NULL
                   AS merged
        FROM crm_ab_todo
        -- the units whose members changed hands, joined once (a test per to-do unit and change cost 9 s of one
        -- import's stage with pooled visitors)
        LEFT JOIN (SELECT DISTINCT v.unit_ FROM crm_identity_changes c
                   CROSS JOIN LATERAL (VALUES ('lead:' || c.old_lead), ('lead:' || c.new_lead),
                                              ('anon:' || c.anonymous_id)) v(unit_)) changed
          ON changed.unit_ = crm_ab_todo.unit
    ), new_exposures AS MATERIALIZED (
        -- the run's new exposures, each with its unit as crm_stage_ab_todo named it (one link lookup each)
        SELECT ab_test_id, anonymous_id, touchpoint_id, occurred_at, variant,
               crm_unit_key(coalesce(lead_id, crm_effective_lead(NULL, tenant_id, anonymous_id)), anonymous_id) AS unit
        FROM crm_new_touchpoints
        WHERE touch_type = 'experiment_exposure' AND ab_test_id IS NOT NULL AND variant IS NOT NULL
    ), exposures AS ($n$,
$o$               x.occurred_at, x.variant
        FROM todo t$o$,
$n$               x.occurred_at, x.variant, false AS was_contaminated
        FROM todo t$n$,
$o$ AND y.variant IS NOT NULL
        ) x
    ), firsts AS ($o$,
$n$ AND y.variant IS NOT NULL
        ) x
        WHERE NOT t.merged
        UNION ALL
        -- the unit's row: its first exposure stands for the exposures it was made of
        SELECT t.ab_test_id, t.unit, t.lead_id, t.anonymous_id, u.anonymous_id, u.first_exposure_id, u.first_exposure_at,
               u.variant, u.contaminated
        FROM todo t JOIN ab_test_units u ON u.ab_test_id = t.ab_test_id AND u.unit = t.unit
        WHERE t.merged
        UNION ALL
        -- and the run's new exposures of the unit
        SELECT t.ab_test_id, t.unit, t.lead_id, t.anonymous_id, n.anonymous_id, n.touchpoint_id, n.occurred_at,
               n.variant, false
        FROM todo t JOIN new_exposures n ON n.ab_test_id = t.ab_test_id AND n.unit = t.unit
        WHERE t.merged
    ), firsts AS ($n$,
$o$ OVER unit_w AS contaminated$o$,
$n$ OVER unit_w OR bool_or(was_contaminated) OVER unit_w
                   AS contaminated$n$]);

DROP FUNCTION pg_temp.crm_edit(regprocedure, text[]);
