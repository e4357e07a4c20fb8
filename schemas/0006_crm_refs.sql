-- CRM ids as the CRM writes them. A lead or campaign the CRM keys by text ("L-1001", "C-42", a UUID) is kept
-- as written in lead_ref / campaign_ref, and lead_id / campaign_id hold the key derived from it: the negative
-- of the first 63 bits of SHA-256('crm-ingest:<kind>:<ref>') (transform/normalize/crm_ref.h computes the same
-- when it normalizes). Everything keyed by those bigint columns (attribution paths and credits, A/B units,
-- communication_metrics, the indexes) therefore works unchanged; integer ids of the CRM stay >= 1 and never
-- meet a derived key. Forward-only: never edit this file once released.

-- The derived key, for queries ("WHERE lead_id = crm_ref_key('lead', 'L-1001')") and for registering a
-- campaign the CRM keys by text.
-- The reference is taken as the normalizer takes it: blanks around it trimmed, a UUID in lower case.
CREATE FUNCTION crm_ref_key(kind text, ref text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    WITH r AS (SELECT CASE WHEN t ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN lower(t) ELSE t END AS t
               FROM (SELECT btrim(ref, E' \t') AS t) s)
    SELECT -greatest(1, ('x' || encode(substr(sha256(convert_to('crm-ingest:' || kind || ':' || r.t, 'UTF8')), 1, 8),
                                      'hex'))::bit(64)::bigint & 9223372036854775807)
    FROM r
$$;

-- The same columns and rules on both event tables (their CHECKs on lead_id/campaign_id were >= 1).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['communications', 'customer_touchpoints'] LOOP
        EXECUTE format($f$
            ALTER TABLE %1$I
                ADD COLUMN lead_ref text,
                ADD COLUMN campaign_ref text,
                DROP CONSTRAINT %1$s_lead_id_check,
                DROP CONSTRAINT %1$s_campaign_id_check,
                ADD CONSTRAINT %1$s_lead_id_check
                    CHECK (lead_id >= 1 OR (lead_id <= -1 AND lead_ref IS NOT NULL)),
                ADD CONSTRAINT %1$s_campaign_id_check
                    CHECK (campaign_id >= 1 OR (campaign_id <= -1 AND campaign_ref IS NOT NULL)),
                ADD CONSTRAINT %1$s_refs_check
                    CHECK ((lead_ref IS NULL OR (lead_id <= -1 AND octet_length(lead_ref) BETWEEN 1 AND 128)) AND
                           (campaign_ref IS NULL OR
                            (campaign_id <= -1 AND octet_length(campaign_ref) BETWEEN 1 AND 128)))
        $f$, t);
    END LOOP;
END
$$;

-- The campaign's reference beside its derived key in the daily counts, so they read as the CRM wrote them.
ALTER TABLE communication_metrics ADD COLUMN campaign_ref text;
-- A referenced campaign's text, found by its key (report attribution --by campaign).
CREATE INDEX communication_metrics_campaign_ref_idx ON communication_metrics (campaign_id) WHERE campaign_ref IS NOT NULL;

-- A campaign the CRM keys by text is registered under its derived key:
--   INSERT INTO campaigns (campaign_id, campaign_ref, name) VALUES (crm_ref_key('campaign', 'C-42'), 'C-42', 'Spring');
ALTER TABLE campaigns
    ADD COLUMN campaign_ref text,
    DROP CONSTRAINT campaigns_campaign_id_check,
    ADD CONSTRAINT campaigns_campaign_id_check
        CHECK (CASE WHEN campaign_ref IS NULL THEN campaign_id >= 1
                    ELSE campaign_id = crm_ref_key('campaign', campaign_ref) END);

