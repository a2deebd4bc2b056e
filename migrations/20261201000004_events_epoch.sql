-- The epoch of an event's Redis state: moved on by every rebuild of that
-- state from PostgreSQL (db.rs, snapshot) and by every reset, each under
-- the event's row lock. The worker commits winners under the epoch they
-- were decided in, and the commit writes only those of the current epoch
-- (db.rs, commit_winners): a decision made in a Redis state from before a
-- rebuild or a reset never lands after it.
ALTER TABLE events ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
-- Redis states built before this column hold 1 in the sentinel: existing
-- events start there, so those states match, and the first rebuild is 2.
UPDATE events SET epoch = 1;
