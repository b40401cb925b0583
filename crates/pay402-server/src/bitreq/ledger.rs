//! The ledger operator API: open payer accounts and credit them (21.co's
//! central ledger is gone, so the merchant keeps it).
//!
//! Every call needs `Authorization: Bearer <admin token>` (compared in
//! constant time). Serve this router on a private listener.
//!
//! | Call | Body | Answer |
//! |---|---|---|
//! | `POST /accounts` | `{"username", "public_key": <33-byte hex>}` | 201 account, 409 `account_exists` |
//! | `GET /accounts/<username>` | — | 200 account, 404 `account_not_found` |
//! | `POST /accounts/<username>/credits` | `{"amount": <sat>, "reference"}` | 200 account + `"applied"` (false when the reference was already applied) |
//!
//! An account is `{"username", "public_key", "balance"}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::secp256k1::PublicKey;
use pay402_core::money::Sat;
use pay402_core::problem::{Problem, Reason};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::server::BitreqServer;
use super::store::{Account, CreditOutcome, MAX_BALANCE, StoreError};
use super::transfer::valid_username;
use crate::respond;

#[derive(Clone)]
struct AdminState {
    server: BitreqServer,
    token_hash: [u8; 32],
}

pub(crate) fn router(server: BitreqServer, admin_token: String) -> Router {
    let token_hash: [u8; 32] = Sha256::digest(admin_token.as_bytes()).into();
    drop(zeroize::Zeroizing::new(admin_token));
    Router::new()
        .route("/accounts", post(open_account))
        .route("/accounts/{username}", get(get_account))
        .route("/accounts/{username}/credits", post(credit))
        .with_state(AdminState { server, token_hash })
}

/// Why the operator API refused a call.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("missing or wrong operator token")]
    Unauthorized,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("account already exists")]
    Exists,
    #[error("account not found")]
    NotFound,
    #[error("credit reference already used for another account or amount")]
    ReferenceConflict,
    #[error("balance limit exceeded")]
    Limit,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Reason for AdminError {
    fn reason(&self) -> &'static str {
        match self {
            AdminError::Unauthorized => "unauthorized",
            AdminError::Malformed(_) => "malformed_body",
            AdminError::Exists => "account_exists",
            AdminError::NotFound => "account_not_found",
            AdminError::ReferenceConflict => "reference_conflict",
            AdminError::Limit => "balance_limit",
            AdminError::Store(e) => e.reason(),
        }
    }
    fn status(&self) -> u16 {
        match self {
            AdminError::Unauthorized => 401,
            AdminError::Malformed(_) | AdminError::Limit => 400,
            AdminError::Exists | AdminError::ReferenceConflict => 409,
            AdminError::NotFound => 404,
            AdminError::Store(_) => 503,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        respond::problem(&Problem::from_reason(&self, self.status()))
    }
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), AdminError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AdminError::Unauthorized)?;
    let hash: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    if pay402_core::ct::eq32(&hash, &state.token_hash) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

#[derive(Serialize)]
struct AccountBody {
    username: String,
    public_key: Option<String>,
    balance: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<bool>,
}

impl AccountBody {
    fn of(a: &Account, applied: Option<bool>) -> AccountBody {
        AccountBody {
            username: a.username.clone(),
            public_key: a.public_key.map(|k| hex::encode(k.serialize())),
            balance: a.balance.0,
            applied,
        }
    }
}

#[derive(Deserialize)]
struct OpenBody {
    username: String,
    public_key: String,
}

#[derive(Deserialize)]
struct CreditBody {
    amount: u64,
    reference: String,
}

fn json_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, AdminError> {
    if bytes.len() > 16 * 1024 {
        return Err(AdminError::Malformed("body too large"));
    }
    serde_json::from_slice(bytes).map_err(|_| AdminError::Malformed("body"))
}

async fn open_account(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AdminError> {
    authorize(&state, &headers)?;
    let req: OpenBody = json_body(&body)?;
    if !valid_username(&req.username) {
        return Err(AdminError::Malformed("username"));
    }
    if req.public_key.len() != 66 {
        return Err(AdminError::Malformed("public_key"));
    }
    let key = hex::decode(&req.public_key)
        .ok()
        .and_then(|b| PublicKey::from_slice(&b).ok())
        .ok_or(AdminError::Malformed("public_key"))?;
    if !state.server.open_account(&req.username, &key).await? {
        return Err(AdminError::Exists);
    }
    tracing::info!(username = %req.username, "bitreq.ledger.account_opened");
    let account = Account {
        username: req.username,
        public_key: Some(key),
        balance: Sat(0),
    };
    Ok((StatusCode::CREATED, Json(AccountBody::of(&account, None))).into_response())
}

async fn get_account(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<Json<AccountBody>, AdminError> {
    authorize(&state, &headers)?;
    let account = state
        .server
        .account(&username)
        .await?
        .ok_or(AdminError::NotFound)?;
    Ok(Json(AccountBody::of(&account, None)))
}

async fn credit(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AccountBody>, AdminError> {
    authorize(&state, &headers)?;
    let req: CreditBody = json_body(&body)?;
    if req.reference.is_empty() || req.reference.len() > 256 {
        return Err(AdminError::Malformed("reference"));
    }
    if req.amount == 0 || req.amount > MAX_BALANCE.0 {
        return Err(AdminError::Malformed("amount"));
    }
    let applied = match state
        .server
        .credit(&username, Sat(req.amount), &req.reference)
        .await?
    {
        CreditOutcome::Credited { .. } => true,
        CreditOutcome::AlreadyApplied { .. } => false,
        CreditOutcome::UnknownAccount => return Err(AdminError::NotFound),
        CreditOutcome::ReferenceConflict => return Err(AdminError::ReferenceConflict),
        CreditOutcome::LimitExceeded => return Err(AdminError::Limit),
    };
    tracing::info!(%username, amount = req.amount, reference = %req.reference, applied, "bitreq.ledger.credit");
    let account = state
        .server
        .account(&username)
        .await?
        .ok_or(AdminError::NotFound)?;
    Ok(Json(AccountBody::of(&account, Some(applied))))
}
