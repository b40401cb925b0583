-- L402: the root secret every token's root key is derived from, and one
-- row per token used paid or revoked (answering an unpaid request writes
-- nothing).
CREATE TABLE pay402_l402_secret (
    id SMALLINT PRIMARY KEY CHECK (id = 0),
    secret BYTEA NOT NULL CHECK (octet_length(secret) = 32)
);

CREATE TABLE pay402_l402_tokens (
    token_id BYTEA PRIMARY KEY CHECK (octet_length(token_id) = 32),
    payment_hash BYTEA CHECK (octet_length(payment_hash) = 32),
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    first_used BIGINT NOT NULL
);
