-- Identity claims read from the touchpoints themselves instead of a table the analytics stage keeps.
--
-- A claim (0008) is a touchpoint carrying both an anonymous_id and a lead_id; identity_claims held every lead's
-- earliest one per visitor, and the stage upserted a row for every such touchpoint: a random-key insert with a
-- conflict check, sorted, returned and de-duplicated again, a third of the stage's time on data where touchpoints
-- bring new device ids (~8 µs per claim, on the stage's one thread). The touchpoints are stored anyway: an index on
-- their claims (kept by the writers, in parallel, ~1-2 µs per row) gives the same answers, and identity_claims
-- becomes a view with the same columns and rows (each lead's earliest claim of each visitor, by occurred_at, then
-- touchpoint_id).
--
-- The stage now elects a visitor's link again only when a claim of the run can change it: the visitor has no link
-- yet (it is linked once it also has anonymous-only touchpoints, as before), or the claim names another lead than
-- the link's (the winner or the count of claiming leads may change), or it is earlier than the link's claim.
-- A claim repeating the linked lead later changes nothing and costs one probe of identity_links.
-- Claims are read from every stored touchpoint, including those committed after the batches a run applies (their
-- own run re-elects the same link): the links are what a recompute gives, as before. Claims of months dropped by
-- `partitions retain` are gone with their touchpoints (a link elected from them stays until its visitor is elected
-- again), as a recompute after the drop already had it.
--
-- The functions are edited in place (their SET timezone = 'UTC' of 0016 and jit = off stay): each pattern below must
-- match the function's current definition exactly as often as said, or the migration stops.
-- Forward-only: never edit this file once released.

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

SELECT crm_edit_function('crm_identity_apply()', 1,
    -- from the comment above the claims' upsert to the end of the statement that follows it
    '\n    -- Visitors with a new claim, or with an earlier claim of a lead that had claimed them already\..*?FROM claimed;\n',
    $new$
    -- Visitors whose link a claim of this run can change (0020): unlinked ones, and linked ones claimed by another
    -- lead or earlier than their link's claim. Their claims are read from identity_claims (a view, 0020).
    INSERT INTO crm_identity_claimed
    SELECT DISTINCT n.tenant, n.anonymous_id
    FROM (SELECT coalesce(tenant_id, '') AS tenant, anonymous_id, lead_id, occurred_at, touchpoint_id
          FROM crm_new_touchpoints WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL) n
    LEFT JOIN identity_links l ON l.tenant = n.tenant AND l.anonymous_id = n.anonymous_id
    WHERE l.lead_id IS NULL OR l.lead_id <> n.lead_id
       OR (n.occurred_at, n.touchpoint_id) < (l.linked_at, l.link_touchpoint_id);
$new$, '0020');

SELECT crm_edit_function('crm_analytics_recompute()', 1, 'ab_test_variant_stats, identity_claims,\s+identity_links;',
                         'ab_test_variant_stats, identity_links;', '0020');
SELECT crm_edit_function('crm_analytics_recompute()', 1,
    -- the comment and the INSERT INTO identity_claims that follows it, up to its ORDER BY
    '\n    -- The identities in two statements: every lead.s earliest claim, then each visitor.s first\.\n.*?touchpoint_id;\n',
    $new$
    -- The links: each visitor's first claim (identity_claims: every lead's earliest, a view since 0020).
$new$, '0020');

DROP TABLE identity_claims;
CREATE VIEW identity_claims AS
SELECT DISTINCT ON (coalesce(tenant_id, ''), anonymous_id, lead_id)
       coalesce(tenant_id, '') AS tenant, anonymous_id, lead_id, occurred_at AS first_at,
       touchpoint_id AS first_touchpoint_id
FROM customer_touchpoints
WHERE lead_id IS NOT NULL AND anonymous_id IS NOT NULL
ORDER BY coalesce(tenant_id, ''), anonymous_id, lead_id, occurred_at, touchpoint_id;

-- Read by the stage (the writer's role) and by the reports, as the table was.
DO $$
DECLARE
    r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('crm_ingest_writer', 'crm_ingest_analytics') LOOP
        EXECUTE format('GRANT SELECT ON identity_claims TO %I', r);
    END LOOP;
END
$$;
