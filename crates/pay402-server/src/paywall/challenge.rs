//! The unpaid answer: one 402 carrying the challenge of every rail the
//! request is priced on, each built by its rail's own code
//! ([`PaywallRail::challenge`]).

use axum::body::Body;
use axum::response::Response;
use futures_util::future::join_all;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use pay402_core::offer::Rail;
use pay402_core::problem::{PROBLEM_JSON, Problem};
use pay402_core::time::UnixTime;
use serde_json::json;

use super::layer::PaywallLayer;
use super::price::RailPrices;
use super::rail::{Part, Unpaid};
use crate::respond;

/// The 402 for a request priced at `prices`: every priced rail's challenge
/// headers, in the paywall's rail order (so `WWW-Authenticate: L402 …`,
/// and `LSAT` when enabled, come before `Payment …`), `PAYMENT-REQUIRED`
/// (x402 v2), the two1 headers (BitRequests), and a problem+json body that
/// is also the x402 v1 offer. `problem` (a rail's refusal) replaces the
/// paywall's own problem in the body.
///
/// A rail that cannot make its challenge (its challenge rate limit refuses
/// the client, its node or store is down) is left out and the others are
/// offered; only when no rail can be offered is the first rail's own
/// answer (429, 503) returned.
pub(crate) async fn payment_required(
    layer: &PaywallLayer,
    prices: &RailPrices,
    parts: &Parts,
    body: Option<&[u8]>,
    now: UnixTime,
    problem: Option<serde_json::Value>,
) -> Response {
    let shared = &layer.paywall.shared;
    let cx = Unpaid {
        layer,
        prices,
        parts,
        body,
        now,
    };
    let made = join_all(
        shared
            .rails
            .iter()
            .filter(|r| r.is_priced(prices))
            .map(|r| r.challenge(&cx)),
    )
    .await;
    let mut headers = http::HeaderMap::new();
    let mut offered = Vec::with_capacity(made.len());
    let mut hooks = Vec::new();
    let mut first_failure = None;
    for part in made.into_iter().flatten() {
        match part.part {
            Part::On(rail, p) => {
                // The iterator names a header once, before its first value.
                let mut last = None;
                for (name, value) in part.headers {
                    if name.is_some() {
                        last = name;
                    }
                    if let Some(name) = &last {
                        headers.append(name.clone(), value);
                    }
                }
                offered.push((rail, p));
                hooks.extend(part.body);
            }
            Part::Failed(resp) => {
                first_failure.get_or_insert(resp);
            }
        }
    }
    if offered.is_empty() {
        tracing::Span::current().record("outcome", "no_challenge");
        return first_failure.unwrap_or_else(|| {
            respond::problem(&Problem::new(
                503,
                "offer_unavailable",
                "No payment offer could be made",
            ))
        });
    }
    tracing::Span::current().record("outcome", "challenged");
    let mut json = match problem {
        Some(p) => p,
        None => {
            let mpp = offered.iter().any(|(r, _)| *r == Rail::Mpp);
            let mut problem = match offered.len() {
                1 => offered.swap_remove(0).1,
                _ => combined(&offered),
            };
            if mpp {
                // MPP clients read the payment-required problem type.
                problem.type_uri = pay402_core::mpp::ProblemType::PaymentRequired.uri();
            }
            serde_json::to_value(&problem).unwrap_or_else(|_| json!({}))
        }
    };
    for hook in hooks {
        hook(&mut json);
    }
    let mut resp = Response::new(Body::from(json.to_string()));
    *resp.status_mut() = StatusCode::PAYMENT_REQUIRED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    crate::cache::challenge(h, &shared.credentials);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, shared.expose.clone());
    h.extend(headers);
    resp
}

/// The problem of a 402 offering several rails: each rail's instructions.
fn combined(offered: &[(Rail, Problem)]) -> Problem {
    let ways: Vec<String> = offered
        .iter()
        .map(|(rail, p)| format!("{rail}: {}", p.detail.as_deref().unwrap_or_default()))
        .collect();
    Problem::new(402, "payment_required", "Payment required").with_detail(format!(
        "pay with any one of these rails and retry with its proof alone: {}",
        ways.join("; ")
    ))
}
