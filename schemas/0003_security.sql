-- Least privilege and tenant isolation.
--
-- Roles (cluster-wide, NOLOGIN; grant them to login roles):
--   crm_ingest_writer     what `crm-ingest serve` needs: COPY/INSERT into the event tables (through its temp
--                         staging tables), read them for de-duplication, upsert communication_metrics, write
--                         and read the ingest_batches ledger, insert dead letters, create monthly partitions
--                         through crm_ensure_month_partition (SECURITY DEFINER). No UPDATE or DELETE on events,
--                         no DDL, no access to other tables.
--   crm_ingest_analytics  read-only: SELECT on every table and view of the schema except the partitions
--                         (read through their parents, where Row Level Security filters the rows).
-- Row Level Security on communications, customer_touchpoints and rejected_events: a reader sees the rows of
-- the tenant named by the tenant_id claim of `request.jwt.claims` (what PostgREST / Supabase set for each
-- request), or, without a tenant claim, only rows without a tenant. The writer's policies let it insert and
-- read for de-duplication; the owner (the migrating role) is not subject to RLS.
--
-- Creating roles needs CREATEROLE: when the migrating role lacks it and the roles do not exist, they are
-- skipped with a NOTICE (create them as an administrator and run this block's GRANTs; see README).

CREATE FUNCTION crm_request_tenant() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'tenant_id',
                    nullif(current_setting('request.jwt.claim.tenant_id', true), ''))
$$;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['crm_ingest_writer', 'crm_ingest_analytics'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION
                -- Another database of the same cluster migrating at the same moment created it.
                WHEN duplicate_object OR unique_violation THEN NULL;
                WHEN insufficient_privilege THEN
                    RAISE NOTICE 'role % does not exist and % may not create it; skipped', r, current_user;
            END;
        END IF;
    END LOOP;
END
$$;

ALTER TABLE communications ENABLE ROW LEVEL SECURITY;
ALTER TABLE customer_touchpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE rejected_events ENABLE ROW LEVEL SECURITY;

-- Every role but the writer and the owner: its tenant's rows only.
CREATE POLICY tenant_read ON communications FOR SELECT
    USING (tenant_id = crm_request_tenant() OR (tenant_id IS NULL AND crm_request_tenant() IS NULL));
CREATE POLICY tenant_read ON customer_touchpoints FOR SELECT
    USING (tenant_id = crm_request_tenant() OR (tenant_id IS NULL AND crm_request_tenant() IS NULL));
CREATE POLICY tenant_read ON rejected_events FOR SELECT
    USING (tenant_id = crm_request_tenant() OR (tenant_id IS NULL AND crm_request_tenant() IS NULL));

-- Partitions are created by the writer when a batch brings a new month: as the owner, with a fixed path.
-- (The schema first: the partition is created there; pg_temp last, so a caller's temp table shadows nothing.)
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION crm_ensure_month_partition(regclass, date) SECURITY DEFINER '
                   'SET search_path = %I, pg_catalog, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION crm_ensure_partitions(integer, integer) SECURITY DEFINER '
                   'SET search_path = %I, pg_catalog, pg_temp', current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION crm_ensure_month_partition(regclass, date) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm_ensure_partitions(integer, integer) FROM PUBLIC;

DO $$
DECLARE
    t text;
    schema_name text := current_schema();
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO crm_ingest_writer', schema_name);
        GRANT SELECT, INSERT ON communications, customer_touchpoints, rejected_events, ingest_batches TO crm_ingest_writer;
        GRANT SELECT, INSERT, UPDATE ON communication_metrics TO crm_ingest_writer;
        GRANT SELECT ON schema_migrations, campaigns, ab_tests TO crm_ingest_writer;
        -- The partition catalog gauge counts the rows of the DEFAULT partitions.
        GRANT SELECT ON communications_default, customer_touchpoints_default TO crm_ingest_writer;
        GRANT EXECUTE ON FUNCTION crm_ensure_month_partition(regclass, date), crm_ensure_partitions(integer, integer)
            TO crm_ingest_writer;
        CREATE POLICY writer_read ON communications FOR SELECT TO crm_ingest_writer USING (true);
        CREATE POLICY writer_insert ON communications FOR INSERT TO crm_ingest_writer WITH CHECK (true);
        CREATE POLICY writer_read ON customer_touchpoints FOR SELECT TO crm_ingest_writer USING (true);
        CREATE POLICY writer_insert ON customer_touchpoints FOR INSERT TO crm_ingest_writer WITH CHECK (true);
        CREATE POLICY writer_read ON rejected_events FOR SELECT TO crm_ingest_writer USING (true);
        CREATE POLICY writer_insert ON rejected_events FOR INSERT TO crm_ingest_writer WITH CHECK (true);
        -- The analytics tables the writer maintains in each batch's transaction (schemas/0002_attribution.sql),
        -- when that migration ran before this one.
        FOREACH t IN ARRAY ARRAY['attribution_credits', 'campaign_attribution_daily', 'ab_test_units',
                                 'ab_test_variant_stats', 'ab_test_message_counts'] LOOP
            IF to_regclass(t) IS NOT NULL THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO crm_ingest_writer', t);
            END IF;
        END LOOP;
        IF to_regclass('attribution_settings') IS NOT NULL THEN
            GRANT SELECT ON attribution_settings TO crm_ingest_writer;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_analytics') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO crm_ingest_analytics', schema_name);
        -- Every table and view but the partitions: a partition read directly escapes its parent's policies.
        -- (No ALTER DEFAULT PRIVILEGES for the same reason: new monthly partitions must stay ungranted; a
        -- later migration that adds a table grants it.)
        FOR t IN SELECT c.relname FROM pg_class c
                 WHERE c.relnamespace = schema_name::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
                   AND NOT c.relispartition LOOP
            EXECUTE format('GRANT SELECT ON %I.%I TO crm_ingest_analytics', schema_name, t);
        END LOOP;
        GRANT EXECUTE ON FUNCTION crm_request_tenant() TO crm_ingest_analytics;
    END IF;
END
$$;
