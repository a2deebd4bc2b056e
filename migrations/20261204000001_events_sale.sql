-- The sale generation of an event: 1 when created, moved on by every reset
-- (db.rs, reset_event). A gateway stamps each reservation with the
-- generation it accepted it in, and the Redis state holds the generation it
-- sells (decide.lua): a reservation of a sale that was reset since is
-- rejected, never sold in the new one, however long it waited in the queue.
ALTER TABLE events ADD COLUMN sale INTEGER NOT NULL DEFAULT 1;
