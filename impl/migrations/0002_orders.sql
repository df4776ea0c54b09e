-- The orders service's orders and its per-ticket count of reservation changes.

CREATE TABLE orders (
    id bytea PRIMARY KEY CHECK (octet_length(id) = 12),
    user_id text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('created', 'cancelled', 'awaiting:payment', 'complete')),
    -- Unix milliseconds: exact, and no time zone to get wrong.
    expires_at_ms bigint NOT NULL,
    ticket_id bytea NOT NULL CHECK (octet_length(ticket_id) = 12),
    version bigint NOT NULL CHECK (version >= 0)
);

-- One active order per ticket, whatever the application checked: the backstop that refuses
-- a second reservation even when the check before the insert raced (`racy-reserve`).
CREATE UNIQUE INDEX orders_one_active_per_ticket ON orders (ticket_id)
    WHERE status <> 'cancelled';
CREATE INDEX orders_by_user ON orders (user_id);

-- SPEC.md's `reservation` numbers: +1 for every order created or cancelled on the ticket, in
-- the same transaction as the order write. Writers lock the row (upsert) before touching the
-- ticket's orders, so reservations of one ticket are serialised and numbered without gaps.
CREATE TABLE ticket_reservations (
    ticket_id bytea PRIMARY KEY CHECK (octet_length(ticket_id) = 12),
    changes bigint NOT NULL CHECK (changes > 0)
);
