-- MPP: one row per payment consumed, under the payment itself
-- (method, reference): the Lightning payment hash, or the EVM payer and
-- authorization nonce. The challenge id is recorded beside it. Consuming is
-- one INSERT ... ON CONFLICT DO NOTHING; a row may be pruned an hour after
-- the challenge expired (an expired challenge is refused before this table
-- is asked).
CREATE TABLE pay402_mpp_consumed (
    method TEXT NOT NULL,
    reference TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed_at BIGINT NOT NULL,
    PRIMARY KEY (method, reference)
);

CREATE INDEX pay402_mpp_consumed_expires ON pay402_mpp_consumed (expires_at);
