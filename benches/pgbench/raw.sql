\set n random(0, 9999)
SELECT version AS v FROM raw.tickets WHERE id = decode(lpad(to_hex(:n::int), 24, '0'), 'hex') \gset
UPDATE raw.tickets SET price_cents = 2000, version = version + 1 WHERE id = decode(lpad(to_hex(:n::int), 24, '0'), 'hex') AND version = :v::bigint;
