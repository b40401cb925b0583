//! The operator API, on its own listener, behind a bearer token:
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/services` | every service with its rails |
//! | `GET /v1/x402/payments?state=pending&limit=100` | x402 payment records in a state (`reserved`, `pending`, `settled`, `released`), newest store order, at most 1000 |
//! | `POST /v1/l402/tokens/{token_id}/revoke` | revokes an L402 token on every service: `{"revoked": true}` when it had been used paid |

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use pay402_core::l402::TokenId;
use pay402_core::problem::{Problem, Reason};
use pay402_server::x402::store::{PaymentState, PaymentStore};
use sha2::{Digest, Sha256};

use crate::paywall::ServicePaywall;

/// Why the admin API refused a request.
///
/// ```
/// use pay402_core::problem::Reason;
/// assert_eq!(pay402_cli::admin::AdminError::Unauthorized.status(), 401);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No or a wrong bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The token id is not 64 hex digits.
    #[error("the token id is not 64 hex digits")]
    InvalidTokenId,
    /// The state is not reserved, pending, settled or released.
    #[error("state must be reserved, pending, settled or released")]
    InvalidState,
    /// No x402 store is configured.
    #[error("no service takes x402")]
    NoX402,
    /// The store failed.
    #[error("the store is unavailable")]
    Store,
}

impl Reason for AdminError {
    fn reason(&self) -> &'static str {
        match self {
            AdminError::Unauthorized => "unauthorized",
            AdminError::InvalidTokenId => "invalid_token_id",
            AdminError::InvalidState => "invalid_state",
            AdminError::NoX402 => "no_x402",
            AdminError::Store => "store_unavailable",
        }
    }
    fn status(&self) -> u16 {
        match self {
            AdminError::Unauthorized => 401,
            AdminError::InvalidTokenId | AdminError::InvalidState => 400,
            AdminError::NoX402 => 404,
            AdminError::Store => 503,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut r = pay402_server::respond::problem(&Problem::from_reason(&self, self.status()));
        if self == AdminError::Unauthorized
            && let Ok(v) = "Bearer".parse()
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// What the admin API reaches.
#[derive(Clone)]
pub struct AdminState {
    /// SHA-256 of the bearer token (compared in constant time).
    pub token_digest: [u8; 32],
    /// Every service's name and paywall (`None`: free).
    pub services: Arc<Vec<(String, Option<ServicePaywall>)>>,
    /// The x402 payment records, if any service takes x402.
    pub x402_store: Option<Arc<dyn PaymentStore>>,
}

/// The SHA-256 digest the bearer token is kept as.
///
/// ```
/// assert_eq!(pay402_cli::admin::token_digest("a").len(), 32);
/// ```
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The admin router.
///
/// ```
/// let state = pay402_cli::admin::AdminState {
///     token_digest: pay402_cli::admin::token_digest("0123456789abcdef0123456789abcdef"),
///     services: std::sync::Arc::new(vec![]),
///     x402_store: None,
/// };
/// let app: axum::Router = pay402_cli::admin::router(state);
/// # let _ = app;
/// ```
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/services", get(services))
        .route("/v1/x402/payments", get(payments))
        .route("/v1/l402/tokens/{token_id}/revoke", post(revoke))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

async fn auth(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| token_digest(t.trim()));
    match presented {
        Some(d) if pay402_core::ct::eq32(&d, &state.token_digest) => next.run(req).await,
        _ => AdminError::Unauthorized.into_response(),
    }
}

async fn services(State(state): State<AdminState>) -> Response {
    let list: Vec<_> = state
        .services
        .iter()
        .map(|(name, p)| {
            serde_json::json!({
                "name": name,
                "rails": p.as_ref().map(ServicePaywall::rails).unwrap_or_default(),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "services": list })).into_response()
}

#[derive(serde::Deserialize)]
struct PaymentsQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn payments(
    State(state): State<AdminState>,
    Query(q): Query<PaymentsQuery>,
) -> Result<Response, AdminError> {
    let store = state.x402_store.as_ref().ok_or(AdminError::NoX402)?;
    let wanted = match q.state.as_deref().unwrap_or("pending") {
        "reserved" => PaymentState::Reserved,
        "pending" => PaymentState::Pending,
        "settled" => PaymentState::Settled,
        "released" => PaymentState::Released,
        _ => return Err(AdminError::InvalidState),
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    let records = store.list(wanted, limit).await.map_err(|e| {
        tracing::warn!(error = %e, "admin: listing x402 payments failed");
        AdminError::Store
    })?;
    let list: Vec<_> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "payer": r.payer,
                "network": r.network,
                "amount": r.amount,
                "transaction": r.transaction,
                "payment_id": r.payment_id,
            })
        })
        .collect();
    Ok(axum::Json(
        serde_json::json!({ "state": q.state.as_deref().unwrap_or("pending"), "payments": list }),
    )
    .into_response())
}

async fn revoke(
    State(state): State<AdminState>,
    Path(token_id): Path<String>,
) -> Result<Response, AdminError> {
    let id = TokenId::from_hex(&token_id).ok_or(AdminError::InvalidTokenId)?;
    let mut revoked = false;
    for (name, paywall) in state.services.iter() {
        if let Some(p) = paywall {
            revoked |= p.revoke(&id).await.map_err(|e| {
                tracing::warn!(service = %name, error = %e, "admin: revocation failed");
                AdminError::Store
            })?;
        }
    }
    tracing::info!(token_id = %id, revoked, "admin: l402 token revoked");
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({ "revoked": revoked })),
    )
        .into_response())
}
