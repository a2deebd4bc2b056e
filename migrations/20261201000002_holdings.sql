-- Each user's confirmed quantity per event, kept by the worker's commit in
-- the same statement that inserts the reservations. The CHECK makes
-- PostgreSQL itself refuse a write that would put a user over the event's
-- per-user limit, whatever Redis believed (invariant 2), as
-- `confirmed_within_capacity` refuses an oversell (invariant 1). The limit
-- is copied into the row so a CHECK can read it (an event's limit never
-- changes after creation).

CREATE TABLE holdings (
    event_id       TEXT NOT NULL REFERENCES events (event_id),
    user_id        TEXT NOT NULL,
    quantity       INTEGER NOT NULL,
    per_user_limit SMALLINT NOT NULL,
    PRIMARY KEY (event_id, user_id),
    CONSTRAINT holding_within_limit CHECK (quantity >= 0 AND quantity <= per_user_limit)
);

-- Holdings of the reservations already written. A user already over the
-- limit (possible before this guard existed) keeps what they hold and can
-- buy nothing more.
INSERT INTO holdings (event_id, user_id, quantity, per_user_limit)
SELECT r.event_id, r.user_id, SUM(r.quantity), GREATEST(e.per_user_limit, SUM(r.quantity))
FROM reservations r JOIN events e USING (event_id)
GROUP BY r.event_id, r.user_id, e.per_user_limit;
