-- Secrets every gateway shares, kept where all of them look first: the key
-- that signs status URLs (gateway/receipt.rs), so any gateway can read a
-- receipt another one issued. Random at creation (gen_random_uuid draws
-- from PostgreSQL's strong random source): 32 bytes, 244 of them random.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL CHECK (length(value) >= 16)
);

INSERT INTO secrets (name, value)
VALUES ('status_url_key',
        decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
