-- The order book's reservation and cancellation as one call each (one round trip, where a
-- client-side transaction takes four: BEGIN, the counter, the order write, COMMIT).
--
-- Each function runs the statements the client-side transaction ran, in the same order, in
-- the caller's (implicit) transaction: lock and count the ticket's reservation change, then
-- write the order and its outbox entry. A PL/pgSQL function takes a new snapshot for each
-- statement, as a READ COMMITTED transaction does, so the atomic reservation's check still
-- sees every order committed while it waited for the counter's row lock (one data-modifying
-- `WITH` could not: its snapshot predates the wait). A refusal raises, so the counted change
-- rolls back with it; the error's SQLSTATE says which refusal (`sql.rs` names them), and its
-- DETAIL carries what the client needs to answer.
--
-- The outbox payload is the event's JSON with the reservation number left out: the client
-- sends the text before and after it, and the function joins them around the number it
-- counted. A NULL subject writes no event.

CREATE FUNCTION reserve_ticket(
    p_id bytea,
    p_user_id text,
    p_status text,
    p_expires_at_ms bigint,
    p_ticket_id bytea,
    p_version bigint,
    p_atomic boolean,
    p_subject text,
    p_payload_head text,
    p_payload_tail text
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_changes bigint;
    v_holder bytea;
BEGIN
    INSERT INTO ticket_reservations (ticket_id, changes) VALUES (p_ticket_id, 1)
        ON CONFLICT (ticket_id) DO UPDATE SET changes = ticket_reservations.changes + 1
        RETURNING changes INTO v_changes;
    IF p_atomic THEN
        INSERT INTO orders (id, user_id, status, expires_at_ms, ticket_id, version)
            SELECT p_id, p_user_id, p_status, p_expires_at_ms, p_ticket_id, p_version
            WHERE NOT EXISTS (
                SELECT 1 FROM orders WHERE ticket_id = p_ticket_id AND status <> 'cancelled')
            ON CONFLICT (id) DO NOTHING;
    ELSE
        INSERT INTO orders (id, user_id, status, expires_at_ms, ticket_id, version)
            VALUES (p_id, p_user_id, p_status, p_expires_at_ms, p_ticket_id, p_version)
            ON CONFLICT (id) DO NOTHING;
    END IF;
    IF NOT FOUND THEN
        -- The counter row is still locked: the holder cannot change before the answer.
        IF p_atomic THEN
            SELECT id INTO v_holder FROM orders
                WHERE ticket_id = p_ticket_id AND status <> 'cancelled' LIMIT 1;
            IF v_holder IS NOT NULL THEN
                RAISE EXCEPTION 'ticket reserved' USING
                    ERRCODE = 'TK001', DETAIL = encode(v_holder, 'hex');
            END IF;
        END IF;
        RAISE EXCEPTION 'order exists' USING ERRCODE = 'TK002';
    END IF;
    IF p_subject IS NOT NULL THEN
        INSERT INTO outbox (subject, payload)
            VALUES (p_subject, (p_payload_head || v_changes || p_payload_tail)::json);
    END IF;
    RETURN v_changes;
END
$$;

-- The cancellation: the order's update-if-current at `p_read_version` (every column set, as
-- a save sets them), after counting the ticket's change. When the update matches no row, the
-- version stored now (empty: no such order) is the DETAIL of error TK003.
CREATE FUNCTION cancel_order(
    p_id bytea,
    p_user_id text,
    p_status text,
    p_expires_at_ms bigint,
    p_ticket_id bytea,
    p_read_version bigint,
    p_subject text,
    p_payload_head text,
    p_payload_tail text,
    OUT reservation bigint,
    OUT version bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_stored bigint;
BEGIN
    INSERT INTO ticket_reservations (ticket_id, changes) VALUES (p_ticket_id, 1)
        ON CONFLICT (ticket_id) DO UPDATE SET changes = ticket_reservations.changes + 1
        RETURNING changes INTO reservation;
    UPDATE orders SET user_id = p_user_id, status = p_status, expires_at_ms = p_expires_at_ms,
            ticket_id = p_ticket_id, version = orders.version + 1
        WHERE id = p_id AND orders.version = p_read_version
        RETURNING orders.version INTO version;
    IF NOT FOUND THEN
        SELECT orders.version INTO v_stored FROM orders WHERE id = p_id;
        RAISE EXCEPTION 'order not at the version read' USING
            ERRCODE = 'TK003', DETAIL = coalesce(v_stored::text, '');
    END IF;
    IF p_subject IS NOT NULL THEN
        INSERT INTO outbox (subject, payload)
            VALUES (p_subject, (p_payload_head || reservation || p_payload_tail)::json);
    END IF;
END
$$;
