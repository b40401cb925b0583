//! What the local facilitator agrees to settle and spend: the asset and
//! payee allowlists, the gas and fee caps, the gas budget per period, and
//! the in-flight accounting per (payer, asset).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};

/// The default gas-limit ceiling of one settlement (200,000 gas; USDC's
/// `transferWithAuthorization` uses about 60,000-90,000).
///
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_MAX_GAS_PER_SETTLEMENT, 200_000);
/// ```
pub const DEFAULT_MAX_GAS_PER_SETTLEMENT: u64 = 200_000;

/// The default ceiling of the fee per gas paid, in wei (100 gwei).
///
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_MAX_FEE_PER_GAS_WEI, 100_000_000_000);
/// ```
pub const DEFAULT_MAX_FEE_PER_GAS_WEI: u128 = 100_000_000_000;

/// The default gas budget per [`DEFAULT_GAS_BUDGET_PERIOD`]: 20,000,000 gas
/// (100 settlements at the default ceiling).
///
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_GAS_BUDGET, 20_000_000);
/// ```
pub const DEFAULT_GAS_BUDGET: u64 = 20_000_000;

/// The default period of the gas budget (one hour).
///
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_GAS_BUDGET_PERIOD.as_secs(), 3600);
/// ```
pub const DEFAULT_GAS_BUDGET_PERIOD: Duration = Duration::from_secs(3600);

/// The most `eth_getLogs` requests one lookup of an earlier settlement may
/// make: [`log_lookback_blocks`](super::LocalFacilitatorBuilder::log_lookback_blocks)
/// is clamped to this many chunks.
///
/// ```
/// assert_eq!(pay402_backends::x402::MAX_LOG_QUERIES_PER_LOOKUP, 20);
/// ```
pub const MAX_LOG_QUERIES_PER_LOOKUP: u64 = 20;

/// A token the facilitator settles: its contract address and the EIP-712
/// domain name and version payments must be signed under (USDC: "USD Coin",
/// "2" on most chains). The network is the facilitator's own.
///
/// ```
/// use alloy::primitives::address;
/// use pay402_backends::x402::AllowedAsset;
/// let usdc = AllowedAsset::new(address!("036CbD53842c5426634e7929541eC2318f3dCF7e"), "USDC", "2");
/// assert_eq!(usdc.version, "2");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedAsset {
    /// The token contract.
    pub address: Address,
    /// Its EIP-712 domain name (`extra.name` must equal it).
    pub name: String,
    /// Its EIP-712 domain version (`extra.version` must equal it).
    pub version: String,
}

impl AllowedAsset {
    /// An allowlist entry.
    ///
    /// ```
    /// use alloy::primitives::Address;
    /// use pay402_backends::x402::AllowedAsset;
    /// let a = AllowedAsset::new(Address::ZERO, "USD Coin", "2");
    /// assert_eq!(a.name, "USD Coin");
    /// ```
    pub fn new(address: Address, name: impl Into<String>, version: impl Into<String>) -> Self {
        AllowedAsset {
            address,
            name: name.into(),
            version: version.into(),
        }
    }
}

/// The spending and settling rules, fixed at build time.
#[derive(Debug)]
pub(super) struct Policy {
    pub assets: HashMap<Address, AllowedAsset>,
    /// `None`: any payee.
    pub payees: Option<HashSet<Address>>,
    pub max_gas: u64,
    pub max_fee_per_gas: u128,
    pub budget: GasBudget,
}

/// A total of gas that sent settlements may use per fixed window.
#[derive(Debug)]
pub(super) struct GasBudget {
    limit: u64,
    period: Duration,
    window: Mutex<(Instant, u64)>,
}

impl GasBudget {
    pub(super) fn new(limit: u64, period: Duration) -> GasBudget {
        GasBudget {
            limit,
            period: period.max(Duration::from_secs(1)),
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Charges `gas` (a transaction's gas limit) to the current window, or
    /// answers `false` (and charges nothing) when it would exceed the budget.
    pub(super) fn try_spend(&self, gas: u64) -> bool {
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if now.duration_since(w.0) >= self.period {
            *w = (now, 0);
        }
        match w.1.checked_add(gas) {
            Some(total) if total <= self.limit => {
                w.1 = total;
                true
            }
            _ => false,
        }
    }
}

/// The values of one payer's settlements of one asset that are in flight
/// (being checked, sent or not yet mined), by authorization nonce, with
/// their `validBefore` (after which they can no longer move anything).
#[derive(Debug, Default)]
pub(super) struct Ledger {
    entries: HashMap<B256, (U256, u64)>,
}

impl Ledger {
    /// Drops entries whose authorization expired at `now` (unix seconds).
    pub(super) fn prune(&mut self, now: u64) {
        self.entries
            .retain(|_, (_, valid_before)| *valid_before > now);
    }

    /// The in-flight total of the other authorizations than `nonce`.
    pub(super) fn others(&self, nonce: &B256) -> U256 {
        self.entries
            .iter()
            .filter(|(n, _)| *n != nonce)
            .fold(U256::ZERO, |sum, (_, (v, _))| sum.saturating_add(*v))
    }

    pub(super) fn insert(&mut self, nonce: B256, value: U256, valid_before: u64) {
        self.entries.insert(nonce, (value, valid_before));
    }
}

/// The per-(asset, payer) ledgers. Each ledger's async lock is held across
/// the balance read and the reservation, so two settlements of one payer
/// never both see the full balance.
/// One (asset, payer) ledger, shared by the settlements of that pair.
type SharedLedger = Arc<tokio::sync::Mutex<Ledger>>;

#[derive(Debug, Default)]
pub(super) struct InFlight {
    ledgers: Mutex<HashMap<(Address, Address), SharedLedger>>,
}

impl InFlight {
    pub(super) fn ledger(&self, key: (Address, Address)) -> SharedLedger {
        let mut map = self
            .ledgers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(key).or_default().clone()
    }

    /// Releases `nonce`'s reservation; forgets the ledger once it is empty
    /// and unused.
    pub(super) async fn release(&self, key: (Address, Address), nonce: B256) {
        let ledger = {
            let map = self
                .ledgers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match map.get(&key) {
                Some(l) => l.clone(),
                None => return,
            }
        };
        ledger.lock().await.entries.remove(&nonce);
        let mut map = self
            .ledgers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let unused = map.get(&key).is_some_and(|l| {
            Arc::ptr_eq(l, &ledger)
                && Arc::strong_count(l) == 2
                && l.try_lock().is_ok_and(|g| g.entries.is_empty())
        });
        if unused {
            map.remove(&key);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ledgers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gas_budget_refuses_what_would_exceed_it_and_charges_nothing_then() {
        let b = GasBudget::new(300, Duration::from_secs(3600));
        assert!(b.try_spend(200));
        assert!(!b.try_spend(101));
        assert!(b.try_spend(100));
        assert!(!b.try_spend(1));
        assert!(!b.try_spend(u64::MAX));
    }

    #[test]
    fn a_ledger_counts_the_others_and_forgets_expired_authorizations() {
        let mut l = Ledger::default();
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        l.insert(a, U256::from(5u64), 100);
        l.insert(b, U256::from(7u64), 200);
        assert_eq!(l.others(&a), U256::from(7u64));
        assert_eq!(l.others(&B256::ZERO), U256::from(12u64));
        l.prune(150);
        assert_eq!(l.others(&B256::ZERO), U256::from(7u64));
    }

    #[tokio::test]
    async fn released_ledgers_are_forgotten() {
        let f = InFlight::default();
        let key = (Address::ZERO, Address::repeat_byte(9));
        {
            let l = f.ledger(key);
            l.lock()
                .await
                .insert(B256::ZERO, U256::from(1u64), u64::MAX);
        }
        assert_eq!(f.len(), 1);
        f.release(key, B256::ZERO).await;
        assert_eq!(f.len(), 0);
    }
}
