-- Identity stitching: an anonymous visitor who is later (or earlier) identified as a lead joins the lead's path.
--
-- A touchpoint that carries both an anonymous_id and a lead_id (a form submit with both, Segment's identify and
-- alias, the canonical touch_type 'identify') *claims* the visitor for the lead, within its tenant. Every claim
-- is kept in identity_claims; the visitor is linked to the lead of its earliest claim (by occurred_at, then
-- touchpoint_id, then lead_id): "first link wins". A visitor claimed by more than one lead is linked to the
-- first and counted (identity_links.claims > 1, shown by `report attribution`); it is never merged into both.
-- Because the rule depends only on the stored touchpoints, not on the order they arrived in, the links (and
-- everything attributed through them) are what a recompute gives.
--
-- A linked visitor's anonymous-only touchpoints (lead_id NULL) belong to its lead: they join the lead's
-- attribution paths, its A/B unit (exposures and conversions), and the visitor's own conversions are the lead's.
-- A unit is therefore the *effective lead* (the lead, else the lead the visitor is linked to), else the
-- unlinked visitor; crm_unit_touchpoints() lists a unit's touchpoints, crm_effective_lead() names it.
--
-- Upkeep: the analytics stage (0005) applies new touchpoints in serialized transactions. Each run first
-- applies the new claims (crm_identity_apply); for every visitor whose link changed it re-attributes the
-- conversions and re-computes the A/B units of the old lead, the new lead and the visitor, and the late-data
-- probe of new touchpoints looks for conversions of their effective lead. Order independence: of a conversion
-- C, a touchpoint t of its path and the claim k that puts t there, the stage transaction that applies the last
-- of the three refreshes C with the other two visible (the argument at the top of 0005, with k as a third
-- event): if k's, C is a conversion of the claim's lead; if t's, its probe finds C through the link; if C's, its
-- path is read with the link in place. A winner replaced by an earlier claim refreshes both leads.
--
-- Revenue (credits, A/B units) is converted into the reporting currency (0007, crm_reporting_value below).
-- Attribution credits record the effective lead and whether the row came through a link (`stitched`: a
-- linked visitor's touchpoint on the path, or the conversion of a linked visitor), so the report counts the
-- conversions re-attributed by stitching.
-- Forward-only: never edit this file once released.

-- The canonical event type that only links ids (Segment identify / alias); never on an attribution path.
ALTER TABLE customer_touchpoints
    DROP CONSTRAINT customer_touchpoints_touch_type_check,
    ADD CONSTRAINT customer_touchpoints_touch_type_check
        CHECK (touch_type IN ('page_view','ad_click','email_click','form_submit','call','chat','conversion',
                              'experiment_exposure','other','identify'));

-- tenant is '' for rows without a tenant (so that it can be part of an index key compared with =).
CREATE TABLE identity_claims (
    tenant               text        NOT NULL,
    anonymous_id         text        NOT NULL,
    lead_id              bigint      NOT NULL,
    first_at             timestamptz NOT NULL,  -- the lead's earliest touchpoint carrying both ids
    first_touchpoint_id  uuid        NOT NULL,
    PRIMARY KEY (tenant, anonymous_id, lead_id)
);

CREATE TABLE identity_links (
    tenant              text        NOT NULL,
    anonymous_id        text        NOT NULL,
    lead_id             bigint      NOT NULL,  -- the lead of the earliest claim
    linked_at           timestamptz NOT NULL,
    link_touchpoint_id  uuid        NOT NULL,
    claims              integer     NOT NULL,  -- leads that claimed the visitor (> 1: a conflict, first won)
    -- Always true: a link is kept only for a visitor with anonymous-only touchpoints (lead_id NULL) in its
    -- tenant, because only such a link changes a path or a unit (a visitor whose every touchpoint names a lead
    -- is already on that lead's paths). It is made when the first of them meets a claim, in either order;
    -- identity_claims holds every visitor's claims regardless (the report counts visitors from there).
    anonymous_touchpoints boolean   NOT NULL CHECK (anonymous_touchpoints),
    PRIMARY KEY (tenant, anonymous_id)
);
CREATE INDEX identity_links_lead_idx ON identity_links (lead_id) WHERE anonymous_touchpoints;

ALTER TABLE attribution_credits ADD COLUMN stitched boolean NOT NULL DEFAULT false;

-- CUPED covariates: each unit's conversions (and their revenue) in the conversion window before its first
-- exposure; per variant their sums, sums of squares and cross products with the outcome (clean units).
ALTER TABLE ab_test_units
    ADD COLUMN pre_conversions bigint NOT NULL DEFAULT 0,
    ADD COLUMN pre_revenue numeric NOT NULL DEFAULT 0;
ALTER TABLE ab_test_variant_stats
    ADD COLUMN pre_conversions numeric NOT NULL DEFAULT 0,
    ADD COLUMN pre_conversions_squares numeric NOT NULL DEFAULT 0,
    ADD COLUMN pre_conversions_cross numeric NOT NULL DEFAULT 0,   -- sum of pre_conversions * converted
    ADD COLUMN pre_revenue numeric NOT NULL DEFAULT 0,
    ADD COLUMN pre_revenue_squares numeric NOT NULL DEFAULT 0,
    ADD COLUMN pre_revenue_cross numeric NOT NULL DEFAULT 0;       -- sum of pre_revenue * revenue

-- The lead a touchpoint's unit is: its lead, else the lead its visitor is linked to (NULL: an unlinked visitor).
CREATE FUNCTION crm_effective_lead(lead bigint, tenant_id text, anonymous text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(lead, (SELECT l.lead_id FROM identity_links l
                           WHERE l.tenant = coalesce(tenant_id, '') AND l.anonymous_id = anonymous))
$$;

-- A conversion's value in the reporting currency (0007): converted at the conversion day's rate; 0 while that rate
-- is missing (the conversion keeps its credit and is reported as awaiting a rate; crm_rates_changed re-converts
-- it when the rate arrives). A value without a currency (rows stored before currencies were kept) is taken as
-- the reporting currency.
CREATE FUNCTION crm_reporting_value(value numeric, currency char(3), at timestamptz) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN value IS NULL OR value = 0 THEN 0
                WHEN currency IS NULL THEN value
                ELSE value * coalesce(crm_fx_factor(currency, (at AT TIME ZONE 'UTC')::date), 0) END
$$;

-- The touchpoints of a unit: a lead's own and those of the visitors linked to it (stitched), else an unlinked
-- visitor's anonymous-only ones. Inlined by the planner: the caller's conditions on occurred_at and touch_type
-- reach the indexes of each branch.
CREATE FUNCTION crm_unit_touchpoints(lead bigint, anonymous text)
RETURNS TABLE (touchpoint_id uuid, occurred_at timestamptz, touch_type text, lead_id bigint, anonymous_id text,
               campaign_id bigint, utm_source text, utm_medium text, utm_campaign text, channel_group text,
               ab_test_id text, variant text, conversion_value numeric, currency char(3), stitched boolean)
LANGUAGE sql STABLE AS $$
    SELECT x.touchpoint_id, x.occurred_at, x.touch_type, x.lead_id, x.anonymous_id, x.campaign_id, x.utm_source,
           x.utm_medium, x.utm_campaign, x.channel_group, x.ab_test_id, x.variant, x.conversion_value, x.currency,
           false
    FROM customer_touchpoints x WHERE lead IS NOT NULL AND x.lead_id = lead
    UNION ALL
    SELECT x.touchpoint_id, x.occurred_at, x.touch_type, x.lead_id, x.anonymous_id, x.campaign_id, x.utm_source,
           x.utm_medium, x.utm_campaign, x.channel_group, x.ab_test_id, x.variant, x.conversion_value, x.currency,
           true
    FROM identity_links l JOIN customer_touchpoints x
         ON x.lead_id IS NULL AND x.anonymous_id = l.anonymous_id AND coalesce(x.tenant_id, '') = l.tenant
    WHERE lead IS NOT NULL AND l.lead_id = lead AND l.anonymous_touchpoints
    UNION ALL
    SELECT x.touchpoint_id, x.occurred_at, x.touch_type, x.lead_id, x.anonymous_id, x.campaign_id, x.utm_source,
           x.utm_medium, x.utm_campaign, x.channel_group, x.ab_test_id, x.variant, x.conversion_value, x.currency,
           false
    FROM customer_touchpoints x
    WHERE lead IS NULL AND x.lead_id IS NULL AND x.anonymous_id = anonymous
      AND NOT EXISTS (SELECT 1 FROM identity_links l
                      WHERE l.tenant = coalesce(x.tenant_id, '') AND l.anonymous_id = x.anonymous_id)
$$;

-- The working tables of 0002 plus the new touchpoints' tenant and this run's link changes.
CREATE OR REPLACE FUNCTION crm_analytics_session() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS crm_new_touchpoints (
        touchpoint_id uuid, occurred_at timestamptz, lead_id bigint, anonymous_id text, touch_type text,
        ab_test_id text, variant text) ON COMMIT DELETE ROWS;
    ALTER TABLE crm_new_touchpoints ADD COLUMN IF NOT EXISTS tenant_id text;
    CREATE TEMP TABLE IF NOT EXISTS crm_new_ab_messages (
        ab_test_id text, variant text, status text) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_attr_todo (
        conversion_id uuid, occurred_at timestamptz) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_attr_new (
        conversion_id uuid, conversion_occurred_at timestamptz, touchpoint_id uuid, touchpoint_occurred_at timestamptz,
        model text, credit numeric, revenue_credit numeric, lead_id bigint, anonymous_id text, campaign_id bigint,
        utm_source text, utm_medium text, utm_campaign text, channel_group text) ON COMMIT DELETE ROWS;
    ALTER TABLE crm_attr_new ADD COLUMN IF NOT EXISTS stitched boolean;
    CREATE TEMP TABLE IF NOT EXISTS crm_ab_todo (
        ab_test_id text, unit text, lead_id bigint, anonymous_id text) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_ab_new (
        ab_test_id text, unit text, lead_id bigint, anonymous_id text, variant text, first_exposure_id uuid,
        first_exposure_at timestamptz, contaminated boolean, converted boolean, revenue numeric) ON COMMIT DELETE ROWS;
    ALTER TABLE crm_ab_new ADD COLUMN IF NOT EXISTS pre_conversions bigint,
                           ADD COLUMN IF NOT EXISTS pre_revenue numeric;
    CREATE TEMP TABLE IF NOT EXISTS crm_identity_changes (
        tenant text, anonymous_id text, old_lead bigint, new_lead bigint) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_identity_claimed (tenant text, anonymous_id text) ON COMMIT DELETE ROWS;
END
$$;

-- Applies the claims of crm_new_touchpoints (tenant_id filled): keeps each lead's earliest claim, re-elects the
-- links of the visitors with anonymous-only touchpoints whose claims changed (or whose first anonymous-only
-- touchpoint arrives) and records in crm_identity_changes every visitor whose linked lead changed.
CREATE FUNCTION crm_identity_apply() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    DELETE FROM crm_identity_changes;
    -- Only a visitor whose claims changed (a new lead, or an earlier claim of a known one) is elected again.
    DELETE FROM crm_identity_claimed;
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
    -- ... or a claimed visitor without a link whose first anonymous-only touchpoint arrives now.
    INSERT INTO crm_identity_claimed
    SELECT DISTINCT n.tenant, n.anonymous_id
    FROM (SELECT coalesce(tenant_id, '') AS tenant, anonymous_id FROM crm_new_touchpoints
          WHERE lead_id IS NULL AND anonymous_id IS NOT NULL) n
    WHERE NOT EXISTS (SELECT 1 FROM identity_links l WHERE l.tenant = n.tenant AND l.anonymous_id = n.anonymous_id)
      AND EXISTS (SELECT 1 FROM identity_claims c WHERE c.tenant = n.tenant AND c.anonymous_id = n.anonymous_id);

    WITH visitors AS (
        SELECT DISTINCT tenant, anonymous_id FROM crm_identity_claimed
    ), elected AS (
        SELECT v.tenant, v.anonymous_id, w.lead_id, w.first_at, w.first_touchpoint_id, w.claims, l.lead_id AS old_lead,
               coalesce(l.anonymous_touchpoints, EXISTS (
                   SELECT 1 FROM customer_touchpoints x WHERE x.lead_id IS NULL AND x.anonymous_id = v.anonymous_id
                   AND coalesce(x.tenant_id, '') = v.tenant)) AS anonymous_touchpoints
        FROM visitors v
        CROSS JOIN LATERAL (
            SELECT c.lead_id, c.first_at, c.first_touchpoint_id, count(*) OVER () AS claims FROM identity_claims c
            WHERE c.tenant = v.tenant AND c.anonymous_id = v.anonymous_id
            ORDER BY c.first_at, c.first_touchpoint_id, c.lead_id LIMIT 1) w
        LEFT JOIN identity_links l ON l.tenant = v.tenant AND l.anonymous_id = v.anonymous_id
    ), upsert AS (
        INSERT INTO identity_links AS l (tenant, anonymous_id, lead_id, linked_at, link_touchpoint_id, claims,
                                         anonymous_touchpoints)
        SELECT tenant, anonymous_id, lead_id, first_at, first_touchpoint_id, claims, true FROM elected
        WHERE anonymous_touchpoints
        ORDER BY tenant, anonymous_id
        ON CONFLICT (tenant, anonymous_id) DO UPDATE
            SET lead_id = EXCLUDED.lead_id, linked_at = EXCLUDED.linked_at,
                link_touchpoint_id = EXCLUDED.link_touchpoint_id, claims = EXCLUDED.claims
            WHERE (l.lead_id, l.linked_at, l.link_touchpoint_id, l.claims)
                  IS DISTINCT FROM (EXCLUDED.lead_id, EXCLUDED.linked_at, EXCLUDED.link_touchpoint_id, EXCLUDED.claims)
    )
    INSERT INTO crm_identity_changes (tenant, anonymous_id, old_lead, new_lead)
    SELECT tenant, anonymous_id, old_lead, lead_id FROM elected
    WHERE old_lead IS DISTINCT FROM lead_id AND anonymous_touchpoints;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END
$$;

-- 0002's refresh with the unit's touchpoints: the path of a conversion is its effective lead's (or its unlinked
-- visitor's) touchpoints in the lookback window; credits carry the effective lead and `stitched`.
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
            FROM crm_unit_touchpoints(conv.lead_id, conv.anonymous_id) x
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

-- Replaces the credits of the conversions in crm_attr_todo with crm_attr_new and applies the difference to
-- campaign_attribution_daily (the second half of 0002's refresh, with `stitched`).
CREATE FUNCTION crm_attribution_replace() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE $q$
    WITH old AS (
        DELETE FROM attribution_credits a USING (SELECT DISTINCT conversion_id, occurred_at FROM crm_attr_todo) t
        WHERE a.conversion_id = t.conversion_id AND a.conversion_occurred_at = t.occurred_at
        RETURNING a.*
    ), delta AS (
        SELECT day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group,
               sum(credit) AS conversions, sum(revenue_credit) AS revenue, sum(k) AS credit_rows
        FROM (SELECT (conversion_occurred_at AT TIME ZONE 'UTC')::date AS day, model, campaign_id, utm_source,
                     utm_medium, utm_campaign, channel_group, credit, revenue_credit, 1 AS k
              FROM crm_attr_new
              UNION ALL
              SELECT (conversion_occurred_at AT TIME ZONE 'UTC')::date, model, campaign_id, utm_source, utm_medium,
                     utm_campaign, channel_group, -credit, -revenue_credit, -1
              FROM old) x
        GROUP BY day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group
        HAVING sum(credit) <> 0 OR sum(revenue_credit) <> 0 OR sum(k) <> 0
    )
    INSERT INTO campaign_attribution_daily AS d
        (day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group, conversions, revenue, credit_rows)
    SELECT * FROM delta
    ORDER BY day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group
    ON CONFLICT ON CONSTRAINT campaign_attribution_daily_key DO UPDATE
        SET conversions = d.conversions + EXCLUDED.conversions,
            revenue = d.revenue + EXCLUDED.revenue,
            credit_rows = d.credit_rows + EXCLUDED.credit_rows
    $q$;

    DELETE FROM campaign_attribution_daily WHERE credit_rows = 0;

    INSERT INTO attribution_credits
        (conversion_id, conversion_occurred_at, touchpoint_id, touchpoint_occurred_at, model, credit, revenue_credit,
         lead_id, anonymous_id, campaign_id, utm_source, utm_medium, utm_campaign, channel_group, stitched)
    SELECT conversion_id, conversion_occurred_at, touchpoint_id, touchpoint_occurred_at, model, credit, revenue_credit,
           lead_id, anonymous_id, campaign_id, utm_source, utm_medium, utm_campaign, channel_group, stitched
    FROM crm_attr_new;
END
$$;

-- 0002's A/B refresh on units (crm_ab_todo: lead units carry their effective lead and no anonymous_id, visitor
-- units their anonymous_id). Exposures and conversions are the unit's touchpoints (stitched ones included);
-- the stored anonymous_id is the first exposure's. pre_conversions / pre_revenue: the unit's conversions in
-- the test's conversion window before its first exposure (up to and including its instant) — CUPED's covariate.
CREATE OR REPLACE FUNCTION crm_ab_refresh() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm_ab_new;

    EXECUTE $q$
    INSERT INTO crm_ab_new (ab_test_id, unit, lead_id, anonymous_id, variant, first_exposure_id, first_exposure_at,
                            contaminated, converted, revenue, pre_conversions, pre_revenue)
    WITH todo AS (
        SELECT DISTINCT ab_test_id, unit, lead_id, CASE WHEN lead_id IS NULL THEN anonymous_id END AS anonymous_id
        FROM crm_ab_todo
    ), exposures AS (
        SELECT t.ab_test_id, t.unit, t.lead_id, t.anonymous_id AS unit_anonymous_id, x.anonymous_id, x.touchpoint_id,
               x.occurred_at, x.variant
        FROM todo t
        CROSS JOIN LATERAL (
            SELECT y.touchpoint_id, y.occurred_at, y.variant, y.anonymous_id
            FROM crm_unit_touchpoints(t.lead_id, t.anonymous_id) y
            WHERE y.touch_type = 'experiment_exposure' AND y.ab_test_id = t.ab_test_id AND y.variant IS NOT NULL
        ) x
    ), firsts AS (
        SELECT DISTINCT ON (ab_test_id, unit) ab_test_id, unit, lead_id, unit_anonymous_id, anonymous_id, variant,
               touchpoint_id AS first_exposure_id, occurred_at AS first_exposure_at,
               min(variant) OVER unit_w <> max(variant) OVER unit_w AS contaminated
        FROM exposures
        WINDOW unit_w AS (PARTITION BY ab_test_id, unit)
        ORDER BY ab_test_id, unit, occurred_at, touchpoint_id
    ), windows AS (
        SELECT f.*, coalesce((SELECT conversion_window FROM ab_tests WHERE ab_tests.ab_test_id = f.ab_test_id),
                             interval '30 days') AS window_length
        FROM firsts f
    )
    SELECT f.ab_test_id, f.unit, f.lead_id, f.anonymous_id, f.variant, f.first_exposure_id, f.first_exposure_at,
           f.contaminated, coalesce(cv.n, 0) > 0, coalesce(cv.revenue, 0), coalesce(cv.pre_n, 0),
           coalesce(cv.pre_revenue, 0)
    FROM windows f
    LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE c.occurred_at > f.first_exposure_at) AS n,
               sum(c.value) FILTER (WHERE c.occurred_at > f.first_exposure_at) AS revenue,
               count(*) FILTER (WHERE c.occurred_at <= f.first_exposure_at) AS pre_n,
               sum(c.value) FILTER (WHERE c.occurred_at <= f.first_exposure_at) AS pre_revenue
        FROM (SELECT y.occurred_at, crm_reporting_value(y.conversion_value, y.currency, y.occurred_at) AS value
              FROM crm_unit_touchpoints(f.lead_id, f.unit_anonymous_id) y
              WHERE y.touch_type = 'conversion' AND y.occurred_at > f.first_exposure_at - f.window_length
                AND y.occurred_at <= f.first_exposure_at + f.window_length) c
    ) cv ON true
    $q$;

    EXECUTE $q$
    WITH old AS (
        DELETE FROM ab_test_units WHERE (ab_test_id, unit) IN (SELECT ab_test_id, unit FROM crm_ab_todo) RETURNING *
    ), signed AS (
        SELECT ab_test_id, variant, contaminated, converted::int AS y1, revenue AS y2, pre_conversions AS x1,
               pre_revenue AS x2, 1 AS s FROM crm_ab_new
        UNION ALL
        SELECT ab_test_id, variant, contaminated, converted::int, revenue, pre_conversions, pre_revenue, -1 FROM old
    ), delta AS (
        SELECT ab_test_id, variant,
               sum(s * (NOT contaminated)::int) AS units,
               sum(s * (NOT contaminated)::int * y1) AS converted_units,
               sum(s * (NOT contaminated)::int * y2) AS revenue_sum,
               sum(s * (NOT contaminated)::int * y2 * y2) AS revenue_sum_squares,
               sum(s * contaminated::int) AS contaminated_units,
               sum(s * (NOT contaminated)::int * x1) AS pre_conversions,
               sum(s * (NOT contaminated)::int * x1 * x1) AS pre_conversions_squares,
               sum(s * (NOT contaminated)::int * x1 * y1) AS pre_conversions_cross,
               sum(s * (NOT contaminated)::int * x2) AS pre_revenue,
               sum(s * (NOT contaminated)::int * x2 * x2) AS pre_revenue_squares,
               sum(s * (NOT contaminated)::int * x2 * y2) AS pre_revenue_cross
        FROM signed
        GROUP BY ab_test_id, variant
    )
    INSERT INTO ab_test_variant_stats AS v
        (ab_test_id, variant, units, converted_units, revenue_sum, revenue_sum_squares, contaminated_units,
         pre_conversions, pre_conversions_squares, pre_conversions_cross, pre_revenue, pre_revenue_squares,
         pre_revenue_cross)
    SELECT * FROM delta  -- every delta, even one that only moves a sum of squares (an emptied row is deleted below)
    ORDER BY ab_test_id, variant
    ON CONFLICT (ab_test_id, variant) DO UPDATE
        SET units = v.units + EXCLUDED.units,
            converted_units = v.converted_units + EXCLUDED.converted_units,
            revenue_sum = v.revenue_sum + EXCLUDED.revenue_sum,
            revenue_sum_squares = v.revenue_sum_squares + EXCLUDED.revenue_sum_squares,
            contaminated_units = v.contaminated_units + EXCLUDED.contaminated_units,
            pre_conversions = v.pre_conversions + EXCLUDED.pre_conversions,
            pre_conversions_squares = v.pre_conversions_squares + EXCLUDED.pre_conversions_squares,
            pre_conversions_cross = v.pre_conversions_cross + EXCLUDED.pre_conversions_cross,
            pre_revenue = v.pre_revenue + EXCLUDED.pre_revenue,
            pre_revenue_squares = v.pre_revenue_squares + EXCLUDED.pre_revenue_squares,
            pre_revenue_cross = v.pre_revenue_cross + EXCLUDED.pre_revenue_cross
    $q$;

    DELETE FROM ab_test_variant_stats v
    WHERE v.units = 0 AND v.contaminated_units = 0
      AND v.ab_test_id IN (SELECT ab_test_id FROM crm_ab_todo);

    INSERT INTO ab_test_units (ab_test_id, unit, lead_id, anonymous_id, variant, first_exposure_id, first_exposure_at,
                               contaminated, converted, revenue, pre_conversions, pre_revenue)
    SELECT ab_test_id, unit, lead_id, anonymous_id, variant, first_exposure_id, first_exposure_at, contaminated,
           converted, revenue, pre_conversions, pre_revenue
    FROM crm_ab_new;
END
$$;

-- 0002's batch step with identities: the new touchpoints' tenants, their claims, then the conversions and A/B
-- units to refresh — new conversions and exposures, the late-data probe on the new touchpoints' effective
-- leads, and everything of the old and new lead of each visitor whose link changed.
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
            SELECT x.touchpoint_id, x.occurred_at FROM crm_unit_touchpoints(n.lead, n.anonymous_id) x
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

-- 0005's recompute, with the identities rebuilt first from every touchpoint carrying both ids, then every
-- conversion and every (test, effective unit) of an exposure refreshed as the stage would have met them.
CREATE OR REPLACE FUNCTION crm_analytics_recompute() RETURNS void
LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('crm_analytics'), 0);
    TRUNCATE attribution_credits, campaign_attribution_daily, ab_test_units, ab_test_variant_stats, identity_claims,
             identity_links;
    DELETE FROM analytics_backlog;  -- every later statement sees the batches of the rows it deleted (0005)
    PERFORM crm_analytics_session();
    TRUNCATE crm_new_touchpoints, crm_attr_todo, crm_ab_todo;

    -- The identities in two statements: every lead's earliest claim, then each visitor's first.
    INSERT INTO identity_claims (tenant, anonymous_id, lead_id, first_at, first_touchpoint_id)
    SELECT DISTINCT ON (1, 2, 3) coalesce(tenant_id, ''), anonymous_id, lead_id, occurred_at, touchpoint_id
    FROM customer_touchpoints WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL
    ORDER BY 1, 2, 3, occurred_at, touchpoint_id;
    INSERT INTO identity_links (tenant, anonymous_id, lead_id, linked_at, link_touchpoint_id, claims,
                                anonymous_touchpoints)
    SELECT DISTINCT ON (c.tenant, c.anonymous_id) c.tenant, c.anonymous_id, c.lead_id, c.first_at,
           c.first_touchpoint_id, count(*) OVER (PARTITION BY c.tenant, c.anonymous_id), a.anonymous_id IS NOT NULL
    FROM identity_claims c
    JOIN (SELECT DISTINCT coalesce(tenant_id, '') AS tenant, anonymous_id FROM customer_touchpoints
          WHERE lead_id IS NULL AND anonymous_id IS NOT NULL) a
      ON a.tenant = c.tenant AND a.anonymous_id = c.anonymous_id
    ORDER BY c.tenant, c.anonymous_id, c.first_at, c.first_touchpoint_id, c.lead_id;

    INSERT INTO crm_attr_todo SELECT touchpoint_id, occurred_at FROM customer_touchpoints WHERE touch_type = 'conversion';
    PERFORM crm_attribution_refresh();
    INSERT INTO crm_ab_todo (ab_test_id, unit, lead_id, anonymous_id)
    SELECT DISTINCT ab_test_id, crm_unit_key(lead, anonymous_id), lead, CASE WHEN lead IS NULL THEN anonymous_id END
    FROM (SELECT ab_test_id, anonymous_id, crm_effective_lead(lead_id, tenant_id, anonymous_id) AS lead
          FROM customer_touchpoints
          WHERE touch_type = 'experiment_exposure' AND (ab_test_id, variant) IS NOT NULL) e;
    PERFORM crm_ab_refresh();

    -- Last, as in 0005: the TRUNCATE's lock is held only for the recount.
    TRUNCATE ab_test_message_counts;
    INSERT INTO ab_test_message_counts
    SELECT ab_test_id, variant, status, count(*) FROM communications WHERE (ab_test_id, variant) IS NOT NULL
    GROUP BY 1, 2, 3;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        -- The analytics stage (run by the writer's role) keeps the identities.
        GRANT SELECT, INSERT, UPDATE, DELETE ON identity_claims, identity_links TO crm_ingest_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_analytics') THEN
        GRANT SELECT ON identity_claims, identity_links TO crm_ingest_analytics;
    END IF;
END
$$;

-- What the tables mean changed (stitched paths and units, converted revenue, the CUPED covariates): rebuild them
-- once from the stored events, so that the incremental upkeep continues from what a recompute gives. On a large
-- database this makes the migration take as long as `report attribution --recompute`.
SELECT crm_analytics_recompute();
