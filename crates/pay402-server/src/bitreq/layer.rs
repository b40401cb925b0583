//! The BitRequests tower layer: answer unpaid requests with a 402 offering
//! every enabled method, and serve requests whose proof checks out.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderValue, Request, header};
use pay402_core::bitreq::{BitreqError, PaymentInfo, Proof};
use pay402_core::money::{Msat, Sat};
use pay402_core::problem::{Problem, Reason};
use tower::{Layer, Service};
use tracing::{Instrument, field};

use super::error::BitreqServerError;
use super::server::BitreqServer;
use crate::cache::{self, BITREQ_CREDENTIALS};
use crate::respond;
use crate::{BoxedResponse, Price, PriceRequest};

/// The headers browsers may read from a BitRequests 402.
pub(crate) const EXPOSE: &str = "Price, Bitcoin-Address, Username, Bitcoin-Payment-Channel-Server";

/// How a request was paid.
///
/// ```
/// assert_eq!(pay402_server::bitreq::PaymentMethod::Channel.as_str(), "channel");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentMethod {
    /// A broadcast transaction (`Bitcoin-Transaction`).
    OnChain,
    /// A bit-transfer on the server's ledger (`Bitcoin-Transfer`).
    Transfer,
    /// A payment channel token (`Bitcoin-Payment-Channel-Token`).
    Channel,
}

impl PaymentMethod {
    /// `onchain`, `transfer` or `channel`.
    ///
    /// ```
    /// assert_eq!(pay402_server::bitreq::PaymentMethod::OnChain.as_str(), "onchain");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::OnChain => "onchain",
            PaymentMethod::Transfer => "transfer",
            PaymentMethod::Channel => "channel",
        }
    }
}

/// The payment that paid for this request: put in the request extensions by
/// [`BitreqLayer`] and usable as an axum extractor.
///
/// ```
/// use pay402_server::bitreq::BitreqPayment;
/// async fn handler(paid: BitreqPayment) -> String {
///     format!("paid {} sat by {} ({})", paid.amount.0, paid.method.as_str(), paid.reference)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitreqPayment {
    /// The method.
    pub method: PaymentMethod,
    /// What was paid (the transaction output, transfer amount or token increment).
    pub amount: Sat,
    /// The txid, the transfer id (hex SHA-256) or the channel token.
    pub reference: String,
}

impl<S: Send + Sync> FromRequestParts<S> for BitreqPayment {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<BitreqPayment>()
            .cloned()
            .ok_or_else(|| {
                respond::problem(&Problem::new(
                    402,
                    "payment_required",
                    "This route is not behind a BitRequests layer",
                ))
            })
    }
}

/// A tower [`Layer`] charging a price with the 21 BitRequests methods.
/// Made by [`BitreqServer::layer`].
///
/// ```no_run
/// # fn f(server: pay402_server::bitreq::BitreqServer) {
/// use axum::{Router, routing::get};
/// use pay402_server::Price;
/// let app: Router = Router::new()
///     .route("/cheap", get(|| async { "cheap" }).route_layer(server.layer(Price::sats(3_000))))
///     .route("/dear", get(|| async { "dear" }).route_layer(server.layer(Price::sats(50_000))));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct BitreqLayer {
    server: BitreqServer,
    price: Price,
}

impl BitreqLayer {
    pub(crate) fn new(server: BitreqServer, price: Price) -> BitreqLayer {
        BitreqLayer { server, price }
    }

    /// The same layer with another price.
    ///
    /// ```no_run
    /// # fn f(server: pay402_server::bitreq::BitreqServer) {
    /// let a = server.layer(pay402_server::Price::sats(3_000));
    /// let b = a.with_price(pay402_server::Price::sats(6_000));
    /// # let _ = b;
    /// # }
    /// ```
    pub fn with_price(&self, price: Price) -> BitreqLayer {
        BitreqLayer {
            server: self.server.clone(),
            price,
        }
    }
}

impl<S> Layer<S> for BitreqLayer {
    type Service = BitreqService<S>;
    fn layer(&self, inner: S) -> BitreqService<S> {
        BitreqService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`BitreqLayer`].
///
/// ```no_run
/// # fn f(server: pay402_server::bitreq::BitreqServer) {
/// use tower::Layer;
/// let handler = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::from("hi")))
/// });
/// let service = server.layer(pay402_server::Price::sats(3_000)).layer(handler);
/// # let _ = service;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct BitreqService<S> {
    inner: S,
    layer: BitreqLayer,
}

impl<S> Service<Request<Body>> for BitreqService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let span = tracing::info_span!(
            "bitreq.request",
            method = %req.method(),
            path = %req.uri().path(),
            payment = field::Empty,
            outcome = field::Empty,
        );
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(handle(layer, inner, req).instrument(span))
    }
}

async fn handle<S>(
    layer: BitreqLayer,
    mut inner: S,
    req: Request<Body>,
) -> Result<Response, Infallible>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let (mut parts, body) = req.into_parts();
    let price = match &layer.price {
        Price::Fixed(m) => Some(*m),
        Price::Dynamic(f) => {
            f(PriceRequest {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body: None,
            })
            .await
        }
    };
    let Some(price) = price.filter(|m| *m > Msat::ZERO).map(Msat::to_sat_ceil) else {
        tracing::Span::current().record("outcome", "free_price");
        return inner.call(Request::from_parts(parts, body)).await;
    };
    let server = &layer.server;
    let result = match Proof::from_header_map(&parts.headers) {
        Err(BitreqError::NoPaymentProof) => {
            tracing::Span::current().record("outcome", "challenged");
            return Ok(server
                .payment_required(price, &parts, BitreqServer::payment_required_problem(price))
                .await);
        }
        Err(e) => Err(BitreqServerError::Proof(e)),
        Ok(proof) => server.redeem(&parts, proof, price).await,
    };
    match result {
        Ok(payment) => {
            tracing::Span::current().record("outcome", "paid");
            tracing::info!(
                method = payment.method.as_str(),
                amount = payment.amount.0,
                reference = %payment.reference,
                "bitreq.paid"
            );
            parts.extensions.insert(payment);
            let mut resp = inner.call(Request::from_parts(parts, body)).await?;
            server
                .config()
                .paid_caching
                .apply_paid(resp.headers_mut(), BITREQ_CREDENTIALS);
            Ok(resp)
        }
        Err(e) => {
            tracing::Span::current().record("outcome", e.reason());
            Ok(server.reject(&e, price, &parts).await)
        }
    }
}

impl BitreqServer {
    /// The answer to a refused proof: 402 with a fresh offer, 202 with
    /// `Retry-After` while waiting for confirmations, otherwise the status of
    /// the error; always problem+json with the stable reason.
    pub(crate) async fn reject(
        &self,
        err: &BitreqServerError,
        price: Sat,
        parts: &Parts,
    ) -> Response {
        let status = err.status();
        if status >= 500 {
            tracing::warn!(reason = err.reason(), error = %err, "bitreq.reject");
        } else {
            tracing::info!(reason = err.reason(), error = %err, "bitreq.reject");
        }
        let problem = Problem::from_reason(err, status);
        if status == 402 {
            return self.payment_required(price, parts, problem).await;
        }
        let mut resp = respond::problem(&problem);
        cache::challenge(resp.headers_mut(), BITREQ_CREDENTIALS);
        if status == 202 {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        if let BitreqServerError::RateLimited { retry_after_secs } = err {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        resp
    }

    /// `None` if the client of `parts` is within the configured
    /// [`challenge_limit`](crate::bitreq::BitreqConfig::challenge_limit);
    /// otherwise the 429.
    fn over_limit(&self, parts: &Parts) -> Option<Response> {
        let limited =
            crate::limit::admit(self.config().challenge_limit.as_deref(), &parts.extensions)
                .err()?;
        tracing::Span::current().record("outcome", "rate_limited");
        tracing::info!(reason = "rate_limited", "bitreq.reject");
        Some(limited.response())
    }

    /// The problem of a BitRequests 402: what to pay and how to retry.
    pub(crate) fn payment_required_problem(price: Sat) -> Problem {
        Problem::new(402, "payment_required", "Payment required").with_detail(format!(
            "pay {} sat with one of the offered methods and retry with its proof header",
            price.0
        ))
    }

    /// Checks a proof for a request costing `price` with its method (the
    /// channel token is redeemed, the transaction verified and broadcast,
    /// the transfer debited), and returns what paid.
    pub(crate) async fn redeem(
        &self,
        parts: &Parts,
        proof: Proof,
        price: Sat,
    ) -> Result<BitreqPayment, BitreqServerError> {
        tracing::Span::current().record("payment", proof.method());
        match proof {
            Proof::Channel { token } => self.redeem_channel(&token, price).await,
            Proof::OnChain {
                tx_hex,
                return_address,
            } => {
                self.pay_onchain(parts, &tx_hex, return_address, price)
                    .await
            }
            Proof::Transfer {
                transfer,
                authorization,
            } => {
                self.pay_transfer(parts, &transfer, &authorization, price)
                    .await
            }
        }
    }

    /// A fresh offer for `price` (a new quote with derived addresses), or
    /// the answer when none can be made: the 429 of the challenge limit, or
    /// the store's error.
    pub(crate) async fn challenge_info(
        &self,
        price: Sat,
        parts: &Parts,
    ) -> Result<PaymentInfo, Response> {
        if let Some(limited) = self.over_limit(parts) {
            return Err(limited);
        }
        let info = match self
            .offer(price, &parts.method, &parts.uri, &parts.headers)
            .await
        {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(reason = e.reason(), error = %e, "bitreq.offer_failed");
                return Err(respond::problem(&Problem::from_reason(&e, e.status())));
            }
        };
        Ok(info)
    }

    /// A 402 carrying `problem` and a fresh offer for `price` (or the 429
    /// of the challenge limit).
    pub(crate) async fn payment_required(
        &self,
        price: Sat,
        parts: &Parts,
        problem: Problem,
    ) -> Response {
        let info = match self.challenge_info(price, parts).await {
            Ok(info) => info,
            Err(resp) => return resp,
        };
        let mut resp = respond::problem(&problem);
        let h = resp.headers_mut();
        cache::challenge(h, BITREQ_CREDENTIALS);
        if let Err(e) = info.insert_into(h) {
            tracing::warn!(error = %e, "bitreq.offer_header_invalid");
            return offer_unusable();
        }
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE),
        );
        resp
    }
}

/// 503: an offer whose values cannot be header values.
pub(crate) fn offer_unusable() -> Response {
    respond::problem(&Problem::new(
        503,
        "offer_unavailable",
        "Payment offer not usable in a header",
    ))
}
