-- Holds (docs/HOLDS.md): an event with hold_seconds holds each won seat
-- until expires_at; the buyer purchases it, cancels it, or lets it expire,
-- and a cancelled or expired hold gives its seats back.
--
-- events.confirmed keeps its meaning for the capacity guard: the seats
-- taken (held, purchased, or confirmed in an event without holds); a
-- release subtracts from it in the same transaction that moves the row out
-- of 'held', so each release counts once. purchased ≤ confirmed.
ALTER TABLE events
    ADD COLUMN hold_seconds INTEGER CHECK (hold_seconds BETWEEN 1 AND 86400),
    ADD COLUMN purchased INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN released INTEGER NOT NULL DEFAULT 0 CHECK (released >= 0),
    ADD CONSTRAINT purchased_within_taken CHECK (purchased >= 0 AND purchased <= confirmed);

ALTER TABLE reservations
    ADD COLUMN state TEXT NOT NULL DEFAULT 'confirmed'
        CHECK (state IN ('confirmed', 'held', 'purchased', 'expired', 'cancelled')),
    ADD COLUMN expires_at TIMESTAMPTZ,
    ADD COLUMN payment_ref TEXT CHECK (length(payment_ref) <= 200),
    ADD COLUMN settled_at TIMESTAMPTZ,
    ADD CONSTRAINT held_until CHECK (state <> 'held' OR expires_at IS NOT NULL);

-- The sweeper's question, per event: the holds due, oldest first.
CREATE INDEX reservations_held ON reservations (event_id, expires_at) WHERE state = 'held';
