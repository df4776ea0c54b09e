-- The tickets service's tickets and the orders service's replicas of them.
--
-- Storage choices (the same in every table): an id is its 12 bytes (`bytea`), a price is a
-- whole number of cents, a version or reservation number is a `bigint` that only grows.
-- Unqualified names: the store applies this inside its own schema (search_path).

CREATE TABLE tickets (
    id bytea PRIMARY KEY CHECK (octet_length(id) = 12),
    title text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents > 0 AND price_cents <= 100000000),
    user_id text NOT NULL,
    version bigint NOT NULL CHECK (version >= 0),
    -- The order holding the ticket; a reserved ticket cannot be edited.
    order_id bytea CHECK (octet_length(order_id) = 12),
    -- The last reservation change applied (the orders service's numbering).
    reservation bigint NOT NULL CHECK (reservation >= 0)
);

-- `GET /api/tickets` lists unreserved tickets; owners' listings go by user.
CREATE INDEX tickets_unreserved ON tickets (id) WHERE order_id IS NULL;
CREATE INDEX tickets_by_user ON tickets (user_id);

CREATE TABLE ticket_replicas (
    id bytea PRIMARY KEY CHECK (octet_length(id) = 12),
    title text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents > 0 AND price_cents <= 100000000),
    -- The version of the last event applied; the replica never counts its own saves.
    version bigint NOT NULL CHECK (version >= 0)
);
