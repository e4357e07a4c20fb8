-- The retention cutoff: events older than what `partitions retain` dropped are refused, not stored again.
--
-- `partitions retain --keep N` detaches and drops the monthly partitions that end on or before its cutoff (the first
-- day of the oldest month kept). Events of a dropped month that arrived again (a re-imported file, a provider's
-- replay, a Kafka re-consume) were stored again: the writer made the month's partition anew, and
-- communication_metrics and ab_test_message_counts (which outlive the rows) counted them a second time.
--
-- retention_cutoff holds the cutoff of the latest retain run, set in the same transaction as each detach (and once
-- per run when nothing was detached), and never lowered by it. From then on:
-- - the writer refuses every event whose occurred_at is before it (a dead letter "older than the retention cutoff
--   YYYY-MM-DD set by partitions retain"), whichever partition would take it, DEFAULT included; its batch's other
--   records are stored as usual. It reads the cutoff with crm_retention_cutoff_for_write() in the batch's own
--   transaction, after taking its locks on both parents, so a retain run that has detached a partition and not yet
--   committed is waited for and its cutoff seen;
-- - crm_ensure_month_partition makes no partition for a month that ends on or before it (false, as for a month that
--   exists): neither the writer nor `partitions ensure` / `migrate --months-back` bring a dropped month back.
-- No row: no retain run recorded one yet (a database older than this migration keeps its earlier runs' drops
-- unrecorded until its next run). Rows already in the DEFAULT partitions are left as they are.
-- crm_ensure_month_partition is edited in place, as 0014 did: the text below must occur exactly once in its current
-- definition (its SECURITY DEFINER and search_path from 0003 stay), or the migration stops.
-- Forward-only: never edit this file once released.

CREATE TABLE retention_cutoff (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    cutoff      date        NOT NULL,  -- events before its midnight (UTC) are refused
    keep_months integer     NOT NULL,  -- the --keep of the run that set it
    set_at      timestamptz NOT NULL DEFAULT now()
);

-- The cutoff for a batch transaction of the writer (NULL: none). The parents are locked first (ROW EXCLUSIVE, what
-- the batch's inserts take anyway): a retain run's DETACH holds ACCESS EXCLUSIVE on its parent until it commits,
-- so the read below, a statement of its own, sees the cutoff that run recorded with the detach.
CREATE FUNCTION crm_retention_cutoff_for_write() RETURNS date
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE ONLY customer_touchpoints, ONLY communications IN ROW EXCLUSIVE MODE;
    RETURN (SELECT cutoff FROM retention_cutoff);
END
$$;

DO $do$
DECLARE
    check_ text := $o$    IF to_regclass(part_name) IS NOT NULL THEN
        RETURN false;
    END IF;
$o$;
    def text := pg_get_functiondef('crm_ensure_month_partition(regclass, date)'::regprocedure);
    role_ text;
BEGIN
    -- The check must stand exactly once: after its first copy, no second one.
    IF position(check_ IN def) = 0 OR position(check_ IN substr(def, position(check_ IN def) + 1)) > 0 THEN
        RAISE EXCEPTION 'migration 0017: crm_ensure_month_partition() does not hold exactly one copy of its partition check';
    END IF;
    EXECUTE replace(def, check_, check_ || $n$    IF (first_day + interval '1 month')::date <= (SELECT cutoff FROM retention_cutoff) THEN
        -- Wholly before the retention cutoff: its events are refused (see 0017).
        RETURN false;
    END IF;
$n$);
    FOREACH role_ IN ARRAY ARRAY['crm_ingest_writer', 'crm_ingest_analytics'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_) THEN
            EXECUTE format('GRANT SELECT ON retention_cutoff TO %I', role_);
        END IF;
    END LOOP;
END
$do$;
