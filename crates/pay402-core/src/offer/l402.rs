//! L402/LSAT offers from `WWW-Authenticate`.

use http::header::WWW_AUTHENTICATE;
use lightning_invoice::Currency;

use super::{MAX_HEADER_LINES, Offer, OfferError, OfferSet, Rail, RailChallenge, Source};
use crate::auth_header::{self, HeaderSyntaxError};
use crate::l402::InvoiceError;
use crate::l402::invoice::{InvoiceFacts, read_invoice};
use crate::l402::{Challenge, Scheme};
use crate::lightning::PaymentHash;
use crate::rates::Amount;

/// An L402 (or LSAT) challenge: the macaroon to present, the invoice to
/// pay, and the invoice's payment hash.
///
/// ```
/// use pay402_core::offer::{read_offers, RailChallenge};
/// # let h = http::HeaderMap::new();
/// for offer in read_offers(&h, b"").offers {
///     if let RailChallenge::L402(c) = &offer.challenge {
///         println!("{} {}", c.scheme.as_str(), c.payment_hash);
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct L402Challenge {
    /// `L402` or `LSAT`.
    pub scheme: Scheme,
    /// The macaroon, base64 as the server sent it.
    pub macaroon: String,
    /// The BOLT11 invoice.
    pub invoice: String,
    /// The invoice's payment hash.
    pub payment_hash: PaymentHash,
}

impl L402Challenge {
    /// The challenge in the form `pay402_core::l402` checks and pays.
    ///
    /// ```
    /// # fn f(c: &pay402_core::offer::L402Challenge) {
    /// let ch = c.to_challenge();
    /// assert_eq!(ch.invoice(), c.invoice);
    /// # }
    /// ```
    pub fn to_challenge(&self) -> Challenge<'static> {
        Challenge::with_scheme(self.scheme, self.macaroon.clone(), self.invoice.clone())
    }
}

/// The network name of a BOLT11 currency.
fn network_of(c: Currency) -> &'static str {
    match c {
        Currency::Bitcoin => "bitcoin",
        Currency::BitcoinTestnet => "testnet",
        Currency::Regtest => "regtest",
        Currency::Simnet => "simnet",
        Currency::Signet => "signet",
    }
}

/// Invoices decoded (signature checked) while reading one response: an
/// LSAT challenge usually repeats its L402 twin's invoice, and an MPP
/// Lightning charge may share it too, so each is decoded once.
pub(super) type Decoded = Vec<(String, Result<InvoiceFacts, InvoiceError>)>;

/// What `bolt11` says, decoded once per response.
pub(super) fn decode_once(
    bolt11: &str,
    decoded: &mut Decoded,
) -> Result<InvoiceFacts, InvoiceError> {
    match decoded.iter().find(|(i, _)| i == bolt11) {
        Some((_, facts)) => facts.clone(),
        None => {
            let facts = read_invoice(bolt11);
            decoded.push((bolt11.to_owned(), facts.clone()));
            facts
        }
    }
}

pub(super) fn read(headers: &http::HeaderMap, set: &mut OfferSet, decoded: &mut Decoded) {
    let mut parsed = Vec::new();
    for (line, value) in headers.get_all(WWW_AUTHENTICATE).iter().enumerate() {
        if line >= MAX_HEADER_LINES {
            set.skip(
                None,
                Source::WwwAuthenticate,
                "WWW-Authenticate",
                OfferError::TooManyHeaders,
            );
            return;
        }
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            set.skip(
                None,
                Source::WwwAuthenticate,
                "WWW-Authenticate",
                OfferError::Syntax(HeaderSyntaxError::NotUtf8),
            );
            continue;
        };
        parsed.clear();
        // The challenges before a syntax error are still read.
        if let Err(e) = auth_header::parse_challenges_into(text, &mut parsed) {
            set.skip(
                None,
                Source::WwwAuthenticate,
                "WWW-Authenticate",
                OfferError::Syntax(e),
            );
        }
        for ch in parsed.drain(..) {
            let name = ch.scheme;
            // MPP challenges are read by `offer::mpp`.
            if name.eq_ignore_ascii_case(crate::mpp::SCHEME) {
                continue;
            }
            let Some(scheme) = Scheme::from_name(name) else {
                set.skip(
                    None,
                    Source::WwwAuthenticate,
                    name,
                    OfferError::UnknownScheme,
                );
                continue;
            };
            match Challenge::from_auth(ch, scheme).map_err(OfferError::L402) {
                Ok(c) => match offer_of(&c, decoded) {
                    Ok(o) => set.push(o),
                    Err(e) => set.skip(
                        Some(Rail::L402),
                        Source::WwwAuthenticate,
                        scheme.as_str(),
                        e,
                    ),
                },
                Err(e) => set.skip(
                    Some(Rail::L402),
                    Source::WwwAuthenticate,
                    scheme.as_str(),
                    e,
                ),
            }
        }
    }
}

fn offer_of(c: &Challenge<'_>, decoded: &mut Decoded) -> Result<Offer, OfferError> {
    let facts = decode_once(c.invoice(), decoded).map_err(OfferError::Invoice)?;
    let amount = facts
        .amount
        .ok_or(OfferError::Invoice(InvoiceError::NoAmount))?;
    Ok(Offer {
        rail: Rail::L402,
        amount: Amount::Msat(amount),
        network: Some(network_of(facts.currency).to_owned()),
        pay_to: Some(facts.payee.to_string()),
        expires_at: Some(facts.expires_at),
        description: Some(facts.description).filter(|d| !d.is_empty()),
        challenge: RailChallenge::L402(L402Challenge {
            scheme: c.scheme(),
            macaroon: c.macaroon().to_owned(),
            invoice: c.invoice().to_owned(),
            payment_hash: facts.payment_hash,
        }),
    })
}
