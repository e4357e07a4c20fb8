-- A conversion's path read without its lead's other conversions, exposures and identifies.
--
-- A path holds a unit's touchpoints other than 'conversion', 'experiment_exposure' and 'identify' in the lookback
-- window before the conversion (crm_attribution_refresh). Its lead's branch was read through the lead index
-- (customer_touchpoints_lead_idx): every touchpoint of the lead in the window was fetched from the heap and the
-- ones no path holds were dropped by the filter afterwards. A lead with many conversions in a window (a reseller's
-- account, a test lead, a replayed batch) made every one of its conversions fetch all the others: work quadratic in
-- the conversions of one lead. Measured on the events of one http_bench events step (bench/http_load sends each of
-- its 484 distinct touchpoints 625 times with fresh ids, so each converting lead has 625 conversions at one
-- instant): the paths of 2,000 conversions took 1,514 ms and 1.2 M buffer reads with the lead index, 117 ms with
-- this one; the analytics stage spent 34 of its 47 s for that step in that statement.
--
-- The index holds exactly the touchpoints a path can hold, so each conversion fetches its path and nothing else.
-- The planner uses it where the query's condition on touch_type is this predicate (crm_attribution_refresh's is).
-- Building it reads every touchpoint partition once and blocks writes to the partition being indexed meanwhile
-- (PostgreSQL 15 cannot build an index of a partitioned table concurrently); run `crm-ingest migrate` at a quiet
-- time on a large database.
-- Forward-only: never edit this file once released.

CREATE INDEX customer_touchpoints_path_idx ON customer_touchpoints (lead_id, occurred_at)
    WHERE touch_type NOT IN ('conversion', 'experiment_exposure', 'identify');
