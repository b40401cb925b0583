//! Which rail a request's proof of payment belongs to, by its headers alone
//! (nothing is decoded here: the rail that owns the proof parses it, with
//! its own bounds).
//!
//! - L402: an `Authorization` value under the scheme `L402` or `LSAT`
//!   (other schemes, such as a bit-transfer's signature, are not L402);
//! - x402: `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1);
//! - BitRequests: `Bitcoin-Transaction`, `Bitcoin-Transfer` or
//!   `Bitcoin-Payment-Channel-Token`.
//!
//! Only enabled rails count: a proof for a rail the paywall does not offer is
//! ignored, as a single-rail layer ignores the others' headers.

use http::{HeaderMap, HeaderName, header};
use pay402_core::offer::Rail;

use super::builder::Shared;

/// The x402 proof headers.
const X402_PROOFS: [HeaderName; 2] = [
    HeaderName::from_static("payment-signature"),
    HeaderName::from_static("x-payment"),
];
/// The BitRequests proof headers.
const BITREQ_PROOFS: [HeaderName; 3] = [
    HeaderName::from_static("bitcoin-transaction"),
    HeaderName::from_static("bitcoin-transfer"),
    HeaderName::from_static("bitcoin-payment-channel-token"),
];

/// Whether `headers` carry any of `names`: one pass over the request's
/// header names (a request has few), rather than a hashed lookup per name.
fn any_of(headers: &HeaderMap, names: &[HeaderName]) -> bool {
    headers.keys().any(|k| names.contains(k))
}

/// Whether an `Authorization` value is under the L402 or LSAT scheme.
fn is_l402(value: &[u8]) -> bool {
    let end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let scheme = &value[..end];
    scheme.eq_ignore_ascii_case(b"L402") || scheme.eq_ignore_ascii_case(b"LSAT")
}

/// The rails whose proofs a request carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Presented {
    pub(crate) l402: bool,
    pub(crate) x402: bool,
    pub(crate) bitreq: bool,
}

impl Presented {
    /// The enabled rails with a proof on `headers`.
    pub(crate) fn of(headers: &HeaderMap, shared: &Shared) -> Presented {
        Presented {
            l402: shared.l402.is_some()
                && headers
                    .get_all(header::AUTHORIZATION)
                    .iter()
                    .any(|v| is_l402(v.as_bytes())),
            x402: shared.has_x402() && any_of(headers, &X402_PROOFS),
            bitreq: shared.has_bitreq() && any_of(headers, &BITREQ_PROOFS),
        }
    }

    /// Whether a request carries a proof of x402 or BitRequests (the L402
    /// fast path must then not take it).
    pub(crate) fn other_than_l402(headers: &HeaderMap, shared: &Shared) -> bool {
        let (x402, bitreq) = (shared.has_x402(), shared.has_bitreq());
        (x402 || bitreq)
            && headers
                .keys()
                .any(|k| (x402 && X402_PROOFS.contains(k)) || (bitreq && BITREQ_PROOFS.contains(k)))
    }

    /// The rails, in a stable order.
    pub(crate) fn rails(self) -> Vec<Rail> {
        [
            (self.l402, Rail::L402),
            (self.x402, Rail::X402),
            (self.bitreq, Rail::BitRequests),
        ]
        .into_iter()
        .filter_map(|(on, r)| on.then_some(r))
        .collect()
    }

    /// The one rail, `None` without a proof, `Err` with the rails when
    /// there are several.
    pub(crate) fn one(self) -> Result<Option<Rail>, Vec<Rail>> {
        let rails = self.rails();
        match rails.len() {
            0 => Ok(None),
            1 => Ok(rails.first().copied()),
            _ => Err(rails),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_l402;

    #[test]
    fn only_the_l402_and_lsat_schemes_are_l402() {
        for v in ["L402 m:p", "l402 m:p", "LSAT m:p", "L402", "lsat\tm:p"] {
            assert!(is_l402(v.as_bytes()), "{v}");
        }
        for v in ["Bearer t", "L402x m:p", "", " L402 m:p", "3045022100ab"] {
            assert!(!is_l402(v.as_bytes()), "{v}");
        }
    }
}
