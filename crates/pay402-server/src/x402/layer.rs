//! The x402 tower layer: offer, verify, reserve, run the handler, settle.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures_util::FutureExt;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode, header};
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;
use pay402_core::x402::facilitator::{Facilitator, FacilitatorError};
use pay402_core::x402::{PaymentRequirements, ResourceInfo, SettleResponse};
use tower::{Layer, Service};
use tracing::{Instrument, field};

use super::body::{self, Buffered, Held};
use super::config::{SettleTiming, X402Config};
use super::error::{X402Error, sanitize_reason};
use super::intake::{self, Intake, OfferSet};
use super::respond;
use super::route::{Offers, X402Route, check_offer};
use super::store::{
    AttemptId, CachedResponse, Claim, NonceKey, PaymentState, PaymentStore, Reservation, Resumed,
    StoreError,
};
use super::unserved::{self, Failure};
use crate::cache::X402_CREDENTIALS;
use crate::{BoxedResponse, PriceRequest};

struct Shared {
    config: X402Config,
    facilitator: Arc<dyn Facilitator>,
    store: Arc<dyn PaymentStore>,
    /// When released records were last pruned (unix seconds).
    last_prune: AtomicU64,
}

/// Released records are pruned at most this often (seconds)...
const PRUNE_EVERY_SECS: u64 = 60;
/// ...and at most this many at a time.
const PRUNE_BATCH: usize = 512;

impl Shared {
    fn lease_secs(&self) -> u64 {
        self.config.reservation_lease.as_secs().max(1)
    }

    /// Prunes the released records older than the retention, at most once
    /// every [`PRUNE_EVERY_SECS`] across the clones of a layer.
    async fn maybe_prune(&self, now: UnixTime) {
        let last = self.last_prune.load(Ordering::Relaxed);
        if last != 0 && now.0 < last.saturating_add(PRUNE_EVERY_SECS) {
            return;
        }
        if self
            .last_prune
            .compare_exchange(last, now.0.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let _ = self.prune(now).await;
    }

    async fn prune(&self, now: UnixTime) -> Result<usize, StoreError> {
        let older_than = UnixTime(
            now.0
                .saturating_sub(self.config.released_retention.as_secs()),
        );
        match self.store.prune_released(older_than, PRUNE_BATCH).await {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(pruned = n, "x402.released_pruned");
                }
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, "x402.prune_failed");
                Err(e)
            }
        }
    }
}

/// Renews a reservation's lease while its request works; stops (and the
/// lease runs out) once dropped.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LeaseKeeper {
    fn start(shared: Arc<Shared>, key: NonceKey, attempt: AttemptId) -> LeaseKeeper {
        let every = (shared.config.reservation_lease / 3).max(Duration::from_millis(50));
        LeaseKeeper(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = shared.config.clock.now();
                let until = now.saturating_add_secs(shared.lease_secs());
                match shared.store.renew(&key, &attempt, until, now).await {
                    Ok(true) => {}
                    // Moved on (by this request, or taken over): nothing to keep.
                    Ok(false) => break,
                    Err(e) => tracing::warn!(key = %key, error = %e, "x402.lease_renew_failed"),
                }
            }
        }))
    }
}

/// A tower [`Layer`] that charges for requests with x402.
///
/// Clone it with the offers of each route ([`X402Layer::with_route`]); the
/// clones share the configuration, facilitator and payment store. See the
/// [module docs](super) for the request path and its guarantees.
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use pay402_core::x402::TokenAmount;
/// use pay402_core::x402::facilitator::Facilitator;
/// use pay402_server::x402::{X402Config, X402Layer, X402Payment, X402Route, exact_offer, store::MemoryPaymentStore};
///
/// fn app(facilitator: Arc<dyn Facilitator>) -> Router {
///     let paywall = X402Layer::new(X402Config::new(), facilitator, Arc::new(MemoryPaymentStore::new()));
///     let offer = exact_offer("eip155:8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
///         "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", TokenAmount::from_u64(10_000), "USD Coin", "2");
///     let route = X402Route::new([offer]).unwrap().description("Weather").mime_type("text/plain");
///     Router::new().route(
///         "/weather",
///         get(|p: X402Payment| async move { format!("sunny, thanks {}", p.payer) })
///             .route_layer(paywall.with_route(route)),
///     )
/// }
/// ```
#[derive(Clone)]
pub struct X402Layer {
    shared: Arc<Shared>,
    route: Arc<X402Route>,
}

impl std::fmt::Debug for X402Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Layer")
            .field("config", &self.shared.config)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl X402Layer {
    /// A paywall settling through `facilitator` and recording payments in
    /// `store`. It starts without offers (free): set them per route with
    /// [`X402Layer::with_route`].
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn f(facilitator: Arc<dyn pay402_core::x402::facilitator::Facilitator>) {
    /// use pay402_server::x402::{X402Config, X402Layer, store::MemoryPaymentStore};
    /// let paywall = X402Layer::new(X402Config::new(), facilitator, Arc::new(MemoryPaymentStore::new()));
    /// # }
    /// ```
    pub fn new(
        config: X402Config,
        facilitator: Arc<dyn Facilitator>,
        store: Arc<dyn PaymentStore>,
    ) -> X402Layer {
        X402Layer {
            shared: Arc::new(Shared {
                config,
                facilitator,
                store,
                last_prune: AtomicU64::new(0),
            }),
            route: Arc::new(X402Route {
                offers: Offers::Fixed(Arc::from(Vec::new())),
                description: None,
                mime_type: None,
                resource_url: None,
                output_schema: None,
            }),
        }
    }

    /// The same paywall with `route`'s offers and description.
    ///
    /// ```no_run
    /// # use pay402_server::x402::*;
    /// # use pay402_core::x402::TokenAmount;
    /// # fn f(paywall: X402Layer, offer: pay402_core::x402::PaymentRequirements) {
    /// let cheap = paywall.with_route(X402Route::new([offer]).unwrap().description("cheap"));
    /// # }
    /// ```
    pub fn with_route(&self, route: X402Route) -> X402Layer {
        X402Layer {
            shared: self.shared.clone(),
            route: Arc::new(route),
        }
    }

    /// The configuration.
    ///
    /// ```no_run
    /// # fn f(paywall: pay402_server::x402::X402Layer) {
    /// assert!(paywall.config().accept_v1);
    /// # }
    /// ```
    pub fn config(&self) -> &X402Config {
        &self.shared.config
    }

    /// The payment store (to list pending settlements, for example).
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::x402::X402Layer) {
    /// use pay402_server::x402::store::PaymentState;
    /// let pending = paywall.store().list(PaymentState::Pending, 100).await.unwrap();
    /// # }
    /// ```
    pub fn store(&self) -> &Arc<dyn PaymentStore> {
        &self.shared.store
    }

    /// Deletes the `released` records (payments refused or not charged:
    /// nothing moved) older than [`X402Config::released_retention`], up to a
    /// batch; returns how many. The layer also does this by itself at most
    /// once a minute when it releases a payment; call it from a timer on a
    /// server that sees few requests.
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::x402::X402Layer) {
    /// let pruned = paywall.prune_released().await.unwrap();
    /// # let _ = pruned;
    /// # }
    /// ```
    pub async fn prune_released(&self) -> Result<usize, StoreError> {
        self.shared.prune(self.shared.config.clock.now()).await
    }

    /// Asks the facilitator's `/supported` which of `offers` it cannot
    /// settle (in v2, and in v1 too when v1 is on). Call it at start-up and
    /// refuse to serve when the answer is not empty.
    ///
    /// ```no_run
    /// # async fn f(paywall: pay402_server::x402::X402Layer, offers: Vec<pay402_core::x402::PaymentRequirements>) {
    /// let missing = paywall.unsupported_offers(&offers).await.unwrap();
    /// assert!(missing.is_empty(), "the facilitator cannot settle {missing:?}");
    /// # }
    /// ```
    pub async fn unsupported_offers(
        &self,
        offers: &[PaymentRequirements],
    ) -> Result<Vec<PaymentRequirements>, FacilitatorError> {
        let supported = self.shared.facilitator.supported().await?;
        Ok(offers
            .iter()
            .filter(|o| {
                let v2 = supported.supports(2, &o.scheme, &o.network);
                let v1 = !self.shared.config.accept_v1 || {
                    let slug =
                        pay402_core::x402::network::caip2_to_slug(&o.network).unwrap_or(&o.network);
                    supported.supports(1, &o.scheme, slug)
                };
                !(v2 && v1)
            })
            .cloned()
            .collect())
    }
}

impl<S> Layer<S> for X402Layer {
    type Service = X402Service<S>;
    fn layer(&self, inner: S) -> X402Service<S> {
        X402Service {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service produced by [`X402Layer`].
///
/// ```no_run
/// # fn f(paywall: pay402_server::x402::X402Layer) {
/// use tower::Layer;
/// let handler = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::from("hi")))
/// });
/// let service = paywall.layer(handler); // an X402Service
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct X402Service<S> {
    inner: S,
    layer: X402Layer,
}

impl<S> Service<Request<Body>> for X402Service<S>
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

    fn call(&mut self, req: Request<Body>) -> BoxedResponse {
        let span = tracing::info_span!(
            "x402.request",
            method = %req.method(),
            path = %req.uri().path(),
            version = field::Empty,
            payer = field::Empty,
            outcome = field::Empty,
        );
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(handle(self.layer.clone(), inner, req).instrument(span))
    }
}

fn outcome(what: &'static str) {
    tracing::Span::current().record("outcome", what);
}

/// Logs and answers a refusal.
fn refuse(set: &OfferSet, cfg: &X402Config, err: &X402Error) -> Response {
    if err.status() >= 500 {
        tracing::warn!(reason = err.reason_str(), error = %err, "x402.fail");
    } else {
        tracing::info!(reason = err.reason_str(), "x402.reject");
    }
    outcome(if err.status() >= 500 {
        "failed"
    } else {
        "rejected"
    });
    respond::refusal(set, cfg, err)
}

fn resource(route: &X402Route, cfg: &X402Config, parts: &Parts) -> ResourceInfo {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = if let Some(u) = &route.resource_url {
        u.clone()
    } else if let Some(base) = &cfg.base_url {
        format!("{base}{path}")
    } else if parts.uri.scheme().is_some() {
        parts.uri.to_string()
    } else if let Some(host) = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        format!("http://{host}{path}")
    } else {
        path.to_owned()
    };
    ResourceInfo {
        url,
        description: route.description.clone(),
        mime_type: route.mime_type.clone(),
        ..ResourceInfo::default()
    }
}

impl X402Layer {
    /// The offers of `parts` on this layer's route: fixed, or computed and
    /// checked (a bad computed offer is answered 500).
    async fn route_offers(&self, parts: &Parts) -> Result<Arc<[PaymentRequirements]>, Response> {
        match &self.route.offers {
            Offers::Fixed(o) => Ok(o.clone()),
            Offers::Dynamic(f) => {
                let offers = f(PriceRequest {
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    headers: parts.headers.clone(),
                    body: None,
                })
                .await;
                if let Err(e) = offers.iter().try_for_each(check_offer) {
                    tracing::error!(error = %e, "x402.invalid_offer");
                    outcome("failed");
                    return Err(respond::problem(
                        &X402Error::Config(e.to_string()),
                        &self.shared.config,
                    ));
                }
                Ok(offers.into())
            }
        }
    }

    /// The offers of one request, in both versions, for the resource
    /// `route` describes.
    pub(crate) fn offer_set(
        &self,
        offers: Arc<[PaymentRequirements]>,
        route: &X402Route,
        parts: &Parts,
    ) -> OfferSet {
        let cfg = &self.shared.config;
        OfferSet::new(
            offers,
            resource(route, cfg, parts),
            cfg.accept_v1,
            route.output_schema.as_ref(),
        )
    }

    /// Reads and checks locally the payment of a request against `set`:
    /// `Ok(None)` without a payment header.
    pub(crate) fn read_payment(
        &self,
        parts: &Parts,
        set: &OfferSet,
    ) -> Result<Option<Intake>, X402Error> {
        let cfg = &self.shared.config;
        intake::read_payment(
            &parts.headers,
            set,
            cfg.accept_v1,
            cfg.payment_identifier,
            cfg.clock.now(),
            cfg.clock_skew.as_secs(),
        )
    }

    /// Logs and answers a refused payment (with the offer again where
    /// paying again can help).
    pub(crate) fn refusal(&self, set: &OfferSet, err: &X402Error) -> Response {
        refuse(set, &self.shared.config, err)
    }

    /// Serves a locally checked payment: the payment limit, then, in a task
    /// of its own, reservation, facilitator verify, handler and settlement.
    pub(crate) async fn serve_payment<S>(
        &self,
        inner: S,
        parts: Parts,
        body: Body,
        intake: Intake,
        set: OfferSet,
    ) -> Response
    where
        S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let cfg = &self.shared.config;
        let span = tracing::Span::current();
        span.record("version", intake.payment.x402_version);
        span.record("payer", field::display(&intake.payment.payer));
        // A well-formed payment, locally checked: before the store and the
        // facilitator spend anything on it, count it against the client.
        if let Err(limited) = crate::limit::admit(cfg.payment_limit.as_deref(), &parts.extensions) {
            outcome("rate_limited");
            tracing::info!(reason = "rate_limited", "x402.reject");
            return limited.response();
        }
        // From here on a payment is at stake: run it as its own task, so a
        // client that disconnects cannot abandon it between settlement and
        // recording.
        let task =
            tokio::spawn(paid(self.clone(), inner, parts, body, intake, set).instrument(span));
        match task.await {
            Ok(resp) => {
                pay402_core::fault::point(pay402_core::fault::Step::BeforeResponse);
                resp
            }
            Err(e) => {
                tracing::error!(error = %e, "x402.task_failed");
                respond::problem(&X402Error::Handler("the payment task failed".into()), cfg)
            }
        }
    }
}

async fn handle<S>(
    layer: X402Layer,
    mut inner: S,
    req: Request<Body>,
) -> Result<Response, Infallible>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let (parts, body) = req.into_parts();
    let offers = match layer.route_offers(&parts).await {
        Ok(o) => o,
        Err(resp) => return Ok(resp),
    };
    if offers.is_empty() {
        outcome("free");
        return inner.call(Request::from_parts(parts, body)).await;
    }
    let set = layer.offer_set(offers, &layer.route, &parts);
    match layer.read_payment(&parts, &set) {
        Ok(None) => {
            outcome("challenged");
            Ok(respond::offer(&set, &layer.shared.config, None))
        }
        Ok(Some(intake)) => Ok(layer.serve_payment(inner, parts, body, intake, set).await),
        Err(e) => Ok(layer.refusal(&set, &e)),
    }
}

async fn paid<S>(
    layer: X402Layer,
    inner: S,
    parts: Parts,
    body: Body,
    intake: Intake,
    set: OfferSet,
) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let cfg = &layer.shared.config;
    let now = cfg.clock.now();
    let lease_until = now.saturating_add_secs(layer.shared.lease_secs());
    let request_json = serde_json::to_string(&intake.request).unwrap_or_default();
    let mut claim = Claim::new(
        intake.key.clone(),
        intake.fingerprint,
        request_json,
        lease_until,
    )
    .with_payment_id(intake.payment_id.clone());
    claim.payer = intake.payment.payer.to_string();
    claim.network = intake.payment.network.clone();
    claim.amount = intake.payment.amount.to_string();

    let reserved = layer
        .shared
        .store
        .reserve(&claim, now)
        .instrument(tracing::debug_span!("x402.reserve", key = %claim.key))
        .await;
    let acquired = match reserved {
        Ok(Reservation::Acquired(a)) => a,
        Ok(Reservation::InProgress) => return refuse(&set, cfg, &X402Error::InProgress),
        Ok(Reservation::Spent {
            cached: Some(cached),
            payment_response,
        }) => {
            tracing::info!("x402.replayed_cached_response");
            outcome("cached");
            let mut resp = from_cached(cached);
            if let Some(r) = payment_response {
                respond::set_receipt(&mut resp, intake.payment.x402_version, &r);
            }
            respond::expose(resp.headers_mut());
            cfg.paid_caching
                .apply_paid(resp.headers_mut(), X402_CREDENTIALS);
            return resp;
        }
        Ok(Reservation::Spent { cached: None, .. } | Reservation::NonceConflict) => {
            return refuse(&set, cfg, &X402Error::NonceAlreadyUsed);
        }
        Ok(Reservation::IdConflict) => return refuse(&set, cfg, &X402Error::PaymentIdConflict),
        Err(e) => return refuse(&set, cfg, &X402Error::Store(e)),
    };
    if let Some(r) = &acquired.resumed {
        tracing::info!(from = %r.from, transaction = ?r.transaction, "x402.resumed");
    }
    // Keep the reservation while this request works (body upload, handler,
    // settlement); dropped (stopped) when the request is answered.
    let _lease = LeaseKeeper::start(layer.shared.clone(), claim.key.clone(), acquired.attempt);
    let flow = Flow {
        layer: &layer,
        intake: &intake,
        set: &set,
        attempt: acquired.attempt,
        reserved_at: now,
    };
    let resumed = acquired.resumed;
    if cfg.facilitator_verify
        && !resumed.as_ref().is_some_and(Resumed::may_have_settled)
        && let Err(resp) = flow.facilitator_verify().await
    {
        return resp;
    }
    match cfg.settle {
        SettleTiming::AfterHandler => flow.settle_after(inner, parts, body, resumed).await,
        SettleTiming::BeforeHandler => flow.settle_before(inner, parts, body, resumed).await,
    }
}

fn from_cached(c: CachedResponse) -> Response {
    let mut resp = Response::new(Body::from(c.body));
    *resp.status_mut() = StatusCode::from_u16(c.status).unwrap_or(StatusCode::OK);
    if let Some(ct) = c.content_type.and_then(|v| HeaderValue::try_from(v).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

fn cached_of(head: &http::response::Parts, body: &bytes::Bytes) -> CachedResponse {
    CachedResponse {
        status: head.status.as_u16(),
        content_type: head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.clone(),
    }
}

/// Whether a lease of `lease_secs` set at `reserved_at` has more than nine
/// tenths of its length ahead at `now` (see `Flow::still_owner`). Whole
/// seconds: `now` rounded down may hide up to a second, so only the same
/// second counts for a lease shorter than 10 s, and then a takeover (which
/// needs `now > reserved_at + lease_secs`) is at least a second away.
fn lease_fresh(reserved_at: UnixTime, now: UnixTime, lease_secs: u64) -> bool {
    now.0 >= reserved_at.0 && (now.0 - reserved_at.0).saturating_mul(10) < lease_secs
}

/// What the facilitator made of a settlement.
enum Settlement {
    /// Settled: the money moved (`success` with a transaction).
    Settled(SettleResponse),
    /// A verdict: nothing moved.
    Failed(SettleResponse),
    /// The money may move (pending, or no usable answer).
    Unknown {
        transaction: Option<String>,
        error: X402Error,
    },
    /// The facilitator refused the request itself: nothing was sent.
    Refused(FacilitatorError),
}

async fn run_handler<S>(mut inner: S, req: Request<Body>) -> Result<Response, String>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let call = async move { inner.call(req).await };
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(never)) => match never {},
        Err(_) => Err("the handler panicked".into()),
    }
}

/// One reserved payment on its way through verify, handler and settlement.
struct Flow<'a> {
    layer: &'a X402Layer,
    intake: &'a Intake,
    set: &'a OfferSet,
    attempt: AttemptId,
    /// When this request took its reservation (the lease it set runs from
    /// here).
    reserved_at: UnixTime,
}

impl Flow<'_> {
    fn cfg(&self) -> &X402Config {
        &self.layer.shared.config
    }

    fn now(&self) -> UnixTime {
        self.cfg().clock.now()
    }

    fn version(&self) -> u32 {
        self.intake.payment.x402_version
    }

    /// Gives the payment back (nothing moved): the same payload may be used again.
    async fn release(&self) {
        match self
            .layer
            .shared
            .store
            .release(&self.intake.key, &self.attempt, self.now())
            .await
        {
            Ok(true) => {
                tracing::debug!(key = %self.intake.key, "x402.released");
                self.layer.shared.maybe_prune(self.now()).await;
            }
            Ok(false) => {
                tracing::warn!(key = %self.intake.key, "x402.release_lost_reservation")
            }
            Err(e) => {
                tracing::warn!(key = %self.intake.key, error = %e, "x402.release_failed")
            }
        }
    }

    /// Confirms (and extends) this request's reservation right before it
    /// settles: a request whose reservation was taken over must neither
    /// settle nor serve (the new owner does both). When the store cannot
    /// say, nothing is settled either (503, retry the same payment).
    ///
    /// A request that reserved less than a tenth of the lease ago (the
    /// common case: a fast handler) skips that statement: at least nine
    /// tenths of the lease it set are still ahead, and no request may take
    /// a reservation over before its lease has run out (the store's
    /// takeover is conditional on `lease_until < now`), so it is still the
    /// owner, with the same assumption every takeover already makes, that
    /// the instances' clocks agree to well within the lease.
    async fn still_owner(&self) -> Result<(), Response> {
        let shared = &self.layer.shared;
        let now = self.now();
        if lease_fresh(self.reserved_at, now, shared.lease_secs()) {
            return Ok(());
        }
        let until = now.saturating_add_secs(shared.lease_secs());
        match shared
            .store
            .renew(&self.intake.key, &self.attempt, until, now)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lost()),
            Err(e) => Err(self.fail(X402Error::Store(e))),
        }
    }

    /// 409 `reservation_lost`: another request carrying the same payment
    /// took this one's reservation over; it serves the payer, this one is
    /// not served.
    fn lost(&self) -> Response {
        tracing::warn!(key = %self.intake.key, "x402.reservation_lost");
        self.fail(X402Error::ReservationLost)
    }

    /// Records the settlement; false when this request's reservation was
    /// taken over meanwhile (it must not serve).
    #[must_use]
    async fn mark_settled(
        &self,
        transaction: &str,
        receipt: &str,
        keep: Option<&CachedResponse>,
    ) -> bool {
        pay402_core::fault::point(pay402_core::fault::Step::BeforeRecord);
        match self
            .layer
            .shared
            .store
            .mark_settled(
                &self.intake.key,
                &self.attempt,
                transaction,
                receipt,
                keep,
                self.now(),
            )
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::error!(
                    key = %self.intake.key, transaction,
                    "x402.settled_but_reservation_lost"
                );
                false
            }
            Err(e) => {
                tracing::error!(
                    key = %self.intake.key, transaction, error = %e,
                    "x402.settled_but_not_recorded"
                );
                true
            }
        }
    }

    /// A failure verdict that may only mean an earlier attempt's settlement
    /// already spent the nonce: keep the payment pending (recorded, with the
    /// earlier transaction) for reconciliation instead of releasing it.
    async fn keep_pending_after(
        &self,
        s: &SettleResponse,
        transaction: Option<&str>,
        keep: Option<&CachedResponse>,
    ) {
        tracing::warn!(
            reason = ?s.error_reason,
            transaction = ?transaction,
            "x402.failure_after_earlier_settlement_kept_pending"
        );
        self.mark_pending(transaction, keep).await;
    }

    async fn mark_pending(&self, transaction: Option<&str>, keep: Option<&CachedResponse>) {
        match self
            .layer
            .shared
            .store
            .mark_pending(
                &self.intake.key,
                &self.attempt,
                transaction,
                keep,
                self.now(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                key = %self.intake.key, transaction,
                "x402.pending_but_reservation_lost"
            ),
            // The reservation stays `reserved`: once its lease runs out the
            // same payment takes it over as if pending.
            Err(e) => tracing::error!(
                key = %self.intake.key, transaction, error = %e,
                "x402.pending_not_recorded"
            ),
        }
    }

    async fn facilitator_verify(&self) -> Result<(), Response> {
        let shared = &self.layer.shared;
        let answer = tokio::time::timeout(
            self.cfg().verify_timeout,
            shared.facilitator.verify(&self.intake.request),
        )
        .instrument(tracing::info_span!("x402.facilitator_verify"))
        .await;
        let err = match answer {
            Ok(Ok(v)) if v.is_valid => {
                pay402_core::fault::point(pay402_core::fault::Step::AfterVerify);
                return Ok(());
            }
            Ok(Ok(v)) => X402Error::FacilitatorRejected {
                reason: sanitize_reason(v.invalid_reason.as_deref(), "invalid_payment")
                    .into_owned(),
                message: v
                    .invalid_message
                    .map(|m| m.chars().take(200).collect::<String>()),
            },
            Ok(Err(e)) => X402Error::Facilitator(e),
            Err(_) => {
                X402Error::Facilitator(FacilitatorError::Unavailable("verify timed out".into()))
            }
        };
        self.release().await;
        Err(refuse(self.set, self.cfg(), &err))
    }

    async fn settle(&self) -> Settlement {
        let shared = &self.layer.shared;
        let span = tracing::info_span!("x402.settle", transaction = field::Empty);
        let answer = tokio::time::timeout(
            self.cfg().settle_timeout,
            shared.facilitator.settle(&self.intake.request),
        )
        .instrument(span.clone())
        .await;
        let settlement = match answer {
            Err(_) => Settlement::Unknown {
                transaction: None,
                error: X402Error::SettlementUnknown("settle timed out".into()),
            },
            Ok(Err(FacilitatorError::Pending { transaction, .. })) => Settlement::Unknown {
                transaction: Some(transaction.clone()),
                error: X402Error::SettlementPending {
                    transaction: Some(transaction),
                },
            },
            Ok(Err(e @ FacilitatorError::Refused { .. })) => Settlement::Refused(e),
            Ok(Err(e)) => Settlement::Unknown {
                transaction: None,
                error: X402Error::SettlementUnknown(e.to_string()),
            },
            Ok(Ok(mut s)) if s.success => {
                if s.transaction.as_deref().is_none_or(str::is_empty) {
                    Settlement::Unknown {
                        transaction: None,
                        error: X402Error::SettlementUnknown(
                            "the facilitator reported success without a transaction".into(),
                        ),
                    }
                } else {
                    if s.network.is_empty() {
                        s.network = self.intake.request.network().to_owned();
                    }
                    if s.payer.is_none() {
                        s.payer = Some(self.intake.payment.payer.to_string());
                    }
                    Settlement::Settled(s)
                }
            }
            Ok(Ok(s)) => Settlement::Failed(s),
        };
        match &settlement {
            Settlement::Settled(s) => {
                let tx = s.transaction.as_deref().unwrap_or_default();
                span.record("transaction", tx);
                tracing::info!(parent: &span, transaction = tx, "x402.settled");
            }
            Settlement::Failed(s) => tracing::info!(
                parent: &span, reason = ?s.error_reason, "x402.settlement_failed"
            ),
            Settlement::Unknown { transaction, error } => tracing::warn!(
                parent: &span, transaction = ?transaction, error = %error,
                "x402.settlement_pending"
            ),
            Settlement::Refused(e) => {
                tracing::warn!(parent: &span, error = %e, "x402.settlement_refused")
            }
        }
        settlement
    }

    fn handler_request(&self, parts: Parts, body: Body, tx: Option<String>) -> Request<Body> {
        let mut req = Request::from_parts(parts, body);
        // Behind a `Paywall`, its record of the payment names the
        // settlement once there is one.
        if let (Some(tx), Some(paid)) =
            (&tx, req.extensions_mut().get_mut::<crate::paywall::Paid>())
        {
            paid.receipt = crate::paywall::Receipt::X402Transaction(tx.clone());
        }
        let mut payment = self.intake.payment.clone();
        payment.transaction = tx;
        req.extensions_mut().insert(payment);
        req
    }

    /// 402 with the failed `PAYMENT-RESPONSE` and the offer again; the
    /// handler's body (if any) is dropped.
    fn settle_failed(&self, mut s: SettleResponse) -> Response {
        let reason = sanitize_reason(s.error_reason.as_deref(), "settlement_failed").into_owned();
        if s.network.is_empty() {
            s.network = self.intake.request.network().to_owned();
        }
        if s.payer.is_none() {
            s.payer = Some(self.intake.payment.payer.to_string());
        }
        if self.version() == 1 && s.transaction.is_none() {
            s.transaction = Some(String::new());
        }
        s.success = false;
        let mut resp = refuse(
            self.set,
            self.cfg(),
            &X402Error::SettlementFailed { reason },
        );
        respond::set_receipt(&mut resp, self.version(), &respond::receipt(&s));
        resp
    }

    /// 202 (pending) or 503 (unknown), with `Retry-After` and a receipt
    /// saying `settlement_pending` and the transaction when known.
    fn pending(&self, transaction: Option<String>, error: &X402Error) -> Response {
        outcome("pending");
        let receipt = SettleResponse {
            success: false,
            error_reason: Some(error.reason_str().to_owned()),
            transaction,
            network: self.intake.request.network().to_owned(),
            payer: Some(self.intake.payment.payer.to_string()),
            ..SettleResponse::default()
        };
        let mut resp = respond::problem(error, self.cfg());
        respond::set_receipt(&mut resp, self.version(), &respond::receipt(&receipt));
        resp
    }

    fn fail(&self, err: X402Error) -> Response {
        refuse(self.set, self.cfg(), &err)
    }

    /// A handler's failure (HTTP >= 400, or a non-zero gRPC status) is not
    /// served content: it is not charged, the reservation is released (the
    /// same payment stays usable) and the answer passed on as it is.
    async fn not_served(&self, resp: Response, failure: Failure) -> Response {
        tracing::info!(
            status = resp.status().as_u16(),
            grpc_status = failure.grpc_status(),
            "x402.handler_error_not_settled"
        );
        self.release().await;
        outcome("handler_error");
        resp
    }

    /// The headers of a served paid response: CORS exposure and the
    /// caching policy.
    fn paid_headers(&self, resp: &mut Response) {
        respond::expose(resp.headers_mut());
        self.cfg()
            .paid_caching
            .apply_paid(resp.headers_mut(), X402_CREDENTIALS);
    }

    async fn settle_after<S>(
        &self,
        inner: S,
        parts: Parts,
        body: Body,
        resumed: Option<Resumed>,
    ) -> Response
    where
        S: Service<Request<Body>, Response = Response, Error = Infallible>,
    {
        let earlier = earlier_attempt(resumed.as_ref());
        let (head, held) = match resumed.and_then(|r| r.response) {
            // An earlier attempt ran the handler and went pending: serve
            // what it produced once settled, without running it again.
            Some(kept) => {
                let (head, _) = from_cached(kept.clone()).into_parts();
                let held = Held {
                    data: kept.body,
                    trailers: None,
                };
                (head, held)
            }
            None => {
                let req = self.handler_request(parts, body, None);
                let resp = match run_handler(inner, req)
                    .instrument(tracing::info_span!("x402.handler"))
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        self.release().await;
                        return self.fail(X402Error::Handler(e));
                    }
                };
                let (head, body) = resp.into_parts();
                if let Some(failure) = unserved::of_head(&head) {
                    return self
                        .not_served(Response::from_parts(head, body), failure)
                        .await;
                }
                let held = match body::buffer(body, self.cfg().max_response_body).await {
                    Ok(Buffered::Full(held)) => held,
                    Ok(Buffered::Partial { .. }) => {
                        tracing::error!(
                            limit = self.cfg().max_response_body,
                            "x402.response_too_large_for_settle_after"
                        );
                        self.release().await;
                        return self.fail(X402Error::ResponseTooLarge);
                    }
                    Err(e) => {
                        self.release().await;
                        return self.fail(X402Error::Handler(e));
                    }
                };
                if let Some(failure) = unserved::of_trailers(&head, held.trailers.as_ref()) {
                    return self
                        .not_served(Response::from_parts(head, held.into_body()), failure)
                        .await;
                }
                (head, held)
            }
        };
        let cached = cached_of(&head, &held.data);
        if let Err(resp) = self.still_owner().await {
            return resp;
        }
        match self.settle().await {
            Settlement::Settled(s) => {
                let receipt = respond::receipt(&s);
                let tx = s.transaction.as_deref().unwrap_or_default();
                let keep = self.intake.payment_id.is_some().then_some(&cached);
                if !self.mark_settled(tx, &receipt, keep).await {
                    return self.lost();
                }
                let mut resp = Response::from_parts(head, held.into_body());
                respond::set_receipt(&mut resp, self.version(), &receipt);
                self.paid_headers(&mut resp);
                outcome("paid");
                resp
            }
            Settlement::Failed(s) if may_hide_our_settlement(earlier.as_ref(), &s) => {
                let transaction = earlier.flatten();
                self.keep_pending_after(&s, transaction.as_deref(), Some(&cached))
                    .await;
                self.pending(
                    transaction.clone(),
                    &X402Error::SettlementPending { transaction },
                )
            }
            Settlement::Failed(s) => {
                self.release().await;
                self.settle_failed(s)
            }
            Settlement::Unknown { transaction, error } => {
                self.mark_pending(transaction.as_deref(), Some(&cached))
                    .await;
                self.pending(transaction, &error)
            }
            Settlement::Refused(e) => {
                self.release().await;
                self.fail(X402Error::Facilitator(e))
            }
        }
    }

    async fn settle_before<S>(
        &self,
        inner: S,
        parts: Parts,
        body: Body,
        resumed: Option<Resumed>,
    ) -> Response
    where
        S: Service<Request<Body>, Response = Response, Error = Infallible>,
    {
        let earlier = earlier_attempt(resumed.as_ref());
        if let Err(resp) = self.still_owner().await {
            return resp;
        }
        let s = match self.settle().await {
            Settlement::Settled(s) => s,
            Settlement::Failed(s) if may_hide_our_settlement(earlier.as_ref(), &s) => {
                let transaction = earlier.flatten();
                self.keep_pending_after(&s, transaction.as_deref(), None)
                    .await;
                return self.pending(
                    transaction.clone(),
                    &X402Error::SettlementPending { transaction },
                );
            }
            Settlement::Failed(s) => {
                self.release().await;
                return self.settle_failed(s);
            }
            Settlement::Unknown { transaction, error } => {
                self.mark_pending(transaction.as_deref(), None).await;
                return self.pending(transaction, &error);
            }
            Settlement::Refused(e) => {
                self.release().await;
                return self.fail(X402Error::Facilitator(e));
            }
        };
        let receipt = respond::receipt(&s);
        let tx = s.transaction.clone().unwrap_or_default();
        if !self.mark_settled(&tx, &receipt, None).await {
            return self.lost();
        }
        let resp = match resumed.and_then(|r| r.response) {
            Some(kept) => from_cached(kept),
            None => {
                let req = self.handler_request(parts, body, Some(tx.clone()));
                match run_handler(inner, req)
                    .instrument(tracing::info_span!("x402.handler"))
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(transaction = %tx, error = %e, "x402.paid_but_handler_failed");
                        let mut resp = self.fail(X402Error::Handler(e));
                        respond::set_receipt(&mut resp, self.version(), &receipt);
                        return resp;
                    }
                }
            }
        };
        let (head, body) = resp.into_parts();
        let body = if self.intake.payment_id.is_some() {
            match body::buffer(body, self.cfg().max_response_body).await {
                Ok(Buffered::Full(held)) => {
                    let kept = cached_of(&head, &held.data);
                    if let Err(e) = self
                        .layer
                        .shared
                        .store
                        .attach_response(&self.intake.key, &self.attempt, &kept, self.now())
                        .await
                    {
                        tracing::warn!(error = %e, "x402.response_not_kept");
                    }
                    held.into_body()
                }
                // Too large to keep: stream it, without a cached copy.
                Ok(partial) => partial.into_body(),
                Err(e) => {
                    tracing::error!(transaction = %tx, error = %e, "x402.paid_but_body_failed");
                    let mut resp = self.fail(X402Error::Handler(e));
                    respond::set_receipt(&mut resp, self.version(), &receipt);
                    return resp;
                }
            }
        } else {
            body
        };
        let mut resp = Response::from_parts(head, body);
        respond::set_receipt(&mut resp, self.version(), &receipt);
        self.paid_headers(&mut resp);
        outcome("paid");
        resp
    }
}

/// What an earlier attempt at this payment left behind: `Some(transaction)`
/// when it may have moved money (it went pending, or its lease expired
/// mid-flight), `None` when there was no such attempt.
fn earlier_attempt(resumed: Option<&Resumed>) -> Option<Option<String>> {
    resumed
        .filter(|r| matches!(r.from, PaymentState::Pending | PaymentState::Reserved))
        .map(|r| r.transaction.clone())
}

/// Whether a failed settlement may only mean that an earlier attempt's
/// transaction already spent the nonce. pay402's own facilitator answers a
/// repeated settle with the original transaction, but others (the reference
/// facilitators) answer "nonce already used": releasing the payment then
/// would charge the payer without serving them. When the earlier attempt
/// reported a transaction, any failure is treated this way; otherwise only a
/// used-nonce verdict is.
fn may_hide_our_settlement(earlier: Option<&Option<String>>, s: &SettleResponse) -> bool {
    match earlier {
        None => false,
        Some(Some(_)) => true,
        Some(None) => s
            .error_reason
            .as_deref()
            .is_some_and(|r| r.contains("nonce") && (r.contains("used") || r.contains("spent"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_fresh_for_its_first_tenth_only() {
        let t = |s| UnixTime(s);
        // 60 s lease: fresh for 0..=5 s after reserving.
        assert!(lease_fresh(t(100), t(100), 60));
        assert!(lease_fresh(t(100), t(105), 60));
        assert!(!lease_fresh(t(100), t(106), 60));
        // Shorter than 10 s: only within the same second.
        assert!(lease_fresh(t(100), t(100), 1));
        assert!(!lease_fresh(t(100), t(101), 9));
        // A clock that went back is not trusted.
        assert!(!lease_fresh(t(100), t(99), 60));
    }
}
