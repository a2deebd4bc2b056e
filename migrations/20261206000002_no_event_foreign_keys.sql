-- The winners' commit is what bounds a worker's drain (docs/BENCHMARKS.md),
-- and per row it ran a foreign-key trigger for `reservations` and another
-- for `holdings`: a lookup of the event's row, under a share lock, for each
-- winner — about 9 µs of the ~36 µs a winner costs PostgreSQL, measured.
--
-- Both are enforced by construction instead: every insert into either
-- table runs under a lock of its event's row, taken by the statement that
-- inserts (`db::commit_winners`, `db::commit_event_guarded`: the row is read
-- FOR UPDATE, and a winner is written only joined to it), and no event is
-- ever deleted.
ALTER TABLE reservations DROP CONSTRAINT IF EXISTS reservations_event_id_fkey;
ALTER TABLE holdings DROP CONSTRAINT IF EXISTS holdings_event_id_fkey;
