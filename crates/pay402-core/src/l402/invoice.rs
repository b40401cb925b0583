//! BOLT11 checks a payer makes before paying an L402 challenge.
//!
//! The invoice must parse and carry a valid signature (`lightning-invoice`),
//! be for the expected network, not be expired at `now`, carry an amount, be
//! within the caller's maximum, and pay the payment hash the macaroon's
//! identifier commits to (otherwise paying it would buy nothing).

use std::str::FromStr;

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::PublicKey;
use lightning_invoice::{Bolt11Invoice, Currency};

use crate::b64;
use crate::lightning::{Network, PaymentHash};
use crate::money::Msat;
use crate::problem::Reason;
use crate::time::UnixTime;

use super::challenge::Challenge;
use super::identifier::{Identifier, IdentifierError};
use super::macaroon::{MAX_MACAROON_BYTES, MacaroonError, MacaroonRef};

/// Longest BOLT11 string accepted.
pub const MAX_INVOICE_LEN: usize = 7089;

/// Why an invoice (or the challenge carrying it) was refused before paying.
///
/// ```
/// use pay402_core::l402::InvoiceError;
/// use pay402_core::problem::Reason;
/// assert_eq!(InvoiceError::Expired.reason(), "invoice_expired");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// The invoice does not parse or its signature is invalid.
    #[error("invalid BOLT11 invoice: {0}")]
    Parse(String),
    /// Longer than [`MAX_INVOICE_LEN`].
    #[error("invoice too long")]
    TooLong,
    /// The invoice's payment hash differs from the macaroon's.
    #[error("invoice payment hash does not match the macaroon")]
    HashMismatch,
    /// The invoice is for another network.
    #[error("invoice is for {found:?}, expected {expected}")]
    WrongNetwork {
        /// The network the payer is on.
        expected: Network,
        /// The invoice's currency.
        found: Currency,
    },
    /// The invoice has expired.
    #[error("invoice expired")]
    Expired,
    /// The invoice has no amount.
    #[error("invoice has no amount")]
    NoAmount,
    /// The price exceeds the caller's maximum.
    #[error("price {price} exceeds the maximum {max}")]
    TooExpensive {
        /// The invoice amount.
        price: Msat,
        /// The caller's maximum.
        max: Msat,
    },
    /// The challenge's macaroon does not decode.
    #[error("challenge macaroon: {0}")]
    Macaroon(String),
    /// The macaroon's identifier does not decode.
    #[error("challenge identifier: {0}")]
    Identifier(#[from] IdentifierError),
}

impl From<MacaroonError> for InvoiceError {
    fn from(e: MacaroonError) -> Self {
        InvoiceError::Macaroon(e.to_string())
    }
}

impl Reason for InvoiceError {
    fn reason(&self) -> &'static str {
        match self {
            InvoiceError::Parse(_) | InvoiceError::TooLong => "invalid_invoice",
            InvoiceError::HashMismatch => "invoice_hash_mismatch",
            InvoiceError::WrongNetwork { .. } => "invoice_wrong_network",
            InvoiceError::Expired => "invoice_expired",
            InvoiceError::NoAmount => "invoice_no_amount",
            InvoiceError::TooExpensive { .. } => "price_exceeds_maximum",
            InvoiceError::Macaroon(_) => "malformed_macaroon",
            InvoiceError::Identifier(_) => "malformed_identifier",
        }
    }
}

/// An invoice that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedInvoice {
    /// The amount to pay.
    pub amount: Msat,
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// When it stops being payable.
    pub expires_at: UnixTime,
    /// The payee's node id.
    pub payee: PublicKey,
}

/// Maps a network to its BOLT11 currency.
///
/// ```
/// use pay402_core::l402::invoice::currency_for;
/// use pay402_core::lightning::Network;
/// assert_eq!(currency_for(Network::Regtest), lightning_invoice::Currency::Regtest);
/// ```
pub fn currency_for(network: Network) -> Currency {
    Currency::from(network)
}

/// What a BOLT11 invoice says, read without judging it (the signature is
/// checked: an invoice that does not verify does not parse).
///
/// ```
/// use pay402_core::l402::invoice::read_invoice;
/// assert!(read_invoice("lnbc1bogus").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvoiceFacts {
    /// The amount, if the invoice carries one.
    pub amount: Option<Msat>,
    /// The invoice's currency (network).
    pub currency: Currency,
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// When it stops being payable.
    pub expires_at: UnixTime,
    /// The payee's node id.
    pub payee: PublicKey,
    /// The description (or the hex of its hash), at most
    /// [`MAX_DESCRIPTION_CHARS`] characters.
    pub description: String,
}

/// Longest description kept by [`read_invoice`], in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

/// Parses a BOLT11 invoice (bounded by [`MAX_INVOICE_LEN`]) and returns
/// what it says; see [`check_invoice`] for the checks a payer makes.
///
/// ```
/// use pay402_core::l402::{InvoiceError, invoice::read_invoice};
/// assert_eq!(read_invoice(&"l".repeat(8000)), Err(InvoiceError::TooLong));
/// ```
pub fn read_invoice(bolt11: &str) -> Result<InvoiceFacts, InvoiceError> {
    if bolt11.len() > MAX_INVOICE_LEN {
        return Err(InvoiceError::TooLong);
    }
    let inv = Bolt11Invoice::from_str(bolt11).map_err(|e| InvoiceError::Parse(e.to_string()))?;
    let created = inv.duration_since_epoch().as_secs();
    Ok(InvoiceFacts {
        amount: inv.amount_milli_satoshis().map(Msat),
        currency: inv.currency(),
        payment_hash: PaymentHash(inv.payment_hash().to_byte_array()),
        expires_at: UnixTime(created.saturating_add(inv.expiry_time().as_secs())),
        payee: inv.get_payee_pub_key(),
        description: inv
            .description()
            .to_string()
            .chars()
            .take(MAX_DESCRIPTION_CHARS)
            .collect(),
    })
}

/// Checks a BOLT11 invoice against what the payer expects.
///
/// `expected_hash` is the payment hash from the macaroon's identifier.
///
/// ```
/// use pay402_core::l402::{check_invoice, InvoiceError};
/// use pay402_core::lightning::{Network, PaymentHash};
/// use pay402_core::money::Msat;
/// use pay402_core::time::UnixTime;
/// let e = check_invoice("lnbc1bogus", &PaymentHash([0; 32]), Network::Bitcoin, UnixTime(0), Msat(1));
/// assert!(matches!(e, Err(InvoiceError::Parse(_))));
/// ```
pub fn check_invoice(
    bolt11: &str,
    expected_hash: &PaymentHash,
    network: Network,
    now: UnixTime,
    max: Msat,
) -> Result<CheckedInvoice, InvoiceError> {
    let inv = read_invoice(bolt11)?;
    let expected = currency_for(network);
    if inv.currency != expected {
        return Err(InvoiceError::WrongNetwork {
            expected: network,
            found: inv.currency,
        });
    }
    if inv.payment_hash != *expected_hash {
        return Err(InvoiceError::HashMismatch);
    }
    if now >= inv.expires_at {
        return Err(InvoiceError::Expired);
    }
    let amount = inv.amount.ok_or(InvoiceError::NoAmount)?;
    if amount > max {
        return Err(InvoiceError::TooExpensive { price: amount, max });
    }
    Ok(CheckedInvoice {
        amount,
        payment_hash: inv.payment_hash,
        expires_at: inv.expires_at,
        payee: inv.payee,
    })
}

/// A challenge whose macaroon and invoice were checked and agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The macaroon's identifier.
    pub identifier: Identifier,
    /// The checked invoice.
    pub invoice: CheckedInvoice,
}

/// Decodes a challenge's macaroon and identifier and checks its invoice.
///
/// ```
/// use pay402_core::l402::{check_challenge, Challenge};
/// use pay402_core::lightning::Network;
/// use pay402_core::money::Msat;
/// use pay402_core::time::UnixTime;
/// let c = Challenge::new("AgJCAAA=", "lnbc1");
/// assert!(check_challenge(&c, Network::Bitcoin, UnixTime(0), Msat(1)).is_err());
/// ```
pub fn check_challenge(
    challenge: &Challenge<'_>,
    network: Network,
    now: UnixTime,
    max: Msat,
) -> Result<Offer, InvoiceError> {
    let bytes = b64::decode_any(challenge.macaroon(), MAX_MACAROON_BYTES)
        .map_err(|e| InvoiceError::Macaroon(e.to_string()))?;
    let mac = MacaroonRef::decode(&bytes)?;
    let identifier = Identifier::decode(mac.identifier())?;
    let invoice = check_invoice(
        challenge.invoice(),
        &identifier.payment_hash,
        network,
        now,
        max,
    )?;
    Ok(Offer {
        identifier,
        invoice,
    })
}
