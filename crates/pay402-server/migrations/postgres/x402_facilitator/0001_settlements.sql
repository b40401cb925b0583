-- The x402 facilitator's shared settlement state: one claim per EIP-3009
-- authorization (chain, token, from, nonce), and one nonce counter per
-- settling account. A claim is an INSERT ... ON CONFLICT DO NOTHING, a
-- takeover one conditional UPDATE; a nonce is allocated by one UPDATE ...
-- RETURNING on the counter row, in the same transaction that records the
-- signed transaction on the claim.
CREATE TABLE pay402_facilitator_settlements (
    auth_key TEXT PRIMARY KEY,
    chain_id BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('claimed', 'sent', 'succeeded', 'failed')),
    owner BYTEA NOT NULL,
    lease_until BIGINT NOT NULL,
    request TEXT NOT NULL,
    signer TEXT,
    tx_nonce BIGINT,
    transaction_hash TEXT,
    raw_transaction TEXT,
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX pay402_facilitator_settlements_state
    ON pay402_facilitator_settlements (state, created_at);
-- Belt and braces: two claims never hold one transaction nonce.
CREATE UNIQUE INDEX pay402_facilitator_settlements_tx_nonce
    ON pay402_facilitator_settlements (chain_id, signer, tx_nonce)
    WHERE tx_nonce IS NOT NULL;

CREATE TABLE pay402_facilitator_nonces (
    chain_id BIGINT NOT NULL,
    address TEXT NOT NULL,
    next_nonce BIGINT NOT NULL,
    PRIMARY KEY (chain_id, address)
);
