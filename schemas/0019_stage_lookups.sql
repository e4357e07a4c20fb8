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
-- Both functions keep SET timezone = 'UTC' (0016). Forward-only: never edit this file once released.

CREATE OR REPLACE FUNCTION crm_attribution_refresh()
 RETURNS void
 LANGUAGE plpgsql
 SET "TimeZone" TO 'UTC'
AS $function$
DECLARE
    lookback_ interval;
    half_life_s double precision;
    todo_rows bigint;
BEGIN
    SELECT lookback, extract(epoch FROM half_life) INTO lookback_, half_life_s FROM attribution_settings;
    DELETE FROM crm_attr_new;
    SELECT count(*) INTO todo_rows FROM crm_attr_todo;

    PERFORM crm_execute_cached('crm_stage_attr_new', replace(replace($q$
    INSERT INTO crm_attr_new
    WITH conv AS MATERIALIZED (
        SELECT c.touchpoint_id AS conversion_id, c.occurred_at AS conv_at, c.unit_lead AS lead_id, c.anonymous_id,
               c.lead_id IS NULL AND c.unit_lead IS NOT NULL AS conv_stitched,
               crm_reporting_value(c.conversion_value, c.currency, c.occurred_at) AS conv_value
        FROM (SELECT DISTINCT conversion_id, occurred_at FROM crm_attr_todo) t
        CROSS JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at, x.lead_id, x.anonymous_id, x.conversion_value, x.currency,
                   coalesce(x.lead_id, crm_effective_lead(NULL, x.tenant_id, x.anonymous_id)) AS unit_lead
            FROM customer_touchpoints x
            WHERE x.touchpoint_id = t.conversion_id AND x.occurred_at = t.occurred_at AND x.touch_type = 'conversion'
            LIMIT 1
        ) c
    ), path AS (
        SELECT conv.*, p.touchpoint_id, p.occurred_at AS tp_at, p.campaign_id, p.utm_source, p.utm_medium,
               p.utm_campaign, p.channel_group, conv.conv_stitched OR coalesce(p.stitched, false) AS stitched
        FROM conv LEFT JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at, x.campaign_id, x.utm_source, x.utm_medium, x.utm_campaign,
                   x.channel_group, x.stitched
            FROM crm_unit_touchpoints_between(conv.lead_id, conv.anonymous_id, conv.conv_at - $1, conv.conv_at) x
            WHERE x.occurred_at >= conv.conv_at - $1 AND x.occurred_at < conv.conv_at
              AND x.touch_type NOT IN ('conversion', 'experiment_exposure', 'identify')
        ) p ON true
    ), ranked AS (
        SELECT path.*,
               row_number() OVER (PARTITION BY conversion_id, conv_at ORDER BY tp_at, touchpoint_id) AS pos,
               count(*) OVER (PARTITION BY conversion_id, conv_at) AS n,
               -- 0002: the last touch weighs 1, nothing underflows, 15 significant digits.
               (2.0::double precision ^ greatest(-200.0,
                    -extract(epoch FROM max(tp_at) OVER (PARTITION BY conversion_id, conv_at) - tp_at)
                    / $2))::numeric AS w
        FROM path
    ), framed AS (
        SELECT ranked.*,
               coalesce(max(pos) FILTER (WHERE channel_group <> 'Direct') OVER conv_w, n) AS last_non_direct_pos,
               sum(w) OVER conv_w AS w_sum
        FROM ranked
        WINDOW conv_w AS (PARTITION BY conversion_id, conv_at)
    ), raw AS (
        SELECT f.*, m.model,
               CASE WHEN f.touchpoint_id IS NULL THEN 1::numeric
                    WHEN m.model = 'first_touch' THEN CASE WHEN pos = 1 THEN 1 ELSE 0 END
                    WHEN m.model = 'last_touch' THEN CASE WHEN pos = n THEN 1 ELSE 0 END
                    WHEN m.model = 'linear' THEN round(1::numeric / n, 12)
                    WHEN m.model = 'time_decay' THEN CASE WHEN w_sum > 0 THEN round(w / w_sum, 12) ELSE 0 END
                    WHEN m.model = 'position_based' THEN
                        CASE WHEN n = 1 THEN 1::numeric WHEN n = 2 THEN 0.5
                             WHEN pos = 1 OR pos = n THEN 0.4 ELSE round(0.2 / (n - 2), 12) END
                    ELSE CASE WHEN pos = last_non_direct_pos THEN 1 ELSE 0 END  -- last_non_direct
               END AS c
        FROM framed f
        CROSS JOIN (VALUES ('first_touch'), ('last_touch'), ('linear'), ('time_decay'), ('position_based'),
                           ('last_non_direct')) AS m(model)
    ), fixed AS (
        SELECT raw.*,
               CASE WHEN pos = n THEN 1 - (sum(c) OVER (PARTITION BY conversion_id, conv_at, model) - c) ELSE c END
                   AS credit
        FROM raw
    )
    SELECT conversion_id, conv_at, touchpoint_id, tp_at, model, credit, credit * conv_value, lead_id, anonymous_id,
           campaign_id, utm_source, utm_medium, utm_campaign, coalesce(channel_group, 'Direct'), stitched
    FROM fixed
    WHERE credit > 0 OR model IN ('linear', 'time_decay', 'position_based')
    $q$, '$1', quote_literal(lookback_) || '::interval'), '$2', quote_literal(half_life_s) || '::double precision'),
        todo_rows);

    PERFORM crm_attribution_replace();
    UPDATE attribution_watermark
    SET credited_until = greatest(credited_until, (SELECT max(occurred_at) FROM crm_attr_todo));
END
$function$

;
CREATE OR REPLACE FUNCTION crm_analytics_apply_batch()
 RETURNS void
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET "TimeZone" TO 'UTC'
AS $function$
DECLARE
    bucket int;
    lookback_ interval;
    todo bigint;
    new_rows bigint;
BEGIN
    -- Exclusive (0002 took it shared): the stage and the recompute hold it already; a writer of a release before
    -- 0005, which still calls this in its batch transactions, is serialized here, because a link is elected from
    -- every claim of a visitor, across the units and buckets of all its leads.
    PERFORM pg_advisory_xact_lock(hashtext('crm_analytics'), 0);
    IF EXISTS (SELECT 1 FROM crm_new_touchpoints) THEN
        FOR bucket IN SELECT DISTINCT crm_unit_bucket(lead_id, anonymous_id) AS k FROM crm_new_touchpoints
                         ORDER BY k LOOP
            PERFORM pg_advisory_xact_lock(hashtext('crm_analytics_unit'), bucket);
        END LOOP;
        UPDATE crm_new_touchpoints n SET tenant_id = x.tenant_id
        FROM customer_touchpoints x
        WHERE n.anonymous_id IS NOT NULL AND n.tenant_id IS NULL
          AND x.touchpoint_id = n.touchpoint_id AND x.occurred_at = n.occurred_at;
        PERFORM crm_identity_apply();
        SELECT count(*) INTO new_rows FROM crm_new_touchpoints;

        SELECT lookback INTO lookback_ FROM attribution_settings;
        DELETE FROM crm_attr_todo;
        -- New conversions; the conversions of the new path touchpoints' units that they fall in the lookback
        -- window of (T - lookback <= t < T <=> t < T <= t + lookback); every conversion of the units whose
        -- visitors changed hands.
        PERFORM crm_execute_cached('crm_stage_attr_todo', replace($q$
    INSERT INTO crm_attr_todo (conversion_id, occurred_at)
        SELECT touchpoint_id, occurred_at FROM crm_new_touchpoints WHERE touch_type = 'conversion'
        UNION
        SELECT c.touchpoint_id, c.occurred_at
        FROM (SELECT occurred_at, anonymous_id, coalesce(lead_id, crm_effective_lead(NULL, tenant_id, anonymous_id)) AS lead
              FROM crm_new_touchpoints
              WHERE touch_type NOT IN ('conversion', 'experiment_exposure', 'identify')
                AND occurred_at < (SELECT w.credited_until FROM attribution_watermark w) OFFSET 0) n
        CROSS JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at
            FROM crm_unit_touchpoints_between(n.lead, n.anonymous_id, n.occurred_at, n.occurred_at + $1) x
            WHERE x.occurred_at > n.occurred_at AND x.occurred_at <= n.occurred_at + $1
              AND x.touch_type = 'conversion') c
        UNION
        SELECT c.touchpoint_id, c.occurred_at
        FROM (SELECT old_lead AS lead, NULL AS anonymous_id FROM crm_identity_changes WHERE old_lead IS NOT NULL
              UNION SELECT new_lead, NULL FROM crm_identity_changes
              -- the same anonymous id left unlinked in other tenants: its path lost this tenant's touchpoints
              UNION SELECT NULL, anonymous_id FROM crm_identity_changes) u
        CROSS JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at FROM crm_unit_touchpoints(u.lead, u.anonymous_id) x
            WHERE x.touch_type = 'conversion') c
    $q$, '$1', quote_literal(lookback_) || '::interval'), new_rows);
        SELECT count(*) INTO todo FROM crm_attr_todo;  -- emptied above
        IF todo > 0 THEN
            PERFORM crm_attribution_refresh();
        END IF;

        DELETE FROM crm_ab_todo;
        -- New exposures; the tests of the units with a new conversion; for a visitor that changed hands, the
        -- tests of its old lead, its new lead (its own exposures and the lead's) and its former visitor unit.
        PERFORM crm_execute_cached('crm_stage_ab_todo', $q$
    INSERT INTO crm_ab_todo (ab_test_id, unit, lead_id, anonymous_id)
        SELECT ab_test_id, crm_unit_key(lead, anonymous_id), lead, anonymous_id
        FROM (SELECT ab_test_id, anonymous_id, coalesce(lead_id, crm_effective_lead(NULL, tenant_id, anonymous_id)) AS lead
              FROM crm_new_touchpoints
              WHERE touch_type = 'experiment_exposure' AND ab_test_id IS NOT NULL AND variant IS NOT NULL) n
        UNION
        SELECT u.ab_test_id, u.unit, u.lead_id, u.anonymous_id
        FROM (SELECT DISTINCT crm_unit_key(coalesce(lead_id, crm_effective_lead(NULL, tenant_id, anonymous_id)), anonymous_id) AS unit
              FROM crm_new_touchpoints WHERE touch_type = 'conversion') n
        JOIN ab_test_units u ON u.unit = n.unit
        UNION
        SELECT u.ab_test_id, u.unit, u.lead_id, u.anonymous_id
        FROM (SELECT 'lead:' || old_lead AS unit FROM crm_identity_changes WHERE old_lead IS NOT NULL
              UNION SELECT 'lead:' || new_lead FROM crm_identity_changes
              UNION SELECT 'anon:' || anonymous_id FROM crm_identity_changes) c
        JOIN ab_test_units u ON u.unit = c.unit
        UNION
        SELECT x.ab_test_id, 'lead:' || c.new_lead, c.new_lead, NULL
        FROM crm_identity_changes c
        CROSS JOIN LATERAL (
            SELECT y.ab_test_id FROM crm_unit_touchpoints(c.new_lead, NULL) y
            WHERE y.touch_type = 'experiment_exposure' AND y.ab_test_id IS NOT NULL AND y.variant IS NOT NULL) x
    $q$, new_rows);
        SELECT count(*) INTO todo FROM crm_ab_todo;  -- emptied above
        IF todo > 0 THEN
            PERFORM crm_ab_refresh();
        END IF;
    END IF;

    INSERT INTO ab_test_message_counts AS m (ab_test_id, variant, status, events)
    SELECT ab_test_id, variant, status, count(*) FROM crm_new_ab_messages
    GROUP BY ab_test_id, variant, status
    ORDER BY ab_test_id, variant, status
    ON CONFLICT (ab_test_id, variant, status) DO UPDATE SET events = m.events + EXCLUDED.events;
END
$function$

;
