//! MPP as a rail of a [`Paywall`](crate::paywall::Paywall): its challenges
//! (`WWW-Authenticate: Payment …`, one per method priced), its proof
//! (`Authorization: Payment <credential>`), verification in the protocol's
//! order, the atomic consume, the handler, and the `Payment-Receipt`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures_util::future::Either;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, Network};
use pay402_core::money::{Msat, Sat};
use pay402_core::mpp::credential::{self, CredentialError};
use pay402_core::mpp::methods::issued::IssuedCharges;
use pay402_core::mpp::methods::lightning;
use pay402_core::mpp::{Credential, MppProblem, ProblemType, VerifyError, rfc3339};
use pay402_core::offer::Rail;
use pay402_core::problem::{PROBLEM_JSON, Problem, Reason};
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use tower::Service;

use super::store::{Consumption, MppStore};
use super::{CredentialHeader, MppConfig};
use crate::cache::PaidCaching;
use crate::paywall::rail::{ChallengePart, Next, Part, PaywallRail, Pending, RailFuture, Unpaid};
use crate::paywall::{BuildError, Paid, RailPrices, Receipt};
use crate::respond;

/// The receipt header.
static PAYMENT_RECEIPT: HeaderName = HeaderName::from_static("payment-receipt");

/// The client's payment preferences (mpp.md §4.3).
static ACCEPT_PAYMENT: HeaderName = HeaderName::from_static("accept-payment");

/// The opt-in credential field (mpp.md §3.3).
static PAYMENT_AUTHORIZATION: HeaderName = HeaderName::from_static("payment-authorization");

/// The MPP rail: secrets, realm, methods and the replay store.
pub(crate) struct MppRail {
    realm: String,
    keys: Arc<pay402_core::mpp::ChallengeKeys>,
    ttl_secs: u64,
    lightning: Option<(Arc<dyn InvoiceIssuer>, Network)>,
    #[cfg(feature = "x402")]
    evm: Option<evm::EvmRail>,
    store: Arc<dyn MppStore>,
    paid_caching: PaidCaching,
    memo: String,
    challenge_limit: Option<Arc<crate::limit::ClientLimiter>>,
    /// The field credentials are read from, advertised as `header=` when not
    /// `Authorization`.
    credential_header: CredentialHeader,
    /// The `lightning`/`charge` challenges this instance issued (the
    /// verify shortcut; bound to `keys`, which never change in a rail).
    issued: IssuedCharges,
}

thread_local! {
    /// The decode buffer of credentials, reused by every request of the
    /// thread (a credential is about 1.1 KB decoded).
    static CREDENTIAL_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decode buffers larger than this are not kept for the next request.
const KEEP_BUF: usize = 16 * 1024;

/// What a verified credential is, before it is consumed.
enum Verified {
    Lightning(lightning::VerifiedCharge),
    #[cfg(feature = "x402")]
    Evm(Box<pay402_core::mpp::methods::evm::VerifiedCharge>),
}

impl MppRail {
    pub(crate) fn new(config: MppConfig) -> Result<MppRail, BuildError> {
        let lightning = config.lightning.map(|node| {
            let network = node.network();
            (node, network)
        });
        if let Some((_, network)) = &lightning
            && lightning::network_name(*network).is_none()
        {
            return Err(BuildError::Mpp(
                "the Lightning node's network has no MPP name (mainnet, regtest, signet)",
            ));
        }
        #[cfg(feature = "x402")]
        let evm = match config.evm {
            Some(m) => Some(evm::EvmRail::new(m, config.ttl)?),
            None => None,
        };
        #[cfg(feature = "x402")]
        let none = lightning.is_none() && evm.is_none();
        #[cfg(not(feature = "x402"))]
        let none = lightning.is_none();
        if none {
            return Err(BuildError::Mpp(
                "MPP needs a method: lightning(node) or evm(facilitator, pay_to, asset)",
            ));
        }
        Ok(MppRail {
            realm: config.realm,
            keys: config.keys,
            ttl_secs: config.ttl.as_secs().max(1),
            lightning,
            #[cfg(feature = "x402")]
            evm,
            store: config.store,
            paid_caching: config.paid_caching,
            memo: config.memo,
            challenge_limit: config.challenge_limit,
            credential_header: config.credential_header,
            issued: IssuedCharges::new(config.issued_capacity),
        })
    }

    /// The `header=` parameter of the challenges: `None` for
    /// `Authorization` (never advertised, never bound).
    fn advertised_header(&self) -> Option<&'static str> {
        match self.credential_header {
            CredentialHeader::Authorization => None,
            CredentialHeader::PaymentAuthorization => Some(self.credential_header.name()),
        }
    }

    /// `c` with the advertised `header=` (the HMAC's eighth slot), rebound.
    #[cfg(feature = "x402")]
    fn with_header(
        &self,
        mut c: pay402_core::mpp::Challenge<'static>,
    ) -> pay402_core::mpp::Challenge<'static> {
        if let Some(h) = self.advertised_header() {
            c.header = Some(h.into());
            self.keys.bind(&mut c);
        }
        c
    }

    /// Whether `lightning`/`charge` is enabled.
    pub(crate) fn has_lightning(&self) -> bool {
        self.lightning.is_some()
    }

    /// The unit of the `evm`/`charge` asset, when enabled.
    pub(crate) fn evm_unit(&self) -> Option<&pay402_core::rates::TokenUnit> {
        #[cfg(feature = "x402")]
        return self.evm.as_ref().map(|e| &e.unit);
        #[cfg(not(feature = "x402"))]
        return None;
    }

    /// The unit of the `evm`/`charge` asset, when it is a USD stablecoin.
    #[cfg(feature = "x402")]
    pub(crate) fn evm_stablecoin(&self) -> Option<&pay402_core::rates::TokenUnit> {
        self.evm.as_ref().filter(|e| e.usd).map(|e| &e.unit)
    }

    /// The `lightning`/`charge` challenge of one request: a fresh invoice.
    async fn lightning_challenge(
        &self,
        node: &dyn InvoiceIssuer,
        sat: Sat,
        now: UnixTime,
    ) -> Result<HeaderValue, Response> {
        let msat = sat.0.checked_mul(1000).map(Msat).ok_or_else(|| {
            unavailable("mpp_price_overflow", "The price does not fit an invoice")
        })?;
        let request = InvoiceRequest {
            amount: msat,
            memo: self.memo.clone(),
            expiry: Duration::from_secs(self.ttl_secs.max(60)),
        };
        let invoice = node.create_invoice(&request).await.map_err(|e| {
            tracing::warn!(error = %e, "mpp.invoice_failed");
            unavailable(
                "lightning_unavailable",
                "The Lightning node could not make an invoice",
            )
        })?;
        let mut offer = lightning::ChargeOffer::new(&self.realm, &invoice.bolt11);
        offer.ttl_secs = self.ttl_secs;
        offer.header = self.advertised_header();
        let challenge = self.issued.issue(&self.keys, &offer, now).map_err(|e| {
            tracing::error!(reason = e.reason(), error = %e, "mpp.issue_failed");
            respond::problem(&Problem::from_reason(&e, 500))
        })?;
        header_value(&challenge).ok_or_else(not_emitted)
    }

    /// A refusal: a fresh 402 of every rail with the MPP problem, or, when
    /// a new challenge would invite a second payment (a replay, a payment
    /// that may have landed) or the request is ambiguous (two
    /// credentials), the problem alone.
    ///
    /// (Not an `async fn`: the future borrows the request's fields, not the
    /// request, whose body is not `Sync`.)
    fn refuse<'r>(
        &self,
        req: &'r Pending<'_>,
        e: VerifyError,
        id: Option<&str>,
    ) -> impl Future<Output = Response> + Send + 'r {
        tracing::Span::current().record("outcome", e.reason());
        tracing::info!(reason = e.reason(), error = %e, "mpp.reject");
        let problem = MppProblem::from_error(&e, id);
        let fresh =
            e.fresh_challenge() && !matches!(e, VerifyError::Credential(CredentialError::Multiple));
        if fresh {
            let json = serde_json::to_value(&problem).unwrap_or_default();
            Either::Left(req.payment_required_with(Some(json)))
        } else {
            Either::Right(std::future::ready(mpp_problem(&problem)))
        }
    }

    /// Verifies the request's credential (steps 1 to 6); owned, so the
    /// request can move on. Decodes into the thread's buffer.
    fn verify(&self, req: &Pending<'_>) -> Result<Verified, (VerifyError, Option<String>)> {
        CREDENTIAL_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                let r = self.verify_in(req, &mut buf);
                if buf.capacity() > KEEP_BUF {
                    *buf = Vec::new();
                }
                r
            }
            Err(_) => self.verify_in(req, &mut Vec::new()),
        })
    }

    fn verify_in(
        &self,
        req: &Pending<'_>,
        buf: &mut Vec<u8>,
    ) -> Result<Verified, (VerifyError, Option<String>)> {
        let headers = &req.parts.headers;
        let carries = |name: &HeaderName| {
            headers
                .get_all(name)
                .iter()
                .any(|v| carries_payment(v.as_bytes()))
        };
        // The field the credential came in: one of the two, never both.
        let (field, arrived) = match (
            carries(&header::AUTHORIZATION),
            carries(&PAYMENT_AUTHORIZATION),
        ) {
            (true, true) => return Err((VerifyError::Credential(CredentialError::Multiple), None)),
            (false, true) => (
                &PAYMENT_AUTHORIZATION,
                CredentialHeader::PaymentAuthorization,
            ),
            _ => (&header::AUTHORIZATION, CredentialHeader::Authorization),
        };
        let values = headers.get_all(field).iter().map(HeaderValue::as_bytes);
        let token = match credential::find_token(values) {
            Ok(Some(t)) => t,
            Ok(None) => return Err((VerifyError::Credential(CredentialError::EmptyToken), None)),
            Err(e) => return Err((VerifyError::Credential(e), None)),
        };
        let cred =
            Credential::decode(token, buf).map_err(|e| (VerifyError::Credential(e), None))?;
        let id = || Some(cred.challenge.id.to_string());
        // mpp.md §3.3: the credential comes in the configured field, and
        // the challenge it echoes names that field.
        if arrived != self.credential_header
            || !cred
                .challenge
                .credential_header()
                .eq_ignore_ascii_case(arrived.name())
        {
            return Err((VerifyError::RouteMismatch("header"), id()));
        }
        match &*cred.challenge.method {
            lightning::METHOD => {
                let (Some((_, network)), Some(sat)) = (&self.lightning, req.prices.mpp) else {
                    return Err((VerifyError::MethodUnsupported, id()));
                };
                lightning::ChargeVerifier::new(&self.keys, &self.realm, sat.0, *network)
                    .verify_issued_cached(&cred, req.now, &self.issued)
                    .map(Verified::Lightning)
                    .map_err(|e| (e, id()))
            }
            #[cfg(feature = "x402")]
            pay402_core::mpp::methods::evm::METHOD => {
                let (Some(evm), Some(amount)) = (&self.evm, req.prices.mpp_evm) else {
                    return Err((VerifyError::MethodUnsupported, id()));
                };
                pay402_core::mpp::methods::evm::ChargeVerifier::new(
                    &self.keys,
                    &self.realm,
                    &evm.terms,
                    amount,
                )
                .verify(&cred, req.now)
                .map(|v| Verified::Evm(Box::new(v)))
                .map_err(|e| (e, id()))
            }
            _ => Err((VerifyError::MethodUnsupported, id())),
        }
    }

    /// Step 7: the atomic consume. `Err` is the answer to send instead.
    async fn consume(&self, c: &Consumption<'_>, now: UnixTime) -> Result<(), Response> {
        match self.store.consume(c, now).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                // A replay of a valid credential: 403 and no challenge.
                let e = VerifyError::Replayed;
                tracing::Span::current().record("outcome", e.reason());
                tracing::info!(reason = e.reason(), "mpp.reject");
                Err(mpp_problem(&MppProblem::from_error(
                    &e,
                    Some(c.challenge_id),
                )))
            }
            Err(e) => {
                // Not consumed: the credential stays good until it expires,
                // so no challenge (a new one would invite a second payment).
                tracing::error!(reason = e.reason(), error = %e, "mpp.store_unavailable");
                tracing::Span::current().record("outcome", e.reason());
                Err(respond::problem(&Problem::from_reason(&e, 503)))
            }
        }
    }

    /// Serves a consumed payment and adds the receipt to a successful
    /// response.
    async fn serve_paid(
        &self,
        req: Pending<'_>,
        mut next: Next,
        paid: Paid,
        receipt: String,
    ) -> Response {
        tracing::Span::current().record("outcome", "paid");
        let mut parts = req.parts;
        parts.extensions.insert(paid);
        let Ok(mut resp) = next.call(Request::from_parts(parts, req.body)).await;
        let success = resp.status().is_success();
        let h = resp.headers_mut();
        // The caching policy; `Vary` on every rail's credential is added by
        // the paywall to whatever answers (`PaywallService::call`).
        if self.paid_caching == PaidCaching::PrivateNoStore {
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
        } else {
            ensure_private(h);
        }
        if success {
            // A receipt is for a success only (never on an error response).
            if let Ok(v) = HeaderValue::try_from(receipt) {
                h.insert(PAYMENT_RECEIPT.clone(), v);
            }
            h.append(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Payment-Receipt"),
            );
        }
        resp
    }

    async fn serve_mpp(&self, req: Pending<'_>, next: Next) -> Response {
        let verified = match self.verify(&req) {
            Ok(v) => v,
            Err((e, id)) => return self.refuse(&req, e, id.as_deref()).await,
        };
        match verified {
            Verified::Lightning(v) => {
                let hash = v.payment_hash.to_hex();
                let c = Consumption {
                    method: lightning::METHOD,
                    reference: &hash,
                    challenge_id: &v.challenge_id,
                    expires_at: v.expires_at,
                };
                if let Err(resp) = self.consume(&c, req.now).await {
                    return resp;
                }
                let receipt = lightning_receipt(&hash, &v.challenge_id, req.now);
                let paid = Paid {
                    rail: Rail::Mpp,
                    amount: Amount::Sat(Sat(v.amount.0 / 1000)),
                    payer: None,
                    receipt: Receipt::MppLightning(hash),
                };
                self.serve_paid(req, next, paid, receipt).await
            }
            #[cfg(feature = "x402")]
            Verified::Evm(v) => {
                let Some(evm) = &self.evm else {
                    return self
                        .refuse(&req, VerifyError::MethodUnsupported, None)
                        .await;
                };
                let key = hex::encode(v.replay_key());
                let c = Consumption {
                    method: pay402_core::mpp::methods::evm::METHOD,
                    reference: &key,
                    challenge_id: &v.challenge_id,
                    expires_at: v.expires_at,
                };
                if let Err(resp) = self.consume(&c, req.now).await {
                    return resp;
                }
                let tx = match evm.settle(&v).await {
                    Ok(tx) => tx,
                    Err(evm::SettleFailure::Refused(detail)) => {
                        // Nothing moved: a fresh challenge is safe.
                        tracing::Span::current().record("outcome", "settlement_refused");
                        tracing::info!(detail = %detail, "mpp.settlement_refused");
                        let problem = settlement_refused(&detail, &v.challenge_id);
                        let json = serde_json::to_value(&problem).unwrap_or_default();
                        return req.payment_required_with(Some(json)).await;
                    }
                    Err(evm::SettleFailure::Unknown(detail)) => {
                        tracing::error!(detail = %detail, "mpp.settlement_outcome_unknown");
                        return self
                            .refuse(&req, VerifyError::OutcomeUnknown, Some(&v.challenge_id))
                            .await;
                    }
                };
                let receipt = v.receipt(&tx, req.now).encode();
                let paid = Paid {
                    rail: Rail::Mpp,
                    amount: Amount::Token(v.verified.authorization.value, evm.unit.clone()),
                    payer: Some(v.verified.payer.to_string()),
                    receipt: Receipt::MppEvm(tx),
                };
                self.serve_paid(req, next, paid, receipt).await
            }
        }
    }
}

/// The problem of a settlement the facilitator refused (nothing moved).
#[cfg(feature = "x402")]
fn settlement_refused(detail: &str, challenge_id: &str) -> MppProblem {
    let t = ProblemType::VerificationFailed;
    MppProblem {
        type_uri: t.uri(),
        title: t.title().to_owned(),
        status: 402,
        detail: Some(format!("the settlement was refused: {detail}")),
        reason: "settlement_refused".to_owned(),
        challenge_id: Some(challenge_id.to_owned()),
    }
}

/// A `Payment-Receipt` of a Lightning charge, written directly (the same
/// bytes as [`pay402_core::mpp::Receipt::lightning`] encodes, without
/// building a JSON value): `reference` is the payment hash, never the
/// preimage.
fn lightning_receipt(hash_hex: &str, challenge_id: &str, at: UnixTime) -> String {
    let plain = challenge_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plain {
        let hash = hash_hex
            .parse()
            .unwrap_or(pay402_core::lightning::PaymentHash([0; 32]));
        return pay402_core::mpp::Receipt::lightning(&hash, challenge_id, at).encode();
    }
    let stamp = rfc3339::format(at);
    let mut json = String::with_capacity(160 + hash_hex.len() + challenge_id.len());
    for part in [
        r#"{"method":"lightning","reference":""#,
        hash_hex,
        r#"","status":"success","timestamp":""#,
        &stamp,
        r#"","challengeId":""#,
        challenge_id,
        r#""}"#,
    ] {
        json.push_str(part);
    }
    pay402_core::mpp::b64url::encode(json.as_bytes())
}

/// `private` in `Cache-Control` (a response with a receipt must have it).
fn ensure_private(h: &mut HeaderMap) {
    let has = h.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.to_ascii_lowercase().contains("private"))
    });
    if !has {
        let value = match h.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()) {
            Some(v) if !v.is_empty() => format!("private, {v}"),
            _ => "private".to_owned(),
        };
        if let Ok(v) = HeaderValue::try_from(value) {
            h.insert(header::CACHE_CONTROL, v);
        }
    }
}

fn header_value(c: &pay402_core::mpp::Challenge<'_>) -> Option<HeaderValue> {
    c.to_header_value()
        .ok()
        .and_then(|s| HeaderValue::try_from(s).ok())
}

fn not_emitted() -> Response {
    unavailable(
        "mpp_challenge_invalid",
        "The Payment challenge could not be emitted",
    )
}

fn unavailable(reason: &str, title: &str) -> Response {
    respond::problem(&Problem::new(503, reason, title))
}

/// An MPP problem answered alone (no challenge).
fn mpp_problem(p: &MppProblem) -> Response {
    let mut resp = Response::new(Body::from(p.to_json()));
    *resp.status_mut() =
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Whether an `Authorization` value carries a `Payment` credential: the
/// scheme token at its start or at the start of a comma-separated element
/// (nothing is decoded).
pub(crate) fn carries_payment(value: &[u8]) -> bool {
    let mut rest = value;
    loop {
        let start = rest
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(rest.len());
        let elem = &rest[start..];
        if elem.len() > 8
            && elem[..7].eq_ignore_ascii_case(b"Payment")
            && (elem[7] == b' ' || elem[7] == b'\t')
        {
            return true;
        }
        match memchr_comma(elem) {
            Some(i) => rest = &elem[i + 1..],
            None => return false,
        }
    }
}

fn memchr_comma(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b',')
}

/// A method priced on a route, with its price.
#[derive(Clone, Copy)]
enum Method {
    Lightning(Sat),
    #[cfg(feature = "x402")]
    Evm(pay402_core::x402::TokenAmount),
}

impl Method {
    fn id(&self) -> &'static str {
        match self {
            Method::Lightning(_) => "lightning",
            #[cfg(feature = "x402")]
            Method::Evm(_) => "evm",
        }
    }
}

/// The order in which to offer `methods` (indices, server order first):
/// the client's `Accept-Payment` (q = 0 dropped, by q descending, server
/// order on ties). A malformed header, or one no method matches, is
/// ignored (mpp.md §4.3: the server MAY), so every method is offered in
/// server order and never an error.
fn offer_order(headers: &HeaderMap, methods: &[Method]) -> Vec<usize> {
    let all = || (0..methods.len()).collect();
    let mut value = String::new();
    for (n, v) in headers.get_all(&ACCEPT_PAYMENT).iter().enumerate() {
        let Ok(v) = v.to_str() else {
            return all();
        };
        if value.len().saturating_add(v.len()) > pay402_core::mpp::accept::MAX_ACCEPT_PAYMENT_LEN {
            return all();
        }
        if n > 0 {
            value.push_str(", ");
        }
        value.push_str(v);
    }
    if value.is_empty() {
        return all();
    }
    match pay402_core::mpp::AcceptPayment::parse(&value) {
        Ok(prefs) => {
            let order = prefs.order(methods.iter().map(|m| (m.id(), "charge")));
            if order.is_empty() { all() } else { order }
        }
        Err(e) => {
            tracing::debug!(reason = e.reason(), "mpp.accept_payment_ignored");
            all()
        }
    }
}

/// The problem of the 402 when MPP is offered.
fn payment_required_problem(field: CredentialHeader) -> Problem {
    let mut p = Problem::new(402, "payment_required", "Payment Required").with_detail(format!(
        "pay one of the Payment challenges (WWW-Authenticate) and retry with \
         {}: Payment <credential>",
        field.name()
    ));
    p.type_uri = ProblemType::PaymentRequired.uri();
    p
}

impl PaywallRail for MppRail {
    fn rail(&self) -> Rail {
        Rail::Mpp
    }

    fn credentials(&self) -> &'static [&'static str] {
        match self.credential_header {
            CredentialHeader::Authorization => &["Authorization"],
            CredentialHeader::PaymentAuthorization => &["Authorization", "Payment-Authorization"],
        }
    }

    fn expose(&self) -> &'static str {
        "WWW-Authenticate, Payment-Receipt"
    }

    fn has_proof(&self, headers: &HeaderMap) -> bool {
        [&header::AUTHORIZATION, &PAYMENT_AUTHORIZATION]
            .into_iter()
            .flat_map(|name| headers.get_all(name))
            .any(|v| carries_payment(v.as_bytes()))
    }

    fn is_priced(&self, prices: &RailPrices) -> bool {
        prices.mpp.is_some() || prices.mpp_evm.is_some()
    }

    fn challenge<'a>(&'a self, cx: &'a Unpaid<'a>) -> RailFuture<'a, Option<ChallengePart<'a>>> {
        Box::pin(async move {
            if !self.is_priced(cx.prices) {
                return None;
            }
            // Each challenge costs the node an invoice: the client's limit.
            if let Err(limited) =
                crate::limit::admit(self.challenge_limit.as_deref(), &cx.parts.extensions)
            {
                tracing::info!(reason = "rate_limited", "mpp.reject");
                return Some(ChallengePart::failed(limited.response()));
            }
            // The methods priced on the route, in server order, then the
            // client's `Accept-Payment` order (mpp.md §4.3).
            let mut methods: Vec<Method> = Vec::with_capacity(2);
            if let (Some(_), Some(sat)) = (&self.lightning, cx.prices.mpp) {
                methods.push(Method::Lightning(sat));
            }
            #[cfg(feature = "x402")]
            if let (Some(_), Some(amount)) = (&self.evm, cx.prices.mpp_evm) {
                methods.push(Method::Evm(amount));
            }
            let priced = !methods.is_empty();
            let order = offer_order(&cx.parts.headers, &methods);
            let mut headers = HeaderMap::new();
            let mut failure = None;
            for i in order {
                match methods[i] {
                    Method::Lightning(sat) => {
                        let Some((node, _)) = &self.lightning else {
                            continue;
                        };
                        match self.lightning_challenge(node.as_ref(), sat, cx.now).await {
                            Ok(v) => {
                                headers.append(header::WWW_AUTHENTICATE, v);
                            }
                            Err(resp) => {
                                failure.get_or_insert(resp);
                            }
                        }
                    }
                    #[cfg(feature = "x402")]
                    Method::Evm(amount) => {
                        let Some(evm) = &self.evm else {
                            continue;
                        };
                        let nonce: [u8; 16] = rand::random();
                        match pay402_core::mpp::methods::evm::issue_charge(
                            &self.keys,
                            &self.realm,
                            &evm.terms,
                            amount,
                            cx.now,
                            self.ttl_secs,
                            Some(&nonce),
                        ) {
                            Ok(c) => match header_value(&self.with_header(c)) {
                                Some(v) => {
                                    headers.append(header::WWW_AUTHENTICATE, v);
                                }
                                None => {
                                    failure.get_or_insert_with(not_emitted);
                                }
                            },
                            Err(e) => {
                                tracing::error!(reason = e.reason(), error = %e, "mpp.issue_failed");
                                failure.get_or_insert(respond::problem(&Problem::from_reason(
                                    &e, 500,
                                )));
                            }
                        }
                    }
                }
            }
            if !priced {
                return None;
            }

            if headers.is_empty() {
                return Some(ChallengePart::failed(failure.unwrap_or_else(|| {
                    unavailable("offer_unavailable", "No Payment challenge could be made")
                })));
            }
            Some(ChallengePart {
                headers,
                part: Part::On(Rail::Mpp, payment_required_problem(self.credential_header)),
                body: None,
            })
        })
    }

    fn serve<'a>(&'a self, req: Pending<'a>, next: Next) -> RailFuture<'a, Response> {
        Box::pin(self.serve_mpp(req, next))
    }
}

/// `evm`/`charge`: terms, and settlement through the x402 facilitator.
#[cfg(feature = "x402")]
mod evm {
    use std::sync::Arc;
    use std::time::Duration;

    use pay402_core::mpp::methods::evm::{EvmTerms, VerifiedCharge};
    use pay402_core::rates::TokenUnit;
    use pay402_core::x402::facilitator::{Facilitator, FacilitatorError, PaymentRequest};
    use pay402_core::x402::{ExactEvmPayload, PaymentPayloadV2, PaymentRequirements};

    use crate::mpp::EvmMethod;
    use crate::paywall::BuildError;

    /// The enabled `evm`/`charge` method.
    pub(super) struct EvmRail {
        pub(super) facilitator: Arc<dyn Facilitator>,
        pub(super) terms: EvmTerms,
        pub(super) unit: TokenUnit,
        pub(super) usd: bool,
        /// The x402 `exact` requirement the facilitator settles against
        /// (amount set per payment).
        template: PaymentRequirements,
    }

    /// Why a settlement did not happen.
    pub(super) enum SettleFailure {
        /// A verdict: nothing moved.
        Refused(String),
        /// No verdict: the transfer may have happened.
        Unknown(String),
    }

    impl EvmRail {
        pub(super) fn new(m: EvmMethod, ttl: Duration) -> Result<EvmRail, BuildError> {
            let network = m.asset.network();
            let chain_id = network
                .strip_prefix("eip155:")
                .and_then(|c| c.parse::<u64>().ok())
                .ok_or(BuildError::Mpp(
                    "the evm/charge asset's network must be CAIP-2 eip155:<chain id>",
                ))?;
            let unit = m.asset.unit();
            let (name, version) = m.asset.eip712_domain();
            let mut terms = EvmTerms::new(chain_id, m.asset.address(), m.pay_to, name, version);
            terms.decimals = Some(unit.decimals());
            let mut template = crate::x402::exact_offer(
                network,
                &m.asset.address().to_string(),
                &m.pay_to.to_string(),
                pay402_core::x402::TokenAmount::from_u64(1),
                name,
                version,
            );
            // The authorization is valid until the challenge expires.
            template.max_timeout_seconds = ttl.as_secs().saturating_add(60);
            crate::x402::check_offer(&template)?;
            Ok(EvmRail {
                facilitator: m.facilitator,
                terms,
                usd: m.asset.is_usd_stablecoin(),
                unit,
                template,
            })
        }

        /// Submits the authorization; the transaction hash on success.
        pub(super) async fn settle(&self, v: &VerifiedCharge) -> Result<String, SettleFailure> {
            let requirements = PaymentRequirements {
                amount: v.verified.authorization.value,
                ..self.template.clone()
            };
            let payload = PaymentPayloadV2 {
                x402_version: 2,
                resource: None,
                accepted: requirements.clone(),
                payload: ExactEvmPayload {
                    signature: v.signature.clone(),
                    authorization: v.verified.authorization.clone(),
                },
                extensions: None,
            };
            let request = PaymentRequest::v2(payload, requirements);
            match self.facilitator.settle(&request).await {
                Ok(r) if r.success => r
                    .transaction
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| SettleFailure::Unknown("settled without a transaction".into())),
                Ok(r) => Err(SettleFailure::Refused(
                    r.error_reason.unwrap_or_else(|| "settlement failed".into()),
                )),
                Err(FacilitatorError::Refused { status, message }) => {
                    Err(SettleFailure::Refused(format!("{status}: {message}")))
                }
                Err(e) => Err(SettleFailure::Unknown(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{carries_payment, lightning_receipt};
    use pay402_core::lightning::PaymentHash;
    use pay402_core::mpp::Receipt;
    use pay402_core::time::UnixTime;

    #[test]
    fn the_written_receipt_is_the_cores_byte_for_byte() {
        // mpp.md §12.5: the receipt at 2026-01-01T00:01:00Z.
        let hash = "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc";
        let id = "c_hwLQf4hEM6rJ-yw3W1wjL1i2lQuI9t1U71vZevJmI";
        let at = UnixTime(1_767_225_660);
        let written = lightning_receipt(hash, id, at);
        let core = Receipt::lightning(&hash.parse::<PaymentHash>().unwrap(), id, at).encode();
        assert_eq!(written, core);
        assert!(written.starts_with("eyJtZXRob2QiOiJsaWdodG5pbmciLCJyZWZlcmVuY2UiOiIwMmQ0"));
        // An id outside the base64url alphabet goes through the encoder.
        let odd = lightning_receipt(hash, "a\"b", at);
        assert_eq!(
            Receipt::decode(&odd).unwrap().challenge_id.as_deref(),
            Some("a\"b")
        );
    }

    #[test]
    fn a_payment_credential_is_seen_at_the_start_of_any_element() {
        for v in [
            "Payment eyJ9",
            "payment eyJ9",
            "Bearer x, Payment eyJ9",
            "Bearer x,Payment\teyJ9",
        ] {
            assert!(carries_payment(v.as_bytes()), "{v}");
        }
        for v in [
            "L402 m:p",
            "Payment",
            "Payments eyJ9",
            "Bearer Payment",
            "",
            "Basic x, Paymentx y",
        ] {
            assert!(!carries_payment(v.as_bytes()), "{v}");
        }
    }
}
