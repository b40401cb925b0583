//! In-memory BitRequests store (one process; lost on restart).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Script, ScriptBuf, Transaction, Txid};
use pay402_core::bitreq::channel::ChannelPayment;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;

use super::{
    Account, BitreqStore, ChannelRecord, ChannelState, CreditOutcome, MAX_BALANCE, OnChainRecord,
    OnChainState, PaymentOutcome, Quote, RedeemOutcome, Reservation, StoreError, TransferOutcome,
    TransferRecord,
};

#[derive(Default)]
struct Inner {
    next_index: u32,
    quotes: HashMap<ScriptBuf, Quote>,
    onchain: HashMap<Txid, OnChainRecord>,
    accounts: HashMap<String, Account>,
    credits: HashMap<String, (String, Sat)>,
    transfers: HashMap<[u8; 32], TransferRecord>,
    channels: HashMap<Txid, ChannelRecord>,
    spends: HashMap<Txid, Spend>,
}

struct Spend {
    deposit_txid: Txid,
    increment: Sat,
    redeemed: bool,
}

/// A [`BitreqStore`] in memory: every operation runs under one mutex, so it
/// is atomic within the process (not across processes: use
/// [`super::SqliteBitreqStore`] for that).
///
/// ```
/// use pay402_server::bitreq::store::{BitreqStore, MemoryBitreqStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryBitreqStore::new();
/// assert!(store.account("alice").await.unwrap().is_none());
/// # });
/// ```
#[derive(Default)]
pub struct MemoryBitreqStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryBitreqStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBitreqStore").finish_non_exhaustive()
    }
}

impl MemoryBitreqStore {
    /// An empty store.
    ///
    /// ```
    /// let _ = pay402_server::bitreq::store::MemoryBitreqStore::new();
    /// ```
    pub fn new() -> MemoryBitreqStore {
        MemoryBitreqStore::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl BitreqStore for MemoryBitreqStore {
    async fn next_address_index(&self) -> Result<u32, StoreError> {
        let mut g = self.lock()?;
        let i = g.next_index;
        g.next_index = i
            .checked_add(1)
            .ok_or_else(|| StoreError::Unavailable("address indexes exhausted".into()))?;
        Ok(i)
    }

    async fn insert_quote(&self, quote: &Quote) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let dup_index = g.quotes.values().any(|q| q.index == quote.index);
        if dup_index || g.quotes.contains_key(&quote.script_pubkey) {
            return Err(StoreError::Duplicate);
        }
        g.quotes.insert(quote.script_pubkey.clone(), quote.clone());
        Ok(())
    }

    async fn quote_by_script(&self, script: &Script) -> Result<Option<Quote>, StoreError> {
        Ok(self.lock()?.quotes.get(script).cloned())
    }

    async fn purge_quotes(&self, now: UnixTime) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let before = g.quotes.len();
        g.quotes.retain(|_, q| !q.is_expired(now));
        Ok((before - g.quotes.len()) as u64)
    }

    async fn count_quotes(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.quotes.len() as u64)
    }

    async fn reserve_onchain(&self, record: &OnChainRecord) -> Result<Reservation, StoreError> {
        let mut g = self.lock()?;
        if let Some(existing) = g.onchain.get(&record.txid) {
            return Ok(Reservation::TxidUsed(existing.clone()));
        }
        if let Some(i) = record.quote_index
            && g.onchain.values().any(|r| r.quote_index == Some(i))
        {
            return Ok(Reservation::QuoteTaken);
        }
        g.onchain.insert(record.txid, record.clone());
        Ok(Reservation::Reserved)
    }

    async fn release_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
        Ok(self.lock()?.onchain.remove(txid).is_some())
    }

    async fn confirm_onchain(&self, txid: &Txid) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        match g.onchain.get_mut(txid) {
            Some(r) if r.state == OnChainState::Pending => {
                r.state = OnChainState::Redeemed;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn onchain(&self, txid: &Txid) -> Result<Option<OnChainRecord>, StoreError> {
        Ok(self.lock()?.onchain.get(txid).cloned())
    }

    async fn open_account(&self, username: &str, key: &PublicKey) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        if g.accounts.contains_key(username) {
            return Ok(false);
        }
        g.accounts.insert(
            username.to_owned(),
            Account {
                username: username.to_owned(),
                public_key: Some(*key),
                balance: Sat(0),
            },
        );
        Ok(true)
    }

    async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.lock()?.accounts.get(username).cloned())
    }

    async fn credit(
        &self,
        username: &str,
        amount: Sat,
        reference: &str,
    ) -> Result<CreditOutcome, StoreError> {
        let mut g = self.lock()?;
        let Some(balance) = g.accounts.get(username).map(|a| a.balance) else {
            return Ok(CreditOutcome::UnknownAccount);
        };
        if let Some((user, amt)) = g.credits.get(reference) {
            return Ok(if user == username && *amt == amount {
                CreditOutcome::AlreadyApplied { balance }
            } else {
                CreditOutcome::ReferenceConflict
            });
        }
        let new = match balance.0.checked_add(amount.0) {
            Some(v) if v <= MAX_BALANCE.0 => Sat(v),
            _ => return Ok(CreditOutcome::LimitExceeded),
        };
        g.credits
            .insert(reference.to_owned(), (username.to_owned(), amount));
        if let Some(a) = g.accounts.get_mut(username) {
            a.balance = new;
        }
        Ok(CreditOutcome::Credited { balance: new })
    }

    async fn apply_transfer(&self, t: &TransferRecord) -> Result<TransferOutcome, StoreError> {
        let mut g = self.lock()?;
        if g.transfers.contains_key(&t.id) {
            return Ok(TransferOutcome::Replayed);
        }
        let Some(payer) = g.accounts.get(&t.payer) else {
            return Ok(TransferOutcome::UnknownPayer);
        };
        if payer.public_key != Some(t.payer_key) {
            return Ok(TransferOutcome::KeyMismatch);
        }
        let Some(payer_balance) = payer.balance.0.checked_sub(t.amount.0) else {
            return Ok(TransferOutcome::InsufficientBalance {
                balance: payer.balance,
            });
        };
        let payee_balance = if t.payee == t.payer {
            payer_balance
        } else {
            g.accounts.get(&t.payee).map_or(0, |a| a.balance.0)
        };
        let Some(new_payee) = payee_balance
            .checked_add(t.amount.0)
            .filter(|v| *v <= MAX_BALANCE.0)
        else {
            return Ok(TransferOutcome::LimitExceeded);
        };
        if let Some(a) = g.accounts.get_mut(&t.payer) {
            a.balance = Sat(payer_balance);
        }
        let payee = g
            .accounts
            .entry(t.payee.clone())
            .or_insert_with(|| Account {
                username: t.payee.clone(),
                public_key: None,
                balance: Sat(0),
            });
        payee.balance = Sat(new_payee);
        let payer_now = g
            .accounts
            .get(&t.payer)
            .map_or(Sat(payer_balance), |a| a.balance);
        g.transfers.insert(t.id, t.clone());
        Ok(TransferOutcome::Applied {
            payer_balance: payer_now,
        })
    }

    async fn insert_channel(&self, channel: &ChannelRecord) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let id = channel.deposit.txid;
        if g.channels.contains_key(&id) {
            return Ok(false);
        }
        g.channels.insert(id, channel.clone());
        Ok(true)
    }

    async fn channel(&self, deposit_txid: &Txid) -> Result<Option<ChannelRecord>, StoreError> {
        Ok(self.lock()?.channels.get(deposit_txid).cloned())
    }

    async fn channels_in(&self, states: &[ChannelState]) -> Result<Vec<ChannelRecord>, StoreError> {
        let g = self.lock()?;
        let mut v: Vec<ChannelRecord> = g
            .channels
            .values()
            .filter(|c| states.contains(&c.state))
            .cloned()
            .collect();
        v.sort_by_key(|c| (c.created_at, c.deposit.txid));
        Ok(v)
    }

    async fn set_channel_state(
        &self,
        deposit_txid: &Txid,
        from: ChannelState,
        to: ChannelState,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        match g.channels.get_mut(deposit_txid) {
            Some(c) if c.state == from => {
                c.state = to;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn record_payment(
        &self,
        deposit_txid: &Txid,
        expected_last: Sat,
        payment: &ChannelPayment,
        tx: &Transaction,
    ) -> Result<PaymentOutcome, StoreError> {
        let mut g = self.lock()?;
        if g.spends.contains_key(&payment.token) {
            return Ok(PaymentOutcome::TokenExists);
        }
        match g.channels.get_mut(deposit_txid) {
            Some(c) if c.state == ChannelState::Ready && c.last_amount == expected_last => {
                c.last_amount = payment.amount;
                c.latest_payment = Some(tx.clone());
            }
            _ => return Ok(PaymentOutcome::Stale),
        }
        g.spends.insert(
            payment.token,
            Spend {
                deposit_txid: *deposit_txid,
                increment: payment.increment,
                redeemed: false,
            },
        );
        Ok(PaymentOutcome::Recorded)
    }

    async fn redeem_token(&self, token: &Txid, price: Sat) -> Result<RedeemOutcome, StoreError> {
        let mut g = self.lock()?;
        let Some(deposit_txid) = g.spends.get(token).map(|s| s.deposit_txid) else {
            return Ok(RedeemOutcome::Unknown);
        };
        let state = g
            .channels
            .get(&deposit_txid)
            .map_or(ChannelState::Closed, |c| c.state);
        let Some(spend) = g.spends.get_mut(token) else {
            return Ok(RedeemOutcome::Unknown);
        };
        if spend.redeemed {
            return Ok(RedeemOutcome::AlreadyRedeemed);
        }
        if !matches!(state, ChannelState::Ready | ChannelState::Closing) {
            return Ok(RedeemOutcome::NotUsable(state));
        }
        if spend.increment < price {
            return Ok(RedeemOutcome::Underpaid {
                increment: spend.increment,
            });
        }
        spend.redeemed = true;
        Ok(RedeemOutcome::Redeemed {
            increment: spend.increment,
            deposit_txid,
        })
    }

    async fn begin_close(
        &self,
        deposit_txid: &Txid,
        from: ChannelState,
        expected_last: Sat,
        close_txid: &Txid,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        match g.channels.get_mut(deposit_txid) {
            Some(c) if c.state == from && c.last_amount == expected_last => {
                c.state = ChannelState::Closing;
                c.close_txid = Some(*close_txid);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn abort_close(
        &self,
        deposit_txid: &Txid,
        close_txid: &Txid,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        match g.channels.get_mut(deposit_txid) {
            Some(c) if c.state == ChannelState::Closing && c.close_txid == Some(*close_txid) => {
                c.state = ChannelState::Ready;
                c.close_txid = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
