-- Less analytics upkeep per touchpoint, the same tables (0005, 0008).
--
-- 1. A batch's backlog row carries its touchpoints' tenants, so the stage no longer looks each new touchpoint
--    up again in customer_touchpoints to learn it. A row written by an earlier release has no tenant_id array;
--    its touchpoints are looked up as before (crm_analytics_apply_batch fills a NULL tenant_id; a touchpoint
--    known to have no tenant is unpacked with '', which every rule of 0008 reads as "no tenant" already).
-- 2. The election asks once per run, in one index scan per partition, which of the run's claimed visitors
--    without a link have anonymous-only touchpoints, instead of probing every partition once per visitor; and it
--    elects only those visitors (an election without anonymous-only touchpoints changed nothing in 0008 either).
-- Forward-only: never edit this file once released.

ALTER TABLE analytics_backlog ADD COLUMN tenant_id text[];  -- NULL: written by a release before this one

-- 0005's stage run, unpacking the tenants too.
CREATE OR REPLACE FUNCTION crm_analytics_stage_run(max_batches integer, max_touchpoints bigint,
                                                   OUT busy boolean, OUT batches integer, OUT touchpoints bigint,
                                                   OUT delays double precision[])
LANGUAGE plpgsql
SET jit = off
AS $$
BEGIN
    busy := NOT pg_try_advisory_xact_lock(hashtext('crm_analytics'), 0);
    batches := 0;
    touchpoints := 0;
    IF busy THEN
        RETURN;
    END IF;
    PERFORM crm_analytics_session();
    DELETE FROM crm_new_touchpoints;
    -- The snapshot argument of 0005 holds unchanged: every statement below starts after the lock was granted.
    WITH queued AS (
        SELECT q.seq, sum(q.touchpoints) OVER (ORDER BY q.seq) - q.touchpoints AS earlier
        FROM (SELECT seq, analytics_backlog.touchpoints FROM analytics_backlog ORDER BY seq LIMIT max_batches) q
    ), taken AS (
        DELETE FROM analytics_backlog b USING queued
        WHERE b.seq = queued.seq AND queued.earlier < max_touchpoints
        RETURNING b.*
    ), unpacked AS (
        INSERT INTO crm_new_touchpoints (touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id,
                                         variant, tenant_id)
        SELECT u.touchpoint_id, u.occurred_at, u.lead_id, u.anonymous_id, u.touch_type, u.ab_test_id, u.variant,
               CASE WHEN t.tenant_id IS NOT NULL THEN coalesce(u.tenant_id, '') END
        FROM taken t,
             unnest(t.touchpoint_id, t.occurred_at, t.lead_id, t.anonymous_id, t.touch_type, t.ab_test_id, t.variant,
                    t.tenant_id) AS u(touchpoint_id, occurred_at, lead_id, anonymous_id, touch_type, ab_test_id,
                                      variant, tenant_id)
        RETURNING 1
    )
    SELECT count(*), (SELECT count(*) FROM unpacked),
           coalesce(array_agg(extract(epoch FROM clock_timestamp() - t.committed_at)::double precision), '{}')
    INTO batches, touchpoints, delays
    FROM taken t;
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
