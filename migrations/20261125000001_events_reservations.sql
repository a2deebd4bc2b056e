-- Events on sale and the confirmed reservations of each.
--
-- `events.confirmed` is maintained by the worker's commit in the same
-- statement that inserts reservations; the CHECK makes PostgreSQL itself
-- refuse any write that would sell more than the capacity, whatever Redis
-- believed (invariant 1).

CREATE TABLE events (
    event_id       TEXT PRIMARY KEY CHECK (event_id ~ '^[a-z0-9][a-z0-9-]{0,63}$'),
    name           TEXT NOT NULL,
    capacity       INTEGER NOT NULL CHECK (capacity > 0),
    confirmed      INTEGER NOT NULL DEFAULT 0,
    per_user_limit SMALLINT NOT NULL DEFAULT 4 CHECK (per_user_limit BETWEEN 1 AND 10),
    opens_at       TIMESTAMPTZ,
    closes_at      TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT confirmed_within_capacity CHECK (confirmed >= 0 AND confirmed <= capacity),
    CONSTRAINT window_in_order CHECK (opens_at IS NULL OR closes_at IS NULL OR opens_at < closes_at)
);

-- One row per confirmed reservation: the database sees winners only.
CREATE TABLE reservations (
    reservation_id UUID PRIMARY KEY,
    event_id       TEXT NOT NULL REFERENCES events (event_id),
    user_id        TEXT NOT NULL,
    quantity       SMALLINT NOT NULL CHECK (quantity BETWEEN 1 AND 10),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX reservations_event_user ON reservations (event_id, user_id);
