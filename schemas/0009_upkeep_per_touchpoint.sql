-- Less analytics upkeep per touchpoint, the same tables (0005, 0008).
--
-- 1. A batch's backlog row carries its touchpoints' tenants, so the stage no longer looks each new touchpoint
--    up again in customer_touchpoints to learn it. A row written by an earlier release has no tenant_id array;
--    its touchpoints are looked up as before (crm_analytics_apply_batch fills a NULL tenant_id; a touchpoint
--    known to have no tenant is unpacked with '', which every rule of 0008 reads as "no tenant" already).
-- 2. The election asks once per run, in one index scan per partition, which of the run's claimed visitors
--    without a link have anonymous-only touchpoints, instead of probing every partition once per visitor; and it
--    elects only those visitors (an election without anonymous-only touchpoints changed nothing in 0008 either).
-- 3. The paths of conversions and the late-data probe read a unit's touchpoints of the time window only
--    (crm_unit_touchpoints_between, below), not the unit's whole history in every partition.
-- 4. The backlog's arrays are compressed with lz4 (below).
-- Forward-only: never edit this file once released.

ALTER TABLE analytics_backlog ADD COLUMN tenant_id text[];  -- NULL: written by a release before this one

-- 4. A backlog row's arrays (~300 kB for 5,000 touchpoints) are compressed with lz4 where the server has it:
--    pglz cost a batch transaction ~14 ms per 5,000 touchpoints, lz4 ~5.5 ms (and the stage decompresses faster).
DO $$
DECLARE
    col text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        FOREACH col IN ARRAY ARRAY['touchpoint_id', 'occurred_at', 'lead_id', 'anonymous_id', 'touch_type',
                                   'ab_test_id', 'variant', 'tenant_id'] LOOP
            EXECUTE format('ALTER TABLE analytics_backlog ALTER COLUMN %I SET COMPRESSION lz4', col);
        END LOOP;
    END IF;
END
$$;

-- 0005's stage run (same rule: the oldest backlog rows, at most max_batches of them, no more once max_touchpoints
-- are taken, at least one), unpacking the tenants too; one row at a time.
CREATE OR REPLACE FUNCTION crm_analytics_stage_run(max_batches integer, max_touchpoints bigint,
                                                   OUT busy boolean, OUT batches integer, OUT touchpoints bigint,
                                                   OUT delays double precision[])
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    next_seq bigint;
    b analytics_backlog;
BEGIN
    busy := NOT pg_try_advisory_xact_lock(hashtext('crm_analytics'), 0);
    batches := 0;
    touchpoints := 0;
    IF busy THEN
        RETURN;
    END IF;
    delays := '{}';
    PERFORM crm_analytics_session();
    DELETE FROM crm_new_touchpoints;
    -- The snapshot argument of 0005 holds unchanged: every statement below starts after the lock was granted,
    -- and only this transaction deletes backlog rows while it holds the lock.
    FOR next_seq IN SELECT seq FROM analytics_backlog ORDER BY seq LIMIT max_batches LOOP
        EXIT WHEN coalesce(touchpoints >= max_touchpoints, true);  -- a NULL limit takes nothing, as in 0005
        DELETE FROM analytics_backlog WHERE seq = next_seq RETURNING * INTO b;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO crm_new_touchpoints (touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id,
                                         variant, tenant_id)
        SELECT u.touchpoint_id, u.occurred_at, u.lead_id, u.anonymous_id, u.touch_type, u.ab_test_id, u.variant,
               CASE WHEN b.tenant_id IS NOT NULL THEN coalesce(u.tenant_id, '') END
        FROM unnest(b.touchpoint_id, b.occurred_at, b.lead_id, b.anonymous_id, b.touch_type, b.ab_test_id, b.variant,
                    b.tenant_id) AS u(touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id,
                                      variant, tenant_id);
        batches := batches + 1;
        touchpoints := touchpoints + b.touchpoints;
        delays := delays || extract(epoch FROM clock_timestamp() - b.committed_at)::double precision;
    END LOOP;
    IF touchpoints > 0 THEN
        PERFORM crm_analytics_apply_batch();
    END IF;
END
$$;

-- 0008's claims and election; the election is set-based (see the top of this file), the rule is unchanged:
-- the earliest claim (occurred_at, touchpoint_id, lead_id) wins, for visitors with anonymous-only touchpoints.
CREATE OR REPLACE FUNCTION crm_identity_apply() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    DELETE FROM crm_identity_changes;
    DELETE FROM crm_identity_claimed;
    -- Visitors with a new claim, or with an earlier claim of a lead that had claimed them already.
    WITH claimed AS (
        INSERT INTO identity_claims AS c (tenant, anonymous_id, lead_id, first_at, first_touchpoint_id)
        SELECT DISTINCT ON (1, 2, 3) coalesce(tenant_id, ''), anonymous_id, lead_id, occurred_at, touchpoint_id
        FROM crm_new_touchpoints
        WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL
        ORDER BY 1, 2, 3, occurred_at, touchpoint_id
        ON CONFLICT (tenant, anonymous_id, lead_id) DO UPDATE
            SET first_at = EXCLUDED.first_at, first_touchpoint_id = EXCLUDED.first_touchpoint_id
            WHERE (EXCLUDED.first_at, EXCLUDED.first_touchpoint_id) < (c.first_at, c.first_touchpoint_id)
        RETURNING c.tenant, c.anonymous_id
    )
    INSERT INTO crm_identity_claimed SELECT DISTINCT tenant, anonymous_id FROM claimed;
    -- Claimed visitors without a link whose first anonymous-only touchpoint arrives now.
    INSERT INTO crm_identity_claimed
    SELECT DISTINCT n.tenant, n.anonymous_id
    FROM (SELECT coalesce(tenant_id, '') AS tenant, anonymous_id FROM crm_new_touchpoints
          WHERE lead_id IS NULL AND anonymous_id IS NOT NULL) n
    WHERE NOT EXISTS (SELECT 1 FROM identity_links l WHERE l.tenant = n.tenant AND l.anonymous_id = n.anonymous_id)
      AND EXISTS (SELECT 1 FROM identity_claims c WHERE c.tenant = n.tenant AND c.anonymous_id = n.anonymous_id);

    WITH visitors AS MATERIALIZED (
        SELECT v.tenant, v.anonymous_id, l.lead_id AS old_lead, l.lead_id IS NOT NULL AS linked
        FROM (SELECT DISTINCT tenant, anonymous_id FROM crm_identity_claimed) v
        LEFT JOIN identity_links l ON l.tenant = v.tenant AND l.anonymous_id = v.anonymous_id
    ), with_anonymous AS MATERIALIZED (
        -- Of the unlinked ones, those with anonymous-only touchpoints in their tenant: one scan of the partial
        -- index customer_touchpoints_anonymous_idx per partition for all of them.
        SELECT DISTINCT coalesce(x.tenant_id, '') AS tenant, x.anonymous_id
        FROM customer_touchpoints x
        WHERE x.lead_id IS NULL
          AND x.anonymous_id = ANY (ARRAY(SELECT anonymous_id FROM visitors WHERE NOT linked))
    ), elected AS (
        SELECT v.tenant, v.anonymous_id, w.lead_id, w.first_at, w.first_touchpoint_id, w.claims, v.old_lead
        FROM visitors v
        CROSS JOIN LATERAL (
            SELECT c.lead_id, c.first_at, c.first_touchpoint_id, count(*) OVER () AS claims FROM identity_claims c
            WHERE c.tenant = v.tenant AND c.anonymous_id = v.anonymous_id
            ORDER BY c.first_at, c.first_touchpoint_id, c.lead_id LIMIT 1) w
        WHERE v.linked OR EXISTS (SELECT 1 FROM with_anonymous a
                                  WHERE a.tenant = v.tenant AND a.anonymous_id = v.anonymous_id)
    ), upsert AS (
        INSERT INTO identity_links AS l (tenant, anonymous_id, lead_id, linked_at, link_touchpoint_id, claims,
                                         anonymous_touchpoints)
        SELECT tenant, anonymous_id, lead_id, first_at, first_touchpoint_id, claims, true FROM elected
        ORDER BY tenant, anonymous_id
        ON CONFLICT (tenant, anonymous_id) DO UPDATE
            SET lead_id = EXCLUDED.lead_id, linked_at = EXCLUDED.linked_at,
                link_touchpoint_id = EXCLUDED.link_touchpoint_id, claims = EXCLUDED.claims
            WHERE (l.lead_id, l.linked_at, l.link_touchpoint_id, l.claims)
                  IS DISTINCT FROM (EXCLUDED.lead_id, EXCLUDED.linked_at, EXCLUDED.link_touchpoint_id, EXCLUDED.claims)
    )
    INSERT INTO crm_identity_changes (tenant, anonymous_id, old_lead, new_lead)
    SELECT tenant, anonymous_id, old_lead, lead_id FROM elected WHERE old_lead IS DISTINCT FROM lead_id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END
$$;

-- 3. A unit's touchpoints in a time range: crm_unit_touchpoints (0008) with the range inside its branches. A
--    caller's condition on occurred_at that refers to the calling row (the lookback window before a conversion,
--    the window after a new touchpoint) is not pushed into the branches of the inlined UNION ALL (PostgreSQL
--    does not push lateral references into subqueries), so every partition's index was probed for the whole
--    history of the lead; with the range as arguments, the lead's index is read from the range's start and the
--    partitions outside it are skipped. Callers keep their exact conditions; lo and hi are inclusive bounds.
--    The branch of linked visitors keeps no range: it is driven by identity_links (its lead index), not by time.
CREATE FUNCTION crm_unit_touchpoints_between(lead bigint, anonymous text, lo timestamptz, hi timestamptz)
RETURNS TABLE (touchpoint_id uuid, occurred_at timestamptz, touch_type text, lead_id bigint, anonymous_id text,
               campaign_id bigint, utm_source text, utm_medium text, utm_campaign text, channel_group text,
               ab_test_id text, variant text, conversion_value numeric, currency char(3), stitched boolean)
LANGUAGE sql STABLE AS $$
    SELECT x.touchpoint_id, x.occurred_at, x.touch_type, x.lead_id, x.anonymous_id, x.campaign_id, x.utm_source,
           x.utm_medium, x.utm_campaign, x.channel_group, x.ab_test_id, x.variant, x.conversion_value, x.currency,
           false
    FROM customer_touchpoints x
    WHERE lead IS NOT NULL AND x.lead_id = lead AND x.occurred_at >= lo AND x.occurred_at <= hi
    UNION ALL
    SELECT u.* FROM crm_unit_touchpoints(lead, NULL) u WHERE u.stitched
    UNION ALL
    SELECT x.touchpoint_id, x.occurred_at, x.touch_type, x.lead_id, x.anonymous_id, x.campaign_id, x.utm_source,
           x.utm_medium, x.utm_campaign, x.channel_group, x.ab_test_id, x.variant, x.conversion_value, x.currency,
           false
    FROM customer_touchpoints x
    WHERE lead IS NULL AND x.lead_id IS NULL AND x.anonymous_id = anonymous AND x.occurred_at >= lo
      AND x.occurred_at <= hi
      AND NOT EXISTS (SELECT 1 FROM identity_links l
                      WHERE l.tenant = coalesce(x.tenant_id, '') AND l.anonymous_id = x.anonymous_id)
$$;

-- 0008's refresh, reading each conversion's path through crm_unit_touchpoints_between.
CREATE OR REPLACE FUNCTION crm_attribution_refresh() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lookback_ interval;
    half_life_s double precision;
BEGIN
    SELECT lookback, extract(epoch FROM half_life) INTO lookback_, half_life_s FROM attribution_settings;
    DELETE FROM crm_attr_new;

    EXECUTE $q$
    INSERT INTO crm_attr_new
    WITH conv AS MATERIALIZED (
        SELECT c.touchpoint_id AS conversion_id, c.occurred_at AS conv_at, c.unit_lead AS lead_id, c.anonymous_id,
               c.lead_id IS NULL AND c.unit_lead IS NOT NULL AS conv_stitched,
               crm_reporting_value(c.conversion_value, c.currency, c.occurred_at) AS conv_value
        FROM (SELECT DISTINCT conversion_id, occurred_at FROM crm_attr_todo) t
        CROSS JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at, x.lead_id, x.anonymous_id, x.conversion_value, x.currency,
                   crm_effective_lead(x.lead_id, x.tenant_id, x.anonymous_id) AS unit_lead
            FROM customer_touchpoints x
            WHERE x.touchpoint_id = t.conversion_id AND x.occurred_at = t.occurred_at AND x.touch_type = 'conversion'
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
    $q$ USING lookback_, half_life_s;

    PERFORM crm_attribution_replace();
END
$$;

-- 0008's batch step, the late-data probe reading through crm_unit_touchpoints_between.
CREATE OR REPLACE FUNCTION crm_analytics_apply_batch() RETURNS void
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    bucket int;
    lookback_ interval;
    todo bigint;
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

        SELECT lookback INTO lookback_ FROM attribution_settings;
        DELETE FROM crm_attr_todo;
        -- New conversions; the conversions of the new path touchpoints' units that they fall in the lookback
        -- window of (T - lookback <= t < T <=> t < T <= t + lookback); every conversion of the units whose
        -- visitors changed hands.
        EXECUTE $q$
    INSERT INTO crm_attr_todo (conversion_id, occurred_at)
        SELECT touchpoint_id, occurred_at FROM crm_new_touchpoints WHERE touch_type = 'conversion'
        UNION
        SELECT c.touchpoint_id, c.occurred_at
        FROM (SELECT occurred_at, anonymous_id, crm_effective_lead(lead_id, tenant_id, anonymous_id) AS lead
              FROM crm_new_touchpoints
              WHERE touch_type NOT IN ('conversion', 'experiment_exposure', 'identify') OFFSET 0) n
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
    $q$ USING lookback_;
        GET DIAGNOSTICS todo = ROW_COUNT;
        IF todo > 0 THEN
            PERFORM crm_attribution_refresh();
        END IF;

        DELETE FROM crm_ab_todo;
        -- New exposures; the tests of the units with a new conversion; for a visitor that changed hands, the
        -- tests of its old lead, its new lead (its own exposures and the lead's) and its former visitor unit.
        EXECUTE $q$
    INSERT INTO crm_ab_todo (ab_test_id, unit, lead_id, anonymous_id)
        SELECT ab_test_id, crm_unit_key(lead, anonymous_id), lead, anonymous_id
        FROM (SELECT ab_test_id, anonymous_id, crm_effective_lead(lead_id, tenant_id, anonymous_id) AS lead
              FROM crm_new_touchpoints
              WHERE touch_type = 'experiment_exposure' AND ab_test_id IS NOT NULL AND variant IS NOT NULL) n
        UNION
        SELECT u.ab_test_id, u.unit, u.lead_id, u.anonymous_id
        FROM (SELECT DISTINCT crm_unit_key(crm_effective_lead(lead_id, tenant_id, anonymous_id), anonymous_id) AS unit
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
    $q$;
        GET DIAGNOSTICS todo = ROW_COUNT;
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
$$;
