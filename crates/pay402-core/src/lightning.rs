//! Lightning types and the ports (traits) that nodes implement.
//!
//! The traits are declarations only: `pay402-backends` implements them for
//! simnet, LND and others; `pay402-server` calls [`InvoiceIssuer`] and
//! `pay402-client` calls [`LightningPayer`]. Nothing here performs I/O.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::money::Msat;
use crate::problem::Reason;

pub use bitcoin::Network;

/// A 32-byte Lightning payment hash.
///
/// ```
/// use pay402_core::lightning::PaymentHash;
/// let h: PaymentHash = "7cef93f2c51aa65208bec1447fc38fc58d9bce1375a532edb0dcd290a2c330ae".parse().unwrap();
/// assert_eq!(h.to_string().len(), 64);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentHash(pub [u8; 32]);

/// A 32-byte payment preimage: the proof that an invoice was paid.
///
/// Its `Debug` output is redacted and its memory is zeroized on drop.
///
/// ```
/// use pay402_core::lightning::{Preimage, PaymentHash};
/// let p = Preimage::from_bytes([7u8; 32]);
/// let h = p.payment_hash();
/// assert!(p.matches(&h));
/// assert_eq!(format!("{p:?}"), "Preimage(..)");
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Preimage([u8; 32]);

/// Parsing a 32-byte hex value failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex digits")]
pub struct HexLenError;

fn parse_hex32(s: &str) -> Result<[u8; 32], HexLenError> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return Err(HexLenError);
    }
    hex::decode_to_slice(s, &mut out).map_err(|_| HexLenError)?;
    Ok(out)
}

impl PaymentHash {
    /// The bytes of the hash.
    ///
    /// ```
    /// assert_eq!(pay402_core::lightning::PaymentHash([1; 32]).as_bytes()[0], 1);
    /// ```
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    ///
    /// ```
    /// assert!(pay402_core::lightning::PaymentHash([0xab; 32]).to_hex().starts_with("abab"));
    /// ```
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for PaymentHash {
    type Err = HexLenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s).map(PaymentHash)
    }
}

impl fmt::Display for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Encoding 32 bytes into a 64-byte buffer cannot fail.
        if hex::encode_to_slice(self.0, &mut buf).is_ok() {
            f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
        } else {
            Err(fmt::Error)
        }
    }
}

impl fmt::Debug for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentHash({self})")
    }
}

impl Preimage {
    /// Wraps raw bytes.
    ///
    /// ```
    /// let p = pay402_core::lightning::Preimage::from_bytes([0; 32]);
    /// assert_eq!(p.as_bytes(), &[0; 32]);
    /// ```
    pub const fn from_bytes(bytes: [u8; 32]) -> Preimage {
        Preimage(bytes)
    }

    /// Parses 64 hex digits, upper or lower case.
    ///
    /// ```
    /// use pay402_core::lightning::Preimage;
    /// assert!(Preimage::from_hex(&"AB".repeat(32)).is_ok());
    /// assert!(Preimage::from_hex("abc").is_err());
    /// ```
    pub fn from_hex(s: &str) -> Result<Preimage, HexLenError> {
        parse_hex32(s).map(Preimage)
    }

    /// The raw bytes.
    ///
    /// ```
    /// assert_eq!(pay402_core::lightning::Preimage::from_bytes([9; 32]).as_bytes()[31], 9);
    /// ```
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex (the canonical credential form).
    ///
    /// ```
    /// assert_eq!(pay402_core::lightning::Preimage::from_bytes([0; 32]).to_hex(), "0".repeat(64));
    /// ```
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256(preimage)`.
    ///
    /// ```
    /// let p = pay402_core::lightning::Preimage::from_bytes([0; 32]);
    /// assert_eq!(p.payment_hash().to_hex(), "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
    /// ```
    pub fn payment_hash(&self) -> PaymentHash {
        PaymentHash(Sha256::digest(self.0).into())
    }

    /// Whether `sha256(self) == hash`, compared in constant time.
    ///
    /// ```
    /// let p = pay402_core::lightning::Preimage::from_bytes([1; 32]);
    /// assert!(!p.matches(&pay402_core::lightning::PaymentHash([0; 32])));
    /// ```
    pub fn matches(&self, hash: &PaymentHash) -> bool {
        let h: [u8; 32] = Sha256::digest(self.0).into();
        crate::ct::eq32(&h, &hash.0)
    }

    /// Whether every byte is zero (a broken wallet's "preimage"; never valid).
    ///
    /// ```
    /// assert!(pay402_core::lightning::Preimage::from_bytes([0; 32]).is_all_zero());
    /// ```
    pub fn is_all_zero(&self) -> bool {
        self.0.ct_eq(&[0u8; 32]).into()
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(..)")
    }
}

impl PartialEq for Preimage {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for Preimage {}

/// What a server asks its node for when it needs an invoice.
///
/// ```
/// use pay402_core::lightning::InvoiceRequest;
/// use pay402_core::money::Msat;
/// let req = InvoiceRequest::new(Msat(100_000), "GET /hello");
/// assert_eq!(req.expiry.as_secs(), 3600);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceRequest {
    /// The amount to charge.
    pub amount: Msat,
    /// The invoice description (memo).
    pub memo: String,
    /// How long the invoice stays payable.
    pub expiry: Duration,
}

impl InvoiceRequest {
    /// A request with lnd's default expiry of one hour.
    ///
    /// ```
    /// let r = pay402_core::lightning::InvoiceRequest::new(pay402_core::money::Msat(1), "x");
    /// assert_eq!(r.memo, "x");
    /// ```
    pub fn new(amount: Msat, memo: impl Into<String>) -> InvoiceRequest {
        InvoiceRequest {
            amount,
            memo: memo.into(),
            expiry: Duration::from_secs(3600),
        }
    }
}

/// An invoice a node created.
///
/// ```
/// use pay402_core::lightning::{CreatedInvoice, PaymentHash};
/// let inv = CreatedInvoice { bolt11: "lnbcrt1...".into(), payment_hash: PaymentHash([0; 32]) };
/// assert!(inv.bolt11.starts_with("lnbcrt"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedInvoice {
    /// The BOLT11 payment request.
    pub bolt11: String,
    /// Its payment hash.
    pub payment_hash: PaymentHash,
}

/// The state of an invoice as its node sees it.
///
/// ```
/// use pay402_core::lightning::InvoiceState;
/// assert!(!InvoiceState::Open.is_settled());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceState {
    /// Not paid yet.
    Open,
    /// HTLCs are held but not settled (hold invoices).
    Accepted,
    /// Paid.
    Settled {
        /// The preimage that settled it.
        preimage: Preimage,
        /// What was actually received.
        amount_paid: Msat,
    },
    /// Canceled or expired.
    Canceled,
}

impl InvoiceState {
    /// Whether the invoice is paid.
    ///
    /// ```
    /// use pay402_core::lightning::{InvoiceState, Preimage};
    /// use pay402_core::money::Msat;
    /// let s = InvoiceState::Settled { preimage: Preimage::from_bytes([1; 32]), amount_paid: Msat(5) };
    /// assert!(s.is_settled());
    /// ```
    pub fn is_settled(&self) -> bool {
        matches!(self, InvoiceState::Settled { .. })
    }
}

/// What a client asks its node to pay.
///
/// ```
/// use pay402_core::lightning::PayRequest;
/// use pay402_core::money::Msat;
/// let r = PayRequest::new("lnbcrt1...", Msat(10_000));
/// assert_eq!(r.timeout.as_secs(), 60);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayRequest {
    /// The BOLT11 invoice to pay.
    pub bolt11: String,
    /// The most the node may spend on routing fees.
    pub max_fee: Msat,
    /// How long the node may try before the attempt is abandoned.
    pub timeout: Duration,
}

impl PayRequest {
    /// A request with a 60-second timeout.
    ///
    /// ```
    /// let r = pay402_core::lightning::PayRequest::new("lnbc1", pay402_core::money::Msat(0));
    /// assert_eq!(r.bolt11, "lnbc1");
    /// ```
    pub fn new(bolt11: impl Into<String>, max_fee: Msat) -> PayRequest {
        PayRequest {
            bolt11: bolt11.into(),
            max_fee,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A completed payment.
///
/// ```
/// use pay402_core::lightning::{Payment, Preimage};
/// use pay402_core::money::Msat;
/// let pre = Preimage::from_bytes([3; 32]);
/// let p = Payment { payment_hash: pre.payment_hash(), preimage: pre, amount: Msat(1000), fee: Msat(0) };
/// assert!(p.preimage.matches(&p.payment_hash));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The invoice's payment hash.
    pub payment_hash: PaymentHash,
    /// The preimage released by the payee.
    pub preimage: Preimage,
    /// The amount delivered to the payee.
    pub amount: Msat,
    /// The routing fee paid.
    pub fee: Msat,
}

/// A Lightning node call failed.
///
/// `Unknown` is special: the payment may or may not have gone through, so the
/// caller must track it and must not pay the same invoice again blindly.
///
/// ```
/// use pay402_core::lightning::LightningError;
/// use pay402_core::problem::Reason;
/// let e = LightningError::PaymentFailed { reason: "no route".into() };
/// assert_eq!(e.reason(), "payment_failed");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LightningError {
    /// The node could not be reached.
    #[error("{backend} {call}: node unreachable: {detail}")]
    Unreachable {
        /// Which backend (e.g. `lnd`).
        backend: &'static str,
        /// Which node call (e.g. `create_invoice`).
        call: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The node refused the call.
    #[error("{backend} {call}: rejected: {detail}")]
    Rejected {
        /// Which backend.
        backend: &'static str,
        /// Which node call.
        call: &'static str,
        /// The node's message.
        detail: String,
    },
    /// The node answered something that does not parse or is inconsistent.
    #[error("{backend} {call}: invalid response: {detail}")]
    InvalidResponse {
        /// Which backend.
        backend: &'static str,
        /// Which node call.
        call: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The payment definitely failed; nothing was spent.
    #[error("payment failed: {reason}")]
    PaymentFailed {
        /// Why (e.g. `no route`, `insufficient balance`).
        reason: String,
    },
    /// The payment's outcome is unknown (timed out while in flight).
    #[error(
        "payment {payment_hash} outcome unknown; it is tracked and must not be retried blindly"
    )]
    Unknown {
        /// The payment hash to track.
        payment_hash: PaymentHash,
    },
    /// The invoice is not known to the node.
    #[error("invoice not found")]
    NotFound,
}

impl Reason for LightningError {
    fn reason(&self) -> &'static str {
        match self {
            LightningError::Unreachable { .. } => "node_unreachable",
            LightningError::Rejected { .. } => "node_rejected",
            LightningError::InvalidResponse { .. } => "node_invalid_response",
            LightningError::PaymentFailed { .. } => "payment_failed",
            LightningError::Unknown { .. } => "payment_unknown",
            LightningError::NotFound => "invoice_not_found",
        }
    }
    fn status(&self) -> u16 {
        503
    }
}

/// The server side of a Lightning node: create and look up invoices.
///
/// ```
/// use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest};
/// async fn charge(node: &dyn InvoiceIssuer) {
///     let inv = node.create_invoice(&InvoiceRequest::new(pay402_core::money::Msat(1000), "x")).await;
///     let _ = inv;
/// }
/// ```
#[async_trait]
pub trait InvoiceIssuer: Send + Sync {
    /// Creates an invoice; the node keeps the preimage until it is paid.
    async fn create_invoice(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError>;
    /// Looks an invoice up by payment hash.
    async fn lookup_invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError>;
    /// The network the node's invoices are for.
    fn network(&self) -> Network;
}

/// The client side of a Lightning node: pay invoices.
///
/// Implementations must be idempotent on payment hash (paying an invoice that
/// was already paid returns the earlier result, never a second payment) and
/// must report a timed-out attempt as [`LightningError::Unknown`].
///
/// ```
/// use pay402_core::lightning::{LightningPayer, PayRequest};
/// async fn pay(node: &dyn LightningPayer, bolt11: &str) {
///     let res = node.pay_invoice(&PayRequest::new(bolt11, pay402_core::money::Msat(10_000))).await;
///     let _ = res;
/// }
/// ```
#[async_trait]
pub trait LightningPayer: Send + Sync {
    /// Pays an invoice and returns the preimage.
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError>;
}

#[async_trait]
impl<T: InvoiceIssuer + ?Sized> InvoiceIssuer for std::sync::Arc<T> {
    async fn create_invoice(&self, req: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        (**self).create_invoice(req).await
    }
    async fn lookup_invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        (**self).lookup_invoice(hash).await
    }
    fn network(&self) -> Network {
        (**self).network()
    }
}

#[async_trait]
impl<T: LightningPayer + ?Sized> LightningPayer for std::sync::Arc<T> {
    async fn pay_invoice(&self, req: &PayRequest) -> Result<Payment, LightningError> {
        (**self).pay_invoice(req).await
    }
}
