-- What `crm-ingest rejected replay` needs to write a dead letter's event exactly once, and to settle it as the
-- writer's role.
--
-- idempotency_key: the key the record's event would have had (a webhook source's declared idempotency_key or a
-- standard source's webhook-id, scoped and indexed as the event's provider_event_id / message_id would be:
-- `<source>:<key>` or `<source>:<key>:<index>`). Replay derives the event's id from it, so a dead letter whose
-- webhook was redelivered and stored after a fix is not stored a second time under an id derived from its content.
-- NULL: none (every dead letter written before this migration, and those of sources without a key).
--
-- Replay marks (replayed_at) or deletes the dead letters it wrote, and deletes the copy the writer makes of a row
-- the database refused: the writer's role may set replayed_at (no other column: a dead letter's content cannot
-- be changed) and delete dead letters. No UPDATE or DELETE on events, as before (0003).
-- Forward-only: never edit this file once released.

ALTER TABLE rejected_events ADD COLUMN idempotency_key text;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_ingest_writer') THEN
        GRANT UPDATE (replayed_at), DELETE ON rejected_events TO crm_ingest_writer;
        CREATE POLICY writer_settle ON rejected_events FOR UPDATE TO crm_ingest_writer USING (true) WITH CHECK (true);
        CREATE POLICY writer_delete ON rejected_events FOR DELETE TO crm_ingest_writer USING (true);
    END IF;
END
$$;
