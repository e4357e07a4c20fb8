-- Identity claims kept only for linked visitors; every other claim is read from the touchpoints themselves.
--
-- A claim (0008) is a touchpoint carrying both an anonymous_id and a lead_id. identity_claims held every lead's
-- earliest claim of every visitor, and the analytics stage upserted a row for every such touchpoint: a random-key
-- insert with a conflict check, sorted, returned and de-duplicated again, a third of the stage's time on data where
-- touchpoints bring new device ids (~8 µs per claim, on the stage's one thread). But a claim matters only for a
-- visitor that also has anonymous-only touchpoints (the only one a link is made for); the touchpoints are stored
-- anyway, and an index on their claims (kept by the writers, in parallel) finds a visitor's claims when needed.
--
-- - identity_claims becomes a view of the touchpoints (same columns, same rows: each lead's earliest claim of each
--   visitor, by occurred_at, then touchpoint_id).
-- - The table is renamed identity_link_claims and holds the claims of linked visitors only: the stage upserts the
--   claims of a visitor that has a link, as before, and elects it again when they changed; a visitor's claims are
--   copied from the touchpoints into it once, in the statement that links it. So electing a linked visitor still
--   reads one row per claiming lead, never its whole history (a device many leads share, or a constant anonymous id).
-- - A visitor without a link that is claimed in a run is checked for anonymous-only touchpoints as before (one index
--   descent per monthly partition for each such visitor of the run; before 0020, only for a new or earlier claim),
--   and a visitor without a link whose anonymous-only touchpoints arrive in a run asks the claim index whether it
--   was claimed (one descent per monthly partition for each such visitor of the run, where the table took one probe).
--   That is the price: per visitor and run, not per claim, but multiplied by the months retained.
-- Claims are read from every stored touchpoint, including those committed after the batches a run applies (their
-- own run finds the claim kept already): the links are what a recompute gives, as before.
--
-- The functions are edited in place (their SET timezone = 'UTC' of 0016 and jit = off stay): each pattern below must
-- match the function's current definition exactly as often as said, or the migration stops.
-- The index is built inside the migration's transaction: writers wait for it (on a large database, as long as an
-- index build of the touchpoints' claims takes).
-- Forward-only: never edit this file once released.

-- No analytics stage runs while the tables and functions change under it.
SELECT pg_advisory_xact_lock(hashtext('crm_analytics'), 0);

CREATE INDEX customer_touchpoints_claim_idx ON customer_touchpoints (anonymous_id, occurred_at)
    WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL;

-- Replaces the `times` matches of the regular expression `old` in the definition of `fn` by `new`; stops the
-- migration if it holds another number of them (the definition is not the one this migration was written against).
CREATE FUNCTION crm_edit_function(fn regprocedure, times int, old text, new text, migration text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    def text := pg_get_functiondef(fn);
    found int := (SELECT count(*) FROM regexp_matches(def, old, 'g'));
BEGIN
    IF found IS DISTINCT FROM times THEN
        RAISE EXCEPTION 'migration %: % holds % matches of "%", expected %', migration, fn, found, old, times;
    END IF;
    EXECUTE regexp_replace(def, old, new, 'g');
END
$$;

-- The claims' upsert keeps the claims of linked visitors only; a visitor whose kept claims changed is elected again.
SELECT crm_edit_function('crm_identity_apply()', 1,
    '-- Visitors with a new claim, or with an earlier claim of a lead that had claimed them already\.',
    $new$-- Claims of linked visitors are kept (each lead's earliest); a visitor whose kept claims changed is elected again.$new$,
    '0020');
SELECT crm_edit_function('crm_identity_apply()', 1, 'INSERT INTO identity_claims AS c',
                         'INSERT INTO identity_link_claims AS c', '0020');
SELECT crm_edit_function('crm_identity_apply()', 1,
    'FROM crm_new_touchpoints\n        WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL\n        ORDER BY',
    $new$FROM crm_new_touchpoints n
        WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL
          AND EXISTS (SELECT 1 FROM identity_links l
                      WHERE l.tenant = coalesce(n.tenant_id, '') AND l.anonymous_id = n.anonymous_id)
        ORDER BY$new$, '0020');
SELECT crm_edit_function('crm_identity_apply()', 1, 'FROM claimed;\n', $new$FROM claimed;
    -- Visitors without a link claimed now: linked below if they have anonymous-only touchpoints (0020).
    INSERT INTO crm_identity_claimed
    SELECT DISTINCT coalesce(n.tenant_id, ''), n.anonymous_id FROM crm_new_touchpoints n
    WHERE n.lead_id IS NOT NULL AND n.anonymous_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM identity_links l
                      WHERE l.tenant = coalesce(n.tenant_id, '') AND l.anonymous_id = n.anonymous_id);
$new$, '0020');
-- Anonymous-only touchpoints of a visitor without a link: whether it was claimed is asked of the claim index, once
-- per visitor of the run (a subquery PostgreSQL keeps per row: a join with the view would read every claim stored).
SELECT crm_edit_function('crm_identity_apply()', 1,
    'FROM \(SELECT coalesce\(tenant_id, ..\) AS tenant, anonymous_id FROM crm_new_touchpoints\n          WHERE lead_id IS NULL',
    $new$FROM (SELECT DISTINCT coalesce(tenant_id, '') AS tenant, anonymous_id FROM crm_new_touchpoints
          WHERE lead_id IS NULL$new$, '0020');
SELECT crm_edit_function('crm_identity_apply()', 1,
    'AND EXISTS \(SELECT 1 FROM identity_claims c WHERE c.tenant = n.tenant AND c.anonymous_id = n.anonymous_id\);',
    $new$AND EXISTS (SELECT 1 FROM customer_touchpoints c
                  WHERE c.lead_id IS NOT NULL AND c.anonymous_id = n.anonymous_id AND coalesce(c.tenant_id, '') = n.tenant
                  OFFSET 0);$new$, '0020');
-- The election reads a linked visitor's kept claims, and the claims of a visitor it links now from the touchpoints.
SELECT crm_edit_function('crm_identity_apply()', 1,
    'count\(\*\) OVER \(\) AS claims FROM identity_claims c\n',
    $new$count(*) OVER () AS claims
            FROM (SELECT * FROM identity_link_claims k WHERE v.linked
                  UNION ALL SELECT * FROM identity_claims k WHERE NOT v.linked) c
$new$, '0020');
-- The claims of a visitor linked now are kept from now on.
SELECT crm_edit_function('crm_identity_apply()', 1,
    '\n    \)\n    INSERT INTO crm_identity_changes ',
    $new$
    ), keep AS (
        INSERT INTO identity_link_claims (tenant, anonymous_id, lead_id, first_at, first_touchpoint_id)
        SELECT c.tenant, c.anonymous_id, c.lead_id, c.first_at, c.first_touchpoint_id
        FROM elected e
        CROSS JOIN LATERAL (SELECT * FROM identity_claims c  -- per visitor: OFFSET 0 keeps it from a join
                            WHERE c.tenant = e.tenant AND c.anonymous_id = e.anonymous_id OFFSET 0) c
        WHERE e.old_lead IS NULL
        ON CONFLICT (tenant, anonymous_id, lead_id) DO NOTHING
    )
    INSERT INTO crm_identity_changes $new$, '0020');

SELECT crm_edit_function('crm_analytics_recompute()', 1, 'ab_test_variant_stats, identity_claims,',
                         'ab_test_variant_stats, identity_link_claims,', '0020');
SELECT crm_edit_function('crm_analytics_recompute()', 1,
    -- the comment and the INSERT INTO identity_claims that follows it, up to its ORDER BY
    '\n    -- The identities in two statements: every lead.s earliest claim, then each visitor.s first\.\n.*?touchpoint_id;\n',
    $new$
    -- The links: each visitor's first claim (identity_claims: every lead's earliest, a view since 0020), then the
    -- claims of the linked visitors, kept.
$new$, '0020');
-- The links and the kept claims of the linked visitors in one statement: one snapshot (a claim committed in between
-- would be kept without its link being elected with it, and its own stage run would change nothing).
SELECT crm_edit_function('crm_analytics_recompute()', 1,
    '(INSERT INTO identity_links \(tenant, anonymous_id, lead_id, linked_at, link_touchpoint_id, claims,\n.*?c\.first_touchpoint_id, c\.lead_id);\n',
    $new$WITH links AS (
    \1
    RETURNING tenant, anonymous_id
    )
    INSERT INTO identity_link_claims
    SELECT c.* FROM identity_claims c JOIN links l ON l.tenant = c.tenant AND l.anonymous_id = c.anonymous_id;
$new$, '0020');

ALTER TABLE identity_claims RENAME TO identity_link_claims;
DELETE FROM identity_link_claims c
WHERE NOT EXISTS (SELECT 1 FROM identity_links l WHERE l.tenant = c.tenant AND l.anonymous_id = c.anonymous_id);
CREATE VIEW identity_claims AS
SELECT DISTINCT ON (coalesce(tenant_id, ''), anonymous_id, lead_id)
       coalesce(tenant_id, '') AS tenant, anonymous_id, lead_id, occurred_at AS first_at,
       touchpoint_id AS first_touchpoint_id
FROM customer_touchpoints
WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL
ORDER BY coalesce(tenant_id, ''), anonymous_id, lead_id, occurred_at, touchpoint_id;

-- The view is read by the stage (the writer's role) and by the reports; the kept claims are the stage's to write
-- (the grants the table had, stated again for an administrator who re-runs the grants of the migrations).
DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('crm_ingest_writer', 'crm_ingest_analytics') LOOP
        EXECUTE format('GRANT SELECT ON identity_claims, identity_link_claims TO %I', r);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        GRANT INSERT, UPDATE, DELETE ON identity_link_claims TO crm_ingest_writer;
    END IF;
END
$$;

DROP FUNCTION crm_edit_function(regprocedure, int, text, text, text);
