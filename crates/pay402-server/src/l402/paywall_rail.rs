//! L402 as a rail of a [`Paywall`](crate::paywall::Paywall): its challenge
//! (`WWW-Authenticate: L402 …`, and `LSAT` when enabled) and its proof
//! (`Authorization: L402|LSAT <macaroon>:<preimage>`), verified by the
//! route's [`L402Layer`] (scope and capability set per route).

use axum::response::Response;
use http::{HeaderMap, Request, header};
use pay402_core::l402::Grant;
use pay402_core::offer::Rail;
use pay402_core::rates::Amount;
use tower::Service;

use super::{L402Layer, Verdict};
use crate::paywall::rail::{ChallengePart, Next, Part, PaywallRail, Pending, RailFuture, Unpaid};
use crate::paywall::{Paid, RailPrices, Receipt};
use crate::respond;

/// Whether an `Authorization` value is under the L402 or LSAT scheme.
pub(crate) fn is_l402(value: &[u8]) -> bool {
    let end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let scheme = &value[..end];
    scheme.eq_ignore_ascii_case(b"L402") || scheme.eq_ignore_ascii_case(b"LSAT")
}

/// The L402 rail: the route's [`L402Layer`] lives in the paywall's layer
/// (it carries the route's scope and capability).
pub(crate) struct L402Rail;

impl PaywallRail for L402Rail {
    fn rail(&self) -> Rail {
        Rail::L402
    }

    fn credentials(&self) -> &'static [&'static str] {
        &["Authorization"]
    }

    fn expose(&self) -> &'static str {
        "WWW-Authenticate"
    }

    fn has_proof(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .any(|v| is_l402(v.as_bytes()))
    }

    fn is_priced(&self, prices: &RailPrices) -> bool {
        prices.l402.is_some()
    }

    fn challenge<'a>(&'a self, cx: &'a Unpaid<'a>) -> RailFuture<'a, Option<ChallengePart<'a>>> {
        Box::pin(async move {
            let (Some(l402), Some(amount)) = (&cx.layer.l402, cx.prices.l402) else {
                return None;
            };
            if let Some(limited) = l402.over_challenge_limit(cx.parts) {
                return Some(ChallengePart::failed(limited));
            }
            let scope = l402.scope_of(&cx.parts.extensions, &cx.parts.uri);
            Some(
                match l402
                    .mint_challenge(amount, &scope, cx.parts, cx.body, cx.now)
                    .await
                {
                    Ok(values) => {
                        let mut headers = HeaderMap::new();
                        for v in values {
                            headers.append(header::WWW_AUTHENTICATE, v);
                        }
                        ChallengePart {
                            headers,
                            part: Part::On(Rail::L402, L402Layer::payment_required_problem(amount)),
                            body: None,
                        }
                    }
                    Err(problem) => ChallengePart::failed(respond::problem(&problem)),
                },
            )
        })
    }

    /// An L402 credential: verified as `L402Layer` verifies it; refused as
    /// it refuses (a fresh L402 challenge, per its reject mode).
    fn serve<'a>(&'a self, req: Pending<'a>, mut next: Next) -> RailFuture<'a, Response> {
        Box::pin(async move {
            let (Some(l402), Some(price)) = (&req.layer.l402, req.prices.l402) else {
                return req.payment_required().await;
            };
            let scope = l402
                .scope_of(&req.parts.extensions, &req.parts.uri)
                .into_owned();
            let grant = Grant {
                scope: &scope,
                price,
            };
            let body = req.body_bytes.as_deref();
            match l402
                .verify_credential(&req.parts, body, grant, req.now)
                .await
            {
                Verdict::Paid(token) => {
                    tracing::Span::current().record("outcome", "paid");
                    let mut parts = req.parts;
                    parts.extensions.insert(Paid {
                        rail: Rail::L402,
                        amount: Amount::Msat(price),
                        payer: None,
                        receipt: Receipt::L402Token(token.token_id),
                    });
                    parts.extensions.insert(token);
                    let Ok(mut resp) = next.call(Request::from_parts(parts, req.body)).await;
                    l402.config()
                        .paid_caching
                        .apply_paid(resp.headers_mut(), &req.layer.paywall.shared.credentials);
                    resp
                }
                Verdict::Rejected(e) => {
                    l402.challenge(price, &scope, &req.parts, body, req.now, Some(&e))
                        .await
                }
                Verdict::Unavailable(resp) => resp,
                // The scheme was seen but no credential parsed: unpaid.
                Verdict::Absent => req.payment_required().await,
            }
        })
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
