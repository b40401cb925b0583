//! Which rail a request's proof of payment belongs to, by its headers alone
//! (nothing is decoded here: the rail that owns the proof parses it, with
//! its own bounds). Each rail says what its proof looks like
//! ([`PaywallRail::has_proof`](super::rail::PaywallRail::has_proof)):
//!
//! - L402: an `Authorization` value under the scheme `L402` or `LSAT`;
//! - MPP: an `Authorization` value carrying a `Payment` credential;
//! - x402: `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1);
//! - BitRequests: `Bitcoin-Transaction`, `Bitcoin-Transfer` or
//!   `Bitcoin-Payment-Channel-Token`.
//!
//! Only enabled rails count: a proof for a rail the paywall does not offer is
//! ignored, as a single-rail layer ignores the others' headers.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use pay402_core::offer::Rail;

use super::builder::Shared;
use super::rail::PaywallRail;

/// Whether `headers` carry any of `names`: one pass over the request's
/// header names (a request has few), rather than a hashed lookup per name.
pub(crate) fn any_of(headers: &HeaderMap, names: &[HeaderName]) -> bool {
    headers.keys().any(|k| names.contains(k))
}

/// The one enabled rail whose proof `headers` carry, `None` without a
/// proof, `Err` with the rails (in the paywall's order) when there are
/// several.
pub(crate) fn presented<'s>(
    headers: &HeaderMap,
    shared: &'s Shared,
) -> Result<Option<&'s Arc<dyn PaywallRail>>, Vec<Rail>> {
    let mut found: Option<&Arc<dyn PaywallRail>> = None;
    let mut several: Vec<Rail> = Vec::new();
    for rail in shared.rails.iter().filter(|r| r.has_proof(headers)) {
        match found {
            None => found = Some(rail),
            Some(first) => {
                if several.is_empty() {
                    several.push(first.rail());
                }
                several.push(rail.rail());
            }
        }
    }
    if several.is_empty() {
        Ok(found)
    } else {
        Err(several)
    }
}

/// Whether a request carries a proof of a rail other than L402 (the L402
/// fast path must then not take it).
pub(crate) fn other_than_l402(headers: &HeaderMap, shared: &Shared) -> bool {
    shared.others.iter().any(|r| r.has_proof(headers))
}
