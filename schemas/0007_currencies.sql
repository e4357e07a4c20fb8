-- Currencies: exchange rates that operators load (`crm-ingest rates import FILE`), the reporting currency every
-- process agrees on, and the factor that converts a conversion's amount into it. Forward-only: never edit this
-- file once released.
--
-- The rule (README "Currencies"): an amount of currency C on day D (the UTC day of the conversion's occurred_at)
-- is converted at the last known rates on or before D: the rate of D itself when one was loaded, else the rate
-- of the latest earlier day (ECB rates exist on TARGET business days only, so a Saturday conversion takes
-- Friday's rate). No rate on or before D = missing: crm_fx_factor() is NULL, the conversion is counted as
-- awaiting a rate (report attribution) and converted when a rate arrives (crm_rates_changed re-attributes it).

-- One row per day, base and quoted currency: 1 unit of `base` = `rate` units of `currency` on `day` (the ECB's
-- reference rates: base EUR, e.g. (2024-01-05, EUR, USD, 1.0921)). Codes are ISO 4217 (checked by the importer
-- with the normalizer's validator; here only their shape).
CREATE TABLE exchange_rates (
    day        date        NOT NULL,
    base       char(3)     NOT NULL CHECK (base ~ '^[A-Z]{3}$'),
    currency   char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    rate       numeric     NOT NULL CHECK (rate > 0 AND rate <> 'NaN' AND rate <> 'Infinity'),
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, base, currency),
    CHECK (currency <> base)
);
-- The last rate on or before a day (one index probe: base, currency, day DESC), and the distinct bases
-- (a skip scan over its first column).
CREATE INDEX exchange_rates_pair_idx ON exchange_rates (base, currency, day);

-- The reporting currency: revenue is reported in it. Held with the attribution parameters, in the database, so
-- that every writer, the analytics stage and the reports agree; changed only by `crm-ingest rates
-- reporting-currency CODE`, which recomputes every attribution and A/B table.
ALTER TABLE attribution_settings
    ADD COLUMN reporting_currency char(3) NOT NULL DEFAULT 'USD' CHECK (reporting_currency ~ '^[A-Z]{3}$');

-- The last known rate of 1 `base` in `currency` on or before `day`, and the day it was quoted for; for the base
-- itself (1, infinity); no row (NULLs) when none is known.
CREATE FUNCTION crm_fx_last_rate(base char(3), currency char(3), day date, OUT rate numeric, OUT rate_day date)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT 1::numeric, 'infinity'::date WHERE $1 = $2
    UNION ALL
    (SELECT e.rate, e.day FROM exchange_rates e
     WHERE $1 <> $2 AND e.base = $1 AND e.currency = $2 AND e.day <= $3
     ORDER BY e.day DESC LIMIT 1)
$$;

-- The factor converting an amount of `currency` on `day` into `reporting`: 1 for the same currency; otherwise,
-- through a common base B (any base of exchange_rates; the ECB's is EUR):
--     factor = rate(B -> reporting) / rate(B -> currency)
-- where each rate is the last one on or before `day` and rate(B -> B) = 1 (so a rate quoted directly, with
-- `currency` or `reporting` as base, is used as it is or inverted). When several bases can do it, the one whose
-- older leg is the most recent wins (ties: the first base in alphabetical order). NULL when no base has both
-- legs on or before `day` (a missing rate), or when an argument is NULL.
CREATE FUNCTION crm_fx_factor(currency char(3), day date, reporting char(3)) RETURNS numeric
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    c_ char(3) := upper(currency);
    r_ char(3) := upper(reporting);
    d_ date := day;
    b_ char(3);
    to_c numeric;
    to_r numeric;
    day_c date;
    day_r date;
    best numeric;
    best_day date;
BEGIN
    IF c_ IS NULL OR r_ IS NULL OR d_ IS NULL THEN
        RETURN NULL;
    END IF;
    IF c_ = r_ THEN
        RETURN 1;
    END IF;
    SELECT min(e.base) INTO b_ FROM exchange_rates e;
    WHILE b_ IS NOT NULL LOOP
        SELECT l.rate, l.rate_day INTO to_c, day_c FROM crm_fx_last_rate(b_, c_, d_) l;
        SELECT l.rate, l.rate_day INTO to_r, day_r FROM crm_fx_last_rate(b_, r_, d_) l;
        IF to_c IS NOT NULL AND to_r IS NOT NULL AND (best_day IS NULL OR least(day_c, day_r) > best_day) THEN
            best := to_r / to_c;
            best_day := least(day_c, day_r);
        END IF;
        SELECT min(e.base) INTO b_ FROM exchange_rates e WHERE e.base > b_;
    END LOOP;
    RETURN best;
END
$$;

-- The same into the stored reporting currency (attribution_settings.reporting_currency): what the attribution
-- and A/B functions multiply a conversion's value by, with day = (occurred_at AT TIME ZONE 'UTC')::date.
CREATE FUNCTION crm_fx_factor(currency char(3), day date) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT crm_fx_factor($1, $2, (SELECT s.reporting_currency FROM attribution_settings s))
$$;

-- After exchange rates changed: re-attributes the conversions whose factor may have changed, and their A/B
-- units. `currencies` are the quoted currencies whose rates were inserted or changed, from `from_day` on (the
-- earliest day changed; NULL = all days). A conversion is refreshed when it occurred on or after from_day (UTC),
-- its currency is not the reporting currency (whose factor is always 1), and
--   * its currency is in the set, or
--   * the set holds the reporting currency (every cross rate goes through it) or a currency that is a base of
--     exchange_rates (the caller says a base changed).
-- Under the exclusive analytics lock, like a recompute (schemas/0005_analytics_stage.sql says why the result is
-- what a recompute gives). Returns how many conversions were refreshed.
CREATE FUNCTION crm_rates_changed(currencies text[], from_day date) RETURNS bigint
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    reporting_ char(3);
    codes_ text[];
    everything boolean;
    todo bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('crm_analytics'), 0);
    PERFORM crm_analytics_session();
    SELECT s.reporting_currency INTO reporting_ FROM attribution_settings s;
    SELECT coalesce(array_agg(DISTINCT upper(btrim(x))), '{}') INTO codes_ FROM unnest(currencies) x WHERE x IS NOT NULL;
    everything := reporting_ = ANY(codes_)
                  OR EXISTS (SELECT 1 FROM exchange_rates e WHERE e.base = ANY(codes_::bpchar[]));

    DELETE FROM crm_attr_todo;
    INSERT INTO crm_attr_todo (conversion_id, occurred_at)
    SELECT t.touchpoint_id, t.occurred_at FROM customer_touchpoints t
    WHERE t.touch_type = 'conversion'
      AND (from_day IS NULL OR t.occurred_at >= (from_day::timestamp AT TIME ZONE 'UTC'))
      AND t.currency IS DISTINCT FROM reporting_  -- its factor is 1, whatever the rates
      AND (everything OR t.currency = ANY(codes_::bpchar[]));
    GET DIAGNOSTICS todo = ROW_COUNT;
    IF todo = 0 THEN
        RETURN 0;
    END IF;
    PERFORM crm_attribution_refresh();

    DELETE FROM crm_ab_todo;
    INSERT INTO crm_ab_todo (ab_test_id, unit, lead_id, anonymous_id)
    SELECT DISTINCT u.ab_test_id, u.unit, u.lead_id, u.anonymous_id
    FROM (SELECT DISTINCT crm_effective_lead(t.lead_id, t.tenant_id, t.anonymous_id) AS lead_id, t.anonymous_id
          FROM crm_attr_todo a
          JOIN customer_touchpoints t ON t.touchpoint_id = a.conversion_id AND t.occurred_at = a.occurred_at) c
    JOIN ab_test_units u ON u.unit = crm_unit_key(c.lead_id, c.anonymous_id);  -- the unit with stitching (0008)
    PERFORM crm_ab_refresh();
    RETURN todo;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        -- The analytics stage (run by the writers) converts revenue with crm_fx_factor.
        GRANT SELECT ON exchange_rates TO crm_ingest_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_analytics') THEN
        GRANT SELECT ON exchange_rates TO crm_ingest_analytics;
    END IF;
END
$$;
