//! Payment channel protocol v2: the five REST endpoints, token redemption on
//! paid routes, and closing (on `DELETE` and before expiry).
//!
//! | Call | Body | Answer |
//! |---|---|---|
//! | `GET <path>` | — | `{"public_key", "version": 2, "zeroconf"}` |
//! | `POST <path>` | `deposit_tx`, `redeem_script` (JSON or form) | 200 `{"deposit_txid"}` |
//! | `GET <path>/<deposit_txid>` | — | `{"status", "balance", "time_left"}` |
//! | `PUT <path>/<deposit_txid>` | `payment_tx` | 200 `{"payment_txid"}` (the token) |
//! | `DELETE <path>/<deposit_txid>` | `signature` | 200 `{"payment_txid"}` of the broadcast close |
//!
//! Errors are problem+json with a stable `reason` (see
//! [`pay402_core::bitreq::rest::error_body`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bitcoin::{ScriptBuf, Txid};
use http_body_util::{BodyExt, Limited};
use pay402_core::bitreq::channel::verify_deposit;
use pay402_core::bitreq::rest::{
    ChannelInfo, ChannelStatus, CloseRequest, CloseResponse, MAX_BODY_BYTES, OpenRequest,
    OpenResponse, PaymentRequest, PaymentResponse, decode_request,
};
use pay402_core::bitreq::state::{ChannelError, must_close};
use pay402_core::bitreq::{BitreqError, verify_close_signature};
use pay402_core::chain::ChainError;
use pay402_core::money::Sat;
use pay402_core::problem::{Problem, Reason};
use tracing::Instrument;

use super::config::ChannelConfig;
use super::error::BitreqServerError;
use super::layer::{BitreqPayment, PaymentMethod};
use super::server::{BitreqServer, now};
use super::store::{ChannelRecord, ChannelState, PaymentOutcome, RedeemOutcome, StoreError};
use crate::respond;

/// How many times a `PUT` re-reads a channel that changed under it.
const CAS_ATTEMPTS: usize = 3;

impl IntoResponse for BitreqServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status >= 500 {
            tracing::warn!(reason = self.reason(), error = %self, "bitreq.channel.reject");
        } else {
            tracing::info!(reason = self.reason(), error = %self, "bitreq.channel.reject");
        }
        let mut resp = respond::problem(&Problem::from_reason(&self, status));
        if let BitreqServerError::RateLimited { retry_after_secs } = self {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(retry_after_secs),
            );
        }
        resp
    }
}

pub(crate) fn router(server: BitreqServer) -> Router {
    let Some(path) = server.inner.config.channel.as_ref().map(|c| c.path.clone()) else {
        return Router::new();
    };
    Router::new()
        .route(&path, get(info).post(open))
        .route(
            &format!("{path}/{{id}}"),
            get(status).put(pay).delete(close),
        )
        .with_state(server)
}

fn channel_cfg(server: &BitreqServer) -> Result<&ChannelConfig, BitreqServerError> {
    server
        .inner
        .config
        .channel
        .as_ref()
        .ok_or(BitreqServerError::MethodNotOffered("channel"))
}

fn parse_id(id: &str) -> Result<Txid, ChannelError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ChannelError::MalformedBody("deposit_txid"));
    }
    id.parse()
        .map_err(|_| ChannelError::MalformedBody("deposit_txid"))
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ChannelError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ChannelError::BodyTooLarge),
        Err(_) => Err(ChannelError::MalformedBody("body")),
    }
}

async fn info(State(server): State<BitreqServer>) -> Result<Json<ChannelInfo>, BitreqServerError> {
    let cc = channel_cfg(&server)?;
    Ok(Json(ChannelInfo::new(&cc.key.public_key(), cc.zeroconf)))
}

async fn open(
    State(server): State<BitreqServer>,
    req: http::Request<Body>,
) -> Result<Json<OpenResponse>, BitreqServerError> {
    let (parts, body) = req.into_parts();
    let span = tracing::info_span!("bitreq.channel.open", deposit_txid = tracing::field::Empty);
    async {
        let cc = channel_cfg(&server)?;
        let bytes = read_body(body).await?;
        let req: OpenRequest = decode_request(&bytes)?;
        let (deposit, script) = req.decode()?;
        let now = now();
        let merchant = cc.key.public_key();
        let (outpoint, value) =
            verify_deposit(&deposit, &script, &merchant, now, cc.min_duration.as_secs())
                .map_err(ChannelError::Invalid)?;
        tracing::Span::current().record("deposit_txid", tracing::field::display(outpoint.txid));
        // Locally sound; nothing tells yet whether the deposit exists: count
        // the open against its client before storing it.
        crate::limit::admit(
            server.inner.config.challenge_limit.as_deref(),
            &parts.extensions,
        )
        .map_err(|l| BitreqServerError::RateLimited {
            retry_after_secs: l.retry_after_secs(),
        })?;
        let room = cc
            .fee
            .0
            .checked_add(cc.min_output.0.saturating_mul(2))
            .ok_or(ChannelError::Invalid(BitreqError::AmountOverflow))?;
        if value.0 < room {
            return Err(ChannelError::Invalid(BitreqError::InvalidChannelParameter).into());
        }
        let record = ChannelRecord {
            deposit: outpoint,
            deposit_value: value,
            redeem_script: ScriptBuf::from_bytes(script.to_bytes()),
            expiry: pay402_core::bitreq::RedeemScript::parse(&script)
                .map_err(ChannelError::Invalid)?
                .expiry,
            fee: cc.fee,
            min_output: cc.min_output,
            state: ChannelState::Confirming,
            last_amount: Sat(0),
            latest_payment: None,
            close_txid: None,
            created_at: now,
        };
        if !server.inner.store.insert_channel(&record).await? {
            return Err(ChannelError::ChannelExists.into());
        }
        tracing::info!(
            value = value.0,
            expiry = record.expiry,
            "bitreq.channel.opened"
        );
        Ok(Json(OpenResponse {
            deposit_txid: outpoint.txid.to_string(),
        }))
    }
    .instrument(span)
    .await
}

async fn status(
    State(server): State<BitreqServer>,
    Path(id): Path<String>,
) -> Result<Json<ChannelStatus>, BitreqServerError> {
    let id = parse_id(&id)?;
    let rec = server.load_channel(&id).await?;
    // Refresh readiness; a chain outage only means the stored state is shown.
    let rec = match server.ensure_ready(rec.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "bitreq.channel.status_refresh_failed");
            rec
        }
    };
    Ok(Json(ChannelStatus {
        status: rec.state.status().to_owned(),
        balance: rec.last_amount.0,
        time_left: u64::from(rec.expiry),
    }))
}

async fn pay(
    State(server): State<BitreqServer>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<PaymentResponse>, BitreqServerError> {
    let id = parse_id(&id)?;
    let span = tracing::info_span!("bitreq.channel.pay", deposit_txid = %id, token = tracing::field::Empty);
    async {
        let cc = channel_cfg(&server)?;
        let bytes = read_body(body).await?;
        let req: PaymentRequest = decode_request(&bytes)?;
        let tx = req.decode()?;
        let mut rec = server.load_channel(&id).await?;
        for _ in 0..CAS_ATTEMPTS {
            rec = server.ensure_ready(rec).await?;
            match rec.state {
                ChannelState::Ready => {}
                ChannelState::Confirming => return Err(ChannelError::NotReady.into()),
                ChannelState::Closing | ChannelState::Closed => {
                    return Err(ChannelError::Closed.into());
                }
            }
            if must_close(now(), rec.expiry, cc.close_margin.as_secs()) {
                return Err(ChannelError::Expiring.into());
            }
            let params = rec.params().map_err(ChannelError::Invalid)?;
            let paid = params
                .verify_half_signed(&tx, rec.last_amount)
                .map_err(ChannelError::Invalid)?;
            tracing::Span::current().record("token", tracing::field::display(paid.token));
            match server
                .inner
                .store
                .record_payment(&id, rec.last_amount, &paid, &tx)
                .await?
            {
                PaymentOutcome::Recorded => {
                    tracing::info!(
                        amount = paid.amount.0,
                        increment = paid.increment.0,
                        "bitreq.channel.payment"
                    );
                    return Ok(Json(PaymentResponse {
                        payment_txid: paid.token.to_string(),
                    }));
                }
                PaymentOutcome::TokenExists => return Err(ChannelError::AlreadyRedeemed.into()),
                PaymentOutcome::Stale => rec = server.load_channel(&id).await?,
            }
        }
        Err(BitreqServerError::Concurrent)
    }
    .instrument(span)
    .await
}

async fn close(
    State(server): State<BitreqServer>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<CloseResponse>, BitreqServerError> {
    let id = parse_id(&id)?;
    let span = tracing::info_span!("bitreq.channel.close", deposit_txid = %id);
    async {
        let bytes = read_body(body).await?;
        let req: CloseRequest = decode_request(&bytes)?;
        let rec = server.load_channel(&id).await?;
        if matches!(rec.state, ChannelState::Closing | ChannelState::Closed) {
            return Err(ChannelError::Closed.into());
        }
        let params = rec.params().map_err(ChannelError::Invalid)?;
        verify_close_signature(&id, &req.signature, &params.redeem.customer)
            .map_err(ChannelError::Invalid)?;
        let txid = server.close_channel(&rec).await?;
        Ok(Json(CloseResponse {
            payment_txid: txid.to_string(),
        }))
    }
    .instrument(span)
    .await
}

impl BitreqServer {
    pub(crate) async fn load_channel(&self, id: &Txid) -> Result<ChannelRecord, BitreqServerError> {
        self.inner
            .store
            .channel(id)
            .await?
            .ok_or(BitreqServerError::Channel(ChannelError::ChannelNotFound))
    }

    /// `confirming` → `ready` once the deposit output is on the chain (in the
    /// mempool with zeroconf) with the expected value and script.
    pub(crate) async fn ensure_ready(
        &self,
        rec: ChannelRecord,
    ) -> Result<ChannelRecord, BitreqServerError> {
        if rec.state != ChannelState::Confirming {
            return Ok(rec);
        }
        let cc = channel_cfg(self)?;
        let need = if cc.zeroconf {
            0
        } else {
            u64::from(cc.deposit_confirmations)
        };
        let p2sh = ScriptBuf::new_p2sh(&rec.redeem_script.script_hash());
        let out = self
            .inner
            .chain
            .get_tx_out(&rec.deposit)
            .await
            .map_err(|e| match e {
                ChainError::Unreachable { .. } | ChainError::InvalidResponse { .. } => {
                    BitreqServerError::Channel(ChannelError::ChainUnavailable)
                }
                other => other.into(),
            })?;
        match out {
            Some(o)
                if o.value == rec.deposit_value
                    && o.script_pubkey == p2sh
                    && o.confirmations >= need =>
            {
                let id = rec.deposit.txid;
                self.inner
                    .store
                    .set_channel_state(&id, ChannelState::Confirming, ChannelState::Ready)
                    .await?;
                tracing::info!(deposit_txid = %id, confirmations = o.confirmations, "bitreq.channel.ready");
                self.load_channel(&id).await
            }
            _ => Ok(rec),
        }
    }

    /// Signs the latest payment, marks the channel `closing` (only if no
    /// payment arrived meanwhile) and broadcasts it; a failed broadcast puts
    /// the channel back to `ready`.
    pub(crate) async fn close_channel(
        &self,
        rec: &ChannelRecord,
    ) -> Result<Txid, BitreqServerError> {
        let cc = channel_cfg(self)?;
        let latest = rec.latest_payment.as_ref().ok_or(ChannelError::NoPayment)?;
        let params = rec.params().map_err(ChannelError::Invalid)?;
        let full = cc
            .key
            .with_secret(|k| params.complete_payment(latest, k))
            .ok_or_else(|| StoreError::Corrupt("merchant key".into()))?
            .map_err(ChannelError::Invalid)?;
        let close_txid = full.compute_txid();
        let id = rec.deposit.txid;
        let store = &self.inner.store;
        if !store
            .begin_close(&id, rec.state, rec.last_amount, &close_txid)
            .await?
        {
            return Err(BitreqServerError::Concurrent);
        }
        match self.inner.chain.broadcast(&full).await {
            Ok(_) | Err(ChainError::AlreadyKnown { .. }) => {
                tracing::info!(deposit_txid = %id, %close_txid, amount = rec.last_amount.0, "bitreq.channel.closed");
                Ok(close_txid)
            }
            Err(e) => {
                tracing::warn!(deposit_txid = %id, error = %e, "bitreq.channel.close_broadcast_failed");
                if let Err(se) = store.abort_close(&id, &close_txid).await {
                    tracing::error!(error = %se, "bitreq.channel.abort_close_failed");
                }
                Err(e.into())
            }
        }
    }

    /// Redeems a channel token for a request costing `price`.
    pub(crate) async fn redeem_channel(
        &self,
        token: &Txid,
        price: Sat,
    ) -> Result<BitreqPayment, BitreqServerError> {
        channel_cfg(self)?;
        match self.inner.store.redeem_token(token, price).await? {
            RedeemOutcome::Redeemed {
                increment,
                deposit_txid,
            } => {
                tracing::debug!(%deposit_txid, "bitreq.channel.redeemed");
                Ok(BitreqPayment {
                    method: PaymentMethod::Channel,
                    amount: increment,
                    reference: token.to_string(),
                })
            }
            RedeemOutcome::Unknown => Err(ChannelError::UnknownToken.into()),
            RedeemOutcome::AlreadyRedeemed => Err(ChannelError::AlreadyRedeemed.into()),
            RedeemOutcome::Underpaid { increment } => {
                Err(ChannelError::Underpaid { increment, price }.into())
            }
            RedeemOutcome::NotUsable(ChannelState::Confirming) => {
                Err(ChannelError::NotReady.into())
            }
            RedeemOutcome::NotUsable(_) => Err(ChannelError::Closed.into()),
        }
    }
}
