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
-- crm_ensure_partitions made each month's pair in turn, communications then touchpoints: where a month's
-- communications partition existed (or stayed in the DEFAULT partition, 0014) and its touchpoints partition did not,
-- it held the touchpoints' exclusive lock when it asked for the communications' one for the next month — the order
-- again reversed. It now makes every communications month of its window first, then every touchpoints month.
-- crm_ensure_month_partition returns false, as for a partition it found, when its CREATE meets one another session
-- made meanwhile (42P07): a name looked up and missed earlier in the session can stay cached as missing past the
-- advisory lock, and the batch was refused for good.
-- The functions are edited in place (grants, SECURITY DEFINER and search_path stay): the texts replaced must stand
-- in them exactly as 0001, 0014 and 0017 wrote them, or the migration stops.
-- Forward-only: never edit this file once released.
DO $do$
DECLARE
    def text := pg_get_functiondef('crm_retention_cutoff_for_write()'::regprocedure);
    edited text := replace(def, 'ONLY customer_touchpoints, ONLY communications IN ROW EXCLUSIVE MODE',
                           'ONLY communications, ONLY customer_touchpoints IN ROW EXCLUSIVE MODE');
BEGIN
    IF edited = def THEN
        RAISE EXCEPTION 'migration 0022: crm_retention_cutoff_for_write() does not lock the parents as 0017 did';
    END IF;
    EXECUTE edited;

    def := pg_get_functiondef('crm_ensure_partitions(integer, integer)'::regprocedure);
    edited := replace(def, $o$    LOOP
        IF crm_ensure_month_partition('communications', m) THEN created := created + 1; END IF;
        IF crm_ensure_month_partition('customer_touchpoints', m) THEN created := created + 1; END IF;
    END LOOP;$o$, $n$    LOOP
        IF crm_ensure_month_partition('communications', m) THEN created := created + 1; END IF;
    END LOOP;
    -- Then the touchpoints' months (0022: communications first, whatever exists already).
    FOR m IN SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => months_back),
                                    date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => months_ahead),
                                    interval '1 month')::date
    LOOP
        IF crm_ensure_month_partition('customer_touchpoints', m) THEN created := created + 1; END IF;
    END LOOP;$n$);
    IF edited = def THEN
        RAISE EXCEPTION 'migration 0022: crm_ensure_partitions() does not make the months as 0001 did';
    END IF;
    EXECUTE edited;

    def := pg_get_functiondef('crm_ensure_month_partition(regclass, date)'::regprocedure);
    edited := replace(def, $o$    EXCEPTION WHEN check_violation THEN$o$, $n$    EXCEPTION WHEN duplicate_table THEN
        -- Made by another session meanwhile (see 0022).
        RETURN false;
    WHEN check_violation THEN$n$);
    IF edited = def OR position('WHEN duplicate_table' IN def) > 0 THEN
        RAISE EXCEPTION 'migration 0022: crm_ensure_month_partition() does not catch as 0014 did';
    END IF;
    EXECUTE edited;
END
$do$;
