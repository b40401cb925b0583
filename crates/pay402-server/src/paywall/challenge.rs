//! The unpaid answer: one 402 carrying the challenge of every rail the
//! request is priced on, each built by its rail's own code.

use axum::body::Body;
use axum::response::Response;
use futures_util::future::join;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use pay402_core::offer::Rail;
use pay402_core::problem::{PROBLEM_JSON, Problem};
use pay402_core::time::UnixTime;
use serde_json::json;

use super::layer::PaywallLayer;
use super::price::RailPrices;
use crate::l402::L402Layer;
use crate::respond;

/// A rail's part of the 402, or why it has none.
enum Part {
    /// Offered, with the problem its own layer would answer.
    On(Rail, Problem),
    /// Could not be offered: the rail's own answer (its 429, its 503).
    Failed(Response),
}

/// The 402 for a request priced at `prices`: `WWW-Authenticate` (L402,
/// and LSAT when enabled), `PAYMENT-REQUIRED` (x402 v2), the two1 headers
/// (BitRequests), and a problem+json body that is also the x402 v1 offer.
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
) -> Response {
    let shared = &layer.paywall.shared;
    let mut headers = HeaderMap::new();
    let (l402, bitreq) = join(
        l402_part(layer, prices, parts, body, now),
        bitreq_part(layer, prices, parts),
    )
    .await;
    let mut parts_of = Vec::with_capacity(3);
    if let Some((values, part)) = l402 {
        for v in values {
            headers.append(header::WWW_AUTHENTICATE, v);
        }
        parts_of.push(part);
    }
    #[cfg(feature = "x402")]
    let x402 = x402_part(layer, prices, parts);
    #[cfg(feature = "x402")]
    if let Some((_, required, _)) = &x402 {
        if let Some(v) = required {
            headers.insert(crate::x402::PAYMENT_REQUIRED.clone(), v.clone());
        }
        parts_of.push(Part::On(Rail::X402, crate::x402::unpaid_problem().0));
    }
    if let Some((bitreq_headers, part)) = bitreq {
        headers.extend(bitreq_headers);
        parts_of.push(part);
    }

    let mut offered = Vec::new();
    let mut first_failure = None;
    for p in parts_of {
        match p {
            Part::On(rail, problem) => offered.push((rail, problem)),
            Part::Failed(resp) => {
                first_failure.get_or_insert(resp);
            }
        }
    }
    let problem = match offered.len() {
        0 => {
            tracing::Span::current().record("outcome", "no_challenge");
            return first_failure.unwrap_or_else(|| {
                respond::problem(&Problem::new(
                    503,
                    "offer_unavailable",
                    "No payment offer could be made",
                ))
            });
        }
        1 => offered.swap_remove(0).1,
        _ => combined(&offered),
    };
    tracing::Span::current().record("outcome", "challenged");
    #[cfg_attr(not(feature = "x402"), allow(unused_mut))]
    let mut json = serde_json::to_value(&problem).unwrap_or_else(|_| json!({}));
    #[cfg(feature = "x402")]
    if let (Some((set, _, error)), Some(rail)) = (&x402, &shared.x402) {
        crate::x402::add_v1_offer(&mut json, set, rail.layer.config(), error);
    }
    let mut resp = Response::new(Body::from(json.to_string()));
    *resp.status_mut() = StatusCode::PAYMENT_REQUIRED;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    crate::cache::challenge(h, shared.credentials);
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

async fn l402_part(
    layer: &PaywallLayer,
    prices: &RailPrices,
    parts: &Parts,
    body: Option<&[u8]>,
    now: UnixTime,
) -> Option<(Vec<HeaderValue>, Part)> {
    let (Some(l402), Some(amount)) = (&layer.l402, prices.l402) else {
        return None;
    };
    if let Some(limited) = l402.over_challenge_limit(parts) {
        return Some((Vec::new(), Part::Failed(limited)));
    }
    let scope = l402.scope_of(&parts.extensions, &parts.uri);
    Some(
        match l402.mint_challenge(amount, &scope, parts, body, now).await {
            Ok(values) => (
                values,
                Part::On(Rail::L402, L402Layer::payment_required_problem(amount)),
            ),
            Err(problem) => (Vec::new(), Part::Failed(respond::problem(&problem))),
        },
    )
}

#[cfg(feature = "bitreq")]
async fn bitreq_part(
    layer: &PaywallLayer,
    prices: &RailPrices,
    parts: &Parts,
) -> Option<(HeaderMap, Part)> {
    let (Some(server), Some(price)) = (&layer.paywall.shared.bitreq, prices.bitreq) else {
        return None;
    };
    let mut headers = HeaderMap::new();
    let part = match server.challenge_info(price, parts).await {
        Err(resp) => Part::Failed(resp),
        Ok(info) => match info.insert_into(&mut headers) {
            Ok(()) => Part::On(
                Rail::BitRequests,
                crate::bitreq::BitreqServer::payment_required_problem(price),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "bitreq.offer_header_invalid");
                headers.clear();
                Part::Failed(crate::bitreq::offer_unusable())
            }
        },
    };
    Some((headers, part))
}

#[cfg(not(feature = "bitreq"))]
async fn bitreq_part(_: &PaywallLayer, _: &RailPrices, _: &Parts) -> Option<(HeaderMap, Part)> {
    None
}

/// The x402 offer set, its `PAYMENT-REQUIRED` value and the v1 `error`.
#[cfg(feature = "x402")]
type X402Part = (crate::x402::OfferSet, Option<HeaderValue>, &'static str);

#[cfg(feature = "x402")]
fn x402_part(layer: &PaywallLayer, prices: &RailPrices, parts: &Parts) -> Option<X402Part> {
    let (Some(rail), Some(amount)) = (&layer.paywall.shared.x402, prices.x402) else {
        return None;
    };
    let set = layer.x402_offer_set(rail, amount, parts);
    let (_, error) = crate::x402::unpaid_problem();
    let required = crate::x402::payment_required_value(&set, rail.layer.config(), error);
    Some((set, required, error))
}
