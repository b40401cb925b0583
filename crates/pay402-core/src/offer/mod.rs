//! One model of a payment offer, whatever the rail, and [`read_offers`]:
//! every offer of one 402 response.
//!
//! A server may offer several rails in one 402 (a `Paywall` does): an L402
//! challenge in `WWW-Authenticate` (and its legacy `LSAT` twin), an x402 v2
//! offer in `PAYMENT-REQUIRED`, an x402 v1 offer in the JSON body, the 21
//! BitRequests headers (`Price`, `Bitcoin-Address`, `Username`,
//! `Bitcoin-Payment-Channel-Server`), or the x402_mock JSON body. Each way to
//! pay becomes one [`Offer`]: its [`Rail`], its price as an [`Amount`] with
//! its unit, the network, the recipient, the expiry, a description, and the
//! rail's own challenge data ([`RailChallenge`]) that the rail's client needs
//! to pay it.
//!
//! Reading never fails as a whole. What cannot become an offer is listed in
//! [`OfferSet::skipped`] with a typed reason: an unknown rail or scheme
//! (`Bearer`, MPP's `Payment`, an x402 scheme other than `exact`), a token
//! whose decimals are unknown, or a malformed challenge of one rail, which
//! never hides the others.
//!
//! Every input is bounded: the body ([`MAX_BODY_BYTES`]), the number of
//! header lines read ([`MAX_HEADER_LINES`]), each header value (the rails'
//! own limits), and the offers and skipped entries kept ([`MAX_OFFERS`]).
//! Nothing here panics on any input (see `fuzz/fuzz_targets/offers.rs`).
//!
//! ```
//! use pay402_core::offer::{read_offers, Rail};
//! use pay402_core::rates::Amount;
//! use pay402_core::money::Sat;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("price", http::HeaderValue::from_static("1500"));
//! headers.insert("username", http::HeaderValue::from_static("merchant"));
//! headers.insert("www-authenticate", http::HeaderValue::from_static("Bearer realm=\"api\""));
//! let set = read_offers(&headers, b"");
//! assert_eq!(set.offers.len(), 1);
//! assert_eq!(set.offers[0].rail, Rail::BitRequests);
//! assert_eq!(set.offers[0].amount, Amount::Sat(Sat(1500)));
//! // `Bearer` is no payment rail: reported, not an error.
//! assert_eq!(set.skipped[0].name, "Bearer");
//! assert_eq!(pay402_core::problem::Reason::reason(&set.skipped[0].error), "unknown_scheme");
//! ```

mod bitreq;
mod l402;
mod mock;
mod tokens;
mod x402;

use std::fmt;

use crate::problem::Reason;
use crate::rates::{Amount, TokenUnit};
use crate::time::UnixTime;

pub use bitreq::{BitreqChallenge, BitreqMethod};
pub use l402::L402Challenge;
pub use mock::MockChallenge;
pub use tokens::{KNOWN_TOKENS, known_token};
pub use x402::{Requirement, X402Challenge, X402Required};

/// A payment rail pay402 speaks.
///
/// ```
/// use pay402_core::offer::Rail;
/// assert_eq!(Rail::X402Mock.as_str(), "x402_mock");
/// assert_eq!(Rail::BitRequests.to_string(), "bitreq");
/// assert_eq!(Rail::ALL.len(), 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rail {
    /// L402 (and legacy LSAT): macaroon + Lightning invoice.
    L402,
    /// x402 v1 and v2: the `exact` EVM scheme.
    X402,
    /// The x402_mock dialect: EIP-2612 permit exchanged for an access token.
    X402Mock,
    /// 21 BitRequests: on-chain, bit-transfer and payment channels.
    BitRequests,
    /// MPP, the `Payment` HTTP authentication scheme (`lightning`/`charge`,
    /// `evm`/`charge`).
    Mpp,
}

impl Rail {
    /// Every rail, in a stable order.
    pub const ALL: [Rail; 5] = [
        Rail::L402,
        Rail::X402,
        Rail::X402Mock,
        Rail::BitRequests,
        Rail::Mpp,
    ];

    /// The rail's stable name: `l402`, `x402`, `x402_mock`, `bitreq`, `mpp`.
    ///
    /// ```
    /// assert_eq!(pay402_core::offer::Rail::L402.as_str(), "l402");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Rail::L402 => "l402",
            Rail::X402 => "x402",
            Rail::X402Mock => "x402_mock",
            Rail::BitRequests => "bitreq",
            Rail::Mpp => "mpp",
        }
    }

    /// The rail named `name` (as [`as_str`](Self::as_str) writes it).
    ///
    /// ```
    /// use pay402_core::offer::Rail;
    /// assert_eq!(Rail::from_name("x402_mock"), Some(Rail::X402Mock));
    /// assert_eq!(Rail::from_name("mpp"), Some(Rail::Mpp));
    /// assert_eq!(Rail::from_name("tempo"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Rail> {
        Rail::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest body [`read_offers`] reads (64 KiB); a longer one is skipped with
/// [`OfferError::BodyTooLarge`] (the header offers are still read).
///
/// ```
/// assert_eq!(pay402_core::offer::MAX_BODY_BYTES, 65_536);
/// ```
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Most offers kept from one response; further ones are skipped with
/// [`OfferError::TooManyOffers`]. The skipped list is bounded the same way.
///
/// ```
/// assert_eq!(pay402_core::offer::MAX_OFFERS, 64);
/// ```
pub const MAX_OFFERS: usize = 64;

/// Most `WWW-Authenticate` (and most `PAYMENT-REQUIRED`) header lines read
/// from one response; further lines are skipped with
/// [`OfferError::TooManyHeaders`].
///
/// ```
/// assert_eq!(pay402_core::offer::MAX_HEADER_LINES, 16);
/// ```
pub const MAX_HEADER_LINES: usize = 16;

/// Where in the response an offer (or a skipped entry) was found.
///
/// ```
/// use pay402_core::offer::Source;
/// assert_eq!(Source::PaymentRequired.as_str(), "PAYMENT-REQUIRED");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A `WWW-Authenticate` header.
    WwwAuthenticate,
    /// The x402 v2 `PAYMENT-REQUIRED` header.
    PaymentRequired,
    /// The BitRequests headers (`Price`, ...).
    BitreqHeaders,
    /// The JSON body.
    Body,
}

impl Source {
    /// The header name, or `body`.
    ///
    /// ```
    /// assert_eq!(pay402_core::offer::Source::Body.as_str(), "body");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::WwwAuthenticate => "WWW-Authenticate",
            Source::PaymentRequired => "PAYMENT-REQUIRED",
            Source::BitreqHeaders => "Price",
            Source::Body => "body",
        }
    }
}

/// Why part of a 402 response did not become an [`Offer`].
///
/// [`is_unknown`](Self::is_unknown) separates "not a rail (or scheme) pay402
/// pays" from "a rail pay402 knows, but malformed".
///
/// ```
/// use pay402_core::offer::OfferError;
/// use pay402_core::problem::Reason;
/// assert_eq!(OfferError::UnknownScheme.reason(), "unknown_scheme");
/// assert!(OfferError::UnknownScheme.is_unknown());
/// assert!(!OfferError::BodyTooLarge.is_unknown());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// A `WWW-Authenticate` scheme that is no rail pay402 speaks.
    #[error("unknown authentication scheme")]
    UnknownScheme,
    /// A rail pay402 speaks, but a scheme, network or payment type it does
    /// not pay (an x402 scheme other than `exact`, a non-EVM network).
    #[error("unsupported scheme or network: {0}")]
    UnsupportedScheme(String),
    /// A token whose decimals are unknown, so its amount has no unit (give
    /// it to [`ReadOptions::token`]).
    #[error("the decimals of token {asset} on {network} are unknown")]
    UnknownToken {
        /// The CAIP-2 network.
        network: String,
        /// The asset.
        asset: String,
    },
    /// A `WWW-Authenticate` value that is not valid challenge syntax.
    #[error("malformed WWW-Authenticate: {0}")]
    Syntax(crate::auth_header::HeaderSyntaxError),
    /// A malformed L402/LSAT challenge.
    #[error("malformed L402 challenge: {0}")]
    L402(crate::l402::ChallengeError),
    /// An L402 challenge whose invoice does not parse or has no amount.
    #[error("L402 invoice: {0}")]
    Invoice(crate::l402::InvoiceError),
    /// A malformed x402 offer (header or body).
    #[error("malformed x402 offer: {0}")]
    X402(String),
    /// A malformed x402_mock offer.
    #[error("malformed x402_mock offer: {0}")]
    Mock(String),
    /// Malformed BitRequests headers.
    #[error("malformed BitRequests headers: {0}")]
    Bitreq(crate::bitreq::BitreqError),
    /// The body is longer than [`MAX_BODY_BYTES`].
    #[error("402 body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// More than [`MAX_OFFERS`] offers.
    #[error("more than {MAX_OFFERS} offers")]
    TooManyOffers,
    /// More than [`MAX_HEADER_LINES`] header lines of one name.
    #[error("more than {MAX_HEADER_LINES} header lines")]
    TooManyHeaders,
}

impl OfferError {
    /// Whether this is "not something pay402 pays" rather than "malformed".
    ///
    /// ```
    /// use pay402_core::offer::OfferError;
    /// assert!(OfferError::UnsupportedScheme("upto".into()).is_unknown());
    /// ```
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            OfferError::UnknownScheme
                | OfferError::UnsupportedScheme(_)
                | OfferError::UnknownToken { .. }
        )
    }
}

impl Reason for OfferError {
    fn reason(&self) -> &'static str {
        match self {
            OfferError::UnknownScheme => "unknown_scheme",
            OfferError::UnsupportedScheme(_) => "unsupported_scheme",
            OfferError::UnknownToken { .. } => "unknown_token",
            OfferError::Syntax(_) => "malformed_challenge",
            OfferError::L402(e) => e.reason(),
            OfferError::Invoice(e) => e.reason(),
            OfferError::X402(_) => "invalid_payment_required",
            OfferError::Mock(_) => "invalid_mock_offer",
            OfferError::Bitreq(e) => e.reason(),
            OfferError::BodyTooLarge => "offer_body_too_large",
            OfferError::TooManyOffers => "too_many_offers",
            OfferError::TooManyHeaders => "too_many_headers",
        }
    }
    fn status(&self) -> u16 {
        502
    }
}

/// Part of a 402 response that did not become an [`Offer`], and why.
///
/// ```
/// use pay402_core::offer::read_offers;
/// let mut h = http::HeaderMap::new();
/// h.insert("payment-required", http::HeaderValue::from_static("!!!"));
/// let set = read_offers(&h, b"");
/// let s = &set.skipped[0];
/// assert_eq!(s.rail, Some(pay402_core::offer::Rail::X402));
/// assert!(!s.error.is_unknown());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// The rail, when it could be told.
    pub rail: Option<Rail>,
    /// Where it was found.
    pub source: Source,
    /// What it was: the scheme name, `x402 <scheme> on <network>`, ...
    /// (at most 128 characters).
    pub name: String,
    /// Why it was skipped.
    pub error: OfferError,
}

/// The rail's own challenge data: what the rail's client needs to pay.
///
/// ```
/// use pay402_core::offer::{read_offers, RailChallenge};
/// let mut h = http::HeaderMap::new();
/// h.insert("price", http::HeaderValue::from_static("7"));
/// h.insert("username", http::HeaderValue::from_static("m"));
/// let set = read_offers(&h, b"");
/// assert!(matches!(set.offers[0].challenge, RailChallenge::BitRequests(_)));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RailChallenge {
    /// An L402/LSAT challenge.
    L402(L402Challenge),
    /// One requirement of an x402 offer.
    X402(X402Challenge),
    /// One component of an x402_mock offer.
    X402Mock(MockChallenge),
    /// One BitRequests payment method.
    BitRequests(BitreqChallenge),
}

/// One way to pay offered by a 402, whatever the rail.
///
/// ```
/// use pay402_core::offer::read_offers;
/// let mut h = http::HeaderMap::new();
/// h.insert("price", http::HeaderValue::from_static("3000"));
/// h.insert("bitcoin-address", http::HeaderValue::from_static("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"));
/// let offer = &read_offers(&h, b"").offers[0];
/// assert_eq!(offer.amount.to_string(), "3000 sat");
/// assert_eq!(offer.network.as_deref(), Some("regtest"));
/// assert_eq!(offer.pay_to.as_deref(), Some("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Offer {
    /// The rail.
    pub rail: Rail,
    /// The price, with its unit (msat for L402, sat for BitRequests, token
    /// base units with asset and decimals for x402 and x402_mock).
    pub amount: Amount,
    /// The network: `bitcoin`/`testnet`/`signet`/`regtest` for Bitcoin and
    /// Lightning, a CAIP-2 id (`eip155:8453`) for EVM rails; `None` when the
    /// offer does not say.
    pub network: Option<String>,
    /// The recipient: an EVM address, a Bitcoin address, a ledger
    /// username, a channel server URL, or the Lightning payee's node id.
    pub pay_to: Option<String>,
    /// When the offer stops being payable (the L402 invoice's expiry).
    pub expires_at: Option<UnixTime>,
    /// What is being sold, as the server describes it.
    pub description: Option<String>,
    /// The rail's own challenge data.
    pub challenge: RailChallenge,
}

impl Offer {
    /// A short label for logs and errors, e.g. `l402`, `x402 v2 #0`,
    /// `bitreq onchain`.
    ///
    /// ```
    /// use pay402_core::offer::read_offers;
    /// let mut h = http::HeaderMap::new();
    /// h.insert("price", http::HeaderValue::from_static("7"));
    /// h.insert("username", http::HeaderValue::from_static("m"));
    /// assert_eq!(read_offers(&h, b"").offers[0].label(), "bitreq transfer");
    /// ```
    pub fn label(&self) -> String {
        match &self.challenge {
            RailChallenge::L402(c) => c.scheme.as_str().to_ascii_lowercase(),
            RailChallenge::X402(c) => format!("x402 v{} #{}", c.version(), c.index),
            RailChallenge::X402Mock(c) => format!("x402_mock #{}", c.index),
            RailChallenge::BitRequests(c) => format!("bitreq {}", c.method.as_str()),
        }
    }
}

/// Every offer of one 402 response, and what was skipped.
///
/// ```
/// let set = pay402_core::offer::read_offers(&http::HeaderMap::new(), b"");
/// assert!(set.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct OfferSet {
    /// The offers, in reading order: `WWW-Authenticate`, `PAYMENT-REQUIRED`,
    /// the BitRequests headers, then the body.
    pub offers: Vec<Offer>,
    /// What did not become an offer, with its reason.
    pub skipped: Vec<Skipped>,
}

impl OfferSet {
    /// No offer and nothing skipped: the response offers no payment.
    ///
    /// ```
    /// assert!(pay402_core::offer::OfferSet::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty() && self.skipped.is_empty()
    }

    /// The offers of one rail.
    ///
    /// ```
    /// use pay402_core::offer::{read_offers, Rail};
    /// let set = read_offers(&http::HeaderMap::new(), b"");
    /// assert_eq!(set.of_rail(Rail::L402).count(), 0);
    /// ```
    pub fn of_rail(&self, rail: Rail) -> impl Iterator<Item = &Offer> {
        self.offers.iter().filter(move |o| o.rail == rail)
    }

    pub(crate) fn push(&mut self, offer: Offer) {
        if self.offers.len() < MAX_OFFERS {
            self.offers.push(offer);
        } else {
            let rail = offer.rail;
            self.skip(
                Some(rail),
                source_of(&offer.challenge),
                rail.as_str(),
                OfferError::TooManyOffers,
            );
        }
    }

    pub(crate) fn skip(
        &mut self,
        rail: Option<Rail>,
        source: Source,
        name: &str,
        error: OfferError,
    ) {
        if self.skipped.len() < MAX_OFFERS {
            self.skipped.push(Skipped {
                rail,
                source,
                name: name.chars().take(128).collect(),
                error,
            });
        }
    }
}

fn source_of(c: &RailChallenge) -> Source {
    match c {
        RailChallenge::L402(_) => Source::WwwAuthenticate,
        RailChallenge::X402(c) if c.version() == 2 && !c.from_body => Source::PaymentRequired,
        RailChallenge::X402(_) | RailChallenge::X402Mock(_) => Source::Body,
        RailChallenge::BitRequests(_) => Source::BitreqHeaders,
    }
}

/// Options of [`read_offers_with`].
///
/// ```
/// use pay402_core::offer::ReadOptions;
/// use pay402_core::rates::TokenUnit;
/// let opts = ReadOptions::default().token(TokenUnit::new("eip155:31337", "0x5FbDB2315678afecb367f032d93F642f64180aa3", 6));
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    tokens: Vec<TokenUnit>,
}

impl ReadOptions {
    /// Makes `token`'s decimals known (x402 offers do not carry them; an
    /// `extra.decimals` member and [`KNOWN_TOKENS`] are used otherwise).
    ///
    /// ```
    /// use pay402_core::offer::ReadOptions;
    /// use pay402_core::rates::TokenUnit;
    /// let o = ReadOptions::default().token(TokenUnit::new("eip155:1", "0xab", 18));
    /// # let _ = o;
    /// ```
    pub fn token(mut self, token: TokenUnit) -> ReadOptions {
        self.tokens.push(token);
        self
    }

    fn decimals(&self, network: &str, asset: &str) -> Option<u8> {
        self.tokens
            .iter()
            .find(|t| t.network() == network && t.asset().eq_ignore_ascii_case(asset))
            .map(TokenUnit::decimals)
            .or_else(|| known_token(network, asset).map(|t| t.decimals()))
    }
}

/// Every offer of one 402 response: its headers and (where the rail puts
/// it there) its body. See the [module documentation](self).
///
/// ```
/// use pay402_core::offer::{read_offers, Rail};
/// // An x402 v1 offer in the body (USDC on Base Sepolia: decimals known).
/// let body = br#"{"x402Version":1,"error":"X-PAYMENT header is required","accepts":[{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","resource":"https://a/b","description":"a report","mimeType":"","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","extra":{"name":"USDC","version":"2"}}]}"#;
/// let set = read_offers(&http::HeaderMap::new(), body);
/// let o = &set.offers[0];
/// assert_eq!(o.rail, Rail::X402);
/// assert_eq!(o.network.as_deref(), Some("eip155:84532"));
/// assert_eq!(o.description.as_deref(), Some("a report"));
/// assert_eq!(o.amount.value(), alloy_primitives::U256::from(10_000u64));
/// ```
pub fn read_offers(headers: &http::HeaderMap, body: &[u8]) -> OfferSet {
    read_offers_with(headers, body, &ReadOptions::default())
}

/// [`read_offers`] with [`ReadOptions`] (tokens whose decimals are known).
///
/// ```
/// use pay402_core::offer::{read_offers_with, ReadOptions};
/// let set = read_offers_with(&http::HeaderMap::new(), b"not json", &ReadOptions::default());
/// assert!(set.is_empty());
/// ```
pub fn read_offers_with(headers: &http::HeaderMap, body: &[u8], options: &ReadOptions) -> OfferSet {
    let mut set = OfferSet::default();
    l402::read(headers, &mut set);
    let v2 = x402::read_header(headers, options, &mut set);
    bitreq::read(headers, &mut set);
    if body.len() > MAX_BODY_BYTES {
        set.skip(None, Source::Body, "body", OfferError::BodyTooLarge);
        return set;
    }
    let json = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<serde_json::Value>(body).ok(),
        _ => None,
    };
    if let Some(json) = json {
        x402::read_body(&json, v2, options, &mut set);
        mock::read_body(&json, &mut set);
    }
    set
}

#[cfg(test)]
mod tests;
