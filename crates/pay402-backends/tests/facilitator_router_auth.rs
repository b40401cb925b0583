#![cfg(feature = "x402")]
//! The facilitator router's admission: authentication (bearer and API-key
//! headers, compared in constant time, 401 problem+json) and rate limits
//! per client address and per payer (429 problem+json with `Retry-After`),
//! all checked before the facilitator is asked anything.
//!
//! The facilitator behind the router is a counting double: these tests are
//! about the HTTP layer, which no chain peer exercises differently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::{Address, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use pay402_backends::x402::{RateLimit, RouterAuth, RouterAuthError, RouterConfig, router_with};
use pay402_core::x402::evm::{
    Bytes32, Eip712Domain, EvmAddress, EvmSignature, TransferAuthorization,
};
use pay402_core::x402::{
    EvmTimestamp, ExactEvmPayload, Extra, Facilitator, FacilitatorError, PaymentPayloadV2,
    PaymentRequest, PaymentRequirements, SettleResponse, SupportedResponse, TokenAmount,
    VerifyResponse,
};

const TOKEN: &str = "router-auth-test-token-0123456789";

/// Counts the requests that reached the facilitator.
#[derive(Default)]
struct Counting {
    calls: AtomicUsize,
}

#[async_trait]
impl Facilitator for Counting {
    async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(VerifyResponse {
            is_valid: true,
            payer: Some(request.exact_payload().authorization.from.to_string()),
            ..VerifyResponse::default()
        })
    }
    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(SettleResponse::success(
            "0x1111111111111111111111111111111111111111111111111111111111111111",
            request.network(),
            &request.exact_payload().authorization.from.to_string(),
        ))
    }
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        Ok(SupportedResponse::default())
    }
}

fn request(payer_seed: &str) -> PaymentRequest {
    let payer = PrivateKeySigner::from_bytes(&keccak256(payer_seed)).expect("key");
    let asset = Address::repeat_byte(0x11);
    let pay_to = Address::repeat_byte(0x22);
    let requirements = PaymentRequirements {
        scheme: "exact".into(),
        network: "eip155:31337".into(),
        amount: TokenAmount::from_u64(1_000),
        asset: asset.to_string(),
        pay_to: pay_to.to_string(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712("USD Coin", "2")),
    };
    let authorization = TransferAuthorization {
        from: EvmAddress(payer.address()),
        to: EvmAddress(pay_to),
        value: TokenAmount::from_u64(1_000),
        valid_after: EvmTimestamp::from_u64(0),
        valid_before: EvmTimestamp::from_u64(u64::from(u32::MAX)),
        nonce: Bytes32([7; 32]),
    };
    let domain = Eip712Domain::new("USD Coin", "2", 31337, EvmAddress(asset));
    let signature = payer
        .sign_hash_sync(&authorization.signing_hash(&domain))
        .expect("sign");
    PaymentRequest::v2(
        PaymentPayloadV2 {
            x402_version: 2,
            resource: None,
            accepted: requirements.clone(),
            payload: ExactEvmPayload {
                signature: EvmSignature::from_bytes(signature.as_bytes().to_vec()),
                authorization,
            },
            extensions: None,
        },
        requirements,
    )
}

async fn serve(config: RouterConfig) -> (SocketAddr, Arc<Counting>) {
    let counting = Arc::new(Counting::default());
    let app = router_with(counting.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    (addr, counting)
}

async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &PaymentRequest,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("POST")
}

async fn assert_problem(resp: reqwest::Response, status: u16, reason: &str) {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "{reason}"
    );
    let body: serde_json::Value = resp.json().await.expect("problem json");
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["status"], status, "{body}");
}

#[tokio::test]
async fn router_refuses_requests_without_a_valid_bearer_key_with_401() {
    let (addr, counting) = serve(RouterConfig::new(
        RouterAuth::bearer([TOKEN]).expect("auth"),
    ))
    .await;
    let body = request("payer");
    let good = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}x");
    let lower = format!("bearer {TOKEN}");
    for path in ["/verify", "/settle"] {
        let resp = post(addr, path, &[], &body).await;
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"x402-facilitator\""
        );
        assert_problem(resp, 401, "facilitator_unauthorized").await;
        for bad in [
            wrong.as_str(),
            TOKEN,
            "Bearer ",
            "Basic cm91dGVyOnRva2Vu",
            &good[..good.len() - 1],
        ] {
            let resp = post(addr, path, &[("authorization", bad)], &body).await;
            assert_problem(resp, 401, "facilitator_unauthorized").await;
        }
        // Two Authorization headers are ambiguous: refused.
        let resp = post(
            addr,
            path,
            &[("authorization", &good), ("authorization", &wrong)],
            &body,
        )
        .await;
        assert_problem(resp, 401, "facilitator_unauthorized").await;
    }
    assert_eq!(
        counting.calls.load(Ordering::SeqCst),
        0,
        "nothing reached it"
    );

    for path in ["/verify", "/settle"] {
        for header in [good.as_str(), lower.as_str()] {
            let resp = post(addr, path, &[("authorization", header)], &body).await;
            assert_eq!(resp.status(), 200, "{path}");
        }
    }
    assert_eq!(counting.calls.load(Ordering::SeqCst), 4);
    // /supported does no chain work and stays open (SDKs fetch it first).
    let resp = reqwest::get(format!("http://{addr}/supported"))
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn router_api_key_header_is_checked() {
    let (addr, counting) = serve(RouterConfig::new(
        RouterAuth::api_key("x-api-key", ["first-key-0123456789", TOKEN]).expect("auth"),
    ))
    .await;
    let body = request("payer");
    let resp = post(addr, "/settle", &[("authorization", TOKEN)], &body).await;
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_problem(resp, 401, "facilitator_unauthorized").await;
    let resp = post(
        addr,
        "/settle",
        &[("x-api-key", "first-key-012345678")],
        &body,
    )
    .await;
    assert_problem(resp, 401, "facilitator_unauthorized").await;
    assert_eq!(counting.calls.load(Ordering::SeqCst), 0);
    for key in ["first-key-0123456789", TOKEN] {
        let resp = post(addr, "/settle", &[("x-api-key", key)], &body).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(counting.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn router_auth_refuses_missing_short_and_unsendable_keys() {
    assert_eq!(
        RouterAuth::bearer(Vec::<String>::new()).unwrap_err(),
        RouterAuthError::NoKeys
    );
    assert_eq!(
        RouterAuth::bearer([""]).unwrap_err(),
        RouterAuthError::KeyTooShort
    );
    assert_eq!(
        RouterAuth::bearer(["0123456789abcde"]).unwrap_err(),
        RouterAuthError::KeyTooShort
    );
    assert_eq!(
        RouterAuth::bearer(["0123456789 abcdef"]).unwrap_err(),
        RouterAuthError::KeyNotHeaderSafe
    );
    assert!(matches!(
        RouterAuth::api_key("x api key", [TOKEN]).unwrap_err(),
        RouterAuthError::InvalidHeaderName(_)
    ));
    // The keys never show in Debug.
    let auth = RouterAuth::bearer([TOKEN]).expect("auth");
    assert!(!format!("{auth:?}").contains(TOKEN));
}

#[tokio::test]
async fn router_rate_limits_each_client_address_with_429() {
    let config = RouterConfig {
        per_client: Some(RateLimit {
            per_second: 1,
            burst: 3,
        }),
        per_payer: None,
        ..RouterConfig::new(RouterAuth::bearer([TOKEN]).expect("auth"))
    };
    let (addr, counting) = serve(config).await;
    let good = format!("Bearer {TOKEN}");
    // Unauthenticated attempts count too (a key cannot be guessed fast).
    let resp = post(addr, "/verify", &[], &request("a")).await;
    assert_eq!(resp.status(), 401);
    for seed in ["b", "c"] {
        let resp = post(addr, "/verify", &[("authorization", &good)], &request(seed)).await;
        assert_eq!(resp.status(), 200);
    }
    let resp = post(addr, "/verify", &[("authorization", &good)], &request("d")).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1, "{retry}");
    assert_problem(resp, 429, "facilitator_rate_limited").await;
    // The open /supported counts against the same client budget.
    let resp = reqwest::get(format!("http://{addr}/supported"))
        .await
        .expect("GET");
    assert_problem(resp, 429, "facilitator_rate_limited").await;
    assert_eq!(counting.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn router_rate_limits_each_payer_with_429() {
    let config = RouterConfig {
        per_client: None,
        per_payer: Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..RouterConfig::new(RouterAuth::bearer([TOKEN]).expect("auth"))
    };
    let (addr, counting) = serve(config).await;
    let good = format!("Bearer {TOKEN}");
    let noisy = request("noisy payer");
    for _ in 0..2 {
        let resp = post(addr, "/settle", &[("authorization", &good)], &noisy).await;
        assert_eq!(resp.status(), 200);
    }
    let resp = post(addr, "/settle", &[("authorization", &good)], &noisy).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 429, "facilitator_rate_limited").await;
    // Another payer is not held back by the first.
    let resp = post(
        addr,
        "/settle",
        &[("authorization", &good)],
        &request("quiet payer"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(counting.calls.load(Ordering::SeqCst), 3);
}
