-- Canonical event tables, the dead-letter table, the batch ledger and the metric tables.
-- Forward-only: never edit this file once released; add a new numbered migration instead.

CREATE TABLE communications (
    event_id            uuid        NOT NULL,
    occurred_at         timestamptz NOT NULL,
    received_at         timestamptz NOT NULL,
    lead_id             bigint      CHECK (lead_id >= 1),
    channel             text        NOT NULL CHECK (channel IN ('email','sms','whatsapp','voice','chat','push')),
    direction           text        NOT NULL DEFAULT 'outbound' CHECK (direction IN ('outbound','inbound')),
    status              text        NOT NULL CHECK (status IN ('queued','sent','delivered','opened','clicked','bounced',
                                                               'failed','replied','unsubscribed','resubscribed','spam')),
    provider            text        NOT NULL DEFAULT 'generic',
    provider_message_id text,
    provider_event_id   text,
    email               text,
    phone               text,
    -- The address the event concerns: the e-mail for e-mail, the phone number for the phone channels.
    contact             text GENERATED ALWAYS AS (
                          CASE WHEN channel IN ('email','chat','push') THEN coalesce(email, phone)
                               ELSE coalesce(phone, email) END) STORED,
    campaign_id         bigint      CHECK (campaign_id >= 1),
    ab_test_id          text,
    variant             text,
    url                 text,
    error_code          text,
    error_reason        text,
    metadata            jsonb,
    tenant_id           text,
    UNIQUE (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX communications_lead_idx ON communications (lead_id, occurred_at);
CREATE TABLE communications_default PARTITION OF communications DEFAULT;

CREATE TABLE customer_touchpoints (
    touchpoint_id       uuid        NOT NULL,
    occurred_at         timestamptz NOT NULL,
    received_at         timestamptz NOT NULL,
    lead_id             bigint      CHECK (lead_id >= 1),
    anonymous_id        text,
    message_id          text,
    touch_type          text        NOT NULL CHECK (touch_type IN ('page_view','ad_click','email_click','form_submit','call',
                                                                   'chat','conversion','experiment_exposure','other')),
    utm_source          text,
    utm_medium          text,
    utm_campaign        text,
    utm_term            text,
    utm_content         text,
    gclid               text,
    fbclid              text,
    msclkid             text,
    landing_url         text,
    referrer            text,
    channel_group       text        NOT NULL CHECK (channel_group IN ('Paid Search','Organic Search','Paid Social',
                                                   'Organic Social','Email','Referral','Direct','Display','Affiliates',
                                                   'SMS','Other')),
    campaign_id         bigint      CHECK (campaign_id >= 1),
    is_conversion       boolean     NOT NULL DEFAULT false,
    conversion_type     text,
    conversion_value    numeric(20,6) CHECK (conversion_value >= 0),
    currency            char(3),
    ab_test_id          text,
    variant             text,
    metadata            jsonb,
    tenant_id           text,
    CHECK (lead_id IS NOT NULL OR anonymous_id IS NOT NULL),
    UNIQUE (touchpoint_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX customer_touchpoints_lead_idx ON customer_touchpoints (lead_id, occurred_at);
CREATE TABLE customer_touchpoints_default PARTITION OF customer_touchpoints DEFAULT;

-- Dead letters: every record that broke a rule, with where it came from and why. rejection_id is derived
-- from (source, raw) so that re-reading the same input does not record it twice.
CREATE TABLE rejected_events (
    rejection_id  uuid        PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    source        text        NOT NULL,
    reason        text        NOT NULL,
    raw           text        NOT NULL,  -- the record as text (invalid UTF-8 bytes shown as U+FFFD)
    raw_bytes     bytea,                 -- the exact bytes, kept only when raw could not show them
    tenant_id     text,
    replayed_at   timestamptz
);
CREATE INDEX rejected_events_received_idx ON rejected_events (received_at);

-- The batch ledger: one row per committed batch, written in the batch's own transaction. A commit whose
-- outcome is unknown is settled by looking its batch_id up here.
CREATE TABLE ingest_batches (
    batch_id                 uuid        PRIMARY KEY,
    source                   text        NOT NULL,
    source_position          text,
    communications_in        integer     NOT NULL,
    communications_inserted  integer     NOT NULL,
    touchpoints_in           integer     NOT NULL,
    touchpoints_inserted     integer     NOT NULL,
    rejected                 integer     NOT NULL,
    committed_at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ingest_batches_source_idx ON ingest_batches (source, committed_at);

-- Daily counts per campaign/channel/status, bumped only by rows really inserted.
CREATE TABLE communication_metrics (
    day          date    NOT NULL,
    campaign_id  bigint,
    channel      text    NOT NULL,
    status       text    NOT NULL,
    event_count  bigint  NOT NULL DEFAULT 0,
    CONSTRAINT communication_metrics_key UNIQUE NULLS NOT DISTINCT (day, campaign_id, channel, status)
);

CREATE TABLE campaigns (
    campaign_id  bigint      PRIMARY KEY CHECK (campaign_id >= 1),
    name         text,
    channel      text,
    utm_campaign text,
    started_at   timestamptz,
    ended_at     timestamptz,
    metadata     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ab_tests (
    ab_test_id        text        PRIMARY KEY,
    campaign_id       bigint      REFERENCES campaigns (campaign_id),
    name              text,
    variants          text[],
    variant_weights   double precision[],
    control_variant   text,
    conversion_window interval    NOT NULL DEFAULT interval '30 days',
    started_at        timestamptz,
    ended_at          timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Monthly partitions, created ahead by `crm-ingest migrate` / `partitions ensure` and on demand by the
-- writer when a batch brings a new month. Safe to call concurrently.
CREATE FUNCTION crm_ensure_month_partition(parent regclass, month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', month)::date;
    part_name text := format('%s_%s', parent::text, to_char(first_day, 'YYYY_MM'));
BEGIN
    -- One creator at a time per parent; others wait, then see the partition.
    PERFORM pg_advisory_xact_lock(hashtext('crm_ensure_month_partition'), parent::oid::int);
    IF to_regclass(part_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   part_name, parent::text,
                   (first_day::timestamp AT TIME ZONE 'UTC'),
                   ((first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    RETURN true;
END
$$;

CREATE FUNCTION crm_ensure_partitions(months_back int, months_ahead int) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    m date;
BEGIN
    FOR m IN SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => months_back),
                                    date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => months_ahead),
                                    interval '1 month')::date
    LOOP
        IF crm_ensure_month_partition('communications', m) THEN created := created + 1; END IF;
        IF crm_ensure_month_partition('customer_touchpoints', m) THEN created := created + 1; END IF;
    END LOOP;
    RETURN created;
END
$$;
