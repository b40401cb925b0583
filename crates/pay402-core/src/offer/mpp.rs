//! MPP offers: `WWW-Authenticate: Payment …` challenges (`lightning`/`charge`
//! and `evm`/`charge`; other methods and intents are reported as skipped).
//!
//! A Lightning charge is priced on its **invoice's** amount (decoded and its
//! signature checked here), never on the declared `amount`, which a hostile
//! server can understate; the payer's means compares the two before paying.

use http::header::WWW_AUTHENTICATE;

use super::{
    MAX_HEADER_LINES, Offer, OfferError, OfferSet, Rail, RailChallenge, ReadOptions, Source,
};
use crate::mpp::challenge::{Challenge, ChallengeList, MAX_REQUEST_LEN};
use crate::mpp::methods::{evm, lightning};
use crate::rates::{Amount, TokenUnit};

/// One `Payment` challenge as it was received (every parameter string kept
/// unchanged, so that a credential echoes it exactly), and its position
/// among the `Payment` challenges of the response.
///
/// ```
/// use pay402_core::offer::{read_offers, RailChallenge};
/// # let h = http::HeaderMap::new();
/// for offer in read_offers(&h, b"").offers {
///     if let RailChallenge::Mpp(c) = &offer.challenge {
///         println!("{}/{} #{}", c.challenge.method, c.challenge.intent, c.index);
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MppChallenge {
    /// The challenge, parameters exactly as received.
    pub challenge: Challenge<'static>,
    /// Its position among the response's valid `Payment` challenges.
    pub index: usize,
}

impl MppChallenge {
    /// `method/intent`, e.g. `lightning/charge`.
    ///
    /// ```
    /// # fn f(c: &pay402_core::offer::MppChallenge) {
    /// assert!(c.kind().contains('/'));
    /// # }
    /// ```
    pub fn kind(&self) -> String {
        format!("{}/{}", self.challenge.method, self.challenge.intent)
    }
}

/// The Bitcoin network name `Offer::network` uses for an MPP network name.
fn network_label(mpp: &str) -> Option<&'static str> {
    match lightning::network_from_name(mpp)? {
        crate::lightning::Network::Bitcoin => Some("bitcoin"),
        crate::lightning::Network::Regtest => Some("regtest"),
        crate::lightning::Network::Signet => Some("signet"),
        _ => None,
    }
}

pub(super) fn read(
    headers: &http::HeaderMap,
    options: &ReadOptions,
    set: &mut OfferSet,
    decoded: &mut super::l402::Decoded,
) {
    let values = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .take(MAX_HEADER_LINES)
        .map(http::HeaderValue::as_bytes);
    let list = ChallengeList::parse(values);
    // A line that is not challenge syntax at all is reported once, by the
    // L402 reader, which reads the same lines.
    let offers = list
        .skipped()
        .iter()
        .filter(|s| !matches!(s.error, crate::mpp::ChallengeError::Syntax(_)));
    for s in offers {
        set.skip(
            Some(Rail::Mpp),
            Source::WwwAuthenticate,
            "Payment",
            OfferError::Mpp(s.error),
        );
    }
    for (index, c) in list.challenges().iter().enumerate() {
        let kind = format!("Payment {}/{}", c.method, c.intent);
        match offer_of(c, index, options, decoded) {
            Ok(o) => set.push(o),
            Err(e) => set.skip(Some(Rail::Mpp), Source::WwwAuthenticate, &kind, e),
        }
    }
}

fn offer_of(
    c: &Challenge<'_>,
    index: usize,
    options: &ReadOptions,
    decoded: &mut super::l402::Decoded,
) -> Result<Offer, OfferError> {
    let json = crate::mpp::b64url::decode_tolerant(&c.request, MAX_REQUEST_LEN)
        .map_err(|_| OfferError::MppRequest("request is not base64url"))?;
    let expires = c.expires_at();
    let (amount, network, pay_to, expires_at, description) =
        match (c.method.as_ref(), c.intent.as_ref()) {
            (lightning::METHOD, lightning::INTENT) => {
                let req: lightning::ChargeRequest<'_> = serde_json::from_slice(&json)
                    .map_err(|_| OfferError::MppRequest("not a lightning charge request"))?;
                let facts = super::l402::decode_once(&req.method_details.invoice, decoded)
                    .map_err(OfferError::Invoice)?;
                let amount = facts
                    .amount
                    .ok_or(OfferError::Invoice(crate::l402::InvoiceError::NoAmount))?;
                let network = match req.method_details.network.as_deref() {
                    None => Some("bitcoin"),
                    Some(n) => network_label(n),
                }
                .ok_or_else(|| OfferError::UnsupportedScheme("lightning network".into()))?;
                let exp = expires.map_or(facts.expires_at, |e| e.min(facts.expires_at));
                let description = req
                    .description
                    .map(|d| d.into_owned())
                    .or_else(|| c.description.as_ref().map(|d| d.to_string()));
                (
                    Amount::Msat(amount),
                    network.to_owned(),
                    Some(facts.payee.to_string()),
                    Some(exp),
                    description,
                )
            }
            (evm::METHOD, evm::INTENT) => {
                let req: evm::ChargeRequest = serde_json::from_slice(&json)
                    .map_err(|_| OfferError::MppRequest("not an evm charge request"))?;
                let network = format!("eip155:{}", req.method_details.chain_id);
                let asset = req.currency.to_string();
                let decimals = req
                    .method_details
                    .decimals
                    .or_else(|| options.decimals(&network, &asset))
                    .ok_or_else(|| OfferError::UnknownToken {
                        network: network.clone(),
                        asset: asset.clone(),
                    })?;
                let unit = TokenUnit::new(network.clone(), &asset, decimals);
                let description = req
                    .description
                    .clone()
                    .or_else(|| c.description.as_ref().map(|d| d.to_string()));
                (
                    Amount::Token(req.amount, unit),
                    network,
                    Some(req.recipient.to_string()),
                    expires,
                    description,
                )
            }
            (m, i) => return Err(OfferError::UnsupportedScheme(format!("mpp {m}/{i}"))),
        };
    Ok(Offer {
        rail: Rail::Mpp,
        amount,
        network: Some(network),
        pay_to,
        expires_at,
        description: description.map(|d| d.chars().take(256).collect()),
        challenge: RailChallenge::Mpp(MppChallenge {
            challenge: c.clone().into_owned(),
            index,
        }),
    })
}
