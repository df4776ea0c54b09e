\set n random(0, 9999)
SELECT title AS t, price_cents AS p, user_id AS u, version AS v, reservation AS r FROM fullrow.tickets WHERE id = decode(lpad(to_hex(:n::int), 24, '0'), 'hex') \gset
UPDATE fullrow.tickets SET title = :t, price_cents = 2000, user_id = :u, order_id = NULL, reservation = :r::bigint, version = version + 1 WHERE id = decode(lpad(to_hex(:n::int), 24, '0'), 'hex') AND version = :v::bigint RETURNING version;
