-- Event and user ids compare byte by byte (COLLATE "C"), not by the
-- database's locale. They are identifiers: nothing sorts them for a reader
-- (their order changes only under a locale other than C.UTF-8, whose order
-- is the code points', as UTF-8's bytes are), and their equality is the
-- same either way. What changes is the cost: every winner's commit
-- compares them in the btrees of `holdings` (event, user) and
-- `reservations` (event) and in the commit's grouping, and a locale's
-- comparison copies both strings and calls strcoll where "C" calls memcmp.
-- Measured on the winners' commit statement (instructions of the
-- PostgreSQL backend under callgrind, 40,000 winners in statements of
-- 1,000): 3.4% fewer a winner.
--
-- All of them at once, so that every join between these columns compares
-- under one collation, the one their indexes are built in. The rows stay
-- as they are; the indexes on these columns are rebuilt (and the events'
-- CHECK run again) under an exclusive lock: seconds for a few million rows.
ALTER TABLE events ALTER COLUMN event_id TYPE text COLLATE "C";
ALTER TABLE reservations
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";
ALTER TABLE holdings
    ALTER COLUMN event_id TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";
