//! Shared helpers of the x402 server tests: EIP-3009 signing with a dev key,
//! payment headers, a request sender, and a fault-injecting facilitator
//! double (`FaultInjectingFacilitator`) for the failures a real chain cannot
//! be made to produce on demand.

#![allow(dead_code, missing_docs)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use pay402_core::x402::evm::{
    Bytes32, Eip712Domain, EvmAddress, EvmSignature, TransferAuthorization,
};
use pay402_core::x402::facilitator::{Facilitator, FacilitatorError, PaymentRequest};
use pay402_core::x402::network::evm_chain_id;
use pay402_core::x402::{
    EvmTimestamp, ExactEvmPayload, HeaderValue, PaymentPayloadV1, PaymentPayloadV2,
    PaymentRequired, PaymentRequirements, SettleResponse, SupportedKind, SupportedResponse,
    TokenAmount, VerifyResponse,
};
use serde_json::{Value, json};
use tower::ServiceExt;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key and its address.
#[derive(Clone, Copy, Debug)]
pub struct Payer {
    pub key: [u8; 32],
    pub address: EvmAddress,
}

impl Payer {
    pub fn dev(i: usize) -> Payer {
        let a = pay402_testkit::anvil::DEV_ACCOUNTS[i];
        Payer {
            key: a.private_key.0,
            address: EvmAddress(a.address),
        }
    }
}

/// A fresh random nonce.
pub fn random_nonce() -> Bytes32 {
    let mut n = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut n);
    Bytes32(n)
}

/// The authorization an honest client signs for `offer` (value = amount,
/// to = payTo, valid from 0 until now + maxTimeoutSeconds).
pub fn authorization_for(payer: &Payer, offer: &PaymentRequirements) -> TransferAuthorization {
    TransferAuthorization {
        from: payer.address,
        to: offer.pay_to.parse().unwrap(),
        value: offer.amount,
        valid_after: EvmTimestamp::from_u64(0),
        valid_before: EvmTimestamp::from_u64(now() + offer.max_timeout_seconds),
        nonce: random_nonce(),
    }
}

/// The EIP-712 domain of `offer`, with `name`/`version` overridable.
pub fn domain(
    offer: &PaymentRequirements,
    name: Option<&str>,
    version: Option<&str>,
) -> Eip712Domain {
    let extra = offer.extra.clone().unwrap();
    Eip712Domain::new(
        name.unwrap_or(extra.name().unwrap()),
        version.unwrap_or(extra.version().unwrap()),
        evm_chain_id(&offer.network).unwrap(),
        offer.asset.parse().unwrap(),
    )
}

/// A 65-byte `r ‖ s ‖ v` signature (low s, v = 27/28) over `auth` in `domain`.
pub fn sign(key: &[u8; 32], auth: &TransferAuthorization, domain: &Eip712Domain) -> EvmSignature {
    let digest = auth.signing_hash(domain);
    let sk = secp256k1::SecretKey::from_slice(key).unwrap();
    let msg = secp256k1::Message::from_digest(digest.0);
    let sig = secp256k1::SECP256K1.sign_ecdsa_recoverable(&msg, &sk);
    let (id, compact) = sig.serialize_compact();
    let mut out = compact.to_vec();
    out.push(27 + u8::try_from(id.to_i32()).unwrap());
    EvmSignature::from_bytes(out)
}

/// The same signature with `s` replaced by `n - s` (and `v` flipped): valid
/// for ecrecover, but malleable: it must be refused.
pub fn high_s(sig: &EvmSignature) -> EvmSignature {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];
    let b = sig.as_bytes();
    let mut s = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(b[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = (d + 256 * borrow) as u8;
    }
    let mut out = b[..32].to_vec();
    out.extend_from_slice(&s);
    out.push(if b[64] == 27 { 28 } else { 27 });
    EvmSignature::from_bytes(out)
}

/// A v2 payment for `offer`.
pub fn payment_v2(
    offer: &PaymentRequirements,
    auth: TransferAuthorization,
    signature: EvmSignature,
    payment_id: Option<&str>,
) -> PaymentPayloadV2 {
    PaymentPayloadV2 {
        x402_version: 2,
        resource: None,
        accepted: offer.clone(),
        payload: ExactEvmPayload {
            signature,
            authorization: auth,
        },
        extensions: payment_id.map(|id| {
            let mut m = serde_json::Map::new();
            m.insert(
                "payment-identifier".into(),
                json!({"info": {"required": false, "id": id}}),
            );
            m
        }),
    }
}

/// An honest, signed v2 `PAYMENT-SIGNATURE` value for `offer`.
pub fn pay_v2(payer: &Payer, offer: &PaymentRequirements, payment_id: Option<&str>) -> String {
    let auth = authorization_for(payer, offer);
    let sig = sign(&payer.key, &auth, &domain(offer, None, None));
    payment_v2(offer, auth, sig, payment_id).encode_header()
}

/// An honest, signed v1 `X-PAYMENT` value for `offer` (network as the 402's
/// v1 body names it).
pub fn pay_v1(payer: &Payer, offer: &PaymentRequirements, v1_network: &str) -> String {
    let mut auth = authorization_for(payer, offer);
    auth.valid_after = EvmTimestamp::from_u64(now() - 600);
    let sig = sign(&payer.key, &auth, &domain(offer, None, None));
    PaymentPayloadV1 {
        x402_version: 1,
        scheme: "exact".into(),
        network: v1_network.into(),
        payload: ExactEvmPayload {
            signature: sig,
            authorization: auth,
        },
    }
    .encode_header()
}

/// The state of the record of the v2 payment `header` in `store`.
pub async fn payment_state(
    store: &dyn pay402_server::x402::store::PaymentStore,
    network: &str,
    asset: &str,
    header: &str,
) -> Option<pay402_server::x402::store::PaymentState> {
    let p = PaymentPayloadV2::<ExactEvmPayload>::decode_header(header).unwrap();
    let a = &p.payload.authorization;
    let key = pay402_server::x402::store::NonceKey::new(
        network,
        asset,
        &a.from.to_string(),
        &a.nonce.to_string(),
    );
    store.get(&key).await.unwrap().map(|r| r.state)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    pub fn payment_required(&self) -> Option<PaymentRequired> {
        self.header("payment-required")
            .map(|v| PaymentRequired::decode_header(&v).unwrap())
    }
    pub fn payment_response(&self) -> Option<SettleResponse> {
        self.header("payment-response")
            .map(|v| SettleResponse::decode_header(&v).unwrap())
    }
    pub fn x_payment_response(&self) -> Option<SettleResponse> {
        self.header("x-payment-response")
            .map(|v| SettleResponse::decode_header(&v).unwrap())
    }
}

pub fn req(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path).header("host", "shop.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// What the fault-injecting facilitator does on one `settle` call.
#[derive(Clone, Debug)]
pub enum SettleStep {
    /// Settles: `success` with a transaction derived from the nonce (the
    /// same transaction for the same payment every time, as an idempotent
    /// facilitator answers).
    Succeed,
    /// A failure verdict with this reason (nothing moved).
    Fail(&'static str),
    /// `FacilitatorError::Pending` with the transaction.
    Pending,
    /// `FacilitatorError::Unavailable`.
    Unavailable,
    /// `FacilitatorError::Refused`.
    Refused,
    /// `success: true` but no transaction (a broken facilitator).
    SuccessWithoutTransaction,
}

/// A TEST DOUBLE that injects facilitator faults (failed, pending,
/// unreachable settlements; verify verdicts) that a real chain cannot be
/// made to produce on demand. It checks nothing itself: the layer's local
/// verification is what the tests exercise; the real facilitator is
/// exercised in `anvil_x402_server.rs`.
pub struct FaultInjectingFacilitator {
    pub network: String,
    settle_steps: Mutex<VecDeque<SettleStep>>,
    verify_reason: Mutex<Option<&'static str>>,
    verify_unavailable: Mutex<bool>,
    pub settle_delay: Mutex<Duration>,
    pub settles: AtomicUsize,
    pub verifies: AtomicUsize,
}

impl FaultInjectingFacilitator {
    pub fn new(network: &str) -> FaultInjectingFacilitator {
        FaultInjectingFacilitator {
            network: network.into(),
            settle_steps: Mutex::new(VecDeque::new()),
            verify_reason: Mutex::new(None),
            verify_unavailable: Mutex::new(false),
            settle_delay: Mutex::new(Duration::ZERO),
            settles: AtomicUsize::new(0),
            verifies: AtomicUsize::new(0),
        }
    }
    /// The next `settle` calls do these (then `Succeed`).
    pub fn script(&self, steps: &[SettleStep]) {
        self.settle_steps
            .lock()
            .unwrap()
            .extend(steps.iter().cloned());
    }
    /// `verify` answers invalid with this reason (or valid with `None`).
    pub fn verify_invalid(&self, reason: Option<&'static str>) {
        *self.verify_reason.lock().unwrap() = reason;
    }
    pub fn verify_unavailable(&self, on: bool) {
        *self.verify_unavailable.lock().unwrap() = on;
    }
    pub fn delay_settle(&self, d: Duration) {
        *self.settle_delay.lock().unwrap() = d;
    }
    pub fn settle_count(&self) -> usize {
        self.settles.load(Ordering::SeqCst)
    }
    pub fn verify_count(&self) -> usize {
        self.verifies.load(Ordering::SeqCst)
    }
}

pub fn tx_of(request: &PaymentRequest) -> String {
    format!(
        "0x{}",
        hex::encode(request.exact_payload().authorization.nonce.0)
    )
}

#[async_trait::async_trait]
impl Facilitator for FaultInjectingFacilitator {
    async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        if *self.verify_unavailable.lock().unwrap() {
            return Err(FacilitatorError::Unavailable(
                "injected: connection refused".into(),
            ));
        }
        let payer = request.exact_payload().authorization.from.to_string();
        Ok(match *self.verify_reason.lock().unwrap() {
            None => VerifyResponse {
                is_valid: true,
                payer: Some(payer),
                ..VerifyResponse::default()
            },
            Some(r) => VerifyResponse {
                is_valid: false,
                invalid_reason: Some(r.into()),
                invalid_message: Some("injected verdict".into()),
                payer: Some(payer),
            },
        })
    }

    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        let delay = *self.settle_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let step = self
            .settle_steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(SettleStep::Succeed);
        let payer = request.exact_payload().authorization.from.to_string();
        let network = request.network().to_owned();
        match step {
            SettleStep::Succeed => Ok(SettleResponse::success(&tx_of(request), &network, &payer)),
            SettleStep::Fail(reason) => {
                let mut s = SettleResponse::failure(reason, &network);
                s.payer = Some(payer);
                Ok(s)
            }
            SettleStep::Pending => Err(FacilitatorError::Pending {
                transaction: tx_of(request),
                network,
            }),
            SettleStep::Unavailable => {
                Err(FacilitatorError::Unavailable("injected: timed out".into()))
            }
            SettleStep::Refused => Err(FacilitatorError::Refused {
                status: 401,
                message: "injected: bad credentials".into(),
            }),
            SettleStep::SuccessWithoutTransaction => Ok(SettleResponse {
                success: true,
                network,
                ..SettleResponse::default()
            }),
        }
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        Ok(SupportedResponse {
            kinds: vec![SupportedKind {
                x402_version: 2,
                scheme: "exact".into(),
                network: self.network.clone(),
                extra: None,
            }],
            ..SupportedResponse::default()
        })
    }
}

/// An amount as the token's decimal string.
pub fn amount(v: u64) -> TokenAmount {
    TokenAmount::from_u64(v)
}
