-- Two copies of the tickets table (as impl/migrations/0001 makes it), 10,000 rows each, for
-- comparing the yardstick's statements with PgStore's on the server alone (see
-- docs/PERFORMANCE.md, "PgStore, 1 connection"). Run in a scratch database:
--   createdb -h 127.0.0.1 -U postgres perf_pgshape
--   psql -h 127.0.0.1 -U postgres -d perf_pgshape -v schema=raw -f setup.sql
--   psql -h 127.0.0.1 -U postgres -d perf_pgshape -v schema=fullrow -f setup.sql
--   pgbench -n -M prepared -h 127.0.0.1 -U postgres -c 1 -T 10 -f raw.sql perf_pgshape
--   pgbench -n -M prepared -h 127.0.0.1 -U postgres -c 1 -T 10 -f full.sql perf_pgshape
CREATE SCHEMA :schema;
SET search_path TO :schema;
CREATE TABLE tickets (
    id bytea PRIMARY KEY CHECK (octet_length(id) = 12),
    title text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents > 0 AND price_cents <= 100000000),
    user_id text NOT NULL,
    version bigint NOT NULL CHECK (version >= 0),
    order_id bytea CHECK (octet_length(order_id) = 12),
    reservation bigint NOT NULL CHECK (reservation >= 0)
);
CREATE INDEX tickets_unreserved ON tickets (id) WHERE order_id IS NULL;
CREATE INDEX tickets_by_user ON tickets (user_id);
INSERT INTO tickets
    SELECT decode(lpad(to_hex(n), 24, '0'), 'hex'), 'ticket ' || n, 1000, 'user-' || n, 0, NULL, 0
    FROM generate_series(0, 9999) AS n;
ANALYZE tickets;
