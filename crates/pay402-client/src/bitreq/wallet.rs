//! [`Wallet`]: BIP32 keys, addresses, UTXOs through a [`BitcoinChain`]
//! backend, coin selection, change and fee rates.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{
    Address, CompressedPublicKey, Network, OutPoint, Script, ScriptBuf, Transaction, Txid,
};
use pay402_core::bitreq::onchain::{BuildOptions, build_payment_with};
use pay402_core::bitreq::{RedeemScript, SpendKind, SpendableUtxo, channel::build_deposit};
use pay402_core::chain::{BitcoinChain, ChainError, FeeRate};
use pay402_core::money::Sat;
use tokio::sync::Mutex;
use tracing::{Instrument, debug, info, info_span, warn};
use zeroize::Zeroizing;

use super::coins::{Candidate, select};
use super::error::WalletError;
use super::keys::{AccountKeys, KeyChain, PrivateKey};

/// Confirmations after which a coinbase output may be spent.
const COINBASE_MATURITY: u64 = 100;
/// How often [`Wallet::prepare_payment`] reselects when a chosen coin turns
/// out to be spent.
const RESELECT_ATTEMPTS: usize = 3;

/// How a [`Wallet`] derives keys, scans and pays fees.
///
/// ```
/// use pay402_client::bitreq::WalletConfig;
/// let c = WalletConfig::new(bitcoin::Network::Regtest);
/// assert_eq!(c.gap_limit, 10);
/// assert_eq!(c.min_fee_rate.sat_per_vb(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalletConfig {
    /// The network addresses are for.
    pub network: Network,
    /// The BIP44-style account (`m/84'/coin'/account'`).
    pub account: u32,
    /// How many unused addresses past the last used one [`Wallet::sync`]
    /// looks at on each chain (to find coins after a restore from seed).
    pub gap_limit: u32,
    /// The confirmation target passed to the fee estimator.
    pub fee_target_blocks: u16,
    /// The fee-rate floor, used when the backend has no estimate (regtest)
    /// or estimates less (default 1 sat/vB, the default minimum relay fee).
    pub min_fee_rate: FeeRate,
    /// The most the wallet pays per vbyte; a higher estimate is an error
    /// ([`WalletError::FeeRateTooHigh`]). Default 1000 sat/vB.
    pub max_fee_rate: FeeRate,
    /// Whether unconfirmed coins may be spent (two1 did; default `true`).
    pub spend_unconfirmed: bool,
    /// Change below this is given to the miner instead (default 546 sat).
    pub change_dust: Sat,
}

impl WalletConfig {
    /// The defaults for `network`.
    ///
    /// ```
    /// let c = pay402_client::bitreq::WalletConfig::new(bitcoin::Network::Bitcoin);
    /// assert!(c.spend_unconfirmed);
    /// ```
    pub fn new(network: Network) -> WalletConfig {
        WalletConfig {
            network,
            account: 0,
            gap_limit: 10,
            fee_target_blocks: 6,
            min_fee_rate: FeeRate(1),
            max_fee_rate: FeeRate(1000),
            spend_unconfirmed: true,
            change_dust: Sat(546),
        }
    }
}

/// One coin the wallet can spend (or will, once mature or unlocked).
///
/// ```
/// # fn show(c: &pay402_client::bitreq::Coin) {
/// println!("{} {} ({} confirmations)", c.outpoint, c.value, c.confirmations);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Coin {
    /// The output.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Sat,
    /// Its script type.
    pub kind: SpendKind,
    /// The chain of the key it pays.
    pub chain: KeyChain,
    /// The index of the key it pays.
    pub index: u32,
    /// Confirmations when last seen (0: mempool).
    pub confirmations: u64,
    /// Whether it is a coinbase output.
    pub coinbase: bool,
}

impl Coin {
    fn mature(&self) -> bool {
        !self.coinbase || self.confirmations >= COINBASE_MATURITY
    }
}

/// The wallet's balance as of its last [`Wallet::sync`] and payments since.
///
/// ```
/// let b = pay402_client::bitreq::Balance::default();
/// assert_eq!(b.spendable(true).0, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Balance {
    /// Mature coins with at least one confirmation.
    pub confirmed: Sat,
    /// Coins still in the mempool.
    pub unconfirmed: Sat,
    /// Coinbase outputs not yet spendable.
    pub immature: Sat,
    /// Coins spent by the wallet's own transactions that the chain has not
    /// confirmed yet (or that a server has not broadcast yet).
    pub locked: Sat,
}

impl Balance {
    /// What can be spent now.
    ///
    /// ```
    /// let mut b = pay402_client::bitreq::Balance::default();
    /// b.confirmed = pay402_core::money::Sat(5);
    /// b.unconfirmed = pay402_core::money::Sat(2);
    /// assert_eq!(b.spendable(false).0, 5);
    /// assert_eq!(b.spendable(true).0, 7);
    /// ```
    pub fn spendable(&self, with_unconfirmed: bool) -> Sat {
        let extra = if with_unconfirmed {
            self.unconfirmed.0
        } else {
            0
        };
        Sat(self.confirmed.0.saturating_add(extra))
    }
}

/// A signed transaction whose inputs the wallet has locked; broadcast it
/// ([`Wallet::broadcast`]), hand it to a server (then
/// [`Wallet::mark_sent`]) or give it up ([`Wallet::cancel`]).
///
/// ```
/// # fn show(p: &pay402_client::bitreq::PreparedTx) {
/// println!("{} pays {} in fees", p.tx.compute_txid(), p.fee);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreparedTx {
    /// The signed transaction.
    pub tx: Transaction,
    /// The miner fee it pays.
    pub fee: Sat,
}

impl PreparedTx {
    /// Its txid.
    ///
    /// ```
    /// # fn show(p: &pay402_client::bitreq::PreparedTx) {
    /// assert_eq!(p.txid(), p.tx.compute_txid());
    /// # }
    /// ```
    pub fn txid(&self) -> Txid {
        self.tx.compute_txid()
    }
}

/// One of the wallet's own transactions, not yet confirmed.
struct Pending {
    tx: Transaction,
    /// The coins it spends (locked).
    spends: Vec<Coin>,
    /// Whether the network has it (broadcast by us, or accepted by a server).
    sent: bool,
}

#[derive(Default)]
struct State {
    /// The next unused index on each chain.
    next: [u32; 2],
    coins: BTreeMap<OutPoint, Coin>,
    pending: BTreeMap<Txid, Pending>,
    synced: bool,
}

impl State {
    fn locked(&self) -> impl Iterator<Item = &Coin> {
        self.pending.values().flat_map(|p| p.spends.iter())
    }

    fn balance(&self) -> Balance {
        let mut b = Balance::default();
        for c in self.coins.values() {
            let slot = if !c.mature() {
                &mut b.immature
            } else if c.confirmations == 0 {
                &mut b.unconfirmed
            } else {
                &mut b.confirmed
            };
            slot.0 = slot.0.saturating_add(c.value.0);
        }
        b.locked = Sat(self
            .locked()
            .map(|c| c.value.0)
            .fold(0u64, u64::saturating_add));
        b
    }
}

/// A BIP32 hot wallet for the BitRequests client.
///
/// - Keys: `m/84'/coin'/account'/{0,1}/i` from a seed (the seed is not
///   kept; the chain keys are erased on drop). Receive and change addresses
///   are native segwit (P2WPKH). Index 0 of the external chain is the
///   bit-transfer key; payment channels use fresh external keys, whose
///   P2PKH outputs (channel refunds and closes) the wallet also watches.
/// - Coins: listed per address with [`BitcoinChain::list_unspent`], plus
///   the wallet's own unconfirmed transactions; each chosen coin is checked
///   with [`BitcoinChain::get_tx_out`] before it is spent.
/// - Fees: the backend's estimate for
///   [`WalletConfig::fee_target_blocks`], never below
///   [`WalletConfig::min_fee_rate`], refused above
///   [`WalletConfig::max_fee_rate`]; sizes assume the largest signatures.
/// - Concurrency: one async lock around the coin state, so two payments
///   never pick the same coin.
///
/// State (next indices, pending transactions) lives in memory; a restart
/// finds coins again by scanning ([`Wallet::sync`]) within the gap limit.
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_client::bitreq::{Wallet, WalletConfig};
/// use pay402_core::chain::BitcoinChain;
///
/// async fn demo(chain: Arc<dyn BitcoinChain>) -> Result<(), Box<dyn std::error::Error>> {
///     let seed = [42u8; 32]; // use 32 random bytes, kept secret
///     let wallet = Wallet::from_seed(&seed, WalletConfig::new(bitcoin::Network::Regtest), chain)?;
///     println!("fund me: {}", wallet.receive_address().await?);
///     let balance = wallet.sync().await?;
///     println!("spendable: {}", balance.spendable(true));
///     Ok(())
/// }
/// ```
pub struct Wallet {
    config: WalletConfig,
    chain: Arc<dyn BitcoinChain>,
    keys: AccountKeys,
    state: Mutex<State>,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("network", &self.config.network)
            .field("account", &self.config.account)
            .field("master_fingerprint", &self.keys.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Wallet {
    /// A wallet from a 16–64 byte BIP32 seed.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use pay402_backends::esplora::{Esplora, EsploraConfig};
    /// use pay402_client::bitreq::{Wallet, WalletConfig};
    /// // Any chain backend; nothing is fetched until the wallet scans.
    /// let chain = Arc::new(Esplora::new(EsploraConfig {
    ///     url: "http://127.0.0.1:3002".parse().unwrap(),
    ///     timeout: Duration::from_secs(10),
    /// }).unwrap());
    /// let config = || WalletConfig::new(bitcoin::Network::Regtest);
    /// assert!(Wallet::from_seed(&[1; 8], config(), chain.clone()).is_err()); // too short
    /// assert!(Wallet::from_seed(&[1; 32], config(), chain).is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::InvalidSeed`], [`WalletError::KeyDerivation`].
    pub fn from_seed(
        seed: &[u8],
        config: WalletConfig,
        chain: Arc<dyn BitcoinChain>,
    ) -> Result<Wallet, WalletError> {
        let keys = AccountKeys::from_seed(seed, config.network, config.account)?;
        Ok(Wallet {
            config,
            chain,
            keys,
            state: Mutex::new(State::default()),
        })
    }

    /// A wallet from a hex seed (the intermediate bytes are zeroized).
    ///
    /// ```no_run
    /// # fn demo(chain: std::sync::Arc<dyn pay402_core::chain::BitcoinChain>) {
    /// use pay402_client::bitreq::{Wallet, WalletConfig};
    /// let hex = std::env::var("PAY402_WALLET_SEED").unwrap();
    /// let wallet = Wallet::from_seed_hex(&hex, WalletConfig::new(bitcoin::Network::Regtest), chain);
    /// # let _ = wallet; }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::InvalidSeed`] when the text is not hex, or as for
    /// [`Wallet::from_seed`].
    pub fn from_seed_hex(
        seed_hex: &str,
        config: WalletConfig,
        chain: Arc<dyn BitcoinChain>,
    ) -> Result<Wallet, WalletError> {
        let text = seed_hex.trim();
        if text.len() > 128 || !text.len().is_multiple_of(2) {
            return Err(WalletError::InvalidSeed("expected 32 to 128 hex digits"));
        }
        let mut bytes = Zeroizing::new(vec![0u8; text.len() / 2]);
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(WalletError::InvalidSeed("the seed is not hex"));
            };
            bytes[i] = (hi * 16 + lo) as u8;
        }
        Wallet::from_seed(&bytes, config, chain)
    }

    /// The configuration.
    ///
    /// ```no_run
    /// # fn f(w: &pay402_client::bitreq::Wallet) {
    /// println!("{}", w.config().network);
    /// # }
    /// ```
    pub fn config(&self) -> &WalletConfig {
        &self.config
    }

    /// The network.
    ///
    /// ```no_run
    /// # fn f(w: &pay402_client::bitreq::Wallet) {
    /// assert_eq!(w.network(), w.config().network);
    /// # }
    /// ```
    pub fn network(&self) -> Network {
        self.config.network
    }

    /// The chain backend.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet) -> Result<(), pay402_core::chain::ChainError> {
    /// println!("height {}", w.chain().block_height().await?);
    /// # Ok(()) }
    /// ```
    pub fn chain(&self) -> &Arc<dyn BitcoinChain> {
        &self.chain
    }

    fn compressed(&self, chain: KeyChain, index: u32) -> Result<CompressedPublicKey, WalletError> {
        Ok(CompressedPublicKey(self.keys.public(chain, index)?))
    }

    fn script(
        &self,
        chain: KeyChain,
        index: u32,
        kind: SpendKind,
    ) -> Result<ScriptBuf, WalletError> {
        let pk = self.compressed(chain, index)?;
        Ok(match kind {
            SpendKind::P2wpkh => ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()),
            SpendKind::P2pkh => ScriptBuf::new_p2pkh(&bitcoin::PublicKey::from(pk).pubkey_hash()),
        })
    }

    fn address(
        &self,
        chain: KeyChain,
        index: u32,
        kind: SpendKind,
    ) -> Result<Address, WalletError> {
        let pk = self.compressed(chain, index)?;
        Ok(match kind {
            SpendKind::P2wpkh => Address::p2wpkh(&pk, self.config.network),
            SpendKind::P2pkh => Address::p2pkh(pk, self.config.network),
        })
    }

    /// A fresh receive address (P2WPKH, external chain).
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet) -> Result<(), pay402_client::bitreq::WalletError> {
    /// let a = w.receive_address().await?;
    /// assert_ne!(a, w.receive_address().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::KeyDerivation`].
    pub async fn receive_address(&self) -> Result<Address, WalletError> {
        let index = self.next_index(KeyChain::External).await;
        self.address(KeyChain::External, index, SpendKind::P2wpkh)
    }

    /// The stable address sent as `Return-Wallet-Address` (external index 0,
    /// P2WPKH).
    ///
    /// ```no_run
    /// # fn f(w: &pay402_client::bitreq::Wallet) -> Result<(), pay402_client::bitreq::WalletError> {
    /// println!("{}", w.return_address()?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::KeyDerivation`].
    pub fn return_address(&self) -> Result<Address, WalletError> {
        self.address(KeyChain::External, 0, SpendKind::P2wpkh)
    }

    /// The public key that signs bit-transfers (external index 0, as two1's
    /// "first external-chain key of account 0").
    ///
    /// ```no_run
    /// # fn f(w: &pay402_client::bitreq::Wallet) -> Result<(), pay402_client::bitreq::WalletError> {
    /// assert_eq!(w.transfer_public_key()?.serialize().len(), 33);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::KeyDerivation`].
    pub fn transfer_public_key(&self) -> Result<PublicKey, WalletError> {
        self.keys.public(KeyChain::External, 0)
    }

    pub(crate) fn transfer_key(&self) -> Result<PrivateKey, WalletError> {
        self.keys.private(KeyChain::External, 0)
    }

    pub(crate) fn private_key(
        &self,
        chain: KeyChain,
        index: u32,
    ) -> Result<PrivateKey, WalletError> {
        self.keys.private(chain, index)
    }

    /// A fresh external key for a payment channel: its index and public key.
    pub(crate) async fn fresh_channel_key(&self) -> Result<(u32, PublicKey), WalletError> {
        let index = self.next_index(KeyChain::External).await;
        Ok((index, self.keys.public(KeyChain::External, index)?))
    }

    async fn next_index(&self, chain: KeyChain) -> u32 {
        let mut state = self.state.lock().await;
        let slot = &mut state.next[chain.index() as usize];
        // Index 0 of the external chain is the transfer/return key: never handed out.
        if chain == KeyChain::External && *slot == 0 {
            *slot = 1;
        }
        let index = *slot;
        *slot = slot.saturating_add(1);
        index
    }

    /// The fee rate to pay now: the backend's estimate within the floor and
    /// the ceiling.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet) -> Result<(), pay402_client::bitreq::WalletError> {
    /// assert!(w.fee_rate().await? >= w.config().min_fee_rate);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::Chain`], [`WalletError::FeeRateTooHigh`].
    pub async fn fee_rate(&self) -> Result<FeeRate, WalletError> {
        let estimate = self
            .chain
            .estimate_fee_rate(self.config.fee_target_blocks)
            .await?;
        match estimate {
            Some(r) if r > self.config.max_fee_rate => Err(WalletError::FeeRateTooHigh {
                estimate: r,
                max: self.config.max_fee_rate,
            }),
            Some(r) => Ok(r.max(self.config.min_fee_rate)),
            None => Ok(self.config.min_fee_rate),
        }
    }

    /// Scans the chain for the wallet's coins, settles its own pending
    /// transactions, and returns the balance.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet) -> Result<(), pay402_client::bitreq::WalletError> {
    /// let b = w.sync().await?;
    /// println!("{} confirmed, {} unconfirmed", b.confirmed, b.unconfirmed);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::Chain`] (including a backend that cannot list
    /// outputs), [`WalletError::KeyDerivation`].
    pub async fn sync(&self) -> Result<Balance, WalletError> {
        let mut state = self.state.lock().await;
        self.sync_locked(&mut state)
            .instrument(info_span!("bitreq.wallet.sync"))
            .await?;
        Ok(state.balance())
    }

    async fn sync_locked(&self, state: &mut State) -> Result<(), WalletError> {
        let mut listed: BTreeMap<OutPoint, Coin> = BTreeMap::new();
        for chain in [KeyChain::External, KeyChain::Internal] {
            let kinds: &[SpendKind] = match chain {
                KeyChain::External => &[SpendKind::P2wpkh, SpendKind::P2pkh],
                KeyChain::Internal => &[SpendKind::P2wpkh],
            };
            let slot = chain.index() as usize;
            let mut index = 0u32;
            while index < state.next[slot].saturating_add(self.config.gap_limit) {
                for &kind in kinds {
                    let address = self.address(chain, index, kind)?;
                    let script = address.script_pubkey();
                    let outs = self.chain.list_unspent(&address).await?;
                    for (outpoint, out) in outs {
                        if out.script_pubkey != script {
                            // bcoin's address index is by hash160: it lists the
                            // P2WPKH coins of a key under its P2PKH address too.
                            debug!(%outpoint, "backend listed an output of another script; ignored");
                            continue;
                        }
                        if index >= state.next[slot] {
                            state.next[slot] = index.saturating_add(1);
                        }
                        listed.insert(
                            outpoint,
                            Coin {
                                outpoint,
                                value: out.value,
                                kind,
                                chain,
                                index,
                                confirmations: out.confirmations,
                                coinbase: out.coinbase,
                            },
                        );
                    }
                }
                index += 1;
            }
        }
        // Settle our own transactions.
        let txids: Vec<Txid> = state.pending.keys().copied().collect();
        for txid in txids {
            match self.chain.get_transaction(&txid).await? {
                Some(info) if info.is_confirmed() => {
                    debug!(%txid, "own transaction confirmed");
                    state.pending.remove(&txid);
                }
                Some(_) => {
                    if let Some(p) = state.pending.get_mut(&txid) {
                        p.sent = true;
                    }
                }
                None => {}
            }
        }
        for p in state.pending.values().filter(|p| p.sent) {
            for coin in self.own_outputs(&p.tx, state.next) {
                listed.entry(coin.outpoint).or_insert(coin);
            }
        }
        let locked: Vec<OutPoint> = state.locked().map(|c| c.outpoint).collect();
        for op in locked {
            listed.remove(&op);
        }
        state.coins = listed;
        state.synced = true;
        Ok(())
    }

    /// The outputs of `tx` that pay the wallet's keys (as unconfirmed coins).
    fn own_outputs(&self, tx: &Transaction, next: [u32; 2]) -> Vec<Coin> {
        let txid = tx.compute_txid();
        let mut out = Vec::new();
        for (vout, o) in tx.output.iter().enumerate() {
            let Ok(vout) = u32::try_from(vout) else { break };
            if let Some((chain, index, kind)) = self.whose(&o.script_pubkey, next) {
                out.push(Coin {
                    outpoint: OutPoint::new(txid, vout),
                    value: Sat(o.value.to_sat()),
                    kind,
                    chain,
                    index,
                    confirmations: 0,
                    coinbase: false,
                });
            }
        }
        out
    }

    /// Which of the wallet's keys a script pays, among the indices handed
    /// out so far (`next` per chain).
    fn whose(&self, script: &Script, next: [u32; 2]) -> Option<(KeyChain, u32, SpendKind)> {
        let kind = if script.is_p2wpkh() {
            SpendKind::P2wpkh
        } else if script.is_p2pkh() {
            SpendKind::P2pkh
        } else {
            return None;
        };
        for chain in [KeyChain::External, KeyChain::Internal] {
            for index in 0..next[chain.index() as usize].max(1) {
                if self.script(chain, index, kind).ok().as_deref() == Some(script) {
                    return Some((chain, index, kind));
                }
            }
        }
        None
    }

    /// The spendable coins, as of the last sync and payments since.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet) {
    /// for c in w.coins().await { println!("{} {}", c.outpoint, c.value); }
    /// # }
    /// ```
    pub async fn coins(&self) -> Vec<Coin> {
        self.state.lock().await.coins.values().cloned().collect()
    }

    /// The balance, as of the last sync and payments since.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet) {
    /// println!("{:?}", w.balance().await);
    /// # }
    /// ```
    pub async fn balance(&self) -> Balance {
        self.state.lock().await.balance()
    }

    /// Builds and signs a payment of `amount` to `pay_to` (change to a fresh
    /// internal address) and locks its inputs. Nothing is broadcast.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet, to: bitcoin::Address) -> Result<(), pay402_client::bitreq::WalletError> {
    /// let p = w.prepare_payment(&to.script_pubkey(), pay402_core::money::Sat(5_000)).await?;
    /// w.broadcast(&p).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::InsufficientFunds`], [`WalletError::FeeRateTooHigh`],
    /// [`WalletError::Chain`], [`WalletError::Build`].
    pub async fn prepare_payment(
        &self,
        pay_to: &Script,
        amount: Sat,
    ) -> Result<PreparedTx, WalletError> {
        self.prepare(Target::Pay(pay_to.to_owned()), amount).await
    }

    /// Builds and signs a channel deposit paying `value` to P2SH(`redeem`)
    /// (two1's layout: version 1, output 0) and locks its inputs.
    pub(crate) async fn prepare_deposit(
        &self,
        redeem: &RedeemScript,
        value: Sat,
    ) -> Result<PreparedTx, WalletError> {
        self.prepare(Target::Deposit(*redeem), value).await
    }

    async fn prepare(&self, target: Target, amount: Sat) -> Result<PreparedTx, WalletError> {
        let rate = self.fee_rate().await?;
        let mut state = self.state.lock().await;
        if !state.synced {
            self.sync_locked(&mut state).await?;
        }
        let change_index = {
            let slot = &mut state.next[KeyChain::Internal.index() as usize];
            let i = *slot;
            *slot = slot.saturating_add(1);
            i
        };
        let change = self.script(KeyChain::Internal, change_index, SpendKind::P2wpkh)?;
        let pay_len = match &target {
            Target::Pay(s) => s.len(),
            Target::Deposit(r) => r.p2sh_script_pubkey().len(),
        };
        let mut resynced = false;
        for _ in 0..RESELECT_ATTEMPTS {
            let usable: Vec<Coin> = state
                .coins
                .values()
                .filter(|c| c.mature() && (self.config.spend_unconfirmed || c.confirmations > 0))
                .cloned()
                .collect();
            let candidates: Vec<Candidate> = usable
                .iter()
                .map(|c| Candidate {
                    value: c.value,
                    kind: c.kind,
                    confirmations: c.confirmations,
                })
                .collect();
            let dust = match target {
                Target::Pay(_) => self.config.change_dust,
                // build_deposit folds change below two1's 3000 into the fee.
                Target::Deposit(_) => BuildOptions::default().dust_limit,
            };
            let selection = match select(&candidates, amount, &[pay_len], change.len(), rate, dust)
            {
                Ok(s) => s,
                Err(WalletError::InsufficientFunds { .. }) if !resynced => {
                    // Coins may have arrived since the last scan.
                    resynced = true;
                    self.sync_locked(&mut state).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let chosen: Vec<Coin> = selection
                .chosen
                .iter()
                .map(|&i| usable[i].clone())
                .collect();
            // Make sure every chosen coin is still unspent (mempool included).
            let mut gone = Vec::new();
            for c in &chosen {
                if self.chain.get_tx_out(&c.outpoint).await?.is_none() {
                    gone.push(c.outpoint);
                }
            }
            if !gone.is_empty() {
                warn!(
                    count = gone.len(),
                    "chosen coins are already spent; reselecting"
                );
                for op in gone {
                    state.coins.remove(&op);
                }
                continue;
            }
            let keys: Vec<PrivateKey> = chosen
                .iter()
                .map(|c| self.keys.private(c.chain, c.index))
                .collect::<Result<_, _>>()?;
            let utxos: Vec<SpendableUtxo<'_>> = chosen
                .iter()
                .zip(&keys)
                .map(|(c, k)| SpendableUtxo {
                    outpoint: c.outpoint,
                    amount: c.value,
                    kind: c.kind,
                    key: k.secret(),
                })
                .collect();
            let tx = match &target {
                Target::Pay(to) => {
                    let opts = BuildOptions {
                        dust_limit: self.config.change_dust,
                        ..BuildOptions::default()
                    };
                    build_payment_with(&utxos, to, amount, &change, selection.fee, &opts)?
                }
                Target::Deposit(redeem) => {
                    build_deposit(&utxos, redeem, amount, &change, selection.fee)?
                }
            };
            drop(utxos);
            drop(keys);
            let total_in: u64 = chosen.iter().map(|c| c.value.0).sum();
            let total_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
            let fee = Sat(total_in.saturating_sub(total_out));
            let txid = tx.compute_txid();
            for c in &chosen {
                state.coins.remove(&c.outpoint);
            }
            state.pending.insert(
                txid,
                Pending {
                    tx: tx.clone(),
                    spends: chosen,
                    sent: false,
                },
            );
            debug!(%txid, fee = fee.0, rate = rate.0, "transaction prepared; inputs locked");
            return Ok(PreparedTx { tx, fee });
        }
        let available = Sat(state.balance().spendable(self.config.spend_unconfirmed).0);
        Err(WalletError::InsufficientFunds {
            needed: amount,
            available,
        })
    }

    /// Broadcasts a prepared transaction through the chain backend. A
    /// transaction the node already has counts as broadcast. If its inputs
    /// are spent elsewhere ([`ChainError::Conflict`]) it is cancelled.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet, p: pay402_client::bitreq::PreparedTx) -> Result<(), pay402_client::bitreq::WalletError> {
    /// let txid = w.broadcast(&p).await?;
    /// # let _ = txid; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::Chain`].
    pub async fn broadcast(&self, prepared: &PreparedTx) -> Result<Txid, WalletError> {
        self.broadcast_tx(&prepared.tx).await
    }

    pub(crate) async fn broadcast_tx(&self, tx: &Transaction) -> Result<Txid, WalletError> {
        let txid = tx.compute_txid();
        match self.chain.broadcast(tx).await {
            Ok(_) | Err(ChainError::AlreadyKnown { .. }) => {
                info!(%txid, "broadcast");
                self.mark_sent(&txid).await;
                Ok(txid)
            }
            Err(e @ ChainError::Conflict { .. }) => {
                warn!(%txid, error = %e, "inputs spent elsewhere; transaction dropped");
                let _ = self.cancel(&txid).await;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records that a prepared transaction reached the network (for example,
    /// a server accepted and broadcast it): its change becomes spendable.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet, p: pay402_client::bitreq::PreparedTx) {
    /// w.mark_sent(&p.txid()).await;
    /// # }
    /// ```
    pub async fn mark_sent(&self, txid: &Txid) {
        let mut state = self.state.lock().await;
        let Some(p) = state.pending.get_mut(txid) else {
            return;
        };
        if p.sent {
            return;
        }
        p.sent = true;
        let tx = p.tx.clone();
        for coin in self.own_outputs(&tx, state.next) {
            state.coins.entry(coin.outpoint).or_insert(coin);
        }
    }

    /// Gives up a prepared transaction that never reached the network: its
    /// inputs become spendable again. Spending them later also invalidates
    /// the given-up transaction, should someone still hold it.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet, p: pay402_client::bitreq::PreparedTx) -> Result<(), pay402_client::bitreq::WalletError> {
    /// w.cancel(&p.txid()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WalletError::UnknownTransaction`] if it is not pending.
    pub async fn cancel(&self, txid: &Txid) -> Result<(), WalletError> {
        let mut state = self.state.lock().await;
        let p = state
            .pending
            .remove(txid)
            .ok_or(WalletError::UnknownTransaction(*txid))?;
        for out in self.own_outputs(&p.tx, state.next) {
            state.coins.remove(&out.outpoint);
        }
        for c in p.spends {
            state.coins.insert(c.outpoint, c);
        }
        info!(%txid, "prepared transaction cancelled; inputs released");
        Ok(())
    }

    /// Pays `amount` to `address` and broadcasts it.
    ///
    /// ```no_run
    /// # async fn f(w: &pay402_client::bitreq::Wallet, to: bitcoin::Address) -> Result<(), pay402_client::bitreq::WalletError> {
    /// let txid = w.send_to(&to, pay402_core::money::Sat(10_000)).await?;
    /// # let _ = txid; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`Wallet::prepare_payment`] and [`Wallet::broadcast`].
    pub async fn send_to(&self, address: &Address, amount: Sat) -> Result<Txid, WalletError> {
        let prepared = self
            .prepare_payment(&address.script_pubkey(), amount)
            .await?;
        match self.broadcast(&prepared).await {
            Ok(txid) => Ok(txid),
            Err(e) => {
                if !matches!(e, WalletError::Chain(ChainError::Unreachable { .. })) {
                    let _ = self.cancel(&prepared.txid()).await;
                }
                Err(e)
            }
        }
    }
}

enum Target {
    Pay(ScriptBuf),
    Deposit(RedeemScript),
}
