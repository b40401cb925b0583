#![cfg(feature = "x402-mock")]
//! The x402_mock dialect end to end against a real chain: anvil with
//! Circle's real USDC (FiatTokenV2_2, EIP-2612 domain "USD Coin" / "2"),
//! the alloy settler from `pay402_backends::x402_mock`, the server over real
//! HTTP and the `pay402_client::x402_mock` client.
//!
//! Needs anvil (installed from npm by `pay402_testkit::anvil` on first use);
//! fails loudly when it cannot start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::routing::get;
use pay402_backends::x402_mock::{AlloyPermitReader, AlloyPermitSettler, SpenderKey};
use pay402_client::x402::LocalSigner;
use pay402_client::x402_mock::MockClient;
use pay402_core::x402::evm::{Bytes32, Eip2612Permit, EvmAddress};
use pay402_core::x402::mock::{
    EvmPaymentComponent, MockPermit, MockPermitRequest, MockPermitSignature,
};
use pay402_core::x402::mock_chain::{
    MockChainError, PermitReader, PermitSettler, PreparedCall, SignedTx, TxStatus,
};
use pay402_core::x402::{EvmTimestamp, TokenAmount};
use pay402_server::x402_mock::{
    AcceptedToken, MockConfig, MockPaidToken, MockPaywall, MockPrice, RetryPolicy, SettlementState,
    SettlementStore, SettlementWorker, SqliteSettlementStore,
};
use pay402_testkit::anvil::{Anvil, CHAIN_ID, DEV_ACCOUNTS, Usdc};
use serde_json::{Value, json};
use zeroize::Zeroizing;

#[path = "common/hooked_store.rs"]
mod hooked_store;
#[path = "common/mock_permit.rs"]
mod mock_permit;
use hooked_store::{Hooked, Hooks};

const PRICE: u64 = 10_000; // 0.01 USDC
const FUNDS: u64 = 1_000_000; // 1 USDC
const RESOURCE: &str = "/premium";

fn start_chain() -> Anvil {
    Anvil::start().unwrap_or_else(|e| panic!("anvil (the real EVM peer) could not start: {e}"))
}

fn addr(i: usize) -> EvmAddress {
    EvmAddress(DEV_ACCOUNTS[i].address)
}

fn key_hex(i: usize) -> String {
    DEV_ACCOUNTS[i].private_key.to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn amount(v: u64) -> TokenAmount {
    TokenAmount::from_u64(v)
}

/// The spender (server wallet): dev account 1.
const SPENDER: usize = 1;

/// `transfer(to, amount)` sent by an unlocked dev account (hand-encoded ABI).
fn transfer(usdc: &Usdc<'_>, from: usize, to: EvmAddress, value: u64) {
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(to.0.as_slice());
    data.extend_from_slice(&[0u8; 24]);
    data.extend_from_slice(&value.to_be_bytes());
    usdc.anvil()
        .send_transaction(DEV_ACCOUNTS[from].address, Some(usdc.address), &data)
        .unwrap();
}

fn balance(usdc: &Usdc<'_>, who: EvmAddress) -> TokenAmount {
    TokenAmount(usdc.balance_of(who.0).unwrap())
}

struct Server {
    base: String,
    http: reqwest::Client,
    paywall: MockPaywall,
    store: Arc<SqliteSettlementStore>,
    reader: Arc<AlloyPermitReader>,
    token: EvmAddress,
    component: EvmPaymentComponent,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "pay402-anvil-x402-mock-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(2),
        receipt_timeout: Duration::from_secs(2),
        idle_poll: Duration::from_millis(100),
    }
}

async fn serve(chain: &Anvil, usdc: &Usdc<'_>, settler: Arc<dyn PermitSettler>) -> Server {
    serve_with(chain, usdc, settler, |c| c).await
}

/// [`serve`] with the configuration adjusted by `tune`; served with the
/// client address (`ConnectInfo`), as the per-client limits need.
async fn serve_with(
    chain: &Anvil,
    usdc: &Usdc<'_>,
    settler: Arc<dyn PermitSettler>,
    tune: impl FnOnce(MockConfig) -> MockConfig,
) -> Server {
    let reader = Arc::new(AlloyPermitReader::connect(&chain.rpc_url()).await.unwrap());
    let token = EvmAddress(usdc.address);
    let accepted = AcceptedToken::usdc(token, CHAIN_ID, "anvil");
    let dir = TempDir::new();
    let store = Arc::new(
        SqliteSettlementStore::open(dir.0.join("queue.sqlite"))
            .await
            .unwrap(),
    );
    let config = tune(
        MockConfig::new(Zeroizing::new(vec![0x42; 32]))
            .accept(accepted.clone())
            .retry(fast_retry()),
    );
    let paywall = MockPaywall::new(config, settler, store.clone()).unwrap();
    let layer = paywall
        .protect(RESOURCE, [MockPrice::new(token, amount(PRICE))])
        .unwrap();
    let other = paywall
        .protect("/other", [MockPrice::new(token, amount(PRICE))])
        .unwrap();
    let app = Router::new()
        .route(
            RESOURCE,
            get(|MockPaidToken(c): MockPaidToken| async move {
                format!("premium for {} ({} paid)", c.payer, c.amount)
            })
            .route_layer(layer),
        )
        .route("/other", get(|| async { "other" }).route_layer(other))
        .merge(paywall.token_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let component = accepted.component(amount(PRICE), addr(SPENDER)).unwrap();
    Server {
        base,
        http: reqwest::Client::new(),
        paywall,
        store,
        reader,
        token,
        component,
        _dir: dir,
    }
}

async fn settler(chain: &Anvil) -> Arc<AlloyPermitSettler> {
    Arc::new(
        AlloyPermitSettler::connect(
            &chain.rpc_url(),
            SpenderKey::from_hex(&key_hex(SPENDER)).unwrap(),
        )
        .await
        .unwrap()
        .with_poll_interval(Duration::from_millis(50)),
    )
}

/// What a permit is made of, before signing (tests vary each field).
#[derive(Clone)]
struct Draft {
    signer: usize,
    owner: EvmAddress,
    spender: EvmAddress,
    token: EvmAddress,
    chain_id: u64,
    value: u64,
    nonce: u64,
    deadline: u64,
}

impl Server {
    fn draft(&self, payer: usize, nonce: u64) -> Draft {
        Draft {
            signer: payer,
            owner: addr(payer),
            spender: addr(SPENDER),
            token: self.token,
            chain_id: CHAIN_ID,
            value: PRICE,
            nonce,
            deadline: now() + 600,
        }
    }

    fn sign(&self, d: &Draft) -> MockPermit {
        let message = Eip2612Permit {
            owner: d.owner,
            spender: d.spender,
            value: amount(d.value),
            nonce: amount(d.nonce).0,
            deadline: EvmTimestamp::from_u64(d.deadline),
        };
        let mut domain = self.component.domain();
        domain.chain_id = d.chain_id;
        domain.verifying_contract = d.token;
        let digest = message.signing_hash(&domain);
        let sig = LocalSigner::from_hex(&key_hex(d.signer))
            .unwrap()
            .sign_digest_sync(&digest)
            .unwrap();
        mock_permit::wire(&message, d.token, d.chain_id, sig.as_bytes())
    }

    fn endpoint(&self, resource: &str) -> String {
        let body = self.paywall.payment_required(resource).unwrap();
        format!("{}{}", self.base, body.access_token_endpoint)
    }

    async fn post_raw(&self, url: &str, body: Vec<u8>) -> (u16, Value, String) {
        let resp = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            ctype,
        )
    }

    async fn post_permit(&self, permit: &MockPermit) -> (u16, Value) {
        let body = serde_json::to_vec(&MockPermitRequest {
            version: "Version 0.1".into(),
            permit: permit.clone(),
        })
        .unwrap();
        let (s, v, _) = self.post_raw(&self.endpoint(RESOURCE), body).await;
        (s, v)
    }

    async fn get_with(&self, path: &str, token: &str) -> (u16, Value, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    async fn wait_state(
        &self,
        id: i64,
        want: SettlementState,
    ) -> pay402_server::x402_mock::Settlement {
        let start = Instant::now();
        loop {
            let job = self.store.get(id).await.unwrap().unwrap();
            if job.state == want {
                return job;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "settlement {id} stuck in {:?} (last error {:?}, failure {:?}), wanted {want:?}",
                job.state,
                job.last_error,
                job.failure
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn client(server: &Server, payer: usize) -> MockClient {
    MockClient::builder(
        Arc::new(LocalSigner::from_hex(&key_hex(payer)).unwrap()),
        server.reader.clone(),
    )
    .accept(CHAIN_ID, server.token, amount(PRICE))
    .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_buys_a_token_and_the_queue_settles_permit_and_transfer_from() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    let payer = 2;
    usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    let server = serve(&chain, &usdc, settler(&chain).await).await;
    let worker = server.paywall.spawn_worker();
    let payee_before = balance(&usdc, addr(SPENDER));

    // Unpaid: the seed's 402 body.
    let resp = server
        .http
        .get(format!("{}{RESOURCE}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    // Not cacheable, and never reused for a request with a credential.
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["vary"], "Authorization");
    let offer: Value = resp.json().await.unwrap();
    assert_eq!(
        offer["access_token_endpoint"],
        "/x402-mock/token?resource=%2Fpremium"
    );
    let c = &offer["payment_scheme"]["payment_components"][0];
    assert_eq!(c["amount"], json!(0.01));
    assert_eq!(c["chain_id"], json!(CHAIN_ID));
    assert_eq!(c["metadata"]["wallet_address"], json!(addr(SPENDER)));
    assert_eq!(c["metadata"]["name"], "USD Coin");
    assert_eq!(c["metadata"]["version"], "2");

    // The client pays: permit -> token -> paid retry.
    let client = client(&server, payer);
    let paid = client
        .get(format!("{}{RESOURCE}", server.base))
        .await
        .unwrap();
    assert_eq!(paid.response.status(), 200);
    // A paid body is never stored by a shared cache.
    assert_eq!(
        paid.response.headers()["cache-control"],
        "private, no-store"
    );
    assert_eq!(paid.response.headers()["vary"], "Authorization");
    let receipt = paid.receipt.clone().unwrap();
    assert!(!paid.reused_token);
    assert_eq!(
        paid.response.text().await.unwrap(),
        format!("premium for {} ({PRICE} paid)", addr(payer))
    );
    assert_eq!(receipt.amount, amount(PRICE));
    assert_eq!(receipt.spender, addr(SPENDER));
    let id = receipt.settlement_id.unwrap();

    // The queue settles permit() then transferFrom() on chain.
    let job = server.wait_state(id, SettlementState::Settled).await;
    let permit_tx = job.permit_tx.clone().unwrap();
    let transfer_tx = job.transfer_tx.clone().unwrap();
    let settler = settler(&chain).await;
    assert!(matches!(
        settler.receipt(&permit_tx.hash).await.unwrap(),
        Some(TxStatus::Success { .. })
    ));
    assert!(matches!(
        settler.receipt(&transfer_tx.hash).await.unwrap(),
        Some(TxStatus::Success { .. })
    ));
    assert_eq!(
        balance(&usdc, addr(SPENDER)),
        TokenAmount(payee_before.0 + amount(PRICE).0)
    );
    assert_eq!(balance(&usdc, addr(payer)), amount(FUNDS - PRICE));
    let reader = &server.reader;
    assert_eq!(
        reader.nonces(server.token, addr(payer)).await.unwrap(),
        amount(1).0
    );
    assert_eq!(
        reader
            .allowance(server.token, addr(payer), addr(SPENDER))
            .await
            .unwrap(),
        amount(0)
    );

    // The cached token opens the resource again without paying.
    let again = client
        .get(format!("{}{RESOURCE}", server.base))
        .await
        .unwrap();
    assert_eq!(again.response.status(), 200);
    assert!(again.reused_token && again.receipt.is_none());
    // It is bound to its resource.
    let second = server.sign(&server.draft(payer, 1));
    let token = {
        let (s, body) = server.post_permit(&second).await;
        assert_eq!(s, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    let (s, body, _) = server.get_with("/other", &token).await;
    assert_eq!(
        (s, body["reason"].as_str()),
        (401, Some("access_token_wrong_resource"))
    );

    // Replays: the byte-identical permit again while it is queued (or
    // already settled: the worker may have got to it) is a replay ...
    let (s, body) = server.post_permit(&second).await;
    assert_eq!(
        (s, body["reason"].as_str()),
        (409, Some("permit_replayed")),
        "{body}"
    );
    // ... a different permit (another deadline) for that nonce is refused
    // as pending while the first is queued, or as replayed once settled.
    let mut other = server.draft(payer, 1);
    other.deadline += 1;
    let (s, body) = server.post_permit(&server.sign(&other)).await;
    assert_eq!(s, 409, "{body}");
    assert!(
        matches!(
            body["reason"].as_str(),
            Some("permit_nonce_pending" | "permit_replayed")
        ),
        "{body}"
    );
    let settled = server.sign(&server.draft(payer, 0));
    let (s, body) = server.post_permit(&settled).await;
    assert_eq!(
        (s, body["reason"].as_str()),
        (409, Some("permit_replayed")),
        "{body}"
    );

    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_that_finally_fails_revokes_the_token() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    let payer = 3;
    usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    let server = serve(&chain, &usdc, settler(&chain).await).await;
    let payee_before = balance(&usdc, addr(SPENDER));

    // No worker yet: the token is issued, the settlement queued.
    let permit = server.sign(&server.draft(payer, 0));
    let (s, body) = server.post_permit(&permit).await;
    assert_eq!(s, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let id = body["metadata"]["settlement_id"].as_i64().unwrap();
    let (s, _, text) = server.get_with(RESOURCE, &token).await;
    assert_eq!(s, 200, "{text}");

    // The payer moves the funds away before settlement.
    transfer(&usdc, payer, addr(4), FUNDS);
    assert_eq!(balance(&usdc, addr(payer)), amount(0));

    let worker = server.paywall.worker();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let job = server.store.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, SettlementState::Failed);
    assert_eq!(job.failure.as_deref(), Some("transfer_reverted"));
    // permit() went through (nonce used), transferFrom() was never sent.
    assert!(job.permit_tx.is_some() && job.transfer_tx.is_none());
    assert_eq!(
        server
            .reader
            .nonces(server.token, addr(payer))
            .await
            .unwrap(),
        amount(1).0
    );
    assert_eq!(balance(&usdc, addr(SPENDER)), payee_before);

    // The next request with the token is refused.
    let (s, body, _) = server.get_with(RESOURCE, &token).await;
    assert_eq!(
        (s, body["reason"].as_str()),
        (401, Some("access_token_revoked"))
    );
    // Nothing further happens to a failed job.
    assert_eq!(worker.run_once().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_stable_reasons_and_nothing_is_queued() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    let payer = 2;
    usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    let server = serve(&chain, &usdc, settler(&chain).await).await;
    let other_token = EvmAddress(DEV_ACCOUNTS[0].address);

    type Edit = fn(&mut Draft);
    let permit_cases: Vec<(&str, Edit, u16, &str)> = vec![
        (
            "wrong spender",
            |d| d.spender = addr(3),
            402,
            "permit_spender_mismatch",
        ),
        (
            "expired deadline",
            |d| d.deadline = now() - 10,
            402,
            "permit_expired",
        ),
        (
            "deadline too soon",
            |d| d.deadline = now() + 10,
            402,
            "permit_deadline_too_soon",
        ),
        (
            "signed by another key",
            |d| d.signer = 3,
            402,
            "invalid_permit_signature",
        ),
        ("nonce ahead", |d| d.nonce = 5, 402, "permit_nonce_mismatch"),
        (
            "value too low",
            |d| d.value = PRICE - 1,
            402,
            "permit_insufficient_value",
        ),
        (
            "insufficient balance",
            |d| {
                d.signer = 4;
                d.owner = addr(4);
            },
            402,
            "permit_insufficient_balance",
        ),
        (
            "other chain",
            |d| d.chain_id = 1,
            400,
            "mock_component_mismatch",
        ),
    ];
    for (name, edit, status, reason) in permit_cases {
        let mut d = server.draft(payer, 0);
        edit(&mut d);
        let (s, body) = server.post_permit(&server.sign(&d)).await;
        assert_eq!(
            (s, body["reason"].as_str()),
            (status, Some(reason)),
            "{name}: {body}"
        );
    }
    // Token not accepted (signed for it, still refused by component).
    let mut d = server.draft(payer, 0);
    d.token = other_token;
    let (s, body) = server.post_permit(&server.sign(&d)).await;
    assert_eq!(
        (s, body["reason"].as_str()),
        (400, Some("mock_component_mismatch")),
        "{body}"
    );

    // Tampered fields after signing.
    let good = server.sign(&server.draft(payer, 0));
    let tampered: Vec<(&str, MockPermit, u16, &str)> = vec![
        (
            "permit_type",
            MockPermit {
                permit_type: "EIP3009".into(),
                ..good.clone()
            },
            400,
            "mock_unsupported_permit_type",
        ),
        (
            "value raised",
            MockPermit {
                value: amount(PRICE * 2).0,
                ..good.clone()
            },
            402,
            "invalid_permit_signature",
        ),
        (
            "v = 29",
            MockPermit {
                signature: MockPermitSignature {
                    v: 29,
                    ..good.signature.clone()
                },
                ..good.clone()
            },
            402,
            "invalid_permit_signature",
        ),
        (
            "zero r",
            MockPermit {
                signature: MockPermitSignature {
                    r: Bytes32([0; 32]),
                    ..good.signature.clone()
                },
                ..good.clone()
            },
            402,
            "invalid_permit_signature",
        ),
    ];
    for (name, permit, status, reason) in tampered {
        let (s, body) = server.post_permit(&permit).await;
        assert_eq!(
            (s, body["reason"].as_str()),
            (status, Some(reason)),
            "{name}: {body}"
        );
    }

    // Garbage bodies and URLs.
    let url = server.endpoint(RESOURCE);
    let good_json = serde_json::to_value(MockPermitRequest {
        version: "Version 0.1".into(),
        permit: good.clone(),
    })
    .unwrap();
    let mut wrong_version = good_json.clone();
    wrong_version["version"] = json!("Version 9");
    let mut string_value = good_json.clone();
    string_value["permit"]["value"] = json!("ten");
    let mut bad_hex = good_json.clone();
    bad_hex["permit"]["signature"]["r"] = json!("0xzz");
    let mut negative = good_json.clone();
    negative["permit"]["nonce"] = json!(-1);
    let bodies: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty", vec![], 400, "malformed_permit_request"),
        (
            "not json",
            b"permit please".to_vec(),
            400,
            "malformed_permit_request",
        ),
        (
            "empty object",
            b"{}".to_vec(),
            400,
            "malformed_permit_request",
        ),
        (
            "array",
            b"[1,2,3]".to_vec(),
            400,
            "malformed_permit_request",
        ),
        (
            "empty permit",
            br#"{"version":"Version 0.1","permit":{}}"#.to_vec(),
            400,
            "malformed_permit_request",
        ),
        (
            "value not a number",
            serde_json::to_vec(&string_value).unwrap(),
            400,
            "malformed_permit_request",
        ),
        (
            "r not hex",
            serde_json::to_vec(&bad_hex).unwrap(),
            400,
            "malformed_permit_request",
        ),
        (
            "negative nonce",
            serde_json::to_vec(&negative).unwrap(),
            400,
            "malformed_permit_request",
        ),
        (
            "binary",
            vec![0xff, 0xfe, 0x00, 0x01],
            400,
            "malformed_permit_request",
        ),
        ("too large", vec![b' '; 32 * 1024], 413, "body_too_large"),
        (
            "wrong version",
            serde_json::to_vec(&wrong_version).unwrap(),
            400,
            "unsupported_protocol_version",
        ),
    ];
    for (name, body, status, reason) in bodies {
        let (s, v, ctype) = server.post_raw(&url, body).await;
        assert_eq!(
            (s, v["reason"].as_str()),
            (status, Some(reason)),
            "{name}: {v}"
        );
        assert_eq!(ctype, "application/problem+json", "{name}");
    }
    let good_body = serde_json::to_vec(&good_json).unwrap();
    for (name, u) in [
        ("no resource", format!("{}/x402-mock/token", server.base)),
        (
            "unknown resource",
            format!("{}/x402-mock/token?resource=%2Fnope", server.base),
        ),
        (
            "bad query",
            format!("{}/x402-mock/token?resource=%ZZ", server.base),
        ),
    ] {
        let (s, v, _) = server.post_raw(&u, good_body.clone()).await;
        assert_eq!(
            (s, v["reason"].as_str()),
            (404, Some("unknown_resource")),
            "{name}: {v}"
        );
    }

    // Bad bearer tokens on the protected route.
    let forged = {
        let claims = pay402_core::x402::mock::AccessTokenClaims {
            payer: addr(payer),
            resource: RESOURCE.into(),
            amount: amount(PRICE),
            asset: server.token,
            chain_id: CHAIN_ID,
            iat: now(),
            exp: now() + 600,
            jti: Bytes32([1; 32]),
        };
        pay402_core::x402::mock::issue_access_token(&claims, &[0x43; 32]).unwrap()
    };
    for (name, token, reason) in [
        ("garbage", "garbage".to_owned(), "access_token_malformed"),
        ("forged key", forged, "access_token_bad_signature"),
        (
            "truncated",
            "x4m1.e30.AAAA".to_owned(),
            "access_token_malformed",
        ),
    ] {
        let (s, v, _) = server.get_with(RESOURCE, &token).await;
        assert_eq!(
            (s, v["reason"].as_str()),
            (401, Some(reason)),
            "{name}: {v}"
        );
    }
    let resp = server
        .http
        .get(format!("{}{RESOURCE}", server.base))
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A credential of another scheme is not ours: the offer.
    let resp = server
        .http
        .get(format!("{}{RESOURCE}", server.base))
        .header("authorization", "L402 abc:def")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);

    // Nothing was queued by any of it; the good permit still works after.
    assert!(server.store.get(1).await.unwrap().is_none());
    let (s, body) = server.post_permit(&good).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["metadata"]["settlement_id"], json!(1));
}

/// **Fault injector** (a test double): passes every call to the real
/// settler, but swallows the first two broadcasts of each transaction — what
/// a crash between journaling and sending, or a lost
/// `eth_sendRawTransaction`, looks like. anvil cannot produce this by itself.
/// With `refuse_first`, it instead refuses every broadcast of the first
/// transaction signed (`TxRefused`), and passes the others through: a
/// transaction no node ever accepts.
struct DropsFirstBroadcasts {
    inner: Arc<AlloyPermitSettler>,
    dropped: std::sync::Mutex<Vec<Bytes32>>,
    transfer_signs: AtomicUsize,
    permit_signs: AtomicUsize,
    refuse_first: bool,
    first_signed: std::sync::Mutex<Option<Bytes32>>,
}

impl DropsFirstBroadcasts {
    fn new(inner: Arc<AlloyPermitSettler>, refuse_first: bool) -> DropsFirstBroadcasts {
        DropsFirstBroadcasts {
            inner,
            dropped: std::sync::Mutex::new(Vec::new()),
            transfer_signs: AtomicUsize::new(0),
            permit_signs: AtomicUsize::new(0),
            refuse_first,
            first_signed: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl PermitReader for DropsFirstBroadcasts {
    fn chain_id(&self) -> u64 {
        self.inner.chain_id()
    }
    async fn nonces(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
    ) -> Result<pay402_core::x402::mock_chain::U256, MockChainError> {
        self.inner.nonces(token, owner).await
    }
    async fn balance_of(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        self.inner.balance_of(token, owner).await
    }
    async fn allowance(
        &self,
        token: EvmAddress,
        owner: EvmAddress,
        spender: EvmAddress,
    ) -> Result<TokenAmount, MockChainError> {
        self.inner.allowance(token, owner, spender).await
    }
}

#[async_trait::async_trait]
impl PermitSettler for DropsFirstBroadcasts {
    fn spender(&self) -> EvmAddress {
        self.inner.spender()
    }
    async fn sign_permit(&self, permit: &MockPermit) -> Result<SignedTx, MockChainError> {
        self.inner.sign_permit(permit).await
    }
    async fn sign_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<SignedTx, MockChainError> {
        self.inner.sign_transfer_from(token, from, to, amount).await
    }
    async fn prepare_permit(&self, permit: &MockPermit) -> Result<PreparedCall, MockChainError> {
        self.inner.prepare_permit(permit).await
    }
    async fn prepare_transfer_from(
        &self,
        token: EvmAddress,
        from: EvmAddress,
        to: EvmAddress,
        amount: TokenAmount,
    ) -> Result<PreparedCall, MockChainError> {
        self.inner
            .prepare_transfer_from(token, from, to, amount)
            .await
    }
    async fn prepare_nonce_fill(&self) -> Result<PreparedCall, MockChainError> {
        self.inner.prepare_nonce_fill().await
    }
    fn sign_at(&self, call: &PreparedCall, nonce: u64) -> Result<SignedTx, MockChainError> {
        match call.call {
            "permit" => self.permit_signs.fetch_add(1, Ordering::SeqCst),
            _ => self.transfer_signs.fetch_add(1, Ordering::SeqCst),
        };
        let tx = self.inner.sign_at(call, nonce)?;
        self.first_signed.lock().unwrap().get_or_insert(tx.hash);
        Ok(tx)
    }
    async fn pending_sender_nonce(&self) -> Result<u64, MockChainError> {
        self.inner.pending_sender_nonce().await
    }
    async fn broadcast(&self, tx: &SignedTx) -> Result<(), MockChainError> {
        if self.refuse_first {
            if *self.first_signed.lock().unwrap() == Some(tx.hash) {
                return Err(MockChainError::TxRefused {
                    call: "eth_sendRawTransaction",
                    detail: "refused by the test".into(),
                });
            }
            return self.inner.broadcast(tx).await;
        }
        {
            let mut dropped = self.dropped.lock().unwrap();
            if dropped.iter().filter(|h| **h == tx.hash).count() < 2 {
                dropped.push(tx.hash);
                return Ok(()); // dropped on the floor
            }
        }
        self.inner.broadcast(tx).await
    }
    async fn receipt(&self, hash: &Bytes32) -> Result<Option<TxStatus>, MockChainError> {
        self.inner.receipt(hash).await
    }
    async fn wait_receipt(
        &self,
        hash: &Bytes32,
        timeout: Duration,
    ) -> Result<Option<TxStatus>, MockChainError> {
        self.inner.wait_receipt(hash, timeout).await
    }
    async fn mined_sender_nonce(&self) -> Result<u64, MockChainError> {
        self.inner.mined_sender_nonce().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_broadcasts_are_resent_from_the_journal_and_never_pay_twice() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    let payer = 2;
    usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    let real = settler(&chain).await;
    let faulty = Arc::new(DropsFirstBroadcasts::new(real.clone(), false));
    let server = serve(&chain, &usdc, faulty.clone()).await;
    let sent_before = real.mined_sender_nonce().await.unwrap();
    let payee_before = balance(&usdc, addr(SPENDER));

    // Value above the price: a second transferFrom would succeed on chain,
    // so only the journal stands between us and a double charge.
    let mut d = server.draft(payer, 0);
    d.value = PRICE * 3;
    let (s, body) = server.post_permit(&server.sign(&d)).await;
    assert_eq!(s, 200, "{body}");
    let id = body["metadata"]["settlement_id"].as_i64().unwrap();

    let worker = server.paywall.spawn_worker();
    let job = server.wait_state(id, SettlementState::Settled).await;
    worker.shutdown().await;

    assert_eq!(faulty.permit_signs.load(Ordering::SeqCst), 1);
    assert_eq!(faulty.transfer_signs.load(Ordering::SeqCst), 1);
    // Each transaction was dropped twice, then re-sent from the journal on a
    // later attempt (same bytes, same hash).
    assert_eq!(faulty.dropped.lock().unwrap().len(), 4);
    assert!(
        job.attempts >= 2,
        "lost broadcasts were retried later: {job:?}"
    );
    // Exactly two transactions from the spender: one permit(), one transferFrom().
    assert_eq!(real.mined_sender_nonce().await.unwrap(), sent_before + 2);
    assert_eq!(
        balance(&usdc, addr(SPENDER)),
        TokenAmount(payee_before.0 + amount(PRICE).0)
    );
    assert_eq!(balance(&usdc, addr(payer)), amount(FUNDS - PRICE));
    // The rest of the allowance stays unspent.
    assert_eq!(
        server
            .reader
            .allowance(server.token, addr(payer), addr(SPENDER))
            .await
            .unwrap(),
        amount(PRICE * 2)
    );
}

/// A permit() transaction that the node refuses on every broadcast keeps
/// the spender nonce the store allocated to it; once its job fails for
/// good, the worker fills that nonce with a zero-value transfer to itself,
/// so the key's next transactions are not stuck behind the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_abandoned_by_a_failed_job_is_filled_and_later_jobs_settle() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    for payer in [2, 3] {
        usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    }
    let real = settler(&chain).await;
    let faulty = Arc::new(DropsFirstBroadcasts::new(real.clone(), true));
    let server = serve_with(&chain, &usdc, faulty.clone(), |c| {
        c.retry(RetryPolicy {
            max_attempts: 2,
            ..fast_retry()
        })
    })
    .await;
    let sent_before = real.mined_sender_nonce().await.unwrap();

    let (s, body) = server.post_permit(&server.sign(&server.draft(2, 0))).await;
    assert_eq!(s, 200, "{body}");
    let refused = body["metadata"]["settlement_id"].as_i64().unwrap();
    let worker = server.paywall.worker();
    let started = Instant::now();
    let job = loop {
        worker.run_once().await.unwrap();
        let job = server.store.get(refused).await.unwrap().unwrap();
        if job.state.is_final() {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job.failure.as_deref(), Some("settlement_retries_exhausted"));
    let abandoned = job.permit_tx.unwrap();
    assert_eq!(abandoned.sender_nonce, sent_before);
    assert_eq!(real.receipt(&abandoned.hash).await.unwrap(), None);
    // The filler took the nonce; the payer's permit was never executed.
    assert_eq!(real.mined_sender_nonce().await.unwrap(), sent_before + 1);
    assert_eq!(
        server.reader.nonces(server.token, addr(2)).await.unwrap(),
        amount(0).0
    );
    assert_eq!(balance(&usdc, addr(2)), amount(FUNDS));

    // The next job signs the next nonces and settles.
    let (s, body) = server.post_permit(&server.sign(&server.draft(3, 0))).await;
    assert_eq!(s, 200, "{body}");
    let next = body["metadata"]["settlement_id"].as_i64().unwrap();
    let running = server.paywall.spawn_worker();
    let job = server.wait_state(next, SettlementState::Settled).await;
    running.shutdown().await;
    assert_eq!(job.permit_tx.unwrap().sender_nonce, sent_before + 1);
    assert_eq!(job.transfer_tx.unwrap().sender_nonce, sent_before + 2);
    assert_eq!(real.mined_sender_nonce().await.unwrap(), sent_before + 3);
    assert_eq!(balance(&usdc, addr(3)), amount(FUNDS - PRICE));
}

/// **Stall injector** (hooks around the real store): a claim leases the
/// jobs in the real store, then holds them back from its worker until the
/// test opens the gate, what a worker paused between its claim and its
/// work looks like (a GC pause, a suspended VM, a slow batch). Its copy of
/// each job goes stale once the lease runs out and another worker takes
/// the job over.
struct StallsAfterClaim {
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl Hooks for StallsAfterClaim {
    async fn claimed(&self, _jobs: &[pay402_server::x402_mock::Settlement]) {
        let _open = self.gate.acquire().await.unwrap();
    }
}

/// A worker claims a job, stalls past its one-second lease, and another
/// worker takes the job over and settles it (the permit's whole allowance
/// spent). The first then wakes with its stale copy (`queued`) and finds
/// the permit nonce used and no allowance left, which on its own would
/// mean `permit_nonce_consumed`: it must not fail the job nor revoke the
/// payer's token, since it no longer holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_never_fails_nor_revokes_a_job_the_next_one_settled() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    let payer = 2;
    usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    let server = serve(&chain, &usdc, settler(&chain).await).await;
    let permit = server.sign(&server.draft(payer, 0)); // value = price
    let (s, body) = server.post_permit(&permit).await;
    assert_eq!(s, 200, "{body}");
    let id = body["metadata"]["settlement_id"].as_i64().unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();

    let stalled = Arc::new(Hooked {
        inner: server.store.clone(),
        hooks: StallsAfterClaim {
            gate: tokio::sync::Semaphore::new(0),
        },
    });
    let first = SettlementWorker::new(stalled.clone(), settler(&chain).await, fast_retry())
        .with_lease(Duration::from_secs(1));
    let first = tokio::spawn(async move { first.run_once().await });
    // The first worker holds the job; wait until its lease has run out.
    let start = Instant::now();
    let lease = loop {
        let job = server.store.get(id).await.unwrap().unwrap();
        if job.lease_until != 0 {
            break job.lease_until;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while now() < lease {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The next worker takes it over and settles it.
    assert_eq!(server.paywall.worker().run_once().await.unwrap(), 1);
    let settled = server.store.get(id).await.unwrap().unwrap();
    assert_eq!(settled.state, SettlementState::Settled, "{settled:?}");
    assert_eq!(
        server
            .reader
            .allowance(server.token, addr(payer), addr(SPENDER))
            .await
            .unwrap(),
        amount(0)
    );

    // The first wakes up: everything it tries to write is refused.
    stalled.hooks.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let after = server.store.get(id).await.unwrap().unwrap();
    assert_eq!(after, settled, "the stale worker wrote nothing");
    assert!(
        !server.store.is_revoked(&settled.job.digest).await.unwrap(),
        "the payer's token was revoked by a worker without the lease"
    );
    let (s, body, _) = server.get_with(RESOURCE, &token).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(balance(&usdc, addr(payer)), amount(FUNDS - PRICE));
}

/// A permit sets the allowance, it does not add to it. Job 0 is leased by a
/// stalled worker after someone else executed its permit (its allowance is
/// in place), and the payer's permit 1 is accepted meanwhile. Executing
/// permit 1 now would overwrite the allowance job 0 still needs: one of
/// the two `transferFrom()`s would find too little and its job would fail.
/// The worker holds job 1 back (no attempt counted) until job 0 is final;
/// then both settle and the payer pays twice, once per token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_waits_while_the_payers_previous_job_still_needs_its_allowance() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    let payer = 2;
    usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    let server = serve(&chain, &usdc, settler(&chain).await).await;
    let payee_before = balance(&usdc, addr(SPENDER));

    let first = server.sign(&server.draft(payer, 0)); // value = price
    let (s, body) = server.post_permit(&first).await;
    assert_eq!(s, 200, "{body}");
    let id0 = body["metadata"]["settlement_id"].as_i64().unwrap();
    let t = now();
    let stalled = server.store.claim_due(t, t + 600, 16).await.unwrap();
    assert_eq!(stalled.len(), 1);
    // Anyone may execute a permit: a bystander does.
    let bystander =
        AlloyPermitSettler::connect(&chain.rpc_url(), SpenderKey::from_hex(&key_hex(0)).unwrap())
            .await
            .unwrap();
    let tx = bystander.sign_permit(&first).await.unwrap();
    bystander.broadcast(&tx).await.unwrap();
    assert!(matches!(
        bystander
            .wait_receipt(&tx.hash, Duration::from_secs(10))
            .await
            .unwrap(),
        Some(TxStatus::Success { .. })
    ));
    let (s, body) = server
        .post_permit(&server.sign(&server.draft(payer, 1)))
        .await;
    assert_eq!(s, 200, "{body}");
    let id1 = body["metadata"]["settlement_id"].as_i64().unwrap();

    // Job 1 is taken, and put back untouched.
    assert_eq!(server.paywall.worker().run_once().await.unwrap(), 1);
    let waiting = server.store.get(id1).await.unwrap().unwrap();
    assert_eq!(waiting.state, SettlementState::Queued, "{waiting:?}");
    assert_eq!(waiting.attempts, 0, "waiting is not a failed attempt");
    assert!(
        waiting
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&format!("settlement {id0}"))),
        "{waiting:?}"
    );
    assert_eq!(
        server
            .reader
            .nonces(server.token, addr(payer))
            .await
            .unwrap(),
        amount(1).0,
        "permit 1 not executed"
    );

    // The stalled worker gives job 0 up; both settle, in order.
    let mut job0 = stalled[0].clone();
    let held = job0.lease_until;
    job0.lease_until = 0;
    server.store.save(&job0, held).await.unwrap();
    let worker = server.paywall.spawn_worker();
    let settled0 = server.wait_state(id0, SettlementState::Settled).await;
    let settled1 = server.wait_state(id1, SettlementState::Settled).await;
    worker.shutdown().await;
    for job in [&settled0, &settled1] {
        assert!(!server.store.is_revoked(&job.job.digest).await.unwrap());
    }
    assert_eq!(balance(&usdc, addr(payer)), amount(FUNDS - 2 * PRICE));
    assert_eq!(
        balance(&usdc, addr(SPENDER)),
        TokenAmount(payee_before.0 + amount(2 * PRICE).0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_respects_its_cap_pays_once_for_concurrent_requests_and_repays_a_revoked_token() {
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    let payer = 3;
    usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    let server = serve(&chain, &usdc, settler(&chain).await).await;
    let url = format!("{}{RESOURCE}", server.base);

    // A cap below the price: nothing is signed or sent.
    let stingy = MockClient::builder(
        Arc::new(LocalSigner::from_hex(&key_hex(payer)).unwrap()),
        server.reader.clone(),
    )
    .accept(CHAIN_ID, server.token, amount(PRICE - 1))
    .build();
    let err = stingy.get(&url).await.unwrap_err();
    assert_eq!(
        pay402_core::problem::Reason::reason(&err),
        "mock_no_acceptable_component"
    );
    assert!(!err.may_have_paid());
    // Another chain: nothing is paid either.
    let elsewhere = MockClient::builder(
        Arc::new(LocalSigner::from_hex(&key_hex(payer)).unwrap()),
        server.reader.clone(),
    )
    .accept(1, server.token, amount(PRICE))
    .build();
    assert!(elsewhere.get(&url).await.is_err());
    assert!(server.store.get(1).await.unwrap().is_none());

    // Two concurrent requests: one permit.
    let worker = server.paywall.spawn_worker();
    let client = client(&server, payer);
    let (a, b) = tokio::join!(client.get(&url), client.get(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.response.status().as_u16(), b.response.status().as_u16()),
        (200, 200)
    );
    let receipts: Vec<_> = [&a, &b].iter().filter_map(|p| p.receipt.clone()).collect();
    assert_eq!(receipts.len(), 1, "exactly one of the two paid");
    let first = receipts[0].clone();
    assert!(server.store.get(2).await.unwrap().is_none());

    // The server revokes the token: the client's cached token gets a 401,
    // is dropped, and the client pays again (a fresh permit, next nonce,
    // after waiting for the first one to settle if it is still pending).
    server
        .paywall
        .revoke(&first.digest, first.token_expires_at.unwrap(), "operator")
        .await
        .unwrap();
    let again = client.get(&url).await.unwrap();
    assert_eq!(again.response.status(), 200);
    let second = again.receipt.unwrap();
    assert_eq!(second.nonce, amount(1).0);
    server
        .wait_state(second.settlement_id.unwrap(), SettlementState::Settled)
        .await;
    assert_eq!(balance(&usdc, addr(payer)), amount(FUNDS - 2 * PRICE));
    worker.shutdown().await;
}

#[tokio::test]
async fn the_token_endpoint_rate_limits_each_client_after_the_local_checks() {
    use pay402_server::limit::RateLimit;
    let chain = start_chain();
    let usdc = chain.deploy_usdc().unwrap();
    for payer in [2, 3] {
        usdc.mint(addr(payer).0, amount(FUNDS).0).unwrap();
    }
    let server = serve_with(&chain, &usdc, settler(&chain).await, |c| {
        c.token_rate_limit(RateLimit::per_period(1, Duration::from_secs(3_600)))
    })
    .await;
    // The first permit from this client (127.0.0.1) buys a token.
    let (status, body) = server.post_permit(&server.sign(&server.draft(2, 0))).await;
    assert_eq!(status, 200, "{body}");
    assert!(server.store.get(1).await.unwrap().is_some(), "queued");
    // A locally bad permit still gets its own reason: cheap refusals first,
    // and they do not count against the client.
    let mut bad = server.draft(3, 0);
    bad.signer = 4;
    let (status, body) = server.post_permit(&server.sign(&bad)).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (402, Some("invalid_permit_signature"))
    );
    // A second sound permit from the same client: 429 before any chain
    // call, nothing queued.
    let permit = server.sign(&server.draft(3, 0));
    let body = serde_json::to_vec(&MockPermitRequest {
        version: "Version 0.1".into(),
        permit,
    })
    .unwrap();
    let resp = server
        .http
        .post(server.endpoint(RESOURCE))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["reason"], "rate_limited");
    assert!(
        server.store.get(2).await.unwrap().is_none(),
        "nothing queued"
    );
}
