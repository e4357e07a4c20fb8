-- Fewer lookups per run of the analytics stage (0009, 0011, 0013), the same tables and results.
--
-- 1. A conversion of the run is read by its key (touchpoint id and time: one index probe in the partition of its
--    time) instead of by a join the planner may turn into a scan of every conversion stored (it did while the
--    statistics lagged a growing table: 41,000 conversions read, and their units looked up, for 8,700 wanted).
-- 2. A touchpoint's unit is its lead when it has one; identity_links is asked only for touchpoints without a lead
--    (crm_effective_lead, a function PostgreSQL cannot inline, was called for every touchpoint: 276,000 calls per
--    million imported events). coalesce(lead, crm_effective_lead(NULL, ...)) is crm_effective_lead(lead, ...).
-- Measured on the unapplied backlog of 1M generated events (bench/gen_events --seed 42: 300k touchpoints), the stage
-- alone in one backend, 3 runs alternated with 3 of the functions before, while other work shared the box: 8.3-8.4 s
-- of CPU (one run 10.4 s) against 8.9 s.
-- The two functions are edited in place (their SET timezone = 'UTC' of 0016 and jit = off stay): each text below
-- must occur in the function's current definition exactly as often as said, or the migration stops.
-- Forward-only: never edit this file once released.

DO $do$
DECLARE
    -- {function, times, text, replacement}
    edit text[];
    def text;
    found int;
BEGIN
    FOREACH edit SLICE 1 IN ARRAY ARRAY[
        ['crm_attribution_refresh()', '1',
         'crm_effective_lead(x.lead_id, x.tenant_id, x.anonymous_id) AS unit_lead',
         'coalesce(x.lead_id, crm_effective_lead(NULL, x.tenant_id, x.anonymous_id)) AS unit_lead'],
        ['crm_attribution_refresh()', '1',
         E'AND x.touch_type = \'conversion\'\n        ) c',
         E'AND x.touch_type = \'conversion\'\n            LIMIT 1  -- the key is unique: one probe\n        ) c'],
        ['crm_analytics_apply_batch()', '3',
         'crm_effective_lead(lead_id, tenant_id, anonymous_id)',
         'coalesce(lead_id, crm_effective_lead(NULL, tenant_id, anonymous_id))']]
    LOOP
        def := pg_get_functiondef(edit[1]::regprocedure);
        found := array_length(string_to_array(def, edit[3]), 1) - 1;
        IF found IS DISTINCT FROM edit[2]::int THEN
            RAISE EXCEPTION 'migration 0019: % holds % copies of "%", expected %', edit[1], found, edit[3], edit[2];
        END IF;
        EXECUTE replace(def, edit[3], edit[4]);
    END LOOP;
END
$do$;
