-- An ab_tests row must describe a test the reports can compute: checked when a row is inserted or updated.
--
-- `ab_tests` is written by operators, by hand or by their own tools, and nothing checked its rows. A weight that
-- is NaN, infinite or negative made `report ab-test` print `chi2 nan` (or a sample-ratio mismatch that is not
-- there), weights of another count than the variants were ignored without a word, a `control_variant` that is not
-- one of the variants was replaced by the first variant, and a conversion window of zero or less counted no
-- conversion. crm_ab_test_problem() says what is wrong with a row (NULL: nothing); the constraint refuses such a
-- row with that text, and `report ab-test` asks the same function about rows stored before this migration (the
-- constraint is NOT VALID: a migration never fails on an operator's data) and refuses them (exit 2).
-- NULL stays allowed where it was: no weights (equal split), no variants list, no control (the first variant), a
-- NULL element of variant_weights (a weight unknown: equal weights for the test).
-- Forward-only: never edit this file once released.
CREATE FUNCTION crm_ab_test_problem(variants text[], variant_weights float8[], control_variant text,
                                    conversion_window interval)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN conversion_window <= interval '0' THEN
            format('conversion_window must be positive (is %s)', conversion_window)
        WHEN variant_weights IS NOT NULL AND variants IS NULL THEN
            'variant_weights without variants: give the variants they weigh'
        WHEN cardinality(variant_weights) <> cardinality(variants) THEN
            format('variant_weights has %s weights for %s variants', cardinality(variant_weights), cardinality(variants))
        WHEN NOT (0 <= ALL (variant_weights) AND 'Infinity'::float8 > ALL (variant_weights)) THEN
            -- PostgreSQL sorts NaN above Infinity: both fail the second test.
            format('variant_weights must be finite numbers >= 0 (are %s)', variant_weights)
        WHEN NOT (0 < ANY (variant_weights)) THEN
            format('variant_weights must hold a weight above 0 (are %s)', variant_weights)
        WHEN control_variant <> ALL (variants) THEN
            format('control_variant %s is not one of the variants %s', quote_literal(control_variant), variants)
    END
$$;

CREATE FUNCTION crm_ab_test_row_valid(ab_test_id text, variants text[], variant_weights float8[],
                                      control_variant text, conversion_window interval)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    problem text := crm_ab_test_problem(variants, variant_weights, control_variant, conversion_window);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'ab_tests row %: %', quote_literal(ab_test_id), problem
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN true;
END
$$;

ALTER TABLE ab_tests ADD CONSTRAINT ab_tests_row_valid
    CHECK (crm_ab_test_row_valid(ab_test_id, variants, variant_weights, control_variant, conversion_window))
    NOT VALID;

-- Resolved in this schema whatever the inserting session's search_path (as 0003 does for the partition functions).
DO $do$
BEGIN
    EXECUTE format('ALTER FUNCTION crm_ab_test_row_valid(text, text[], float8[], text, interval) '
                   'SET search_path = %I, pg_catalog, pg_temp', current_schema());
END
$do$;
