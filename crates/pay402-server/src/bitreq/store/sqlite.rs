//! SQLite BitRequests store (sqlx), the embedded default.

use async_trait::async_trait;
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{OutPoint, Script, ScriptBuf, Transaction, Txid};
use pay402_core::bitreq::channel::ChannelPayment;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction as SqlTx};

use super::{
    Account, BitreqStore, ChannelRecord, ChannelState, CreditOutcome, OnChainRecord, OnChainState,
    PaymentOutcome, Quote, RedeemOutcome, Reservation, StoreError, TransferOutcome, TransferRecord,
};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS bitreq_counters (
        name TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_quotes (
        address_index INTEGER PRIMARY KEY NOT NULL,
        script_pubkey BLOB NOT NULL UNIQUE,
        price INTEGER NOT NULL CHECK (price >= 0),
        resource TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS bitreq_quotes_expiry ON bitreq_quotes (expires_at)",
    "CREATE TABLE IF NOT EXISTS bitreq_onchain (
        txid BLOB PRIMARY KEY NOT NULL,
        quote_index INTEGER UNIQUE,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        resource TEXT NOT NULL,
        return_address TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'redeemed')),
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_accounts (
        username TEXT PRIMARY KEY NOT NULL,
        public_key BLOB,
        balance INTEGER NOT NULL DEFAULT 0
            CHECK (balance >= 0 AND balance <= 2100000000000000),
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_credits (
        reference TEXT PRIMARY KEY NOT NULL,
        username TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_transfers (
        id BLOB PRIMARY KEY NOT NULL,
        payer TEXT NOT NULL,
        payee TEXT NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        resource TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS bitreq_channels (
        deposit_txid BLOB PRIMARY KEY NOT NULL,
        deposit_vout INTEGER NOT NULL,
        deposit_value INTEGER NOT NULL CHECK (deposit_value >= 0),
        redeem_script BLOB NOT NULL,
        expiry INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        min_output INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('confirming', 'ready', 'closing', 'closed')),
        last_amount INTEGER NOT NULL DEFAULT 0 CHECK (last_amount >= 0),
        latest_payment BLOB,
        close_txid BLOB,
        created_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS bitreq_channels_state ON bitreq_channels (state)",
    "CREATE TABLE IF NOT EXISTS bitreq_channel_spends (
        token BLOB PRIMARY KEY NOT NULL,
        deposit_txid BLOB NOT NULL,
        amount INTEGER NOT NULL CHECK (amount >= 0),
        increment INTEGER NOT NULL CHECK (increment >= 0),
        redeemed INTEGER NOT NULL DEFAULT 0 CHECK (redeemed IN (0, 1)),
        created_at INTEGER NOT NULL
    )",
];

/// A [`BitreqStore`] in SQLite. Safe to share between processes: replay
/// protection, debits and channel updates are SQL constraints and
/// conditional updates (see [`super`]).
///
/// Tables (created on open): `bitreq_counters`, `bitreq_quotes`,
/// `bitreq_onchain`, `bitreq_accounts`, `bitreq_credits`, `bitreq_transfers`,
/// `bitreq_channels`, `bitreq_channel_spends`.
///
/// ```
/// use pay402_server::bitreq::store::{BitreqStore, SqliteBitreqStore};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = SqliteBitreqStore::in_memory().await.unwrap();
/// assert_eq!(store.next_address_index().await.unwrap(), 0);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct SqliteBitreqStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn i64_of(s: Sat) -> Result<i64, StoreError> {
    i64::try_from(s.0).map_err(|_| corrupt("amount out of range"))
}

fn sat_of(v: i64) -> Result<Sat, StoreError> {
    u64::try_from(v)
        .map(Sat)
        .map_err(|_| corrupt("negative amount"))
}

fn txid_of(bytes: &[u8]) -> Result<Txid, StoreError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| corrupt("txid length"))?;
    Ok(Txid::from_byte_array(arr))
}

fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(what))
}

fn time_of(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn unix_of(v: i64) -> UnixTime {
    UnixTime(u64::try_from(v).unwrap_or(0))
}

fn is_unique(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn is_check(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_check_violation())
}

fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name).map_err(unavailable)
}

fn quote_of(row: &SqliteRow) -> Result<Quote, StoreError> {
    Ok(Quote {
        index: u32_of(col(row, "address_index")?, "quote index")?,
        script_pubkey: ScriptBuf::from_bytes(col(row, "script_pubkey")?),
        price: sat_of(col(row, "price")?)?,
        resource: col(row, "resource")?,
        created_at: unix_of(col(row, "created_at")?),
        expires_at: unix_of(col(row, "expires_at")?),
    })
}

fn onchain_of(row: &SqliteRow) -> Result<OnChainRecord, StoreError> {
    let txid: Vec<u8> = col(row, "txid")?;
    let quote: Option<i64> = col(row, "quote_index")?;
    let state: String = col(row, "state")?;
    Ok(OnChainRecord {
        txid: txid_of(&txid)?,
        quote_index: quote.map(|q| u32_of(q, "quote index")).transpose()?,
        amount: sat_of(col(row, "amount")?)?,
        resource: col(row, "resource")?,
        return_address: col(row, "return_address")?,
        state: OnChainState::parse(&state)?,
        created_at: unix_of(col(row, "created_at")?),
    })
}

fn channel_of(row: &SqliteRow) -> Result<ChannelRecord, StoreError> {
    let txid: Vec<u8> = col(row, "deposit_txid")?;
    let latest: Option<Vec<u8>> = col(row, "latest_payment")?;
    let close: Option<Vec<u8>> = col(row, "close_txid")?;
    let state: String = col(row, "state")?;
    let latest_payment = latest
        .map(|b| encode::deserialize::<Transaction>(&b).map_err(|_| corrupt("latest payment")))
        .transpose()?;
    Ok(ChannelRecord {
        deposit: OutPoint::new(txid_of(&txid)?, u32_of(col(row, "deposit_vout")?, "vout")?),
        deposit_value: sat_of(col(row, "deposit_value")?)?,
        redeem_script: ScriptBuf::from_bytes(col(row, "redeem_script")?),
        expiry: u32_of(col(row, "expiry")?, "expiry")?,
        fee: sat_of(col(row, "fee")?)?,
        min_output: sat_of(col(row, "min_output")?)?,
        state: ChannelState::parse(&state)?,
        last_amount: sat_of(col(row, "last_amount")?)?,
        latest_payment,
        close_txid: close.map(|c| txid_of(&c)).transpose()?,
        created_at: unix_of(col(row, "created_at")?),
    })
}

impl SqliteBitreqStore {
    /// Opens (creating if needed) the database file at `path` (WAL mode).
    ///
    /// ```no_run
    /// # async fn f() {
    /// let store = pay402_server::bitreq::store::SqliteBitreqStore::open("bitreq.sqlite").await.unwrap();
    /// # }
    /// ```
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<SqliteBitreqStore, StoreError> {
        let pool = crate::sqlite_pool::file(path).await.map_err(unavailable)?;
        SqliteBitreqStore::from_pool(pool).await
    }

    /// A private in-memory database (tests, demos).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let _store = pay402_server::bitreq::store::SqliteBitreqStore::in_memory().await.unwrap();
    /// # });
    /// ```
    pub async fn in_memory() -> Result<SqliteBitreqStore, StoreError> {
        let pool = crate::sqlite_pool::memory().await.map_err(unavailable)?;
        SqliteBitreqStore::from_pool(pool).await
    }

    /// Uses an existing pool, creating the tables if needed.
    ///
    /// ```no_run
    /// # async fn f(pool: sqlx::SqlitePool) {
    /// let store = pay402_server::bitreq::store::SqliteBitreqStore::from_pool(pool).await.unwrap();
    /// # }
    /// ```
    pub async fn from_pool(pool: SqlitePool) -> Result<SqliteBitreqStore, StoreError> {
        crate::sqlite_pool::create(&pool, SCHEMA)
            .await
            .map_err(unavailable)?;
        Ok(SqliteBitreqStore { pool })
    }

    async fn begin(&self) -> Result<SqlTx<'static, Sqlite>, StoreError> {
        self.pool.begin().await.map_err(unavailable)
    }

    async fn balance_in(
        tx: &mut SqlTx<'static, Sqlite>,
        username: &str,
    ) -> Result<Option<Sat>, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT balance FROM bitreq_accounts WHERE username = ?")
                .bind(username)
                .fetch_optional(&mut **tx)
                .await
                .map_err(unavailable)?;
        row.map(|(b,)| sat_of(b)).transpose()
    }
}

#[async_trait]
impl BitreqStore for SqliteBitreqStore {
    async fn next_address_index(&self) -> Result<u32, StoreError> {
        let (v,): (i64,) = sqlx::query_as(
            "INSERT INTO bitreq_counters (name, value) VALUES ('address_index', 1)
             ON CONFLICT (name) DO UPDATE SET value = value + 1
             RETURNING value",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        let index = v.checked_sub(1).ok_or_else(|| corrupt("address counter"))?;
        u32::try_from(index)
            .ok()
            .filter(|i| *i < (1 << 31))
            .ok_or_else(|| StoreError::Unavailable("address indexes exhausted".into()))
    }

    async fn insert_quote(&self, quote: &Quote) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO bitreq_quotes (address_index, script_pubkey, price, resource, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
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
        let row = sqlx::query("SELECT * FROM bitreq_quotes WHERE script_pubkey = ?")
            .bind(script.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(quote_of).transpose()
    }

    async fn purge_quotes(&self, now: UnixTime) -> Result<u64, StoreError> {
        let res = sqlx::query("DELETE FROM bitreq_quotes WHERE expires_at < ?")
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

    async fn reserve_onchain(&self, record: &OnChainRecord) -> Result<Reservation, StoreError> {
        let res = sqlx::query(
            "INSERT INTO bitreq_onchain (txid, quote_index, amount, resource, return_address, state, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&record.txid.to_byte_array()[..])
        .bind(record.quote_index.map(i64::from))
        .bind(i64_of(record.amount)?)
        .bind(&record.resource)
        .bind(record.return_address.as_deref())
        .bind(record.state.as_str())
        .bind(time_of(record.created_at))
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(Reservation::Reserved),
            Err(e) if is_unique(&e) => match self.onchain(&record.txid).await? {
                Some(existing) => Ok(Reservation::TxidUsed(existing)),
                None => Ok(Reservation::QuoteTaken),
            },
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM bitreq_onchain WHERE txid = ?")
            .bind(&txid.to_byte_array()[..])
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }

    async fn confirm_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE bitreq_onchain SET state = 'redeemed' WHERE txid = ? AND state = 'pending'",
        )
        .bind(&txid.to_byte_array()[..])
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }

    async fn onchain(&self, txid: &Txid) -> Result<Option<OnChainRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM bitreq_onchain WHERE txid = ?")
            .bind(&txid.to_byte_array()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(onchain_of).transpose()
    }

    async fn open_account(&self, username: &str, key: &PublicKey) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO bitreq_accounts (username, public_key, balance, created_at)
             VALUES (?, ?, 0, CAST(strftime('%s', 'now') AS INTEGER))",
        )
        .bind(username)
        .bind(&key.serialize()[..])
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_unique(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let row: Option<(String, Option<Vec<u8>>, i64)> = sqlx::query_as(
            "SELECT username, public_key, balance FROM bitreq_accounts WHERE username = ?",
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
             VALUES (?, ?, ?, CAST(strftime('%s', 'now') AS INTEGER))",
        )
        .bind(reference)
        .bind(username)
        .bind(amount_i)
        .execute(&mut *tx)
        .await;
        match ins {
            Ok(_) => {}
            Err(e) if is_unique(&e) => {
                let prior: Option<(String, i64)> = sqlx::query_as(
                    "SELECT username, amount FROM bitreq_credits WHERE reference = ?",
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
            Err(e) => return Err(unavailable(e)),
        }
        let upd =
            sqlx::query("UPDATE bitreq_accounts SET balance = balance + ? WHERE username = ?")
                .bind(amount_i)
                .bind(username)
                .execute(&mut *tx)
                .await;
        match upd {
            Ok(r) if r.rows_affected() == 1 => {}
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

    async fn apply_transfer(&self, t: &TransferRecord) -> Result<TransferOutcome, StoreError> {
        let amount = i64_of(t.amount)?;
        let key = t.payer_key.serialize();
        let mut tx = self.begin().await?;
        let ins = sqlx::query(
            "INSERT INTO bitreq_transfers (id, payer, payee, amount, resource, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id[..])
        .bind(&t.payer)
        .bind(&t.payee)
        .bind(amount)
        .bind(&t.resource)
        .bind(time_of(t.created_at))
        .execute(&mut *tx)
        .await;
        match ins {
            Ok(_) => {}
            Err(e) if is_unique(&e) => return Ok(TransferOutcome::Replayed),
            Err(e) => return Err(unavailable(e)),
        }
        let debit = sqlx::query(
            "UPDATE bitreq_accounts SET balance = balance - ?
             WHERE username = ? AND public_key = ? AND balance >= ?",
        )
        .bind(amount)
        .bind(&t.payer)
        .bind(&key[..])
        .bind(amount)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if debit.rows_affected() != 1 {
            let row: Option<(Option<Vec<u8>>, i64)> = sqlx::query_as(
                "SELECT public_key, balance FROM bitreq_accounts WHERE username = ?",
            )
            .bind(&t.payer)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            // Dropping `tx` rolls back the replay row.
            return Ok(match row {
                None => TransferOutcome::UnknownPayer,
                Some((k, _)) if k.as_deref() != Some(&key[..]) => TransferOutcome::KeyMismatch,
                Some((_, balance)) => TransferOutcome::InsufficientBalance {
                    balance: sat_of(balance)?,
                },
            });
        }
        let credit = sqlx::query(
            "INSERT INTO bitreq_accounts (username, public_key, balance, created_at)
             VALUES (?, NULL, ?, ?)
             ON CONFLICT (username) DO UPDATE SET balance = balance + excluded.balance",
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
            "INSERT INTO bitreq_channels (deposit_txid, deposit_vout, deposit_value, redeem_script,
                expiry, fee, min_output, state, last_amount, latest_payment, close_txid, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_unique(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn channel(&self, deposit_txid: &Txid) -> Result<Option<ChannelRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM bitreq_channels WHERE deposit_txid = ?")
            .bind(&deposit_txid.to_byte_array()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(channel_of).transpose()
    }

    async fn channels_in(&self, states: &[ChannelState]) -> Result<Vec<ChannelRecord>, StoreError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; states.len()].join(", ");
        let sql = format!(
            "SELECT * FROM bitreq_channels WHERE state IN ({marks}) ORDER BY created_at, deposit_txid"
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
            "UPDATE bitreq_channels SET state = ? WHERE deposit_txid = ? AND state = ?",
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
            "INSERT INTO bitreq_channel_spends (token, deposit_txid, amount, increment, redeemed, created_at)
             VALUES (?, ?, ?, ?, 0, CAST(strftime('%s', 'now') AS INTEGER))",
        )
        .bind(&payment.token.to_byte_array()[..])
        .bind(&deposit_txid.to_byte_array()[..])
        .bind(i64_of(payment.amount)?)
        .bind(i64_of(payment.increment)?)
        .execute(&mut *tx)
        .await;
        match ins {
            Ok(_) => {}
            Err(e) if is_unique(&e) => return Ok(PaymentOutcome::TokenExists),
            Err(e) => return Err(unavailable(e)),
        }
        let upd = sqlx::query(
            "UPDATE bitreq_channels SET last_amount = ?, latest_payment = ?
             WHERE deposit_txid = ? AND last_amount = ? AND state = 'ready'",
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

    async fn redeem_token(&self, token: &Txid, price: Sat) -> Result<RedeemOutcome, StoreError> {
        let token_b = token.to_byte_array();
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "UPDATE bitreq_channel_spends SET redeemed = 1
             WHERE token = ? AND redeemed = 0 AND increment >= ?
               AND deposit_txid IN (SELECT deposit_txid FROM bitreq_channels
                                    WHERE state IN ('ready', 'closing'))
             RETURNING increment, deposit_txid",
        )
        .bind(&token_b[..])
        .bind(i64_of(price)?)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        if let Some((inc, dep)) = row {
            return Ok(RedeemOutcome::Redeemed {
                increment: sat_of(inc)?,
                deposit_txid: txid_of(&dep)?,
            });
        }
        // Explain the refusal (nothing was changed).
        let why: Option<(i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT s.increment, s.redeemed, c.state FROM bitreq_channel_spends s
             LEFT JOIN bitreq_channels c ON c.deposit_txid = s.deposit_txid
             WHERE s.token = ?",
        )
        .bind(&token_b[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(match why {
            None => RedeemOutcome::Unknown,
            Some((_, 1, _)) => RedeemOutcome::AlreadyRedeemed,
            Some((inc, _, state)) => {
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

    async fn begin_close(
        &self,
        deposit_txid: &Txid,
        from: ChannelState,
        expected_last: Sat,
        close_txid: &Txid,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE bitreq_channels SET state = 'closing', close_txid = ?
             WHERE deposit_txid = ? AND state = ? AND last_amount = ?",
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
             WHERE deposit_txid = ? AND state = 'closing' AND close_txid = ?",
        )
        .bind(&deposit_txid.to_byte_array()[..])
        .bind(&close_txid.to_byte_array()[..])
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(res.rows_affected() == 1)
    }
}
