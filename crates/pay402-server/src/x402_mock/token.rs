//! The token endpoint: validate a permit, queue its settlement, issue a
//! bound access token.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use pay402_core::problem::Reason;
use pay402_core::x402::EvmTimestamp;
use pay402_core::x402::evm::Bytes32;
use pay402_core::x402::mock::{
    AccessTokenClaims, AccessTokenResponse, MOCK_PROTOCOL_VERSION, MockError, MockPermitRequest,
    issue_access_token,
};
use tracing::{Instrument, field};

use super::error::MockServerError;
use super::paywall::{Shared, now};
use super::queue::{NewSettlement, QueueError};
use crate::respond;

/// Longest parse error text returned to a client.
const MAX_DETAIL: usize = 200;

#[derive(serde::Deserialize)]
struct TokenQuery {
    resource: Option<String>,
}

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Body>) -> Response {
    let span = tracing::info_span!(
        "x402_mock.token",
        resource = field::Empty,
        payer = field::Empty,
        outcome = field::Empty,
    );
    async move {
        let span = tracing::Span::current();
        match issue(&shared, req).await {
            Ok(body) => {
                span.record("outcome", "issued");
                let mut resp = Response::new(Body::from(body));
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                resp
            }
            Err(e) => {
                span.record("outcome", e.reason());
                if e.status() >= 500 {
                    tracing::warn!(reason = e.reason(), error = %e, "x402_mock.token_error");
                } else {
                    tracing::info!(reason = e.reason(), "x402_mock.token_refused");
                }
                let mut resp = respond::problem(&e.problem());
                if matches!(
                    e,
                    MockServerError::Queue(QueueError::Duplicate { same_permit: false })
                ) || resp.status() == StatusCode::SERVICE_UNAVAILABLE
                {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                }
                if let MockServerError::RateLimited { retry_after_secs } = e {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                }
                resp
            }
        }
    }
    .instrument(span)
    .await
}

async fn issue(shared: &Shared, req: Request<Body>) -> Result<Vec<u8>, MockServerError> {
    let span = tracing::Span::current();
    let now = now();
    let cfg = &shared.config;
    let client = crate::limit::client_ip(req.extensions());

    let query = axum::extract::Query::<TokenQuery>::try_from_uri(req.uri())
        .map_err(|_| MockServerError::UnknownResource)?;
    let resource = query.0.resource.ok_or(MockServerError::UnknownResource)?;
    let route = shared
        .route(&resource)
        .ok_or(MockServerError::UnknownResource)?;
    span.record("resource", resource.as_str());

    let body = match Limited::new(req.into_body(), cfg.max_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(MockServerError::BodyTooLarge);
        }
        Err(_) => return Err(MockServerError::MalformedRequest("unreadable body".into())),
    };
    let request: MockPermitRequest = serde_json::from_slice(&body).map_err(|e| {
        MockServerError::MalformedRequest(e.to_string().chars().take(MAX_DETAIL).collect())
    })?;
    if request.version != MOCK_PROTOCOL_VERSION {
        return Err(MockServerError::UnsupportedVersion);
    }
    let permit = request.permit;
    span.record("payer", field::display(permit.owner));

    // The component this permit pays with: same token and chain.
    let (price, component) = route
        .offers
        .iter()
        .find(|(_, c)| c.token == permit.token && c.chain_id == permit.chain_id)
        .ok_or(MockServerError::Permit(MockError::ComponentMismatch))?;
    // Type, spender, deadline, signer, value (core, in the seed's order).
    permit
        .check(component, now)
        .map_err(MockServerError::Permit)?;
    // The queue needs time to settle it.
    let settle_by = now.0.saturating_add(cfg.min_permit_validity.as_secs());
    if permit.deadline < EvmTimestamp::from_u64(settle_by).0 {
        return Err(MockServerError::DeadlineTooSoon);
    }
    // Locally sound: count it against its client before any chain call.
    if let (Some(limiter), Some(ip)) = (cfg.token_limit.as_deref(), client) {
        limiter
            .check(ip)
            .map_err(|limited| MockServerError::RateLimited {
                retry_after_secs: limited.retry_after_secs(),
            })?;
    }
    // On chain: the nonce is the owner's current one, the balance covers the price.
    let on_chain = shared
        .chain
        .nonces(permit.token, permit.owner)
        .await
        .map_err(MockServerError::Chain)?;
    if on_chain > permit.nonce {
        return Err(MockServerError::NonceUsed);
    }
    if on_chain < permit.nonce {
        return Err(MockServerError::NonceMismatch);
    }
    let balance = shared
        .chain
        .balance_of(permit.token, permit.owner)
        .await
        .map_err(MockServerError::Chain)?;
    if balance < price.amount {
        return Err(MockServerError::InsufficientBalance);
    }

    // Record the payment before handing anything out (atomic replay guard).
    let digest = Bytes32(permit.to_eip2612().signing_hash(&component.domain()).0);
    let ttl = cfg.token_ttl.as_secs();
    let exp = now.0.saturating_add(ttl);
    let claims = AccessTokenClaims {
        payer: permit.owner,
        resource: route.resource.clone(),
        amount: price.amount,
        asset: permit.token,
        chain_id: permit.chain_id,
        iat: now.0,
        exp,
        jti: digest,
    };
    let id = shared
        .store
        .enqueue(NewSettlement {
            permit,
            digest,
            resource: route.resource.clone(),
            pay_to: shared.pay_to,
            amount: price.amount,
            token_exp: exp,
            created_at: now.0,
        })
        .await
        .map_err(MockServerError::Queue)?;
    shared.wake.notify_one();
    tracing::info!(settlement = id, amount = %price.amount, "x402_mock.permit_queued");

    let token = issue_access_token(&claims, &cfg.key).map_err(MockServerError::Token)?;
    let mut response = AccessTokenResponse::bearer(token, ttl);
    response.metadata = Some(serde_json::json!({
        "payer": claims.payer,
        "resource": claims.resource,
        "amount": claims.amount,
        "token": claims.asset,
        "chain_id": claims.chain_id,
        "settlement_id": id,
    }));
    serde_json::to_vec(&response)
        .map_err(|e| MockServerError::MalformedRequest(format!("response: {e}")))
}
