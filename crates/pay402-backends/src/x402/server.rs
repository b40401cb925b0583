//! An axum router serving the facilitator HTTP API over any
//! [`Facilitator`]: `POST /verify`, `POST /settle`, `GET /supported`.
//!
//! It answers what the official SDKs' `HTTPFacilitatorClient` expects:
//!
//! | outcome | status | body |
//! |---|---|---|
//! | a verify verdict (valid or not) | 200 | `VerifyResponse` |
//! | a settle verdict (success or not) | 200 | `SettleResponse`, `transaction` always present (`""` when nothing was sent) |
//! | settlement sent, not mined within the bound | 202 | `SettleResponse` with `success: false`, `errorReason: "settlement_pending"` and the transaction hash |
//! | `/supported` | 200 | `SupportedResponse` |
//! | malformed body | 400 | problem+json, reason `invalid_facilitator_request` |
//! | body too large | 413 | problem+json, reason `facilitator_request_too_large` |
//! | kind not served ([`FacilitatorError::Refused`]) | its 4xx | problem+json, reason `facilitator_refused` |
//! | chain or upstream unavailable | 503 (502 for a malformed upstream answer) | problem+json |
//!
//! A client fault is never a 5xx. Each request runs in a tracing span.
//!
//! ```no_run
//! # async fn demo(facilitator: std::sync::Arc<dyn pay402_core::x402::Facilitator>) -> std::io::Result<()> {
//! use pay402_backends::x402::{router_with, RouterConfig};
//! let app = router_with(facilitator, RouterConfig { max_body_bytes: 32 * 1024 });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4021").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pay402_core::problem::{PROBLEM_JSON, Problem, Reason};
use pay402_core::x402::{Facilitator, FacilitatorError, PaymentRequest, SettleResponse};
use serde::Serialize;
use tracing::Instrument;

/// The `errorReason` of a settlement that was sent but not yet mined (HTTP
/// 202 from [`router`]).
///
/// ```
/// assert_eq!(pay402_backends::x402::SETTLEMENT_PENDING, "settlement_pending");
/// ```
pub const SETTLEMENT_PENDING: &str = "settlement_pending";

/// The default request body limit (64 KiB: a payment is about 1 KiB).
/// ```
/// assert_eq!(pay402_backends::x402::DEFAULT_MAX_BODY_BYTES, 64 * 1024);
/// ```
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Settings of [`router_with`].
///
/// ```
/// use pay402_backends::x402::RouterConfig;
/// assert_eq!(RouterConfig::default().max_body_bytes, 64 * 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// The largest request body accepted (413 above).
    pub max_body_bytes: usize,
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

#[derive(Clone)]
struct Shared {
    facilitator: Arc<dyn Facilitator>,
    config: RouterConfig,
}

/// The facilitator API over `facilitator`, with [`RouterConfig::default`].
///
/// ```no_run
/// # async fn demo(f: pay402_backends::x402::LocalFacilitator) {
/// use std::sync::Arc;
/// let app: axum::Router = pay402_backends::x402::router(Arc::new(f));
/// # }
/// ```
pub fn router(facilitator: Arc<dyn Facilitator>) -> Router {
    router_with(facilitator, RouterConfig::default())
}

/// The facilitator API over `facilitator`, with `config`.
///
/// ```no_run
/// # async fn demo(f: pay402_backends::x402::LocalFacilitator) {
/// use std::sync::Arc;
/// use pay402_backends::x402::{router_with, RouterConfig};
/// let app = router_with(Arc::new(f), RouterConfig { max_body_bytes: 16 * 1024 });
/// # }
/// ```
pub fn router_with(facilitator: Arc<dyn Facilitator>, config: RouterConfig) -> Router {
    Router::new()
        .route("/verify", post(verify))
        .route("/settle", post(settle))
        .route("/supported", get(supported))
        .fallback(not_found)
        .with_state(Shared {
            facilitator,
            config,
        })
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "facilitator_internal_error",
            &format!("cannot encode the answer: {e}"),
        ),
    }
}

fn problem(status: StatusCode, reason: &str, detail: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = Problem::new(status.as_u16(), reason, title)
        .with_detail(detail)
        .to_json();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

fn error_response(e: &FacilitatorError) -> Response {
    let status = match e {
        FacilitatorError::Refused { status, .. } => StatusCode::from_u16(*status)
            .ok()
            .filter(StatusCode::is_client_error)
            .unwrap_or(StatusCode::BAD_REQUEST),
        FacilitatorError::InvalidResponse(_) => StatusCode::BAD_GATEWAY,
        FacilitatorError::Unavailable(_) | FacilitatorError::Pending { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "facilitator could not answer");
    } else {
        tracing::info!(error = %e, "request refused");
    }
    problem(status, e.reason(), &e.to_string())
}

/// Reads and parses the body, or the 400/413 answer.
async fn read_request(shared: &Shared, body: Body) -> Result<PaymentRequest, Response> {
    let max = shared.config.max_body_bytes;
    let bytes = match Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let mut resp = problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "facilitator_request_too_large",
                &format!("the body exceeds {max} bytes"),
            );
            // The rest of the body is unread: the connection cannot carry
            // another request, and a client reusing it would fail writing.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(resp);
        }
        Err(e) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "invalid_facilitator_request",
                &format!("cannot read the body: {e}"),
            ));
        }
    };
    PaymentRequest::from_json_slice(&bytes).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            "invalid_facilitator_request",
            &format!("expected {{x402Version, paymentPayload, paymentRequirements}}: {e}"),
        )
    })
}

async fn verify(State(shared): State<Shared>, body: Body) -> Response {
    let span = tracing::info_span!("x402_facilitator_http", endpoint = "verify");
    async move {
        let request = match read_request(&shared, body).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        match shared.facilitator.verify(&request).await {
            Ok(v) => {
                tracing::info!(valid = v.is_valid, reason = ?v.invalid_reason, "verified");
                json(StatusCode::OK, &v)
            }
            Err(e) => error_response(&e),
        }
    }
    .instrument(span)
    .await
}

async fn settle(State(shared): State<Shared>, body: Body) -> Response {
    let span = tracing::info_span!("x402_facilitator_http", endpoint = "settle");
    async move {
        let request = match read_request(&shared, body).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        match shared.facilitator.settle(&request).await {
            Ok(mut s) => {
                // The reference client requires `transaction` (a string).
                if s.transaction.is_none() {
                    s.transaction = Some(String::new());
                }
                if s.network.is_empty() {
                    s.network = request.network().to_owned();
                }
                tracing::info!(success = s.success, reason = ?s.error_reason, tx = ?s.transaction, "settled");
                json(StatusCode::OK, &s)
            }
            Err(FacilitatorError::Pending {
                transaction,
                network,
            }) => {
                tracing::warn!(%transaction, "settlement pending");
                let body = SettleResponse {
                    success: false,
                    error_reason: Some(SETTLEMENT_PENDING.to_owned()),
                    error_message: Some(
                        "the settlement transaction was sent but is not mined yet; settle again or reconcile later"
                            .to_owned(),
                    ),
                    transaction: Some(transaction),
                    network,
                    payer: Some(request.exact_payload().authorization.from.to_string()),
                    ..SettleResponse::default()
                };
                json(StatusCode::ACCEPTED, &body)
            }
            Err(e) => error_response(&e),
        }
    }
    .instrument(span)
    .await
}

async fn supported(State(shared): State<Shared>) -> Response {
    let span = tracing::info_span!("x402_facilitator_http", endpoint = "supported");
    async move {
        match shared.facilitator.supported().await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(e) => error_response(&e),
        }
    }
    .instrument(span)
    .await
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "this facilitator serves POST /verify, POST /settle and GET /supported",
    )
}
