//! What a BitRequests server offers: on-chain addresses, the transfer ledger,
//! payment channels, and their policies.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network, NetworkKind, ScriptBuf};
use pay402_core::bitreq::channel::{
    DEFAULT_CHANNEL_FEE, MIN_CHANNEL_DURATION_SECS, MIN_OUTPUT_AMOUNT,
};
use pay402_core::bitreq::state::SERVER_CLOSE_MARGIN_SECS;
use pay402_core::bitreq::{AmountRule, OnChainPolicy};
use pay402_core::money::Sat;
use zeroize::Zeroizing;

use crate::cache::PaidCaching;
use crate::limit::{ClientLimiter, RateLimit};

/// The process-wide secp256k1 context of the BitRequests server.
pub(crate) fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}

/// A configuration value was rejected by [`crate::bitreq::BitreqServer::new`]
/// or a key constructor.
///
/// ```
/// use pay402_server::bitreq::{ConfigError, MerchantKey};
/// assert_eq!(MerchantKey::from_hex("zz").unwrap_err(), ConfigError::InvalidKey);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A secret key is not 32 bytes of a valid secp256k1 scalar.
    #[error("invalid secret key")]
    InvalidKey,
    /// An extended public key does not parse.
    #[error("invalid extended public key")]
    InvalidXpub,
    /// An address or key is for another network than the server's.
    #[error("address or key is for another network")]
    NetworkMismatch,
    /// No payment method is enabled.
    #[error("no payment method enabled")]
    NoMethod,
    /// The channel endpoint path must start with `/` and have no `{`, `}` or `*`.
    #[error("invalid channel endpoint path")]
    InvalidPath,
    /// On-chain payments were configured to be served at 0 confirmations
    /// with [`OnChainConfig::confirmations`]: zero-confirmation serving is
    /// only available, price-capped, through
    /// [`OnChainConfig::accept_unconfirmed_up_to`].
    #[error("confirmations must be at least 1; use accept_unconfirmed_up_to for zero-conf")]
    ZeroConfirmations,
    /// The ledger operator API was given an empty (or blank) bearer token.
    #[error("the ledger admin token is empty")]
    EmptyAdminToken,
    /// The transfer username is empty, too long or not visible ASCII.
    #[error("invalid username")]
    InvalidUsername,
    /// The public URL is not an absolute `http(s)://` URL.
    #[error("invalid public url")]
    InvalidUrl,
}

/// The merchant's channel key: signs the final payment transaction of each
/// channel. The secret is zeroized on drop and never printed.
///
/// ```
/// use pay402_server::bitreq::MerchantKey;
/// let key = MerchantKey::from_slice(&[7; 32]).unwrap();
/// assert_eq!(key.public_key().serialize().len(), 33);
/// assert!(!format!("{key:?}").contains("0707"));
/// ```
pub struct MerchantKey {
    secret: Zeroizing<[u8; 32]>,
    public: PublicKey,
}

impl MerchantKey {
    /// From 32 secret bytes.
    ///
    /// ```
    /// assert!(pay402_server::bitreq::MerchantKey::from_slice(&[0; 32]).is_err());
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Result<MerchantKey, ConfigError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ConfigError::InvalidKey)?;
        let secret = Zeroizing::new(arr);
        let mut sk = SecretKey::from_slice(&secret[..]).map_err(|_| ConfigError::InvalidKey)?;
        let public = sk.public_key(secp());
        sk.non_secure_erase();
        Ok(MerchantKey { secret, public })
    }

    /// From 64 hex digits.
    ///
    /// ```
    /// let k = pay402_server::bitreq::MerchantKey::from_hex(&"11".repeat(32)).unwrap();
    /// # let _ = k;
    /// ```
    pub fn from_hex(hex_key: &str) -> Result<MerchantKey, ConfigError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key.trim(), &mut bytes[..])
            .map_err(|_| ConfigError::InvalidKey)?;
        MerchantKey::from_slice(&bytes[..])
    }

    /// The compressed public key (`public_key` of `GET /payment`).
    ///
    /// ```
    /// let k = pay402_server::bitreq::MerchantKey::from_slice(&[1; 32]).unwrap();
    /// assert!(k.public_key().serialize()[0] == 2 || k.public_key().serialize()[0] == 3);
    /// ```
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Runs `f` with the secret key, then wipes the temporary copy.
    pub(crate) fn with_secret<R>(&self, f: impl FnOnce(&SecretKey) -> R) -> Option<R> {
        let mut sk = SecretKey::from_slice(&self.secret[..]).ok()?;
        let out = f(&sk);
        sk.non_secure_erase();
        Some(out)
    }
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantKey")
            .field("public", &self.public.to_string())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The script type of derived on-chain addresses.
///
/// ```
/// assert_eq!(pay402_server::bitreq::AddressKind::default(), pay402_server::bitreq::AddressKind::P2wpkh);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressKind {
    /// Native segwit `bc1q…` / `bcrt1q…` (default).
    #[default]
    P2wpkh,
    /// Legacy base58 `1…` / `m…`, for clients that only pay P2PKH (two1's wallet).
    P2pkh,
}

/// Where the on-chain `Bitcoin-Address` of a 402 comes from.
///
/// ```
/// use pay402_server::bitreq::AddressSource;
/// use bitcoin::{Address, Network};
/// let a: Address = "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM".parse::<Address<_>>().unwrap().assume_checked();
/// let src = AddressSource::Fixed(a);
/// assert!(!src.is_derived());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressSource {
    /// A fresh address per 402, `<xpub>/0/<index>`, the index allocated
    /// atomically by the store. Each payment is then bound to one quote
    /// (price, resource, expiry). Recommended.
    Derived {
        /// The account-level extended public key (e.g. of `m/84'/1'/0'`).
        xpub: Xpub,
        /// The script type.
        kind: AddressKind,
    },
    /// One static address, as two1 had. Any transaction paying it the price
    /// is accepted once (replay is still refused by txid), but a payment is not
    /// bound to a request.
    Fixed(Address),
}

impl AddressSource {
    /// Whether addresses are derived per quote.
    ///
    /// ```
    /// use bitcoin::bip32::{Xpriv, Xpub};
    /// use pay402_server::bitreq::{AddressKind, AddressSource};
    /// let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// assert!(AddressSource::Derived { xpub, kind: AddressKind::P2wpkh }.is_derived());
    /// ```
    pub fn is_derived(&self) -> bool {
        matches!(self, AddressSource::Derived { .. })
    }
}

/// Derives the address at `index` of the external chain (`/0/<index>`).
pub(crate) fn derive_address(
    xpub: &Xpub,
    kind: AddressKind,
    network: Network,
    index: u32,
) -> Option<Address> {
    let child = ChildNumber::from_normal_idx(index).ok()?;
    let path = [ChildNumber::Normal { index: 0 }, child];
    let derived = xpub.derive_pub(secp(), &path).ok()?;
    let pk = CompressedPublicKey(derived.public_key);
    Some(match kind {
        AddressKind::P2wpkh => Address::p2wpkh(&pk, network),
        AddressKind::P2pkh => Address::p2pkh(pk, network),
    })
}

/// The script of a derived address (see [`AddressSource::Derived`]).
///
/// ```
/// use bitcoin::bip32::{Xpriv, Xpub};
/// use pay402_server::bitreq::{AddressKind, derived_script};
/// let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
/// let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
/// let s = derived_script(&xpub, AddressKind::P2wpkh, bitcoin::Network::Regtest, 0).unwrap();
/// assert!(s.is_p2wpkh());
/// ```
pub fn derived_script(
    xpub: &Xpub,
    kind: AddressKind,
    network: Network,
    index: u32,
) -> Option<ScriptBuf> {
    derive_address(xpub, kind, network, index).map(|a| a.script_pubkey())
}

/// The on-chain method.
///
/// ```
/// use std::time::Duration;
/// use bitcoin::bip32::{Xpriv, Xpub};
/// use pay402_server::bitreq::OnChainConfig;
/// let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
/// let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
/// let cfg = OnChainConfig::derived(xpub).confirmations(2).quote_ttl(Duration::from_secs(600));
/// assert_eq!(cfg.confirmations, 2);
/// ```
#[derive(Clone, Debug)]
pub struct OnChainConfig {
    /// Fresh addresses per 402 (default) or one fixed address.
    pub addresses: AddressSource,
    /// Amount rule (exact by default), dust floor, minimum fee rate, RBF.
    pub policy: OnChainPolicy,
    /// Confirmations required before serving (default 1, at least 1). A
    /// transaction in the mempool can be replaced (full-RBF is Bitcoin
    /// Core's default since v28, whatever the transaction signals), so an
    /// unconfirmed payment is not a payment.
    pub confirmations: u32,
    /// Prices up to this amount are served once the transaction is
    /// broadcast, unconfirmed (default `None`: never). Set it only with
    /// [`OnChainConfig::accept_unconfirmed_up_to`], knowing that a payer can
    /// double-spend every such payment.
    pub unconfirmed_up_to: Option<Sat>,
    /// The most unexpired quotes (derived addresses handed out by 402s and
    /// not yet paid) kept at once (default 10 000). Past it, expired quotes
    /// are purged first; if still full, the 402 leaves the on-chain address
    /// out (the other methods are still offered) so unpaid requests cannot
    /// grow the store or the address index without bound. Scan the xpub
    /// with a gap limit at least this large.
    pub max_open_quotes: u64,
    /// How long a quote (a derived address and its price) stays payable.
    pub quote_ttl: Duration,
    /// The most inputs a presented transaction may have (each costs a lookup
    /// for the fee check).
    pub max_inputs: usize,
    /// The most outputs a presented transaction may have.
    pub max_outputs: usize,
}

impl OnChainConfig {
    /// Fresh P2WPKH addresses from `xpub` (`<xpub>/0/<index>`).
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// let cfg = pay402_server::bitreq::OnChainConfig::derived(xpub);
    /// assert_eq!(cfg.confirmations, 1);
    /// assert_eq!(cfg.unconfirmed_up_to, None);
    /// ```
    pub fn derived(xpub: Xpub) -> OnChainConfig {
        OnChainConfig::with_source(AddressSource::Derived {
            xpub,
            kind: AddressKind::P2wpkh,
        })
    }

    /// One fixed address (two1's behaviour; payments are not bound to requests).
    ///
    /// ```
    /// use bitcoin::Address;
    /// let a: Address = "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM".parse::<Address<_>>().unwrap().assume_checked();
    /// let cfg = pay402_server::bitreq::OnChainConfig::fixed(a);
    /// assert!(!cfg.addresses.is_derived());
    /// ```
    pub fn fixed(address: Address) -> OnChainConfig {
        OnChainConfig::with_source(AddressSource::Fixed(address))
    }

    fn with_source(addresses: AddressSource) -> OnChainConfig {
        OnChainConfig {
            addresses,
            policy: OnChainPolicy::default(),
            confirmations: 1,
            unconfirmed_up_to: None,
            max_open_quotes: 10_000,
            quote_ttl: Duration::from_secs(3600),
            max_inputs: 64,
            max_outputs: 64,
        }
    }

    /// Sets the script type of derived addresses (no effect on a fixed address).
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// use pay402_server::bitreq::{AddressKind, OnChainConfig};
    /// let cfg = OnChainConfig::derived(xpub).address_kind(AddressKind::P2pkh);
    /// # let _ = cfg;
    /// ```
    pub fn address_kind(mut self, kind: AddressKind) -> OnChainConfig {
        if let AddressSource::Derived { kind: k, .. } = &mut self.addresses {
            *k = kind;
        }
        self
    }

    /// Sets the verification policy.
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// use pay402_core::bitreq::{AmountRule, OnChainPolicy};
    /// let policy = OnChainPolicy { amount: AmountRule::AtLeast, ..Default::default() };
    /// let cfg = pay402_server::bitreq::OnChainConfig::derived(xpub).policy(policy);
    /// assert_eq!(cfg.policy.amount, AmountRule::AtLeast);
    /// ```
    pub fn policy(mut self, policy: OnChainPolicy) -> OnChainConfig {
        self.policy = policy;
        self
    }

    /// Sets the confirmations required before serving (at least 1:
    /// [`crate::bitreq::BitreqServer::new`] refuses 0 with
    /// [`ConfigError::ZeroConfirmations`]).
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// let cfg = pay402_server::bitreq::OnChainConfig::derived(xpub).confirmations(2);
    /// assert_eq!(cfg.confirmations, 2);
    /// ```
    pub fn confirmations(mut self, n: u32) -> OnChainConfig {
        self.confirmations = n;
        self
    }

    /// **Zero-confirmation opt-in.** Serves requests priced at most `cap`
    /// as soon as their payment is broadcast, unconfirmed; dearer requests
    /// still wait for [`OnChainConfig::confirmations`]. Every such payment
    /// can be double-spent (full-RBF replaces any mempool transaction, and
    /// refusing the BIP125 signal does not stop it): `cap` is what you are
    /// willing to lose per request.
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// use pay402_core::money::Sat;
    /// let cfg = pay402_server::bitreq::OnChainConfig::derived(xpub).accept_unconfirmed_up_to(Sat(1_000));
    /// assert_eq!(cfg.required_confirmations(Sat(1_000)), 0);
    /// assert_eq!(cfg.required_confirmations(Sat(1_001)), 1);
    /// ```
    pub fn accept_unconfirmed_up_to(mut self, cap: Sat) -> OnChainConfig {
        self.unconfirmed_up_to = Some(cap);
        self
    }

    /// The confirmations a payment for `price` needs before it is served:
    /// 0 when `price` is within the zero-conf cap, else
    /// [`OnChainConfig::confirmations`].
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// let cfg = pay402_server::bitreq::OnChainConfig::derived(xpub);
    /// assert_eq!(cfg.required_confirmations(pay402_core::money::Sat(1)), 1);
    /// ```
    pub fn required_confirmations(&self, price: Sat) -> u32 {
        match self.unconfirmed_up_to {
            Some(cap) if price <= cap => 0,
            _ => self.confirmations,
        }
    }

    /// Sets the bound on open quotes (see [`OnChainConfig::max_open_quotes`]).
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// let cfg = pay402_server::bitreq::OnChainConfig::derived(xpub).max_open_quotes(100);
    /// assert_eq!(cfg.max_open_quotes, 100);
    /// ```
    pub fn max_open_quotes(mut self, n: u64) -> OnChainConfig {
        self.max_open_quotes = n;
        self
    }

    /// Sets how long a quote stays payable.
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// let cfg = pay402_server::bitreq::OnChainConfig::derived(xpub).quote_ttl(std::time::Duration::from_secs(60));
    /// assert_eq!(cfg.quote_ttl.as_secs(), 60);
    /// ```
    pub fn quote_ttl(mut self, ttl: Duration) -> OnChainConfig {
        self.quote_ttl = ttl;
        self
    }
}

/// The bit-transfer method: pay402 keeps the ledger 21.co used to keep.
///
/// ```
/// let cfg = pay402_server::bitreq::TransferConfig::new("merchant");
/// assert_eq!(cfg.max_age.as_secs(), 600);
/// assert!(cfg.bind_resource);
/// ```
#[derive(Clone, Debug)]
pub struct TransferConfig {
    /// The merchant's ledger username (`Username` header, `payee_username`).
    pub username: String,
    /// Exact (default) or at-least; the signed amount is what is debited.
    pub amount: AmountRule,
    /// Transfers signed longer ago than this are refused.
    pub max_age: Duration,
    /// Transfers dated further in the future than this are refused.
    pub max_future_skew: Duration,
    /// Require the transfer's `description` (two1 put the resource URL there)
    /// to name the requested path.
    pub bind_resource: bool,
}

impl TransferConfig {
    /// Transfers to `username`, exact amounts, 10 minutes of validity.
    ///
    /// ```
    /// let cfg = pay402_server::bitreq::TransferConfig::new("shop");
    /// assert_eq!(cfg.username, "shop");
    /// ```
    pub fn new(username: impl Into<String>) -> TransferConfig {
        TransferConfig {
            username: username.into(),
            amount: AmountRule::Exact,
            max_age: Duration::from_secs(600),
            max_future_skew: Duration::from_secs(60),
            bind_resource: true,
        }
    }

    /// Sets how long a signed transfer stays valid.
    ///
    /// ```
    /// let cfg = pay402_server::bitreq::TransferConfig::new("shop").max_age(std::time::Duration::from_secs(30));
    /// assert_eq!(cfg.max_age.as_secs(), 30);
    /// ```
    pub fn max_age(mut self, age: Duration) -> TransferConfig {
        self.max_age = age;
        self
    }

    /// Sets whether the description must name the requested path.
    ///
    /// ```
    /// let cfg = pay402_server::bitreq::TransferConfig::new("shop").bind_resource(false);
    /// assert!(!cfg.bind_resource);
    /// ```
    pub fn bind_resource(mut self, on: bool) -> TransferConfig {
        self.bind_resource = on;
        self
    }
}

/// The payment channel method (protocol v2).
///
/// The fee and minimum output must be the ones clients use: the server
/// rebuilds each payment transaction from them and requires byte equality.
///
/// ```
/// use pay402_server::bitreq::{ChannelConfig, MerchantKey};
/// let cfg = ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap()).path("/payment");
/// assert_eq!(cfg.fee.0, 125_000);
/// assert_eq!(cfg.min_output.0, 3_000);
/// ```
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// The merchant key of every channel.
    pub key: Arc<MerchantKey>,
    /// The endpoint path (default `/payment`).
    pub path: String,
    /// Treat a deposit seen in the mempool as ready (default false).
    pub zeroconf: bool,
    /// Confirmations of the deposit before payments are accepted (default 1; 0 with zeroconf).
    pub deposit_confirmations: u32,
    /// The fee left to miners by payment transactions (two1: 125 000).
    pub fee: Sat,
    /// The minimum value of each payment output (two1: 3000).
    pub min_output: Sat,
    /// The shortest channel accepted at open (two1: 4 days).
    pub min_duration: Duration,
    /// Close a channel that has a payment once `now + close_margin > expiry`
    /// (two1: 3 days); payments are refused past that point.
    pub close_margin: Duration,
}

impl ChannelConfig {
    /// two1's defaults with `key`.
    ///
    /// ```
    /// use pay402_server::bitreq::{ChannelConfig, MerchantKey};
    /// let cfg = ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap());
    /// assert_eq!(cfg.path, "/payment");
    /// ```
    pub fn new(key: MerchantKey) -> ChannelConfig {
        ChannelConfig {
            key: Arc::new(key),
            path: "/payment".into(),
            zeroconf: false,
            deposit_confirmations: 1,
            fee: DEFAULT_CHANNEL_FEE,
            min_output: MIN_OUTPUT_AMOUNT,
            min_duration: Duration::from_secs(MIN_CHANNEL_DURATION_SECS),
            close_margin: Duration::from_secs(SERVER_CLOSE_MARGIN_SECS),
        }
    }

    /// Sets the endpoint path.
    ///
    /// ```
    /// # use pay402_server::bitreq::{ChannelConfig, MerchantKey};
    /// let cfg = ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap()).path("/payments/channel");
    /// assert_eq!(cfg.path, "/payments/channel");
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> ChannelConfig {
        self.path = path.into();
        self
    }

    /// Sets the payment transaction fee.
    ///
    /// ```
    /// # use pay402_server::bitreq::{ChannelConfig, MerchantKey};
    /// let cfg = ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap()).fee(pay402_core::money::Sat(2_000));
    /// assert_eq!(cfg.fee.0, 2_000);
    /// ```
    pub fn fee(mut self, fee: Sat) -> ChannelConfig {
        self.fee = fee;
        self
    }

    /// Sets zeroconf (deposits ready once seen in the mempool).
    ///
    /// ```
    /// # use pay402_server::bitreq::{ChannelConfig, MerchantKey};
    /// let cfg = ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap()).zeroconf(true);
    /// assert!(cfg.zeroconf);
    /// ```
    pub fn zeroconf(mut self, on: bool) -> ChannelConfig {
        self.zeroconf = on;
        self
    }

    /// Sets the shortest channel duration accepted at open.
    ///
    /// ```
    /// # use pay402_server::bitreq::{ChannelConfig, MerchantKey};
    /// let cfg = ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap())
    ///     .min_duration(std::time::Duration::from_secs(3600));
    /// assert_eq!(cfg.min_duration.as_secs(), 3600);
    /// ```
    pub fn min_duration(mut self, d: Duration) -> ChannelConfig {
        self.min_duration = d;
        self
    }

    /// Sets the close margin before expiry.
    ///
    /// ```
    /// # use pay402_server::bitreq::{ChannelConfig, MerchantKey};
    /// let cfg = ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap())
    ///     .close_margin(std::time::Duration::from_secs(3600));
    /// assert_eq!(cfg.close_margin.as_secs(), 3600);
    /// ```
    pub fn close_margin(mut self, d: Duration) -> ChannelConfig {
        self.close_margin = d;
        self
    }
}

/// Everything a [`crate::bitreq::BitreqServer`] offers. Enable at least one method.
///
/// ```
/// use pay402_server::bitreq::{BitreqConfig, ChannelConfig, MerchantKey, TransferConfig};
/// let cfg = BitreqConfig::new(bitcoin::Network::Regtest)
///     .public_url("https://api.example.com")
///     .transfer(TransferConfig::new("shop"))
///     .channel(ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap()));
/// assert!(cfg.onchain.is_none());
/// ```
#[derive(Clone, Debug)]
pub struct BitreqConfig {
    /// The Bitcoin network of addresses and keys.
    pub network: Network,
    /// The server's public origin (`https://host[:port]`), used for the
    /// `Bitcoin-Payment-Channel-Server` header. Without it the header is built
    /// from each request's `Host` (and `X-Forwarded-Proto`, default `http`).
    pub public_url: Option<String>,
    /// The on-chain method.
    pub onchain: Option<OnChainConfig>,
    /// The bit-transfer method.
    pub transfer: Option<TransferConfig>,
    /// The payment channel method.
    pub channel: Option<ChannelConfig>,
    /// Whether paid responses may be cached (default: `Cache-Control:
    /// private, no-store`).
    pub paid_caching: PaidCaching,
    /// Rate limit, per client address (see [`crate::limit::client_ip`]), on
    /// the work an unpaid client can make the server do: every 402 (with
    /// derived on-chain addresses, each stores a quote and takes an address
    /// index), every new on-chain proof checked (each input is looked up on
    /// the chain) and every channel opened (stored, then looked up on the
    /// chain by each sync pass until it confirms or expires). Past it: 429
    /// `rate_limited`, after the local checks and before any of that work.
    /// Bit-transfers, channel payments and a known transaction presented
    /// again are not limited. `None` (the default) = no limit.
    pub challenge_limit: Option<Arc<ClientLimiter>>,
}

impl BitreqConfig {
    /// No method enabled yet.
    ///
    /// ```
    /// let cfg = pay402_server::bitreq::BitreqConfig::new(bitcoin::Network::Bitcoin);
    /// assert!(cfg.transfer.is_none());
    /// ```
    pub fn new(network: Network) -> BitreqConfig {
        BitreqConfig {
            network,
            public_url: None,
            onchain: None,
            transfer: None,
            channel: None,
            paid_caching: PaidCaching::PrivateNoStore,
            challenge_limit: None,
        }
    }

    /// Limits 402s, on-chain proof checks and channel opens per client
    /// address (see
    /// [`BitreqConfig::challenge_limit`]). Serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`; behind a
    /// reverse proxy every client shares the proxy's address, so set the
    /// limit there instead.
    ///
    /// ```
    /// use pay402_server::limit::RateLimit;
    /// let cfg = pay402_server::bitreq::BitreqConfig::new(bitcoin::Network::Regtest)
    ///     .challenge_rate_limit(RateLimit::per_minute(60));
    /// assert_eq!(cfg.challenge_limit.unwrap().limit().burst(), 60);
    /// ```
    pub fn challenge_rate_limit(mut self, limit: RateLimit) -> BitreqConfig {
        self.challenge_limit = Some(Arc::new(ClientLimiter::new(limit)));
        self
    }

    /// Sets the caching policy of paid responses (default
    /// `Cache-Control: private, no-store`; see [`crate::cache`]).
    ///
    /// ```
    /// use pay402_server::cache::PaidCaching;
    /// let cfg = pay402_server::bitreq::BitreqConfig::new(bitcoin::Network::Regtest)
    ///     .paid_caching(PaidCaching::HandlerDecides);
    /// assert_eq!(cfg.paid_caching, PaidCaching::HandlerDecides);
    /// ```
    pub fn paid_caching(mut self, policy: PaidCaching) -> BitreqConfig {
        self.paid_caching = policy;
        self
    }

    /// Sets the public origin.
    ///
    /// ```
    /// let cfg = pay402_server::bitreq::BitreqConfig::new(bitcoin::Network::Bitcoin).public_url("https://h");
    /// assert_eq!(cfg.public_url.as_deref(), Some("https://h"));
    /// ```
    pub fn public_url(mut self, url: impl Into<String>) -> BitreqConfig {
        self.public_url = Some(url.into());
        self
    }

    /// Enables the on-chain method.
    ///
    /// ```
    /// # use bitcoin::bip32::{Xpriv, Xpub};
    /// # let xprv = Xpriv::new_master(bitcoin::Network::Regtest, &[1; 32]).unwrap();
    /// # let xpub = Xpub::from_priv(&bitcoin::secp256k1::Secp256k1::new(), &xprv);
    /// use pay402_server::bitreq::{BitreqConfig, OnChainConfig};
    /// let cfg = BitreqConfig::new(bitcoin::Network::Regtest).onchain(OnChainConfig::derived(xpub));
    /// assert!(cfg.onchain.is_some());
    /// ```
    pub fn onchain(mut self, onchain: OnChainConfig) -> BitreqConfig {
        self.onchain = Some(onchain);
        self
    }

    /// Enables the bit-transfer method.
    ///
    /// ```
    /// use pay402_server::bitreq::{BitreqConfig, TransferConfig};
    /// let cfg = BitreqConfig::new(bitcoin::Network::Regtest).transfer(TransferConfig::new("shop"));
    /// assert!(cfg.transfer.is_some());
    /// ```
    pub fn transfer(mut self, transfer: TransferConfig) -> BitreqConfig {
        self.transfer = Some(transfer);
        self
    }

    /// Enables the payment channel method.
    ///
    /// ```
    /// use pay402_server::bitreq::{BitreqConfig, ChannelConfig, MerchantKey};
    /// let cfg = BitreqConfig::new(bitcoin::Network::Regtest)
    ///     .channel(ChannelConfig::new(MerchantKey::from_slice(&[9; 32]).unwrap()));
    /// assert!(cfg.channel.is_some());
    /// ```
    pub fn channel(mut self, channel: ChannelConfig) -> BitreqConfig {
        self.channel = Some(channel);
        self
    }

    /// Checks the configuration (called by [`crate::bitreq::BitreqServer::new`]).
    ///
    /// ```
    /// use pay402_server::bitreq::{BitreqConfig, ConfigError};
    /// assert_eq!(BitreqConfig::new(bitcoin::Network::Regtest).validate(), Err(ConfigError::NoMethod));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.onchain.is_none() && self.transfer.is_none() && self.channel.is_none() {
            return Err(ConfigError::NoMethod);
        }
        if let Some(url) = &self.public_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() < 1024
                && url.bytes().all(|b| (0x21..0x7f).contains(&b));
            if !ok {
                return Err(ConfigError::InvalidUrl);
            }
        }
        if let Some(oc) = &self.onchain {
            if oc.confirmations == 0 {
                return Err(ConfigError::ZeroConfirmations);
            }
            match &oc.addresses {
                AddressSource::Derived { xpub, .. } => {
                    if xpub.network != NetworkKind::from(self.network) {
                        return Err(ConfigError::NetworkMismatch);
                    }
                }
                AddressSource::Fixed(a) => {
                    if !a.as_unchecked().is_valid_for_network(self.network) {
                        return Err(ConfigError::NetworkMismatch);
                    }
                }
            }
        }
        if let Some(t) = &self.transfer {
            let u = &t.username;
            if u.is_empty() || u.len() > 128 || !u.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(ConfigError::InvalidUsername);
            }
        }
        if let Some(c) = &self.channel {
            let p = &c.path;
            if !p.starts_with('/')
                || p.len() < 2
                || p.ends_with('/')
                || p.contains(['{', '}', '*', '?', '#'])
            {
                return Err(ConfigError::InvalidPath);
            }
        }
        Ok(())
    }
}
