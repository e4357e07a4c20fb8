-- The analytics compute in UTC whoever calls them.
--
-- Their windows are timestamptz +- interval (the lookback before a conversion, a touchpoint's reach after it, an
-- A/B test's conversion window), and an interval in days is wall-clock arithmetic in the session's time zone: 30
-- days are 719 or 721 hours across a daylight-saving change. The analytics stage's sessions are in UTC, but a
-- recompute (`report attribution --recompute`), `rates import` / `rates reporting-currency` and a migration that
-- recomputes ran in the server's or the client's zone (PGTZ, ALTER DATABASE ... SET timezone): a conversion 29 days
-- 23.5 hours after its touchpoint lost its credit on a server in Europe/Berlin, and the stage gave it back the
-- next time it touched the lead. Every function a client calls to maintain the tables, and the ones they call,
-- now run with timezone = 'UTC' (a function's SET applies to the functions it calls too).
-- A later migration that redefines one of them (CREATE OR REPLACE) must state SET timezone = 'UTC' again.
-- Forward-only: never edit this file once released.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.proname IN ('crm_analytics_stage_run', 'crm_analytics_recompute', 'crm_rates_changed',
                            'crm_analytics_apply_batch', 'crm_attribution_refresh', 'crm_ab_refresh',
                            'crm_identity_apply', 'crm_attribution_replace')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET timezone = %L', f, 'UTC');
    END LOOP;
END
$$;
