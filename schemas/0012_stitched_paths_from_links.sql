-- The touchpoints of the visitors linked to a lead are read from the lead's links, whatever the statistics say.
--
-- The stitched branch of crm_unit_touchpoints (0008) joined identity_links with customer_touchpoints, and the
-- planner chose the order. While the statistics said that no touchpoint was anonymous-only (a new deployment whose
-- web traffic starts after its CRM events; any table before autovacuum analyzes it again), it drove the join from
-- a whole scan of every partition's anonymous-only touchpoints, once per touchpoint of the run. Seen on a scratch
-- server: a run of 8,000 touchpoints took 0.57 s, then 28,000 anonymous touchpoints were stored, and the next run
-- took 33.8 s (0.49 s with this change; the same credits). Each lead's links now drive the branch: a lateral
-- subquery, kept from being flattened into a join by OFFSET 0, reads each linked visitor's touchpoints through the
-- anonymous-only index. crm_unit_touchpoints_between (0009) reads them the same way, within its time range (the
-- fence also keeps a caller's range from reaching the subquery, so it is written inside).
-- Both functions are edited in place, as 0011 edited the stage's: each text below must occur exactly once in the
-- function's current definition, or the migration stops. crm_unit_touchpoints returns the same rows;
-- crm_unit_touchpoints_between now bounds its stitched rows by [lo, hi] as it bounds the others (0009 returned a
-- linked visitor's whole history there), and its callers keep only rows within that range, so they read the same.
-- Forward-only: never edit this file once released.
DO $do$
DECLARE
    edit text[];
    def text;
BEGIN
    FOREACH edit SLICE 1 IN ARRAY ARRAY[
        ['crm_unit_touchpoints(bigint, text)',
         $o$    FROM identity_links l JOIN customer_touchpoints x
         ON x.lead_id IS NULL AND x.anonymous_id = l.anonymous_id AND coalesce(x.tenant_id, '') = l.tenant
$o$,
         $n$    FROM identity_links l CROSS JOIN LATERAL (
        SELECT y.* FROM customer_touchpoints y
        WHERE y.lead_id IS NULL AND y.anonymous_id = l.anonymous_id AND coalesce(y.tenant_id, '') = l.tenant
        OFFSET 0) x
$n$],
        ['crm_unit_touchpoints_between(bigint, text, timestamptz, timestamptz)',
         $o$    SELECT u.* FROM crm_unit_touchpoints(lead, NULL) u WHERE u.stitched
$o$,
         $n$    SELECT x.touchpoint_id, x.occurred_at, x.touch_type, x.lead_id, x.anonymous_id, x.campaign_id, x.utm_source,
           x.utm_medium, x.utm_campaign, x.channel_group, x.ab_test_id, x.variant, x.conversion_value, x.currency,
           true
    FROM identity_links l CROSS JOIN LATERAL (
        SELECT y.* FROM customer_touchpoints y
        WHERE y.lead_id IS NULL AND y.anonymous_id = l.anonymous_id AND coalesce(y.tenant_id, '') = l.tenant
          AND y.occurred_at >= lo AND y.occurred_at <= hi
        OFFSET 0) x
    WHERE lead IS NOT NULL AND l.lead_id = lead AND l.anonymous_touchpoints
$n$]] LOOP
        def := pg_get_functiondef(edit[1]::regprocedure);
        IF array_length(string_to_array(def, edit[2]), 1) <> 2 THEN
            RAISE EXCEPTION 'migration 0012: % does not hold exactly one copy of: %', edit[1], edit[2];
        END IF;
        EXECUTE replace(def, edit[2], edit[3]);
    END LOOP;
END
$do$;
