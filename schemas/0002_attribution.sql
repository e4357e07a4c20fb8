-- Attribution credits and A/B-test metrics, maintained in every batch transaction from the touchpoints and
-- communications that batch really inserted (see sinks/postgres/attribution.h), and recomputable from scratch
-- (`crm-ingest report attribution --recompute`). Both paths run the same functions below, so the incremental
-- state is by construction what a recompute gives, whatever order and batching the events came in.
--
-- Locks (all transaction-scoped, so a batch's effects are committed before any lock is released):
--   * crm_analytics global lock (hashtext('crm_analytics'), 0): every batch takes it SHARED before touching any
--     table below; a recompute takes it EXCLUSIVE, so it waits for batches in flight and they wait for it.
--   * one lock per unit bucket (hashtext('crm_analytics_unit'), crm_unit_bucket(lead_id, anonymous_id)): a unit
--     (lead, else anonymous visitor) hashes to one of 512 buckets. A batch takes the bucket of every unit it brings
--     touchpoints of, in ascending bucket order (so two batches never wait on each other in a cycle). Buckets,
--     not units, so that a batch of 20,000 leads takes at most 512 locks: PostgreSQL's shared lock table holds
--     max_locks_per_transaction x max_connections entries (6,400 by default) for all sessions together.
--     The bucket lock protects the attribution_credits rows of its units' conversions and its units'
--     ab_test_units rows, and it serializes the read of the units' touchpoints: the statements that read them
--     start (READ COMMITTED: a fresh snapshot each) after the lock is granted, so they see every touchpoint
--     committed by the batch that held the lock before; that batch, in turn, is seen by us. Hence a touchpoint
--     and a conversion of one lead arriving in concurrent transactions are always put together by the later one.
--     A batch takes no bucket lock while holding a lock another batch in the analytics step can want: before
--     this step it has touched none of the tables below.
--   * the aggregate rows (campaign_attribution_daily, ab_test_variant_stats, ab_test_message_counts) are
--     updated by one sorted INSERT ... ON CONFLICT DO UPDATE per table per batch, tables always in this order,
--     which gives every batch the same lock order (no deadlocks) and makes the update a pure delta.

-- The statements that join the per-batch working tables with the big tables run through EXECUTE, so that each
-- batch gets a plan for the sizes of the day: PL/pgSQL would otherwise keep, for the whole session, the plan
-- made at its first batch, when e.g. attribution_credits was empty and a sequential scan of it looked cheap.

-- The attribution parameters. Held in the database, not in each writer's configuration, so that every writer
-- and the recompute agree; changing them means re-attributing everything, which is why only
-- `crm-ingest report attribution --recompute --lookback-days N --half-life-days N` changes them.
CREATE TABLE attribution_settings (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    lookback    interval    NOT NULL DEFAULT interval '30 days' CHECK (lookback > interval '0'),
    half_life   interval    NOT NULL DEFAULT interval '7 days' CHECK (half_life > interval '0'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO attribution_settings DEFAULT VALUES;

-- One row per conversion, model and path touchpoint (one row with no touchpoint and channel group Direct when
-- the path is empty). Credits of one conversion and model sum to exactly 1: every credit is rounded to 12
-- decimals and the last row of the path takes the remainder. The touchpoint's dimensions are copied here so
-- that campaign_attribution_daily is a plain GROUP BY of this table.
CREATE TABLE attribution_credits (
    conversion_id           uuid        NOT NULL,
    conversion_occurred_at  timestamptz NOT NULL,
    touchpoint_id           uuid,
    touchpoint_occurred_at  timestamptz,
    model                   text        NOT NULL CHECK (model IN ('first_touch','last_touch','linear','time_decay',
                                                                  'position_based','last_non_direct')),
    credit                  numeric     NOT NULL CHECK (credit >= 0 AND credit <= 1),
    revenue_credit          numeric     NOT NULL,
    lead_id                 bigint,
    anonymous_id            text,
    campaign_id             bigint,
    utm_source              text,
    utm_medium              text,
    utm_campaign            text,
    channel_group           text        NOT NULL,
    CONSTRAINT attribution_credits_key UNIQUE NULLS NOT DISTINCT
        (conversion_id, conversion_occurred_at, model, touchpoint_id, touchpoint_occurred_at)
);

-- Always equal to the sum over attribution_credits grouped by these keys (day = UTC day of the conversion).
-- credit_rows counts the credit rows behind a row; a row whose count drops to 0 is deleted.
CREATE TABLE campaign_attribution_daily (
    day            date    NOT NULL,
    model          text    NOT NULL,
    campaign_id    bigint,
    utm_source     text,
    utm_medium     text,
    utm_campaign   text,
    channel_group  text    NOT NULL,
    conversions    numeric NOT NULL,
    revenue        numeric NOT NULL,
    credit_rows    bigint  NOT NULL,
    CONSTRAINT campaign_attribution_daily_key UNIQUE NULLS NOT DISTINCT
        (day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group)
);
-- Rows emptied by a re-attribution, found without a scan (only ever non-empty inside a transaction).
CREATE INDEX campaign_attribution_daily_empty_idx ON campaign_attribution_daily (day) WHERE credit_rows = 0;

-- A/B units: the unit is the lead, else the anonymous visitor. The first exposure (by occurred_at, then
-- touchpoint_id) fixes the variant; an exposure to another variant contaminates the unit.
CREATE TABLE ab_test_units (
    ab_test_id         text        NOT NULL,
    unit               text        NOT NULL,  -- crm_unit_key(lead_id, anonymous_id)
    lead_id            bigint,
    anonymous_id       text,
    variant            text        NOT NULL,
    first_exposure_id  uuid        NOT NULL,
    first_exposure_at  timestamptz NOT NULL,
    contaminated       boolean     NOT NULL,
    converted          boolean     NOT NULL,
    revenue            numeric     NOT NULL,
    PRIMARY KEY (ab_test_id, unit)
);
CREATE INDEX ab_test_units_unit_idx ON ab_test_units (unit);

-- Per test and variant. units, converted_units and the revenue sums cover the clean (not contaminated) units;
-- contaminated_units counts the others, by the variant of their first exposure.
CREATE TABLE ab_test_variant_stats (
    ab_test_id           text    NOT NULL,
    variant              text    NOT NULL,
    units                bigint  NOT NULL,
    converted_units      bigint  NOT NULL,
    revenue_sum          numeric NOT NULL,
    revenue_sum_squares  numeric NOT NULL,
    contaminated_units   bigint  NOT NULL,
    PRIMARY KEY (ab_test_id, variant)
);

-- Communications carrying ab_test_id and variant (e.g. SendGrid's marketing_campaign_version), counted by
-- status: the per-variant delivered/opened/clicked figures.
CREATE TABLE ab_test_message_counts (
    ab_test_id  text   NOT NULL,
    variant     text   NOT NULL,
    status      text   NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (ab_test_id, variant, status)
);

-- Anonymous-only touchpoints, looked up by visitor for their paths and tests.
CREATE INDEX customer_touchpoints_anonymous_idx ON customer_touchpoints (anonymous_id, occurred_at)
    WHERE lead_id IS NULL;
-- A lead's conversions (the late-data probe of every new touchpoint, the A/B conversion window) and exposures,
-- without visiting the lead's other touchpoints. Small: conversions and exposures are a few % of touchpoints.
-- (Measured: import of 300k touchpoint-heavy events 13% faster with them than without.)
CREATE INDEX customer_touchpoints_conversion_idx ON customer_touchpoints (lead_id, occurred_at)
    WHERE touch_type = 'conversion';
CREATE INDEX customer_touchpoints_exposure_idx ON customer_touchpoints (lead_id, ab_test_id)
    WHERE touch_type = 'experiment_exposure';

CREATE FUNCTION crm_unit_key(lead bigint, anonymous text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN lead IS NOT NULL THEN 'lead:' || lead::text ELSE 'anon:' || anonymous END
$$;

-- The lock bucket of a unit, 0..511 (see the locks at the top).
CREATE FUNCTION crm_unit_bucket(lead bigint, anonymous text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtext(crm_unit_key(lead, anonymous)) & 511
$$;

-- The session's working tables (temporary, emptied at commit). The writer fills crm_new_touchpoints and
-- crm_new_ab_messages from the RETURNING of its inserts.
CREATE FUNCTION crm_analytics_session() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS crm_new_touchpoints (
        touchpoint_id uuid, occurred_at timestamptz, lead_id bigint, anonymous_id text, touch_type text,
        ab_test_id text, variant text) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_new_ab_messages (
        ab_test_id text, variant text, status text) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_attr_todo (
        conversion_id uuid, occurred_at timestamptz) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_attr_new (
        conversion_id uuid, conversion_occurred_at timestamptz, touchpoint_id uuid, touchpoint_occurred_at timestamptz,
        model text, credit numeric, revenue_credit numeric, lead_id bigint, anonymous_id text, campaign_id bigint,
        utm_source text, utm_medium text, utm_campaign text, channel_group text) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_ab_todo (
        ab_test_id text, unit text, lead_id bigint, anonymous_id text) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_ab_new (
        ab_test_id text, unit text, lead_id bigint, anonymous_id text, variant text, first_exposure_id uuid,
        first_exposure_at timestamptz, contaminated boolean, converted boolean, revenue numeric) ON COMMIT DELETE ROWS;
END
$$;

-- (Re-)attributes the conversions listed in crm_attr_todo: computes their credits afresh from the stored
-- touchpoints, replaces their rows in attribution_credits and applies the difference to
-- campaign_attribution_daily. The caller holds the bucket locks of these conversions' units (or the exclusive lock).
CREATE FUNCTION crm_attribution_refresh() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lookback_ interval;
    half_life_s double precision;
BEGIN
    SELECT lookback, extract(epoch FROM half_life) INTO lookback_, half_life_s FROM attribution_settings;
    DELETE FROM crm_attr_new;

    EXECUTE $q$
    INSERT INTO crm_attr_new
    WITH conv AS (
        SELECT c.touchpoint_id AS conversion_id, c.occurred_at AS conv_at, c.lead_id, c.anonymous_id,
               coalesce(c.conversion_value, 0) AS conv_value
        FROM (SELECT DISTINCT conversion_id, occurred_at FROM crm_attr_todo) t
        CROSS JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at, x.lead_id, x.anonymous_id, x.conversion_value
            FROM customer_touchpoints x
            WHERE x.touchpoint_id = t.conversion_id AND x.occurred_at = t.occurred_at AND x.touch_type = 'conversion'
        ) c
    ), path AS (
        SELECT conv.*, p.touchpoint_id, p.occurred_at AS tp_at, p.campaign_id, p.utm_source, p.utm_medium,
               p.utm_campaign, p.channel_group
        FROM conv LEFT JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at, x.campaign_id, x.utm_source, x.utm_medium, x.utm_campaign,
                   x.channel_group
            FROM customer_touchpoints x
            WHERE conv.lead_id IS NOT NULL AND x.lead_id = conv.lead_id
              AND x.occurred_at >= conv.conv_at - $1 AND x.occurred_at < conv.conv_at
              AND x.touch_type NOT IN ('conversion', 'experiment_exposure')
            UNION ALL
            SELECT x.touchpoint_id, x.occurred_at, x.campaign_id, x.utm_source, x.utm_medium, x.utm_campaign,
                   x.channel_group
            FROM customer_touchpoints x
            WHERE conv.lead_id IS NULL AND x.lead_id IS NULL AND x.anonymous_id = conv.anonymous_id
              AND x.occurred_at >= conv.conv_at - $1 AND x.occurred_at < conv.conv_at
              AND x.touch_type NOT IN ('conversion', 'experiment_exposure')
        ) p ON true
    ), ranked AS (
        SELECT path.*,
               row_number() OVER (PARTITION BY conversion_id, conv_at ORDER BY tp_at, touchpoint_id) AS pos,
               count(*) OVER (PARTITION BY conversion_id, conv_at) AS n,
               -- 2^(-(T - t)/half_life), scaled by 2^((T - t_last)/half_life) (normalization cancels it) so
               -- that the last touch weighs 1 and nothing underflows (below 2^-200 a weight rounds to 0 credit
               -- anyway); fixed to 15 significant digits so that the sums below are exact and order-free.
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
        -- The last row of the path takes what rounding left over, so the credits sum to exactly 1.
        SELECT raw.*,
               CASE WHEN pos = n THEN 1 - (sum(c) OVER (PARTITION BY conversion_id, conv_at, model) - c) ELSE c END
                   AS credit
        FROM raw
    )
    SELECT conversion_id, conv_at, touchpoint_id, tp_at, model, credit, credit * conv_value, lead_id, anonymous_id,
           campaign_id, utm_source, utm_medium, utm_campaign, coalesce(channel_group, 'Direct')
    FROM fixed
    WHERE credit > 0 OR model IN ('linear', 'time_decay', 'position_based')
    $q$ USING lookback_, half_life_s;

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
    SELECT day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group, conversions, revenue,
           credit_rows
    FROM delta
    ORDER BY day, model, campaign_id, utm_source, utm_medium, utm_campaign, channel_group
    ON CONFLICT ON CONSTRAINT campaign_attribution_daily_key DO UPDATE
        SET conversions = d.conversions + EXCLUDED.conversions,
            revenue = d.revenue + EXCLUDED.revenue,
            credit_rows = d.credit_rows + EXCLUDED.credit_rows
    $q$;

    DELETE FROM campaign_attribution_daily WHERE credit_rows = 0;

    INSERT INTO attribution_credits
        (conversion_id, conversion_occurred_at, touchpoint_id, touchpoint_occurred_at, model, credit, revenue_credit,
         lead_id, anonymous_id, campaign_id, utm_source, utm_medium, utm_campaign, channel_group)
    SELECT conversion_id, conversion_occurred_at, touchpoint_id, touchpoint_occurred_at, model, credit, revenue_credit,
           lead_id, anonymous_id, campaign_id, utm_source, utm_medium, utm_campaign, channel_group
    FROM crm_attr_new;
END
$$;

-- Recomputes the (test, unit) pairs listed in crm_ab_todo from the stored touchpoints, replaces their
-- ab_test_units rows and applies the difference to ab_test_variant_stats. The caller holds the units' bucket locks.
CREATE FUNCTION crm_ab_refresh() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm_ab_new;

    EXECUTE $q$
    INSERT INTO crm_ab_new
    WITH todo AS (
        SELECT DISTINCT ab_test_id, unit, lead_id, anonymous_id FROM crm_ab_todo
    ), exposures AS (
        SELECT t.ab_test_id, t.unit, t.lead_id, t.anonymous_id, x.touchpoint_id, x.occurred_at, x.variant
        FROM todo t
        CROSS JOIN LATERAL (
            SELECT y.touchpoint_id, y.occurred_at, y.variant FROM customer_touchpoints y
            WHERE t.lead_id IS NOT NULL AND y.lead_id = t.lead_id AND y.touch_type = 'experiment_exposure'
              AND y.ab_test_id = t.ab_test_id AND y.variant IS NOT NULL
            UNION ALL
            SELECT y.touchpoint_id, y.occurred_at, y.variant FROM customer_touchpoints y
            WHERE t.lead_id IS NULL AND y.lead_id IS NULL AND y.anonymous_id = t.anonymous_id
              AND y.touch_type = 'experiment_exposure' AND y.ab_test_id = t.ab_test_id AND y.variant IS NOT NULL
        ) x
    ), firsts AS (
        SELECT DISTINCT ON (ab_test_id, unit) ab_test_id, unit, lead_id, anonymous_id, variant,
               touchpoint_id AS first_exposure_id, occurred_at AS first_exposure_at,
               min(variant) OVER unit_w <> max(variant) OVER unit_w AS contaminated
        FROM exposures
        WINDOW unit_w AS (PARTITION BY ab_test_id, unit)
        ORDER BY ab_test_id, unit, occurred_at, touchpoint_id
    ), windows AS (
        SELECT f.*, f.first_exposure_at + coalesce(
                   (SELECT conversion_window FROM ab_tests WHERE ab_tests.ab_test_id = f.ab_test_id),
                   interval '30 days') AS window_end
        FROM firsts f
    )
    SELECT f.ab_test_id, f.unit, f.lead_id, f.anonymous_id, f.variant, f.first_exposure_id, f.first_exposure_at,
           f.contaminated, coalesce(cv.n, 0) > 0, coalesce(cv.revenue, 0)
    FROM windows f
    LEFT JOIN LATERAL (
        SELECT count(*) AS n, sum(coalesce(conversion_value, 0)) AS revenue
        FROM (SELECT c.conversion_value FROM customer_touchpoints c
              WHERE f.lead_id IS NOT NULL AND c.lead_id = f.lead_id AND c.touch_type = 'conversion'
                AND c.occurred_at > f.first_exposure_at AND c.occurred_at <= f.window_end
              UNION ALL
              SELECT c.conversion_value FROM customer_touchpoints c
              WHERE f.lead_id IS NULL AND c.lead_id IS NULL AND c.anonymous_id = f.anonymous_id
                AND c.touch_type = 'conversion'
                AND c.occurred_at > f.first_exposure_at AND c.occurred_at <= f.window_end) c
    ) cv ON true
    $q$;

    EXECUTE $q$
    WITH old AS (
        DELETE FROM ab_test_units u USING (SELECT DISTINCT ab_test_id, unit FROM crm_ab_todo) t
        WHERE u.ab_test_id = t.ab_test_id AND u.unit = t.unit
        RETURNING u.*
    ), delta AS (
        SELECT ab_test_id, variant,
               sum(s * (NOT contaminated)::int) AS units,
               sum(s * (NOT contaminated AND converted)::int) AS converted_units,
               sum(CASE WHEN contaminated THEN 0 ELSE s * revenue END) AS revenue_sum,
               sum(CASE WHEN contaminated THEN 0 ELSE s * revenue * revenue END) AS revenue_sum_squares,
               sum(s * contaminated::int) AS contaminated_units
        FROM (SELECT ab_test_id, variant, contaminated, converted, revenue, 1 AS s FROM crm_ab_new
              UNION ALL
              SELECT ab_test_id, variant, contaminated, converted, revenue, -1 FROM old) x
        GROUP BY ab_test_id, variant
    )
    INSERT INTO ab_test_variant_stats AS v
        (ab_test_id, variant, units, converted_units, revenue_sum, revenue_sum_squares, contaminated_units)
    SELECT ab_test_id, variant, units, converted_units, revenue_sum, revenue_sum_squares, contaminated_units
    FROM delta
    WHERE units <> 0 OR converted_units <> 0 OR revenue_sum <> 0 OR revenue_sum_squares <> 0 OR contaminated_units <> 0
    ORDER BY ab_test_id, variant
    ON CONFLICT (ab_test_id, variant) DO UPDATE
        SET units = v.units + EXCLUDED.units,
            converted_units = v.converted_units + EXCLUDED.converted_units,
            revenue_sum = v.revenue_sum + EXCLUDED.revenue_sum,
            revenue_sum_squares = v.revenue_sum_squares + EXCLUDED.revenue_sum_squares,
            contaminated_units = v.contaminated_units + EXCLUDED.contaminated_units
    $q$;

    DELETE FROM ab_test_variant_stats v
    WHERE v.units = 0 AND v.contaminated_units = 0
      AND v.ab_test_id IN (SELECT ab_test_id FROM crm_ab_todo);

    INSERT INTO ab_test_units
    SELECT ab_test_id, unit, lead_id, anonymous_id, variant, first_exposure_id, first_exposure_at, contaminated,
           converted, revenue
    FROM crm_ab_new;
END
$$;

-- Called by the writer inside the batch transaction, after its inserts filled crm_new_touchpoints and
-- crm_new_ab_messages with the rows really inserted (a replayed batch brings none, so changes nothing).
CREATE FUNCTION crm_analytics_apply_batch() RETURNS void
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    bucket int;
    lookback_ interval;
    todo bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('crm_analytics'), 0);
    IF EXISTS (SELECT 1 FROM crm_new_touchpoints) THEN
        FOR bucket IN SELECT DISTINCT crm_unit_bucket(lead_id, anonymous_id) AS k FROM crm_new_touchpoints
                         ORDER BY k LOOP
            PERFORM pg_advisory_xact_lock(hashtext('crm_analytics_unit'), bucket);
        END LOOP;
        -- Every statement from here on reads with a snapshot taken after the bucket locks were granted.
        SELECT lookback INTO lookback_ FROM attribution_settings;
        DELETE FROM crm_attr_todo;
        -- New conversions, and the conversions a new path touchpoint falls in the lookback window of (late data):
        -- T - lookback <= t < T  <=>  t < T <= t + lookback.
        EXECUTE $q$
    INSERT INTO crm_attr_todo (conversion_id, occurred_at)
        SELECT touchpoint_id, occurred_at FROM crm_new_touchpoints WHERE touch_type = 'conversion'
        UNION
        SELECT c.touchpoint_id, c.occurred_at
        FROM crm_new_touchpoints n
        CROSS JOIN LATERAL (  -- LATERAL: one index probe per new touchpoint, whatever the plan cache holds
            SELECT x.touchpoint_id, x.occurred_at FROM customer_touchpoints x
            WHERE x.lead_id = n.lead_id AND x.occurred_at > n.occurred_at AND x.occurred_at <= n.occurred_at + $1
              AND x.touch_type = 'conversion') c
        WHERE n.lead_id IS NOT NULL AND n.touch_type NOT IN ('conversion', 'experiment_exposure')
        UNION
        SELECT c.touchpoint_id, c.occurred_at
        FROM crm_new_touchpoints n
        CROSS JOIN LATERAL (
            SELECT x.touchpoint_id, x.occurred_at FROM customer_touchpoints x
            WHERE x.lead_id IS NULL AND x.anonymous_id = n.anonymous_id
              AND x.occurred_at > n.occurred_at AND x.occurred_at <= n.occurred_at + $1
              AND x.touch_type = 'conversion') c
        WHERE n.lead_id IS NULL AND n.touch_type NOT IN ('conversion', 'experiment_exposure')
    $q$ USING lookback_;
        GET DIAGNOSTICS todo = ROW_COUNT;
        IF todo > 0 THEN
            PERFORM crm_attribution_refresh();
        END IF;

        DELETE FROM crm_ab_todo;
        -- New exposures, and the tests a unit with a new conversion is in.
        EXECUTE $q$
    INSERT INTO crm_ab_todo (ab_test_id, unit, lead_id, anonymous_id)
        SELECT ab_test_id, crm_unit_key(lead_id, anonymous_id), lead_id, anonymous_id
        FROM crm_new_touchpoints
        WHERE touch_type = 'experiment_exposure' AND ab_test_id IS NOT NULL AND variant IS NOT NULL
        UNION
        SELECT u.ab_test_id, u.unit, u.lead_id, u.anonymous_id
        FROM crm_new_touchpoints n
        JOIN ab_test_units u ON u.unit = crm_unit_key(n.lead_id, n.anonymous_id)
        WHERE n.touch_type = 'conversion'
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

-- Rebuilds every attribution and A/B table from the stored events, with the same functions the batches use.
-- Takes the global lock exclusively: batches in flight finish first, later ones wait and then apply on top.
CREATE FUNCTION crm_analytics_recompute() RETURNS void
LANGUAGE plpgsql
-- These plans cost millions (one index probe per conversion or unit): JIT would compile them for seconds.
SET jit = off
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('crm_analytics'), 0);
    PERFORM crm_analytics_session();
    TRUNCATE attribution_credits, campaign_attribution_daily, ab_test_units, ab_test_variant_stats,
             ab_test_message_counts;

    DELETE FROM crm_attr_todo;
    INSERT INTO crm_attr_todo (conversion_id, occurred_at)
    SELECT touchpoint_id, occurred_at FROM customer_touchpoints WHERE touch_type = 'conversion';
    PERFORM crm_attribution_refresh();

    DELETE FROM crm_ab_todo;
    INSERT INTO crm_ab_todo (ab_test_id, unit, lead_id, anonymous_id)
    SELECT DISTINCT ab_test_id, crm_unit_key(lead_id, anonymous_id), lead_id, anonymous_id
    FROM customer_touchpoints
    WHERE touch_type = 'experiment_exposure' AND ab_test_id IS NOT NULL AND variant IS NOT NULL;
    PERFORM crm_ab_refresh();

    INSERT INTO ab_test_message_counts (ab_test_id, variant, status, events)
    SELECT ab_test_id, variant, status, count(*) FROM communications
    WHERE ab_test_id IS NOT NULL AND variant IS NOT NULL
    GROUP BY ab_test_id, variant, status;
END
$$;
