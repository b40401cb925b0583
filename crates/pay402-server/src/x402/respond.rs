//! The x402 answers: 402 offers (v2 header + v1 body in one response),
//! refusals, conflicts, pending settlements, receipts.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, HeaderValue, StatusCode, header};
use pay402_core::problem::{PROBLEM_JSON, Problem, Reason};
use pay402_core::x402::{HeaderValue as _, PaymentRequired, SettleResponse};
use serde_json::{Map, Value, json};

use super::config::{PaymentIdentifierMode, X402Config};
use super::error::X402Error;
use super::intake::{OfferSet, PAYMENT_IDENTIFIER};

pub(crate) static PAYMENT_REQUIRED: HeaderName = HeaderName::from_static("payment-required");
pub(crate) static PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("payment-response");
pub(crate) static X_PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("x-payment-response");

/// The headers a browser client must be allowed to read.
pub(crate) const EXPOSE: &str = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE";

fn title(status: u16) -> &'static str {
    match status {
        202 => "Settlement pending",
        400 => "Bad request",
        402 => "Payment required",
        409 => "Conflict",
        431 => "Request header fields too large",
        500 => "Internal server error",
        502 => "Bad gateway",
        503 => "Service unavailable",
        _ => "Request rejected",
    }
}

fn problem_of(err: &X402Error) -> Problem {
    let status = err.status();
    let detail = match err {
        X402Error::FacilitatorRejected {
            message: Some(m), ..
        } => format!("{err} ({m})"),
        _ => err.to_string(),
    };
    Problem::new(status, err.reason_str(), title(status)).with_detail(detail)
}

/// The `payment-identifier` declaration of a 402.
fn payment_identifier_extension(required: bool) -> Value {
    json!({
        "info": {"required": required},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "required": {"type": "boolean"},
                "id": {"type": "string", "minLength": 16, "maxLength": 128, "pattern": "^[a-zA-Z0-9_-]+$"}
            },
            "required": ["required"]
        }
    })
}

/// The v2 offer carried in `PAYMENT-REQUIRED`.
pub(crate) fn payment_required(set: &OfferSet, cfg: &X402Config, error: &str) -> PaymentRequired {
    let mut p = PaymentRequired::new(set.resource.clone(), set.v2.to_vec());
    p.error = Some(error.to_owned());
    if cfg.payment_identifier != PaymentIdentifierMode::Off {
        let mut ext = Map::new();
        ext.insert(
            PAYMENT_IDENTIFIER.into(),
            payment_identifier_extension(cfg.payment_identifier == PaymentIdentifierMode::Required),
        );
        p.extensions = Some(ext);
    }
    p
}

fn base(status: u16, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    // Never cached, and never reused for a request carrying a credential.
    crate::cache::challenge(h, crate::cache::X402_CREDENTIALS);
    expose(h);
    resp
}

/// Adds the payment headers to `Access-Control-Expose-Headers`.
pub(crate) fn expose(h: &mut http::HeaderMap) {
    h.append(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
}

/// The problem of an unpaid request's 402 and the offer's `error` text.
pub(crate) fn unpaid_problem() -> (Problem, &'static str) {
    (
        Problem::new(402, "payment_required", "Payment required").with_detail(
            "pay one of the offers in the PAYMENT-REQUIRED header (base64 JSON) and retry \
             with PAYMENT-SIGNATURE",
        ),
        "PAYMENT-SIGNATURE header is required",
    )
}

/// Adds the v1 offer (`x402Version: 1`, `error`, `accepts`) to a
/// problem+json body when v1 is on.
pub(crate) fn add_v1_offer(body: &mut Value, set: &OfferSet, cfg: &X402Config, error: &str) {
    if cfg.accept_v1
        && let Value::Object(m) = body
    {
        m.insert("x402Version".into(), json!(1));
        m.insert("error".into(), Value::String(error.to_owned()));
        m.insert(
            "accepts".into(),
            serde_json::to_value(&set.v1).unwrap_or_else(|_| json!([])),
        );
    }
}

/// The `PAYMENT-REQUIRED` value (the v2 offer) of `set` with `error`.
pub(crate) fn payment_required_value(
    set: &OfferSet,
    cfg: &X402Config,
    error: &str,
) -> Option<HeaderValue> {
    HeaderValue::try_from(payment_required(set, cfg, error).encode_header()).ok()
}

/// A 402 (or the refusal's own 4xx) that offers the requirements again:
/// `PAYMENT-REQUIRED` for v2 clients, and a problem+json body that also
/// carries the v1 offer (`x402Version: 1`, `error`, `accepts`) when v1 is
/// on, so both generations of clients can pay.
pub(crate) fn offer(set: &OfferSet, cfg: &X402Config, err: Option<&X402Error>) -> Response {
    let (problem, error) = match err {
        Some(e) => (problem_of(e), e.reason_str()),
        None => unpaid_problem(),
    };
    let mut body = serde_json::to_value(&problem).unwrap_or_else(|_| json!({}));
    add_v1_offer(&mut body, set, cfg, error);
    let mut resp = base(problem.status, body.to_string());
    if let Some(v) = payment_required_value(set, cfg, error) {
        resp.headers_mut().insert(PAYMENT_REQUIRED.clone(), v);
    }
    resp
}

/// A problem+json answer without an offer (conflicts, pending, server
/// failures), with `Retry-After` where retrying the same payment helps.
pub(crate) fn problem(err: &X402Error, cfg: &X402Config) -> Response {
    let problem = problem_of(err);
    let mut resp = base(problem.status, problem.to_json());
    if matches!(
        err,
        X402Error::InProgress
            | X402Error::SettlementPending { .. }
            | X402Error::SettlementUnknown(_)
    ) {
        let secs = cfg.retry_after.as_secs().max(1).to_string();
        if let Ok(v) = HeaderValue::try_from(secs) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The answer to a refused or failed payment: an offer when paying again
/// can help, a plain problem otherwise.
pub(crate) fn refusal(set: &OfferSet, cfg: &X402Config, err: &X402Error) -> Response {
    if err.reoffer() {
        offer(set, cfg, Some(err))
    } else {
        problem(err, cfg)
    }
}

/// Sets the settlement receipt: `PAYMENT-RESPONSE` (v2) or
/// `X-PAYMENT-RESPONSE` (v1).
pub(crate) fn set_receipt(resp: &mut Response, version: u32, receipt: &str) {
    let name = if version == 1 {
        &X_PAYMENT_RESPONSE
    } else {
        &PAYMENT_RESPONSE
    };
    if let Ok(v) = HeaderValue::try_from(receipt) {
        resp.headers_mut().insert(name.clone(), v);
    }
}

/// The encoded receipt of a settlement response.
pub(crate) fn receipt(settle: &SettleResponse) -> String {
    settle.encode_header()
}
