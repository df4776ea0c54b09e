-- The transactional outbox: events written in the same transaction as their record change,
-- relayed to the broker in `seq` order and deleted once published.

CREATE TABLE outbox (
    seq bigserial PRIMARY KEY,
    subject text NOT NULL,
    -- The event's JSON encoding, kept verbatim (`json`, not `jsonb`).
    payload json NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);

-- Wakes the relay: a notification on channel `outbox:<schema>` when an entry commits.
-- pg_notify folds identical notifications of one transaction into one.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox:' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_written AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_notify();
