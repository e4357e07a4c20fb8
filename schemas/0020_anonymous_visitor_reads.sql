-- The analytics stage reads an anonymous visitor's touchpoints through the visitor's own index, whatever the
-- statistics say and however long ago its plan was made (0008, 0009, 0010, 0011, 0012).
--
-- For an anonymous visitor's touchpoints (the late-data probe, a conversion's path, a visitor that changed hands)
-- the planner took an index of leads' touchpoints with `lead_id IS NULL` as its condition: every anonymous-only
-- touchpoint of the window, read again for each probe (275 to 40,000 rows per probe, 7 to 228 million buffer hits in
-- one run). It did so whenever it could not tell the indexes apart: a partition without statistics, or with those of
-- its first rows (a month's partition during an import or in the first minutes of a month: autovacuum looks once a
-- minute), or a plan the stage keeps for up to 10 s (0011) made while the partition was still small; every estimate
-- is then one row and the smaller index wins the tie. Measured on 1M generated events with pooled visitors
-- (`bench/gen_events --visitors 80000 --identified 0.2 --conversions 0.03 --exposures 0.02`, 291,000 touchpoints):
-- the stage alone on their unapplied backlog, runs of 100,000 touchpoints, 76 s of CPU with a partition unanalyzed
-- (9 s once analyzed, 8.7 s with this migration and no analyze); `crm-ingest import` of the file 72-101 s before.
-- Two changes, each with its test (tests/sinks/postgres/analytics_stage_test.cc):
--   1. The anonymous-only branch of crm_unit_touchpoints and crm_unit_touchpoints_between reads inside a subquery
--      that a caller's filter on touch_type does not enter (OFFSET 0, as 0012 did for the stitched branch), so
--      that the partial indexes of leads' conversions and path touchpoints (0010) are no candidates there.
--   2. The index of a lead's touchpoints (customer_touchpoints_lead_idx) holds leads' touchpoints only, so that it
--      is no candidate either. The election of visitors' links (crm_identity_apply) asked it which claimed
--      visitors have anonymous-only touchpoints, and it answered at once where there are none (an index without
--      NULL leads is empty for `lead_id IS NULL`); it now asks the visitor's index only when some partition holds
--      an anonymous-only touchpoint at all (the stage alone on the backlog of the default import: 7.7-8.0 s of CPU
--      without that guard, 6.8 s with it, 6.8-7.4 s before this migration). The A/B refresh's conversion window no
--      longer reaches an anonymous unit's touchpoints inside the subquery (it reads the visitor's whole history);
--      passing the window through crm_unit_touchpoints_between instead made the default data's A/B step 4x slower.
-- A statistics step (the stage analyzing the partitions it reads when they outgrow their statistics) was tried as
-- well and left out: with the two changes it made the import ~0.7 s slower per million events on both data sets
-- and no run faster.
-- Forward-only: never edit this file once released.

-- Edits a function in place: `pattern` (a regular expression) must match its current definition exactly `times`
-- times, or the migration stops.
CREATE FUNCTION pg_temp.crm_edit_function(fn regprocedure, times integer, pattern text, replacement text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    def text := pg_get_functiondef(fn);
    matches integer := (SELECT count(*) FROM regexp_matches(def, pattern, 'g'));
BEGIN
    IF matches <> times THEN
        RAISE EXCEPTION 'migration 0020: % matches "%" % times, expected %', fn, pattern, matches, times;
    END IF;
    EXECUTE regexp_replace(def, pattern, replacement, 'g');
END
$$;

-- 1. The same rows: the subquery holds the branch's own conditions; the anti-join on identity_links stays outside.
--    A plan made at 300-3,000 touchpoints and run at 20,000 fetched 0.9-1.0 million rows through indexes for 2,000
--    probes; now 3,000-25,000.
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

-- 2. Every query on a lead (`lead_id = ...`, a strict condition) implies the predicate and uses the index as before;
--    anonymous-only touchpoints (most web traffic) no longer cost an entry in it. Built under another name first,
--    so that reads go on during the build (CREATE INDEX blocks writes only: measured on a scratch server, the whole
--    migration took 0.16 s for 291,000 touchpoints with a lead); the old index is dropped and the new one renamed at
--    the end, and from the DROP until `migrate` commits every read and write of customer_touchpoints waits (ACCESS
--    EXCLUSIVE). Run `migrate` at a quiet time on a large database. Queries of one's own on anonymous touchpoints by
--    time alone (`lead_id IS NULL AND occurred_at ...`) no longer find an index of leads to read them from.
--    Seen before: one statement of one stage run read 67 million buffers for 1,475 probes through the index with
--    `lead_id IS NULL` (46.8 s), planned while the next month's partition was still new.
CREATE INDEX customer_touchpoints_lead_known_idx ON customer_touchpoints (lead_id, occurred_at)
    WHERE lead_id IS NOT NULL;
DROP INDEX customer_touchpoints_lead_idx;
ALTER INDEX customer_touchpoints_lead_known_idx RENAME TO customer_touchpoints_lead_idx;

--    The election's question, asked of the visitor's index only when some partition holds an anonymous-only
--    touchpoint: the first key of that index (min(): one probe per partition, never the heap; a touchpoint without a
--    lead has an anonymous id, 0001's CHECK), so the answer is the same.
SELECT pg_temp.crm_edit_function('crm_identity_apply()', 1,
    '(\n          AND x\.anonymous_id = ANY \(ARRAY\(SELECT anonymous_id FROM visitors WHERE NOT linked\)\)\n)',
    '\1          AND (SELECT min(y.anonymous_id) FROM customer_touchpoints y WHERE y.lead_id IS NULL) IS NOT NULL
');

DROP FUNCTION pg_temp.crm_edit_function(regprocedure, integer, text, text);
