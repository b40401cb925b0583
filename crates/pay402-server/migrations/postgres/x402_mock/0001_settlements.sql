-- x402_mock: the settlement queue (one row per accepted permit, with the
-- journal of the transactions signed for it) and the revoked access tokens.
CREATE TABLE pay402_x402_mock_settlements (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    token TEXT NOT NULL,
    owner TEXT NOT NULL,
    nonce TEXT NOT NULL,
    digest BYTEA NOT NULL,
    permit_json TEXT NOT NULL,
    resource TEXT NOT NULL,
    pay_to TEXT NOT NULL,
    amount TEXT NOT NULL,
    token_exp BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN
        ('queued', 'permit_sent', 'permit_done', 'transfer_sent', 'settled', 'failed')),
    permit_tx_hash BYTEA,
    permit_tx_raw BYTEA,
    permit_tx_sender TEXT,
    permit_tx_nonce BIGINT,
    transfer_tx_hash BYTEA,
    transfer_tx_raw BYTEA,
    transfer_tx_sender TEXT,
    transfer_tx_nonce BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    failure TEXT,
    updated_at BIGINT NOT NULL
);

-- At most one live (not failed) job per permit nonce: the replay guard.
CREATE UNIQUE INDEX pay402_x402_mock_live_nonce
    ON pay402_x402_mock_settlements (chain_id, token, owner, nonce)
    WHERE state <> 'failed';

CREATE INDEX pay402_x402_mock_due
    ON pay402_x402_mock_settlements (next_attempt_at, id)
    WHERE state NOT IN ('settled', 'failed');

CREATE TABLE pay402_x402_mock_revoked (
    jti BYTEA PRIMARY KEY,
    exp BIGINT NOT NULL,
    reason TEXT NOT NULL
);
