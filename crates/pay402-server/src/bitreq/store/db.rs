//! What the SQLite and PostgreSQL BitRequests stores share: every
//! statement (with `$n` parameters and `TRUE`/`FALSE`, which both databases
//! read), row decoding and value conversions. [`sql_bitreq_store!`]
//! implements both stores from this one text; they differ only in their
//! pool type.
//!
//! A replay row and the balance changes it pays for are written in one SQL
//! transaction; every replay guard is an `INSERT … ON CONFLICT DO NOTHING`
//! whose row count decides (never an error caught inside the transaction,
//! which would abort a PostgreSQL transaction).

use std::time::SystemTime;

use bitcoin::consensus::encode;
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;

use super::{ChannelRecord, ChannelState, OnChainRecord, OnChainState, Quote, StoreError};
use crate::rows::Cols;

pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub(super) fn i64_of(s: Sat) -> Result<i64, StoreError> {
    i64::try_from(s.0).map_err(|_| corrupt("amount out of range"))
}

pub(super) fn sat_of(v: i64) -> Result<Sat, StoreError> {
    u64::try_from(v)
        .map(Sat)
        .map_err(|_| corrupt("negative amount"))
}

pub(super) fn txid_of(bytes: &[u8]) -> Result<Txid, StoreError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| corrupt("txid length"))?;
    Ok(Txid::from_byte_array(arr))
}

fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(what))
}

pub(super) fn time_of(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn unix_of(v: i64) -> UnixTime {
    UnixTime(u64::try_from(v).unwrap_or(0))
}

/// Seconds since the epoch, for `created_at` columns the caller does not set.
pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn is_unique(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(super) fn is_check(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_check_violation())
}

pub(super) fn quote_of(row: &impl Cols) -> Result<Quote, StoreError> {
    Ok(Quote {
        index: u32_of(
            row.int("address_index").map_err(unavailable)?,
            "quote index",
        )?,
        script_pubkey: ScriptBuf::from_bytes(row.bytes("script_pubkey").map_err(unavailable)?),
        price: sat_of(row.int("price").map_err(unavailable)?)?,
        resource: row.text("resource").map_err(unavailable)?,
        created_at: unix_of(row.int("created_at").map_err(unavailable)?),
        expires_at: unix_of(row.int("expires_at").map_err(unavailable)?),
    })
}

pub(super) fn onchain_of(row: &impl Cols) -> Result<OnChainRecord, StoreError> {
    let quote = row.int_opt("quote_index").map_err(unavailable)?;
    Ok(OnChainRecord {
        txid: txid_of(&row.bytes("txid").map_err(unavailable)?)?,
        quote_index: quote.map(|q| u32_of(q, "quote index")).transpose()?,
        amount: sat_of(row.int("amount").map_err(unavailable)?)?,
        resource: row.text("resource").map_err(unavailable)?,
        return_address: row.text_opt("return_address").map_err(unavailable)?,
        state: OnChainState::parse(&row.text("state").map_err(unavailable)?)?,
        created_at: unix_of(row.int("created_at").map_err(unavailable)?),
    })
}

pub(super) fn channel_of(row: &impl Cols) -> Result<ChannelRecord, StoreError> {
    let txid = row.bytes("deposit_txid").map_err(unavailable)?;
    let latest_payment = row
        .bytes_opt("latest_payment")
        .map_err(unavailable)?
        .map(|b| encode::deserialize::<Transaction>(&b).map_err(|_| corrupt("latest payment")))
        .transpose()?;
    let close = row.bytes_opt("close_txid").map_err(unavailable)?;
    let vout = u32_of(row.int("deposit_vout").map_err(unavailable)?, "vout")?;
    Ok(ChannelRecord {
        deposit: OutPoint::new(txid_of(&txid)?, vout),
        deposit_value: sat_of(row.int("deposit_value").map_err(unavailable)?)?,
        redeem_script: ScriptBuf::from_bytes(row.bytes("redeem_script").map_err(unavailable)?),
        expiry: u32_of(row.int("expiry").map_err(unavailable)?, "expiry")?,
        fee: sat_of(row.int("fee").map_err(unavailable)?)?,
        min_output: sat_of(row.int("min_output").map_err(unavailable)?)?,
        state: ChannelState::parse(&row.text("state").map_err(unavailable)?)?,
        last_amount: sat_of(row.int("last_amount").map_err(unavailable)?)?,
        latest_payment,
        close_txid: close.map(|c| txid_of(&c)).transpose()?,
        created_at: unix_of(row.int("created_at").map_err(unavailable)?),
    })
}

/// Why a token was not redeemed, from `(increment, redeemed, channel state)`.
pub(super) fn refusal(
    row: Option<(i64, bool, Option<String>)>,
) -> Result<super::RedeemOutcome, StoreError> {
    use super::RedeemOutcome;
    Ok(match row {
        None => RedeemOutcome::Unknown,
        Some((_, true, _)) => RedeemOutcome::AlreadyRedeemed,
        Some((inc, false, state)) => {
            let state = state
                .as_deref()
                .map(ChannelState::parse)
                .transpose()?
                .unwrap_or(ChannelState::Closed);
            if matches!(state, ChannelState::Ready | ChannelState::Closing) {
                RedeemOutcome::Underpaid {
                    increment: sat_of(inc)?,
                }
            } else {
                RedeemOutcome::NotUsable(state)
            }
        }
    })
}

/// `$1, $2, … $n`.
pub(super) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Implements [`BitreqStore`](super::BitreqStore) for a store type with a
/// `pool` field over database `$db`.
macro_rules! sql_bitreq_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn begin(&self) -> Result<sqlx::Transaction<'static, $db>, StoreError> {
                self.pool.begin().await.map_err(unavailable)
            }

            async fn balance_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                username: &str,
            ) -> Result<Option<Sat>, StoreError> {
                let row: Option<i64> =
                    sqlx::query_scalar("SELECT balance FROM bitreq_accounts WHERE username = $1")
                        .bind(username)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(unavailable)?;
                row.map(sat_of).transpose()
            }
        }

        #[async_trait]
        impl BitreqStore for $store {
            async fn next_address_index(&self) -> Result<u32, StoreError> {
                // All rows, here and below: SQLite commits a statement with
                // `RETURNING` only once it has run to its end.
                let v: Vec<i64> = sqlx::query_scalar(
                    "INSERT INTO bitreq_counters (name, value) VALUES ('address_index', 1)
                     ON CONFLICT (name) DO UPDATE SET value = bitreq_counters.value + 1
                     RETURNING value",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                let v = *v.first().ok_or_else(|| corrupt("address counter"))?;
                let index = v.checked_sub(1).ok_or_else(|| corrupt("address counter"))?;
                u32::try_from(index)
                    .ok()
                    .filter(|i| *i < (1 << 31))
                    .ok_or_else(|| StoreError::Unavailable("address indexes exhausted".into()))
            }

            async fn insert_quote(&self, quote: &Quote) -> Result<(), StoreError> {
                let res = sqlx::query(
                    "INSERT INTO bitreq_quotes
                        (address_index, script_pubkey, price, resource, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(i64::from(quote.index))
                .bind(quote.script_pubkey.as_bytes())
                .bind(i64_of(quote.price)?)
                .bind(&quote.resource)
                .bind(time_of(quote.created_at))
                .bind(time_of(quote.expires_at))
                .execute(&self.pool)
                .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique(&e) => Err(StoreError::Duplicate),
                    Err(e) => Err(unavailable(e)),
                }
            }

            async fn quote_by_script(&self, script: &Script) -> Result<Option<Quote>, StoreError> {
                let row = sqlx::query("SELECT * FROM bitreq_quotes WHERE script_pubkey = $1")
                    .bind(script.as_bytes())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(quote_of).transpose()
            }

            async fn purge_quotes(&self, now: UnixTime) -> Result<u64, StoreError> {
                let res = sqlx::query("DELETE FROM bitreq_quotes WHERE expires_at < $1")
                    .bind(time_of(now))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(res.rows_affected())
            }

            async fn count_quotes(&self) -> Result<u64, StoreError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bitreq_quotes")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn reserve_onchain(
                &self,
                record: &OnChainRecord,
            ) -> Result<Reservation, StoreError> {
                let res = sqlx::query(
                    "INSERT INTO bitreq_onchain
                        (txid, quote_index, amount, resource, return_address, state, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&record.txid.to_byte_array()[..])
                .bind(record.quote_index.map(i64::from))
                .bind(i64_of(record.amount)?)
                .bind(&record.resource)
                .bind(record.return_address.as_deref())
                .bind(record.state.as_str())
                .bind(time_of(record.created_at))
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                if res.rows_affected() == 1 {
                    return Ok(Reservation::Reserved);
                }
                Ok(match self.onchain(&record.txid).await? {
                    Some(existing) => Reservation::TxidUsed(existing),
                    None => Reservation::QuoteTaken,
                })
            }

            async fn release_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
                let res = sqlx::query("DELETE FROM bitreq_onchain WHERE txid = $1")
                    .bind(&txid.to_byte_array()[..])
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn confirm_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
                let res = sqlx::query(
                    "UPDATE bitreq_onchain SET state = 'redeemed'
                     WHERE txid = $1 AND state = 'pending'",
                )
                .bind(&txid.to_byte_array()[..])
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn onchain(&self, txid: &Txid) -> Result<Option<OnChainRecord>, StoreError> {
                let row = sqlx::query("SELECT * FROM bitreq_onchain WHERE txid = $1")
                    .bind(&txid.to_byte_array()[..])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(onchain_of).transpose()
            }

            async fn open_account(
                &self,
                username: &str,
                key: &PublicKey,
            ) -> Result<bool, StoreError> {
                let res = sqlx::query(
                    "INSERT INTO bitreq_accounts (username, public_key, balance, created_at)
                     VALUES ($1, $2, 0, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(username)
                .bind(&key.serialize()[..])
                .bind(unix_now())
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
                let row: Option<(String, Option<Vec<u8>>, i64)> = sqlx::query_as(
                    "SELECT username, public_key, balance FROM bitreq_accounts
                     WHERE username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                row.map(|(username, key, balance)| {
                    Ok(Account {
                        username,
                        public_key: key
                            .map(|k| PublicKey::from_slice(&k).map_err(|_| corrupt("account key")))
                            .transpose()?,
                        balance: sat_of(balance)?,
                    })
                })
                .transpose()
            }

            async fn credit(
                &self,
                username: &str,
                amount: Sat,
                reference: &str,
            ) -> Result<CreditOutcome, StoreError> {
                let amount_i = i64_of(amount)?;
                let mut tx = self.begin().await?;
                let ins = sqlx::query(
                    "INSERT INTO bitreq_credits (reference, username, amount, created_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                )
                .bind(reference)
                .bind(username)
                .bind(amount_i)
                .bind(unix_now())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                if ins.rows_affected() != 1 {
                    let prior: Option<(String, i64)> = sqlx::query_as(
                        "SELECT username, amount FROM bitreq_credits WHERE reference = $1",
                    )
                    .bind(reference)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    let balance = Self::balance_in(&mut tx, username).await?;
                    return Ok(match (prior, balance) {
                        (Some((u, a)), Some(balance)) if u == username && a == amount_i => {
                            CreditOutcome::AlreadyApplied { balance }
                        }
                        (_, None) => CreditOutcome::UnknownAccount,
                        _ => CreditOutcome::ReferenceConflict,
                    });
                }
                let upd = sqlx::query(
                    "UPDATE bitreq_accounts SET balance = balance + $1 WHERE username = $2",
                )
                .bind(amount_i)
                .bind(username)
                .execute(&mut *tx)
                .await;
                match upd {
                    Ok(r) if r.rows_affected() == 1 => {}
                    // Dropping `tx` rolls back the credit row.
                    Ok(_) => return Ok(CreditOutcome::UnknownAccount),
                    Err(e) if is_check(&e) => return Ok(CreditOutcome::LimitExceeded),
                    Err(e) => return Err(unavailable(e)),
                }
                let balance = Self::balance_in(&mut tx, username)
                    .await?
                    .ok_or_else(|| corrupt("account vanished"))?;
                tx.commit().await.map_err(unavailable)?;
                Ok(CreditOutcome::Credited { balance })
            }

            async fn apply_transfer(
                &self,
                t: &TransferRecord,
            ) -> Result<TransferOutcome, StoreError> {
                let amount = i64_of(t.amount)?;
                let key = t.payer_key.serialize();
                let mut tx = self.begin().await?;
                let ins = sqlx::query(
                    "INSERT INTO bitreq_transfers (id, payer, payee, amount, resource, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&t.id[..])
                .bind(&t.payer)
                .bind(&t.payee)
                .bind(amount)
                .bind(&t.resource)
                .bind(time_of(t.created_at))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                if ins.rows_affected() != 1 {
                    return Ok(TransferOutcome::Replayed);
                }
                let debit = sqlx::query(
                    "UPDATE bitreq_accounts SET balance = balance - $1
                     WHERE username = $2 AND public_key = $3 AND balance >= $1",
                )
                .bind(amount)
                .bind(&t.payer)
                .bind(&key[..])
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                if debit.rows_affected() != 1 {
                    let row: Option<(Option<Vec<u8>>, i64)> = sqlx::query_as(
                        "SELECT public_key, balance FROM bitreq_accounts WHERE username = $1",
                    )
                    .bind(&t.payer)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                    // Dropping `tx` rolls back the replay row.
                    return Ok(match row {
                        None => TransferOutcome::UnknownPayer,
                        Some((k, _)) if k.as_deref() != Some(&key[..]) => {
                            TransferOutcome::KeyMismatch
                        }
                        Some((_, balance)) => TransferOutcome::InsufficientBalance {
                            balance: sat_of(balance)?,
                        },
                    });
                }
                let credit = sqlx::query(
                    "INSERT INTO bitreq_accounts (username, public_key, balance, created_at)
                     VALUES ($1, NULL, $2, $3)
                     ON CONFLICT (username) DO UPDATE
                     SET balance = bitreq_accounts.balance + excluded.balance",
                )
                .bind(&t.payee)
                .bind(amount)
                .bind(time_of(t.created_at))
                .execute(&mut *tx)
                .await;
                match credit {
                    Ok(_) => {}
                    Err(e) if is_check(&e) => return Ok(TransferOutcome::LimitExceeded),
                    Err(e) => return Err(unavailable(e)),
                }
                let payer_balance = Self::balance_in(&mut tx, &t.payer)
                    .await?
                    .ok_or_else(|| corrupt("payer vanished"))?;
                tx.commit().await.map_err(unavailable)?;
                Ok(TransferOutcome::Applied { payer_balance })
            }

            async fn insert_channel(&self, c: &ChannelRecord) -> Result<bool, StoreError> {
                let latest = c.latest_payment.as_ref().map(encode::serialize);
                let res = sqlx::query(
                    "INSERT INTO bitreq_channels (deposit_txid, deposit_vout, deposit_value,
                        redeem_script, expiry, fee, min_output, state, last_amount,
                        latest_payment, close_txid, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&c.deposit.txid.to_byte_array()[..])
                .bind(i64::from(c.deposit.vout))
                .bind(i64_of(c.deposit_value)?)
                .bind(c.redeem_script.as_bytes())
                .bind(i64::from(c.expiry))
                .bind(i64_of(c.fee)?)
                .bind(i64_of(c.min_output)?)
                .bind(c.state.as_str())
                .bind(i64_of(c.last_amount)?)
                .bind(latest)
                .bind(c.close_txid.map(|t| t.to_byte_array().to_vec()))
                .bind(time_of(c.created_at))
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn channel(
                &self,
                deposit_txid: &Txid,
            ) -> Result<Option<ChannelRecord>, StoreError> {
                let row = sqlx::query("SELECT * FROM bitreq_channels WHERE deposit_txid = $1")
                    .bind(&deposit_txid.to_byte_array()[..])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(channel_of).transpose()
            }

            async fn channels_in(
                &self,
                states: &[ChannelState],
            ) -> Result<Vec<ChannelRecord>, StoreError> {
                if states.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT * FROM bitreq_channels WHERE state IN ({})
                     ORDER BY created_at, deposit_txid",
                    placeholders(states.len())
                );
                let mut q = sqlx::query(&sql);
                for s in states {
                    q = q.bind(s.as_str());
                }
                let rows = q.fetch_all(&self.pool).await.map_err(unavailable)?;
                rows.iter().map(channel_of).collect()
            }

            async fn set_channel_state(
                &self,
                deposit_txid: &Txid,
                from: ChannelState,
                to: ChannelState,
            ) -> Result<bool, StoreError> {
                let res = sqlx::query(
                    "UPDATE bitreq_channels SET state = $1 WHERE deposit_txid = $2 AND state = $3",
                )
                .bind(to.as_str())
                .bind(&deposit_txid.to_byte_array()[..])
                .bind(from.as_str())
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn record_payment(
                &self,
                deposit_txid: &Txid,
                expected_last: Sat,
                payment: &ChannelPayment,
                payment_tx: &Transaction,
            ) -> Result<PaymentOutcome, StoreError> {
                let mut tx = self.begin().await?;
                let ins = sqlx::query(
                    "INSERT INTO bitreq_channel_spends
                        (token, deposit_txid, amount, increment, redeemed, created_at)
                     VALUES ($1, $2, $3, $4, FALSE, $5)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&payment.token.to_byte_array()[..])
                .bind(&deposit_txid.to_byte_array()[..])
                .bind(i64_of(payment.amount)?)
                .bind(i64_of(payment.increment)?)
                .bind(unix_now())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                if ins.rows_affected() != 1 {
                    return Ok(PaymentOutcome::TokenExists);
                }
                let upd = sqlx::query(
                    "UPDATE bitreq_channels SET last_amount = $1, latest_payment = $2
                     WHERE deposit_txid = $3 AND last_amount = $4 AND state = 'ready'",
                )
                .bind(i64_of(payment.amount)?)
                .bind(encode::serialize(payment_tx))
                .bind(&deposit_txid.to_byte_array()[..])
                .bind(i64_of(expected_last)?)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                if upd.rows_affected() != 1 {
                    // Dropping `tx` rolls back the spend row.
                    return Ok(PaymentOutcome::Stale);
                }
                tx.commit().await.map_err(unavailable)?;
                Ok(PaymentOutcome::Recorded)
            }

            async fn redeem_token(
                &self,
                token: &Txid,
                price: Sat,
            ) -> Result<RedeemOutcome, StoreError> {
                let token_b = token.to_byte_array();
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "UPDATE bitreq_channel_spends SET redeemed = TRUE
                     WHERE token = $1 AND redeemed = FALSE AND increment >= $2
                       AND deposit_txid IN (SELECT deposit_txid FROM bitreq_channels
                                            WHERE state IN ('ready', 'closing'))
                     RETURNING increment, deposit_txid",
                )
                .bind(&token_b[..])
                .bind(i64_of(price)?)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
                if let Some((inc, dep)) = rows.into_iter().next() {
                    return Ok(RedeemOutcome::Redeemed {
                        increment: sat_of(inc)?,
                        deposit_txid: txid_of(&dep)?,
                    });
                }
                // Explain the refusal (nothing was changed).
                let why = sqlx::query(
                    "SELECT s.increment AS increment, s.redeemed AS redeemed, c.state AS state
                     FROM bitreq_channel_spends s
                     LEFT JOIN bitreq_channels c ON c.deposit_txid = s.deposit_txid
                     WHERE s.token = $1",
                )
                .bind(&token_b[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
                let why = why
                    .map(|r| -> Result<_, StoreError> {
                        Ok((
                            r.int("increment").map_err(unavailable)?,
                            r.flag("redeemed").map_err(unavailable)?,
                            r.text_opt("state").map_err(unavailable)?,
                        ))
                    })
                    .transpose()?;
                refusal(why)
            }

            async fn begin_close(
                &self,
                deposit_txid: &Txid,
                from: ChannelState,
                expected_last: Sat,
                close_txid: &Txid,
            ) -> Result<bool, StoreError> {
                let res = sqlx::query(
                    "UPDATE bitreq_channels SET state = 'closing', close_txid = $1
                     WHERE deposit_txid = $2 AND state = $3 AND last_amount = $4",
                )
                .bind(&close_txid.to_byte_array()[..])
                .bind(&deposit_txid.to_byte_array()[..])
                .bind(from.as_str())
                .bind(i64_of(expected_last)?)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }

            async fn abort_close(
                &self,
                deposit_txid: &Txid,
                close_txid: &Txid,
            ) -> Result<bool, StoreError> {
                let res = sqlx::query(
                    "UPDATE bitreq_channels SET state = 'ready', close_txid = NULL
                     WHERE deposit_txid = $1 AND state = 'closing' AND close_txid = $2",
                )
                .bind(&deposit_txid.to_byte_array()[..])
                .bind(&close_txid.to_byte_array()[..])
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
                Ok(res.rows_affected() == 1)
            }
        }
    };
}
pub(super) use sql_bitreq_store;
