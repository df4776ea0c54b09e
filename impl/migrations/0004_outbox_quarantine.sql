-- Outbox entries that cannot be published (they do not decode, or cannot be encoded), moved
-- out of the outbox with their error so the relay goes on with the next. Kept for an operator
-- to inspect; nothing reads them back into the outbox.

CREATE TABLE outbox_quarantine (
    seq bigint PRIMARY KEY,
    subject text NOT NULL,
    -- The payload as it stood in the outbox (text: it may not be what the event should be).
    payload text NOT NULL,
    error text NOT NULL,
    written_at timestamptz NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);
