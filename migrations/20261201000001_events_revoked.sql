-- Confirmations Redis made that PostgreSQL's capacity guard refused (the
-- worker turned them into `sold_out` rejections). Counted in the same
-- transaction as the guarded commit, so it is exact and survives every
-- crash: anything above 0 means the deciding layer was wrong and the guard
-- rescued the sale; the fault matrix fails on it.
ALTER TABLE events ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked >= 0);
