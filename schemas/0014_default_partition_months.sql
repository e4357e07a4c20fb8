-- A month whose rows are in the DEFAULT partition stays there (0001's crm_ensure_month_partition).
--
-- Rows of a month without a partition go to the DEFAULT partition: events older than the partitions kept ready,
-- or of a month past retention that arrived while `partitions retain` had detached its partition (an archive
-- that failed leaves it detached until a later run drops it; retain reports such rows and never touches them).
-- Once that month's table is gone, creating its partition fails (23514: the DEFAULT partition holds rows of it),
-- and the failure came out of every caller: the writer's batch with an event of that month was refused row by
-- row (each such event dead-lettered), and `partitions ensure` / `migrate --months-back` stopped at that month
-- without making the others. The function now leaves such a month in the DEFAULT partition (false: no partition
-- made) and goes on; its events are stored there.
-- Edited in place, as 0011-0013 edited the stage's functions (its SECURITY DEFINER and search_path from 0003
-- stay): the text below must occur exactly once in the function's current definition, or the migration stops.
-- Forward-only: never edit this file once released.
DO $do$
DECLARE
    old_text text := $o$    EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   part_name, parent::text,
                   (first_day::timestamp AT TIME ZONE 'UTC'),
                   ((first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    RETURN true;
$o$;
    new_text text := $n$    BEGIN
        EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       part_name, parent::text,
                       (first_day::timestamp AT TIME ZONE 'UTC'),
                       ((first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    EXCEPTION WHEN check_violation THEN
        -- The DEFAULT partition holds rows of this month: it stays there (see 0014).
        RAISE NOTICE 'the DEFAULT partition of % holds rows of %: that month stays in it', parent, to_char(first_day, 'YYYY-MM');
        RETURN false;
    END;
    RETURN true;
$n$;
    def text := pg_get_functiondef('crm_ensure_month_partition(regclass, date)'::regprocedure);
BEGIN
    IF array_length(string_to_array(def, old_text), 1) <> 2 THEN
        RAISE EXCEPTION 'migration 0014: crm_ensure_month_partition() does not hold exactly one copy of its CREATE TABLE';
    END IF;
    EXECUTE replace(def, old_text, new_text);
END
$do$;
