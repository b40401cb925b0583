-- x402: one record per payment, under the key the token contract itself
-- makes single-use: (network, asset, from, nonce). A reservation is an
-- INSERT ... ON CONFLICT DO NOTHING; a takeover and every later transition
-- a conditional UPDATE on (nonce_key, attempt, state).
CREATE TABLE pay402_x402_payments (
    nonce_key TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'pending', 'settled', 'released')),
    prev_state TEXT,
    attempt BYTEA NOT NULL,
    fingerprint BYTEA NOT NULL,
    payment_id TEXT UNIQUE,
    payer TEXT NOT NULL,
    network TEXT NOT NULL,
    amount TEXT NOT NULL,
    transaction_hash TEXT,
    payment_response TEXT,
    response_status BIGINT,
    response_content_type TEXT,
    response_body BYTEA,
    request TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX pay402_x402_payments_state ON pay402_x402_payments (state, created_at);
CREATE INDEX pay402_x402_payments_state_updated ON pay402_x402_payments (state, updated_at);
