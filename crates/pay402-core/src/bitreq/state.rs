//! Payment channel v2 state machines, server and client, as pure code (§4.4–§4.7).
//!
//! Time, keys and chain observations are parameters; every transition either
//! returns the new state's data or a typed [`ChannelError`] and leaves the
//! channel unchanged. No I/O: the caller persists the channel, broadcasts what
//! it is told to, and feeds chain events back in.
//!
//! Server: `Opening → Confirming → Ready → Closing → Closed` ([`ServerChannel`]).
//! Client: `Opening → ConfirmingDeposit | Ready ⇄ Outstanding → ConfirmingSpend
//! → Closed` ([`ClientChannel`]).
//!
//! ```
//! use bitcoin::secp256k1::{Secp256k1, SecretKey};
//! use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
//! use pay402_core::bitreq::state::{ServerChannel, ServerState};
//! use pay402_core::money::Sat;
//! let (m, c) = (SecretKey::from_slice(&[1; 32]).unwrap(), SecretKey::from_slice(&[2; 32]).unwrap());
//! let s = Secp256k1::new();
//! let redeem = RedeemScript::new(m.public_key(&s), c.public_key(&s), 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
//! let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
//!     fee: Sat(10_000), min_output: Sat(1_000) };
//! let mut ch = ServerChannel::new(params, false);
//! ch.on_deposit(1).unwrap();
//! assert_eq!(ch.state(), ServerState::Ready);
//! let half = params.half_signed_payment(Sat(1_000), &c).unwrap();
//! let paid = ch.receive_payment(&half, pay402_core::time::UnixTime(1_400_000_000)).unwrap();
//! assert_eq!(ch.redeem(&paid.token, Sat(1_000)).unwrap(), Sat(1_000));
//! ```

use std::collections::HashMap;

use bitcoin::secp256k1::SecretKey;
use bitcoin::{Transaction, Txid};

use crate::money::Sat;
use crate::problem::Reason;
use crate::time::UnixTime;

use super::channel::{ChannelParams, ChannelPayment, verify_close_signature};
use super::error::BitreqError;

/// two1's server closes a channel that has a payment once `now + 3 days > expiry`.
pub const SERVER_CLOSE_MARGIN_SECS: u64 = 3 * 24 * 3600;
/// two1's client broadcasts its refund once `now > expiry + 90 min` (BIP 113 allowance).
pub const CLIENT_REFUND_MARGIN_SECS: u64 = 90 * 60;

/// Why a channel request or transition was refused.
///
/// ```
/// use pay402_core::bitreq::state::ChannelError;
/// use pay402_core::problem::Reason;
/// assert_eq!(ChannelError::Underpaid { increment: pay402_core::money::Sat(1), price: pay402_core::money::Sat(2) }.status(), 402);
/// assert_eq!(ChannelError::ChainUnavailable.status(), 503);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A transaction, script or signature check failed.
    #[error(transparent)]
    Invalid(#[from] BitreqError),
    /// A request body exceeds its bound.
    #[error("request body too large")]
    BodyTooLarge,
    /// A request body or one of its fields is malformed.
    #[error("malformed body field {0}")]
    MalformedBody(&'static str),
    /// The server's protocol version is not 2.
    #[error("unsupported payment channel protocol version")]
    UnsupportedVersion,
    /// No such channel (two1 answers 404; its client then opens a new channel).
    #[error("payment channel not found")]
    ChannelNotFound,
    /// The deposit txid is already in use.
    #[error("payment channel already exists")]
    ChannelExists,
    /// The deposit is not confirmed (and zeroconf is off).
    #[error("payment channel not ready")]
    NotReady,
    /// The channel is closing or closed.
    #[error("payment channel closed")]
    Closed,
    /// The channel is too close to its expiry to accept payments.
    #[error("payment channel expiring")]
    Expiring,
    /// No payment carries this token.
    #[error("unknown payment token")]
    UnknownToken,
    /// The token was already redeemed.
    #[error("payment already redeemed")]
    AlreadyRedeemed,
    /// The token's increment is below the price; the token stays unredeemed.
    #[error("payment of {increment} sat is below the price of {price} sat")]
    Underpaid {
        /// What the token credits.
        increment: Sat,
        /// What the resource costs.
        price: Sat,
    },
    /// Closing needs at least one payment.
    #[error("no payment to close with")]
    NoPayment,
    /// The channel cannot pay that much (client side).
    #[error("payment channel balance too low")]
    InsufficientBalance,
    /// The acknowledged token is not the outstanding payment's txid (client side).
    #[error("token does not match the outstanding payment")]
    TokenMismatch,
    /// The spend does not spend the deposit with a valid layout (client side).
    #[error("transaction does not spend the deposit")]
    NotOurSpend,
    /// The event is not valid in the current state.
    #[error("invalid transition: {event} in state {state}")]
    InvalidTransition {
        /// The state's name.
        state: &'static str,
        /// The event's name.
        event: &'static str,
    },
    /// The chain backend could not be reached (for the server to report).
    #[error("chain backend unavailable")]
    ChainUnavailable,
}

impl Reason for ChannelError {
    fn reason(&self) -> &'static str {
        match self {
            ChannelError::Invalid(e) => e.reason(),
            ChannelError::BodyTooLarge => "body_too_large",
            ChannelError::MalformedBody(_) => "malformed_body",
            ChannelError::UnsupportedVersion => "unsupported_version",
            ChannelError::ChannelNotFound => "channel_not_found",
            ChannelError::ChannelExists => "channel_exists",
            ChannelError::NotReady => "channel_not_ready",
            ChannelError::Closed => "channel_closed",
            ChannelError::Expiring => "channel_expiring",
            ChannelError::UnknownToken => "unknown_token",
            ChannelError::AlreadyRedeemed => "payment_already_used",
            ChannelError::Underpaid { .. } => "underpaid",
            ChannelError::NoPayment => "no_payment",
            ChannelError::InsufficientBalance => "insufficient_balance",
            ChannelError::TokenMismatch => "token_mismatch",
            ChannelError::NotOurSpend => "not_our_spend",
            ChannelError::InvalidTransition { .. } => "invalid_transition",
            ChannelError::ChainUnavailable => "chain_unavailable",
        }
    }

    fn status(&self) -> u16 {
        match self {
            ChannelError::Invalid(BitreqError::IncorrectAmount) => 402,
            ChannelError::Invalid(e) => e.status(),
            ChannelError::UnknownToken | ChannelError::Underpaid { .. } => 402,
            ChannelError::ChannelNotFound => 404,
            ChannelError::AlreadyRedeemed
            | ChannelError::ChannelExists
            | ChannelError::NotReady
            | ChannelError::Closed
            | ChannelError::Expiring
            | ChannelError::InvalidTransition { .. } => 409,
            ChannelError::BodyTooLarge => 413,
            ChannelError::ChainUnavailable => 503,
            _ => 400,
        }
    }
}

/// Whether the server must close now: `now + margin > expiry` (two1's sync rule,
/// margin [`SERVER_CLOSE_MARGIN_SECS`]). Past this point it also refuses payments.
///
/// ```
/// use pay402_core::bitreq::state::must_close;
/// use pay402_core::time::UnixTime;
/// assert!(!must_close(UnixTime(100), 200, 100));
/// assert!(must_close(UnixTime(101), 200, 100));
/// ```
pub fn must_close(now: UnixTime, expiry: u32, margin_secs: u64) -> bool {
    now.0.saturating_add(margin_secs) > u64::from(expiry)
}

/// Whether the customer may broadcast the refund: `now > expiry + margin`
/// (two1: margin [`CLIENT_REFUND_MARGIN_SECS`], for BIP 113 median time past).
///
/// ```
/// use pay402_core::bitreq::state::refund_due;
/// use pay402_core::time::UnixTime;
/// assert!(!refund_due(UnixTime(5_600), 200, 5_400));
/// assert!(refund_due(UnixTime(5_601), 200, 5_400));
/// ```
pub fn refund_due(now: UnixTime, expiry: u32, margin_secs: u64) -> bool {
    now.0 > u64::from(expiry).saturating_add(margin_secs)
}

/// Server channel states (two1 stores `confirming`, `ready`, `closed`).
///
/// ```
/// assert_eq!(pay402_core::bitreq::state::ServerState::Ready.as_str(), "ready");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Deposit accepted by `POST`, not yet seen on the network.
    Opening,
    /// Deposit seen, not yet confirmed.
    Confirming,
    /// Accepting payments.
    Ready,
    /// The final payment was signed and handed out for broadcast.
    Closing,
    /// The deposit output is spent.
    Closed,
}

impl ServerState {
    /// The `status` string of `GET /payment/<id>`: two1's names, with
    /// `Opening` reported as `confirming` and `Closing` as `closed`.
    ///
    /// ```
    /// assert_eq!(pay402_core::bitreq::state::ServerState::Opening.as_str(), "confirming");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Opening | ServerState::Confirming => "confirming",
            ServerState::Ready => "ready",
            ServerState::Closing | ServerState::Closed => "closed",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ServerState::Opening => "opening",
            ServerState::Confirming => "confirming",
            ServerState::Ready => "ready",
            ServerState::Closing => "closing",
            ServerState::Closed => "closed",
        }
    }
}

/// One received payment (two1's `payment_channel_spend` row).
///
/// ```
/// use pay402_core::bitreq::state::Spend;
/// let s = Spend { increment: pay402_core::money::Sat(5), redeemed: false };
/// assert!(!s.redeemed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spend {
    /// What the payment credits.
    pub increment: Sat,
    /// Whether its token was used.
    pub redeemed: bool,
}

/// The server's view of one channel.
///
/// The caller must persist it atomically: store `last_amount` with a
/// compare-and-swap on the previous value and the spend under a UNIQUE token,
/// so two concurrent `PUT`s cannot both credit (two1's race, §6).
///
/// ```
/// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
/// # use pay402_core::money::Sat;
/// use pay402_core::bitreq::state::{ServerChannel, ServerState};
/// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
/// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
/// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
/// #     fee: Sat(10_000), min_output: Sat(1_000) };
/// let ch = ServerChannel::new(params, true);
/// assert_eq!(ch.state(), ServerState::Opening);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerChannel {
    params: ChannelParams,
    zeroconf: bool,
    state: ServerState,
    last_amount: Sat,
    latest: Option<Transaction>,
    spends: HashMap<Txid, Spend>,
    close_margin_secs: u64,
}

impl ServerChannel {
    /// A channel whose deposit passed [`super::channel::verify_deposit`].
    /// With `zeroconf`, an unconfirmed deposit is ready once seen.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ServerChannel::new(params, false);
    /// assert_eq!(ch.last_amount(), Sat(0));
    /// ```
    pub fn new(params: ChannelParams, zeroconf: bool) -> ServerChannel {
        ServerChannel {
            params,
            zeroconf,
            state: ServerState::Opening,
            last_amount: Sat(0),
            latest: None,
            spends: HashMap::new(),
            close_margin_secs: SERVER_CLOSE_MARGIN_SECS,
        }
    }

    /// Overrides the close margin (default [`SERVER_CLOSE_MARGIN_SECS`]).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ServerChannel::new(params, false).with_close_margin(3600);
    /// assert!(!ch.must_close(pay402_core::time::UnixTime(1_450_223_410 - 3600)));
    /// ```
    pub fn with_close_margin(mut self, secs: u64) -> ServerChannel {
        self.close_margin_secs = secs;
        self
    }

    /// The current state.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = pay402_core::bitreq::state::ServerChannel::new(params, true);
    /// ch.on_deposit(0).unwrap();
    /// assert_eq!(ch.state().as_str(), "ready");
    /// ```
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The channel parameters.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ServerChannel::new(params, true);
    /// assert_eq!(ch.params().deposit_value, Sat(111_000));
    /// ```
    pub fn params(&self) -> &ChannelParams {
        &self.params
    }

    /// The last cumulative amount received (`balance` of `GET /payment/<id>`).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// assert_eq!(pay402_core::bitreq::state::ServerChannel::new(params, true).last_amount(), Sat(0));
    /// ```
    pub fn last_amount(&self) -> Sat {
        self.last_amount
    }

    /// The latest half-signed payment, if any.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// assert!(pay402_core::bitreq::state::ServerChannel::new(params, true).latest_payment().is_none());
    /// ```
    pub fn latest_payment(&self) -> Option<&Transaction> {
        self.latest.as_ref()
    }

    /// The spend recorded under a token.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # use bitcoin::hashes::Hash;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ServerChannel::new(params, true);
    /// assert!(ch.spend(&bitcoin::Txid::all_zeros()).is_none());
    /// ```
    pub fn spend(&self, token: &Txid) -> Option<Spend> {
        self.spends.get(token).copied()
    }

    /// Whether the close-before-expiry rule applies at `now` ([`must_close`]).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ServerChannel::new(params, true);
    /// assert!(ch.must_close(pay402_core::time::UnixTime(1_450_223_410)));
    /// ```
    pub fn must_close(&self, now: UnixTime) -> bool {
        must_close(now, self.params.redeem.expiry, self.close_margin_secs)
    }

    fn bad(&self, event: &'static str) -> ChannelError {
        ChannelError::InvalidTransition {
            state: self.state.name(),
            event,
        }
    }

    /// The deposit was seen with `confirmations`: `Opening`/`Confirming` →
    /// `Ready` if confirmed (or zeroconf), else `Confirming`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ServerChannel, ServerState};
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ServerChannel::new(params, false);
    /// assert_eq!(ch.on_deposit(0), Ok(ServerState::Confirming));
    /// assert_eq!(ch.on_deposit(1), Ok(ServerState::Ready));
    /// ```
    pub fn on_deposit(&mut self, confirmations: u32) -> Result<ServerState, ChannelError> {
        match self.state {
            ServerState::Opening | ServerState::Confirming => {
                self.state = if confirmations >= 1 || self.zeroconf {
                    ServerState::Ready
                } else {
                    ServerState::Confirming
                };
                Ok(self.state)
            }
            ServerState::Ready => Ok(self.state),
            _ => Err(self.bad("deposit_seen")),
        }
    }

    /// `PUT`: accepts a half-signed payment only in `Ready`, before the close
    /// deadline, and only if it pays more than the last one (all §4.5
    /// transaction checks via [`ChannelParams::verify_half_signed`]).
    /// Records the spend, unredeemed, under its token.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ChannelError, ServerChannel};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ServerChannel::new(params, false);
    /// let half = params.half_signed_payment(Sat(1_000), &key).unwrap();
    /// assert_eq!(ch.receive_payment(&half, pay402_core::time::UnixTime(0)), Err(ChannelError::NotReady));
    /// ```
    pub fn receive_payment(
        &mut self,
        tx: &Transaction,
        now: UnixTime,
    ) -> Result<ChannelPayment, ChannelError> {
        match self.state {
            ServerState::Ready => {}
            ServerState::Opening | ServerState::Confirming => return Err(ChannelError::NotReady),
            ServerState::Closing | ServerState::Closed => return Err(ChannelError::Closed),
        }
        if self.must_close(now) {
            return Err(ChannelError::Expiring);
        }
        let paid = self.params.verify_half_signed(tx, self.last_amount)?;
        if self.spends.contains_key(&paid.token) {
            return Err(ChannelError::AlreadyRedeemed);
        }
        self.last_amount = paid.amount;
        self.latest = Some(tx.clone());
        self.spends.insert(
            paid.token,
            Spend {
                increment: paid.increment,
                redeemed: false,
            },
        );
        Ok(paid)
    }

    /// Redeems a token for a request costing `price`: single use, credits the
    /// increment, accepts `increment >= price`. Unlike two1, an underpaying token
    /// is **not** burned. Allowed in `Ready` and `Closing` (the payment stands).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ChannelError, ServerChannel};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ServerChannel::new(params, true);
    /// ch.on_deposit(0).unwrap();
    /// let t = ch.receive_payment(&params.half_signed_payment(Sat(1_000), &key).unwrap(),
    ///     pay402_core::time::UnixTime(0)).unwrap().token;
    /// assert!(matches!(ch.redeem(&t, Sat(2_000)), Err(ChannelError::Underpaid { .. })));
    /// assert_eq!(ch.redeem(&t, Sat(500)), Ok(Sat(1_000)));
    /// assert_eq!(ch.redeem(&t, Sat(500)), Err(ChannelError::AlreadyRedeemed));
    /// ```
    pub fn redeem(&mut self, token: &Txid, price: Sat) -> Result<Sat, ChannelError> {
        match self.state {
            ServerState::Ready | ServerState::Closing => {}
            ServerState::Opening | ServerState::Confirming => return Err(ChannelError::NotReady),
            ServerState::Closed => return Err(ChannelError::Closed),
        }
        let spend = self
            .spends
            .get_mut(token)
            .ok_or(ChannelError::UnknownToken)?;
        if spend.redeemed {
            return Err(ChannelError::AlreadyRedeemed);
        }
        if spend.increment < price {
            return Err(ChannelError::Underpaid {
                increment: spend.increment,
                price,
            });
        }
        spend.redeemed = true;
        Ok(spend.increment)
    }

    /// `DELETE`: the customer's close signature (hex DER over the ASCII deposit
    /// txid) must verify and a payment must exist. Returns the fully signed
    /// latest payment to broadcast; the channel goes to `Closing`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ChannelError, ServerChannel};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ServerChannel::new(params, true);
    /// ch.on_deposit(0).unwrap();
    /// let sig = hex::encode(pay402_core::bitreq::close_signature(&params.deposit.txid, &key));
    /// assert_eq!(ch.close(&sig, &key), Err(ChannelError::NoPayment));
    /// ```
    pub fn close(
        &mut self,
        signature_hex: &str,
        merchant_key: &SecretKey,
    ) -> Result<Transaction, ChannelError> {
        match self.state {
            ServerState::Closing | ServerState::Closed => return Err(ChannelError::Closed),
            _ => {}
        }
        verify_close_signature(
            &self.params.deposit.txid,
            signature_hex,
            &self.params.redeem.customer,
        )?;
        self.finish(merchant_key)
    }

    fn finish(&mut self, merchant_key: &SecretKey) -> Result<Transaction, ChannelError> {
        let latest = self.latest.as_ref().ok_or(ChannelError::NoPayment)?;
        let full = self.params.complete_payment(latest, merchant_key)?;
        self.state = ServerState::Closing;
        Ok(full)
    }

    /// Periodic sync at `now`: if the close deadline is reached and a payment
    /// exists, returns the fully signed payment to broadcast (→ `Closing`).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::ServerChannel;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ServerChannel::new(params, true);
    /// assert_eq!(ch.sync(pay402_core::time::UnixTime(1_450_223_410), &key), Ok(None));
    /// ```
    pub fn sync(
        &mut self,
        now: UnixTime,
        merchant_key: &SecretKey,
    ) -> Result<Option<Transaction>, ChannelError> {
        let open = matches!(self.state, ServerState::Confirming | ServerState::Ready);
        if open && self.latest.is_some() && self.must_close(now) {
            return self.finish(merchant_key).map(Some);
        }
        Ok(None)
    }

    /// The deposit output was spent (by our close, or by the customer's refund): → `Closed`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ServerChannel, ServerState};
    /// # let k = SecretKey::from_slice(&[1; 32]).unwrap().public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ServerChannel::new(params, true);
    /// ch.on_deposit_spent();
    /// assert_eq!(ch.state(), ServerState::Closed);
    /// ```
    pub fn on_deposit_spent(&mut self) {
        self.state = ServerState::Closed;
    }
}

/// Client channel states (two1's `channels.state`).
///
/// ```
/// assert_eq!(pay402_core::bitreq::state::ClientState::Outstanding.as_str(), "OUTSTANDING");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Deposit and refund built, `POST` not yet acknowledged.
    Opening,
    /// `POST` acknowledged, deposit not confirmed.
    ConfirmingDeposit,
    /// Ready to pay.
    Ready,
    /// A payment was sent, its `PUT` not yet answered.
    Outstanding,
    /// `DELETE` answered with the spend txid; waiting for it.
    ConfirmingSpend,
    /// The deposit is spent.
    Closed,
}

impl ClientState {
    /// two1's database name of the state.
    ///
    /// ```
    /// assert_eq!(pay402_core::bitreq::state::ClientState::ConfirmingDeposit.as_str(), "CONFIRMING_DEPOSIT");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Opening => "OPENING",
            ClientState::ConfirmingDeposit => "CONFIRMING_DEPOSIT",
            ClientState::Ready => "READY",
            ClientState::Outstanding => "OUTSTANDING",
            ClientState::ConfirmingSpend => "CONFIRMING_SPEND",
            ClientState::Closed => "CLOSED",
        }
    }
}

/// The customer's view of one channel (§4.7).
///
/// ```
/// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
/// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
/// # use pay402_core::money::Sat;
/// use pay402_core::bitreq::state::{ClientChannel, ClientState};
/// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
/// # let k = key.public_key(&Secp256k1::new());
/// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
/// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
/// #     fee: Sat(10_000), min_output: Sat(1_000) };
/// let mut ch = ClientChannel::open(params, &key).unwrap();
/// ch.on_open_ack(true).unwrap();
/// let half = ch.pay(Sat(10), &key).unwrap(); // raised to the 1 000 minimum
/// assert_eq!(half.output[0].value.to_sat(), 1_000);
/// ch.pay_ack(&half.compute_txid()).unwrap();
/// assert_eq!(ch.state(), ClientState::Ready);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientChannel {
    params: ChannelParams,
    state: ClientState,
    refund: Transaction,
    last_amount: Sat,
    latest: Option<Transaction>,
    outstanding: Option<(Transaction, Sat)>,
    spend_txid: Option<Txid>,
    refund_margin_secs: u64,
}

impl ClientChannel {
    /// Starts a channel: builds and keeps the signed refund. State `Opening`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert_eq!(ch.refund().lock_time.to_consensus_u32(), 1_450_223_410);
    /// ```
    pub fn open(
        params: ChannelParams,
        customer_key: &SecretKey,
    ) -> Result<ClientChannel, ChannelError> {
        Ok(ClientChannel {
            refund: params.refund(customer_key)?,
            params,
            state: ClientState::Opening,
            last_amount: Sat(0),
            latest: None,
            outstanding: None,
            spend_txid: None,
            refund_margin_secs: CLIENT_REFUND_MARGIN_SECS,
        })
    }

    /// Overrides the refund margin (default [`CLIENT_REFUND_MARGIN_SECS`]).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap().with_refund_margin(0);
    /// assert!(ch.refund_if_due(pay402_core::time::UnixTime(1_450_223_411)).is_some());
    /// ```
    pub fn with_refund_margin(mut self, secs: u64) -> ClientChannel {
        self.refund_margin_secs = secs;
        self
    }

    /// The current state.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert_eq!(ch.state().as_str(), "OPENING");
    /// ```
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The signed refund (valid after the expiry; never sent to the server).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert_eq!(ch.refund().output[0].value.to_sat(), 101_000);
    /// ```
    pub fn refund(&self) -> &Transaction {
        &self.refund
    }

    /// The acknowledged cumulative amount paid.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert_eq!(ch.last_amount(), Sat(0));
    /// ```
    pub fn last_amount(&self) -> Sat {
        self.last_amount
    }

    /// What can still be paid: `deposit − fee − min_output − last_amount`
    /// (the customer's change must stay at or above the minimum output).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert_eq!(ch.balance(), Sat(100_000));
    /// ```
    pub fn balance(&self) -> Sat {
        Sat(self
            .params
            .deposit_value
            .0
            .saturating_sub(self.params.fee.0)
            .saturating_sub(self.params.min_output.0)
            .saturating_sub(self.last_amount.0))
    }

    /// Whether the channel expired at `now` (two1's client then syncs and reopens).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert!(ch.is_expired(pay402_core::time::UnixTime(1_450_223_410)));
    /// ```
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now.0 >= u64::from(self.params.redeem.expiry)
    }

    fn bad(&self, event: &'static str) -> ChannelError {
        ChannelError::InvalidTransition {
            state: self.state.as_str(),
            event,
        }
    }

    /// The `POST` succeeded (the caller now broadcasts the deposit):
    /// `Opening` → `Ready` if the server is zeroconf, else `ConfirmingDeposit`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ClientChannel, ClientState};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ClientChannel::open(params, &key).unwrap();
    /// assert_eq!(ch.on_open_ack(false), Ok(ClientState::ConfirmingDeposit));
    /// ```
    pub fn on_open_ack(&mut self, zeroconf: bool) -> Result<ClientState, ChannelError> {
        if self.state != ClientState::Opening {
            return Err(self.bad("open_ack"));
        }
        self.state = if zeroconf {
            ClientState::Ready
        } else {
            ClientState::ConfirmingDeposit
        };
        Ok(self.state)
    }

    /// The deposit confirmed: `ConfirmingDeposit` → `Ready` (idempotent in `Ready`).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ClientChannel, ClientState};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ClientChannel::open(params, &key).unwrap();
    /// assert!(ch.on_deposit_confirmed().is_err());
    /// ch.on_open_ack(false).unwrap();
    /// assert_eq!(ch.on_deposit_confirmed(), Ok(ClientState::Ready));
    /// ```
    pub fn on_deposit_confirmed(&mut self) -> Result<ClientState, ChannelError> {
        match self.state {
            ClientState::ConfirmingDeposit | ClientState::Ready => {
                self.state = ClientState::Ready;
                Ok(self.state)
            }
            _ => Err(self.bad("deposit_confirmed")),
        }
    }

    /// Pays `price` more: `Ready` → `Outstanding`. Returns the half-signed
    /// payment to `PUT`; the first payment is raised to the minimum output.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ChannelError, ClientChannel};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ClientChannel::open(params, &key).unwrap();
    /// ch.on_open_ack(true).unwrap();
    /// assert_eq!(ch.pay(Sat(100_001), &key), Err(ChannelError::InsufficientBalance));
    /// ```
    pub fn pay(
        &mut self,
        price: Sat,
        customer_key: &SecretKey,
    ) -> Result<Transaction, ChannelError> {
        if self.state != ClientState::Ready {
            return Err(self.bad("pay"));
        }
        if price.0 == 0 || price > self.balance() {
            return Err(ChannelError::InsufficientBalance);
        }
        let amount = Sat(self
            .last_amount
            .0
            .saturating_add(price.0)
            .max(self.params.min_output.0));
        let tx = self.params.half_signed_payment(amount, customer_key)?;
        self.outstanding = Some((tx.clone(), amount));
        self.state = ClientState::Outstanding;
        Ok(tx)
    }

    /// The server answered the `PUT` with `token`: `Outstanding` → `Ready`, the
    /// payment counts. The token must be the payment's txid.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # use bitcoin::hashes::Hash;
    /// use pay402_core::bitreq::state::{ChannelError, ClientChannel};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ClientChannel::open(params, &key).unwrap();
    /// ch.on_open_ack(true).unwrap();
    /// ch.pay(Sat(1_000), &key).unwrap();
    /// assert_eq!(ch.pay_ack(&bitcoin::Txid::all_zeros()), Err(ChannelError::TokenMismatch));
    /// ```
    pub fn pay_ack(&mut self, token: &Txid) -> Result<Sat, ChannelError> {
        let Some((tx, amount)) = self.outstanding.as_ref() else {
            return Err(self.bad("pay_ack"));
        };
        if tx.compute_txid() != *token {
            return Err(ChannelError::TokenMismatch);
        }
        let amount = *amount;
        self.latest = self.outstanding.take().map(|(t, _)| t);
        self.last_amount = amount;
        self.state = ClientState::Ready;
        Ok(amount)
    }

    /// The server refused the `PUT`: `Outstanding` → `Ready`, the payment is dropped.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ClientChannel, ClientState};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ClientChannel::open(params, &key).unwrap();
    /// ch.on_open_ack(true).unwrap();
    /// ch.pay(Sat(1_000), &key).unwrap();
    /// assert_eq!(ch.pay_nack(), Ok(ClientState::Ready));
    /// assert_eq!(ch.last_amount(), Sat(0));
    /// ```
    pub fn pay_nack(&mut self) -> Result<ClientState, ChannelError> {
        if self.state != ClientState::Outstanding {
            return Err(self.bad("pay_nack"));
        }
        self.outstanding = None;
        self.state = ClientState::Ready;
        Ok(self.state)
    }

    /// The close signature to send with `DELETE` (hex DER over the ASCII deposit txid).
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert!(ch.close_signature_hex(&key).starts_with("30"));
    /// ```
    pub fn close_signature_hex(&self, customer_key: &SecretKey) -> String {
        hex::encode(super::channel::close_signature(
            &self.params.deposit.txid,
            customer_key,
        ))
    }

    /// The `DELETE` returned `spend_txid`: `Ready` → `ConfirmingSpend`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// # use bitcoin::hashes::Hash;
    /// use pay402_core::bitreq::state::{ClientChannel, ClientState};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ClientChannel::open(params, &key).unwrap();
    /// ch.on_open_ack(true).unwrap();
    /// assert_eq!(ch.on_close(bitcoin::Txid::all_zeros()), Ok(ClientState::ConfirmingSpend));
    /// ```
    pub fn on_close(&mut self, spend_txid: Txid) -> Result<ClientState, ChannelError> {
        if self.state != ClientState::Ready {
            return Err(self.bad("close"));
        }
        self.spend_txid = Some(spend_txid);
        self.state = ClientState::ConfirmingSpend;
        Ok(self.state)
    }

    /// A transaction spending the deposit was seen: checks it spends the
    /// deposit outpoint with our redeem script as its last push, then → `Closed`.
    /// Valid from any state but `Opening` and `Closed`.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::bitreq::state::{ClientChannel, ClientState};
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let mut ch = ClientChannel::open(params, &key).unwrap();
    /// ch.on_open_ack(true).unwrap();
    /// let refund = ch.refund().clone();
    /// assert_eq!(ch.finalize(&refund), Ok(ClientState::Closed));
    /// ```
    pub fn finalize(&mut self, spend: &Transaction) -> Result<ClientState, ChannelError> {
        if matches!(self.state, ClientState::Opening | ClientState::Closed) {
            return Err(self.bad("finalize"));
        }
        let redeem = self.params.redeem.to_script();
        let ok = spend.input.iter().any(|i| {
            i.previous_output == self.params.deposit
                && i.script_sig
                    .instructions()
                    .last()
                    .and_then(Result::ok)
                    .and_then(|ins| ins.push_bytes().map(|b| b.as_bytes() == redeem.as_bytes()))
                    .unwrap_or(false)
        });
        if !ok {
            return Err(ChannelError::NotOurSpend);
        }
        self.spend_txid = Some(spend.compute_txid());
        self.state = ClientState::Closed;
        Ok(self.state)
    }

    /// The refund to broadcast, once `now > expiry + margin` and the channel is
    /// not closed; `None` before.
    ///
    /// ```
    /// # use bitcoin::secp256k1::{Secp256k1, SecretKey};
    /// # use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
    /// # use pay402_core::money::Sat;
    /// use pay402_core::time::UnixTime;
    /// # let key = SecretKey::from_slice(&[1; 32]).unwrap();
    /// # let k = key.public_key(&Secp256k1::new());
    /// # let redeem = RedeemScript::new(k, k, 1_450_223_410, ExpiryEncoding::Two1Raw).unwrap();
    /// # let params = ChannelParams { redeem, deposit: bitcoin::OutPoint::null(), deposit_value: Sat(111_000),
    /// #     fee: Sat(10_000), min_output: Sat(1_000) };
    /// let ch = pay402_core::bitreq::state::ClientChannel::open(params, &key).unwrap();
    /// assert!(ch.refund_if_due(UnixTime(1_450_223_410 + 5_400)).is_none());
    /// assert!(ch.refund_if_due(UnixTime(1_450_223_410 + 5_401)).is_some());
    /// ```
    pub fn refund_if_due(&self, now: UnixTime) -> Option<&Transaction> {
        (self.state != ClientState::Closed
            && refund_due(now, self.params.redeem.expiry, self.refund_margin_secs))
        .then_some(&self.refund)
    }
}
