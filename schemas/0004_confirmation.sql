-- The write path releases a source's position (log checkpoint, Kafka offsets, import success) only once a
-- batch is safe on the cluster, which it learns from the standbys' positions in pg_stat_replication
-- (sinks/postgres/confirmation.md). PostgreSQL shows those positions only to superusers and to roles with
-- the privileges of pg_read_all_stats (a member of pg_monitor; the narrower grant is enough).
--
-- Granting a predefined role needs a superuser, ADMIN OPTION on it or, on PostgreSQL 15, CREATEROLE: when
-- the migrating role has none of them the grant is skipped with a NOTICE; run it as an administrator:
--     GRANT pg_read_all_stats TO crm_ingest_writer;
-- (Without it the writers see standbys but not their positions and confirm nothing: they say so.)
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer')
       AND NOT pg_has_role('crm_ingest_writer', 'pg_read_all_stats', 'USAGE') THEN
        BEGIN
            GRANT pg_read_all_stats TO crm_ingest_writer;
        EXCEPTION
            WHEN insufficient_privilege THEN
                RAISE NOTICE '% may not grant pg_read_all_stats; skipped (an administrator runs: GRANT pg_read_all_stats TO crm_ingest_writer)', current_user;
        END;
    END IF;
END
$$;
