-- BitRequests: address counter, quotes, on-chain redemptions, the transfer
-- ledger and payment channels. Every replay guard is a key or a
-- conditional UPDATE.
CREATE TABLE bitreq_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE bitreq_quotes (
    address_index BIGINT PRIMARY KEY,
    script_pubkey BYTEA NOT NULL UNIQUE,
    price BIGINT NOT NULL CHECK (price >= 0),
    resource TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX bitreq_quotes_expiry ON bitreq_quotes (expires_at);

CREATE TABLE bitreq_onchain (
    txid BYTEA PRIMARY KEY,
    quote_index BIGINT UNIQUE,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    resource TEXT NOT NULL,
    return_address TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'redeemed')),
    created_at BIGINT NOT NULL
);

CREATE TABLE bitreq_accounts (
    username TEXT PRIMARY KEY,
    public_key BYTEA,
    balance BIGINT NOT NULL DEFAULT 0
        CHECK (balance >= 0 AND balance <= 2100000000000000),
    created_at BIGINT NOT NULL
);

CREATE TABLE bitreq_credits (
    reference TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    created_at BIGINT NOT NULL
);

CREATE TABLE bitreq_transfers (
    id BYTEA PRIMARY KEY,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    resource TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE bitreq_channels (
    deposit_txid BYTEA PRIMARY KEY,
    deposit_vout BIGINT NOT NULL,
    deposit_value BIGINT NOT NULL CHECK (deposit_value >= 0),
    redeem_script BYTEA NOT NULL,
    expiry BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    min_output BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('confirming', 'ready', 'closing', 'closed')),
    last_amount BIGINT NOT NULL DEFAULT 0 CHECK (last_amount >= 0),
    latest_payment BYTEA,
    close_txid BYTEA,
    created_at BIGINT NOT NULL
);
CREATE INDEX bitreq_channels_state ON bitreq_channels (state);

CREATE TABLE bitreq_channel_spends (
    token BYTEA PRIMARY KEY,
    deposit_txid BYTEA NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    increment BIGINT NOT NULL CHECK (increment >= 0),
    redeemed BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
