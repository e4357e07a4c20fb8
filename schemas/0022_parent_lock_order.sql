-- One order for the two event parents: communications, then customer_touchpoints.
--
-- A batch transaction locked customer_touchpoints, then communications (0017's crm_retention_cutoff_for_write), while
-- whatever creates monthly partitions took them the other way round: crm_ensure_partitions (`partitions ensure`,
-- `migrate`, the start-up check) and the writer's own partition transaction make a month's communications partition
-- first, and CREATE TABLE ... PARTITION OF holds an ACCESS EXCLUSIVE lock on the parent (and its DEFAULT partition)
-- until the transaction ends. A batch holding the touchpoints' lock and asking for the communications' one, against
-- a creator holding the communications' and asking for the touchpoints', was a deadlock: PostgreSQL aborted one of
-- them after deadlock_timeout (a failed batch attempt, or a failed `partitions ensure`). The batch now takes
-- communications first, as the creators, serve's partition check, `partitions retain`'s report and pg_dump (in the
-- order the tables were created) do; the commands that read both take them in this order too
-- (sinks/postgres/README.md).
-- Forward-only: never edit this file once released.

CREATE OR REPLACE FUNCTION crm_retention_cutoff_for_write() RETURNS date
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE ONLY communications, ONLY customer_touchpoints IN ROW EXCLUSIVE MODE;
    RETURN (SELECT cutoff FROM retention_cutoff);
END
$$;
