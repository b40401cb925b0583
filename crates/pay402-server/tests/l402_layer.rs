//! The L402 layer end to end on simnet: challenge, pay, verify, reuse, reject.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode, header};
use pay402_core::l402::{ChallengeSet, Credential, Macaroon, TokenId, check_challenge};
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_core::time::UnixTime;
use pay402_server::store::{MemoryStore, RootKeyStore, SqliteStore};
use pay402_server::{L402Config, L402Layer, Price, RejectMode};

#[tokio::test]
async fn unpaid_request_gets_402_with_a_payable_challenge() {
    let env = env(L402Config::new("api"));
    let r = send(&env.app, get_req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS],
        "WWW-Authenticate"
    );
    assert_eq!(r.reason(), "payment_required");
    assert_eq!(r.json()["status"], 402);
    let challenges = r.challenges();
    assert_eq!(challenges.len(), 1);
    assert!(
        challenges[0].starts_with("L402 macaroon=\""),
        "{}",
        challenges[0]
    );
    // The macaroon and invoice agree, and the price is what was configured.
    let set = ChallengeSet::parse(challenges.iter().map(|c| c.as_bytes())).unwrap();
    let now = UnixTime::from_system(std::time::SystemTime::now());
    let offer =
        check_challenge(set.l402().unwrap(), Network::Regtest, now, Msat(u64::MAX)).unwrap();
    assert_eq!(offer.invoice.amount, Msat(PRICE_SAT * 1000));
    // Minted like Aperture: location lsat, services caveat.
    let mac = Macaroon::from_base64(set.l402().unwrap().macaroon()).unwrap();
    assert_eq!(mac.location(), Some(&b"lsat"[..]));
    assert_eq!(mac.caveats()[0], b"services=api:0");
}

#[tokio::test]
async fn paid_token_is_served_and_reused_without_paying_again() {
    let env = env(L402Config::new("api"));
    let auth = buy(&env, "/paid").await;
    assert_eq!(env.merchant.balance(), Msat(PRICE_SAT * 1000));
    let r = send(&env.app, get_req("/paid", &[&auth])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.starts_with(b"paid:"));
    for _ in 0..3 {
        let r = send(&env.app, get_req("/paid", &[&auth])).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // LSAT scheme and uppercase hex are accepted for the same token.
    let (mac, pre) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    let legacy = format!("LSAT  {mac}:{}", pre.to_uppercase());
    assert_eq!(
        send(&env.app, get_req("/paid", &[&legacy])).await.status,
        StatusCode::OK
    );
    assert_eq!(env.merchant.balance(), Msat(PRICE_SAT * 1000));
}

#[tokio::test]
async fn unpaid_preimage_or_tampered_token_gets_fresh_challenge() {
    let env = env(L402Config::new("api"));
    let r = send(&env.app, get_req("/paid", &[])).await;
    let ch = r.challenges();
    let set = ChallengeSet::parse(ch.iter().map(|c| c.as_bytes())).unwrap();
    let mac = set.l402().unwrap().macaroon().to_owned();
    // Guessing a preimage without paying.
    let guess = format!("L402 {mac}:{}", "00".repeat(32));
    let r = send(&env.app, get_req("/paid", &[&guess])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "preimage_mismatch");
    assert_eq!(r.challenges().len(), 1, "Aperture mode re-challenges");
    // A paid token with an extra caveat appended but not re-signed.
    let auth = pay(&env.payer, &send(&env.app, get_req("/paid", &[])).await).await;
    let (m, p) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    let mut forged = Macaroon::from_base64(m).unwrap().encode_v2();
    let sig_pos = forged.len() - 1;
    forged[sig_pos] ^= 1;
    let forged = format!("L402 {}:{p}", pay402_core::b64::encode_std(&forged));
    let r = send(&env.app, get_req("/paid", &[&forged])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "invalid_signature");
}

#[tokio::test]
async fn spec_mode_answers_401_for_invalid_and_400_for_malformed() {
    let env = env(L402Config::new("api").reject_mode(RejectMode::Spec));
    let auth = buy(&env, "/paid").await;
    let (m, _) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    let wrong = format!("L402 {m}:{}", "11".repeat(32));
    let r = send(&env.app, get_req("/paid", &[&wrong])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.reason(), "preimage_mismatch");
    assert_eq!(r.challenges().len(), 1, "401 carries a challenge");
    let r = send(
        &env.app,
        get_req("/paid", &[&format!("L402 !!!:{}", "00".repeat(32))]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.challenges().is_empty());
    assert_eq!(r.reason(), "malformed_credential");
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoked_token_is_refused() {
    let env = env(L402Config::new("api"));
    let auth = buy(&env, "/paid").await;
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    let cred = Credential::parse(&auth).unwrap();
    let mut buf = Vec::new();
    let tok = pay402_core::l402::PresentedToken::decode(&cred, &mut buf).unwrap();
    assert!(env.layer.revoke(&tok.token_id()).await.unwrap());
    let r = send(&env.app, get_req("/paid", &[&auth])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "unknown_token");
    assert!(!env.layer.revoke(&TokenId([0; 32])).await.unwrap());
}

/// A served token's key remembers its macaroon (so it skips the HMAC chain
/// next time); a copy with a caveat dropped but the same signature, or with
/// one signature byte changed, is not the remembered macaroon and fails the
/// chain, before and after the genuine token is served again.
#[tokio::test]
async fn a_remembered_token_lets_no_altered_copy_through() {
    let env = env(L402Config::new("api"));
    let auth = buy(&env, "/paid").await;
    for _ in 0..2 {
        assert_eq!(
            send(&env.app, get_req("/paid", &[&auth])).await.status,
            StatusCode::OK
        );
    }
    let (mac_b64, preimage) = auth
        .strip_prefix("L402 ")
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    let mac = Macaroon::from_base64(mac_b64).unwrap();
    assert!(mac.caveats().len() >= 2, "{:?}", mac.caveats().len());
    // The same caveats but the last, with the original signature.
    let mut fewer = Macaroon::decode_v2(&{
        let mut m = Macaroon::with_key(
            &pay402_core::l402::MacaroonKey::derive_from(b"any"),
            None,
            mac.identifier(),
        );
        for c in &mac.caveats()[..mac.caveats().len() - 1] {
            m.add_first_party_caveat(c);
        }
        let mut bytes = m.encode_v2();
        let at = bytes.windows(32).position(|w| w == m.signature()).unwrap();
        bytes[at..at + 32].copy_from_slice(mac.signature());
        bytes
    })
    .unwrap();
    let stripped = format!("L402 {}:{preimage}", fewer.to_base64());
    // One signature bit flipped.
    let mut bytes = mac.encode_v2();
    let at = bytes
        .windows(32)
        .position(|w| w == mac.signature())
        .unwrap();
    bytes[at] ^= 1;
    fewer = Macaroon::decode_v2(&bytes).unwrap();
    let flipped = format!("L402 {}:{preimage}", fewer.to_base64());
    for bad in [&stripped, &flipped] {
        let r = send(&env.app, get_req("/paid", &[bad])).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{bad}");
        assert_eq!(r.reason(), "invalid_signature");
        assert_eq!(
            send(&env.app, get_req("/paid", &[&auth])).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn expired_token_is_refused() {
    let env = env(L402Config::new("api").token_lifetime(Duration::ZERO));
    let auth = buy(&env, "/paid").await;
    let r = send(&env.app, get_req("/paid", &[&auth])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "token_expired");
}

#[tokio::test]
async fn token_for_another_service_is_refused() {
    let store: Arc<dyn RootKeyStore> = Arc::new(MemoryStore::new());
    let a = env_with(L402Config::new("alpha"), store.clone());
    let auth = buy(&a, "/paid").await;
    assert_eq!(
        send(&a.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    let b_layer = L402Layer::new(L402Config::new("beta"), Arc::new(a.merchant.clone()), store);
    let b_app = app_for(&b_layer);
    let r = send(&b_app, get_req("/paid", &[&auth])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "wrong_service");
}

#[tokio::test]
async fn lsat_challenge_is_emitted_first_when_asked() {
    let env = env(L402Config::new("api").emit_lsat(true));
    let r = send(&env.app, get_req("/paid", &[])).await;
    let ch = r.challenges();
    assert_eq!(ch.len(), 2);
    assert!(ch[0].starts_with("LSAT macaroon="));
    assert!(ch[1].starts_with("L402 macaroon="));
    assert_eq!(ch[0][4..], ch[1][4..]);
}

#[tokio::test]
async fn free_paths_and_unpriced_routes_pass() {
    let env = env(L402Config::new("api").free_path("/paid"));
    let r = send(&env.app, get_req("/paid", &[])).await;
    // The handler requires a PaidToken; on a free path there is none.
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "payment_required");
    assert!(
        r.challenges().is_empty(),
        "no challenge minted on a free path"
    );
    assert_eq!(
        send(&env.app, get_req("/free", &[])).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn dynamic_price_sees_the_request_and_zero_is_free() {
    let net = pay402_backends::simnet::SimNet::new(Network::Regtest);
    let merchant = net.add_node("m", Msat(0));
    let layer = L402Layer::new(
        L402Config::new("api"),
        Arc::new(merchant),
        Arc::new(MemoryStore::new()),
    );
    let price = Price::dynamic(|req| async move {
        let n: u64 = req.uri.query()?.strip_prefix("n=")?.parse().ok()?;
        Some(Msat(n * 1000))
    });
    let app = axum::Router::new().route(
        "/q",
        axum::routing::get(|| async { "ok" }).route_layer(layer.with_price(price)),
    );
    let r = send(&app, get_req("/q?n=7", &[])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    let ch = r.challenges();
    let set = ChallengeSet::parse(ch.iter().map(|c| c.as_bytes())).unwrap();
    let offer = check_challenge(
        set.l402().unwrap(),
        Network::Regtest,
        UnixTime::from_system(std::time::SystemTime::now()),
        Msat(u64::MAX),
    )
    .unwrap();
    assert_eq!(offer.invoice.amount, Msat(7_000));
    assert_eq!(
        send(&app, get_req("/q?n=0", &[])).await.status,
        StatusCode::OK
    );
    assert_eq!(send(&app, get_req("/q", &[])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn request_binding_accepts_only_the_quoted_request() {
    let env = env(L402Config::new("api").bind_request(true).max_body(64));
    let post = |body: &'static str, auth: Option<&str>| {
        let mut b = Request::post("/echo").header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::from(body)).unwrap()
    };
    let r = send(&env.app, post("{\"msg\":\"hi\"}", None)).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    let auth = pay(&env.payer, &r).await;
    let ok = send(&env.app, post("{\"msg\":\"hi\"}", Some(&auth))).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        &ok.body[..],
        b"{\"msg\":\"hi\"}",
        "handler sees the buffered body"
    );
    let other = send(&env.app, post("{\"msg\":\"ho\"}", Some(&auth))).await;
    assert_eq!(other.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(other.reason(), "request_mismatch");
    let big = send(
        &env.app,
        post(Box::leak("x".repeat(65).into_boxed_str()), None),
    )
    .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.reason(), "body_too_large");
}

/// Without request binding the layer does not buffer bodies: the handler
/// gets the request's own body, on the first paid use (key not cached yet,
/// the full path) as on later ones (the fast path).
#[tokio::test]
async fn the_handler_gets_the_body_without_request_binding() {
    let env = env(L402Config::new("api"));
    let post = |auth: Option<&str>| {
        let mut b = Request::post("/echo");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::from("payload")).unwrap()
    };
    let r = send(&env.app, post(None)).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    let auth = pay(&env.payer, &r).await;
    for use_ in ["first use (full path)", "second use (fast path)"] {
        let ok = send(&env.app, post(Some(&auth))).await;
        assert_eq!(ok.status, StatusCode::OK, "{use_}");
        assert_eq!(&ok.body[..], b"payload", "{use_}");
    }
}

#[tokio::test]
async fn several_l402_authorization_headers_are_refused() {
    let env = env(L402Config::new("api"));
    let auth = buy(&env, "/paid").await;
    let r = send(&env.app, get_req("/paid", &[&auth, &auth])).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "multiple_credentials");
    // Another scheme beside it is fine.
    let r = send(&env.app, get_req("/paid", &["Bearer abc", &auth])).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn node_failure_is_a_503_problem_not_a_panic() {
    let layer = L402Layer::new(
        L402Config::new("api"),
        Arc::new(DownNode),
        Arc::new(MemoryStore::new()),
    );
    let app = app_for(&layer);
    let r = send(&app, get_req("/paid", &[])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.reason(), "node_unreachable");
}

#[tokio::test]
async fn sqlite_store_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("pay402-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.sqlite");
    let _ = std::fs::remove_file(&path);
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let env = env_with(L402Config::new("api"), store);
    let auth = buy(&env, "/paid").await;
    assert_eq!(
        send(&env.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    drop(env);
    // A new process: new layer, new cache, same database file.
    let store2 = Arc::new(SqliteStore::open(&path).await.unwrap());
    let env2 = env_with(L402Config::new("api"), store2.clone());
    assert_eq!(
        send(&env2.app, get_req("/paid", &[&auth])).await.status,
        StatusCode::OK
    );
    let cred = Credential::parse(&auth).unwrap();
    let mut buf = Vec::new();
    let id = pay402_core::l402::PresentedToken::decode(&cred, &mut buf)
        .unwrap()
        .token_id();
    assert!(env2.layer.revoke(&id).await.unwrap());
    assert!(store2.get(&id).await.unwrap().unwrap().revoked);
    let r = send(&env2.app, get_req("/paid", &[&auth])).await;
    assert_eq!(r.reason(), "unknown_token");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serves_over_real_tcp() {
    let env = env(L402Config::new("api"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = env.app.clone();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/paid");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 402);
    let headers = r.headers().clone();
    let reply = Reply {
        status: StatusCode::PAYMENT_REQUIRED,
        headers,
        body: r.bytes().await.unwrap(),
    };
    let auth = pay(&env.payer, &reply).await;
    let r = http
        .get(&url)
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.abort();
}

#[tokio::test]
async fn capabilities_are_enforced_per_route() {
    let net = pay402_backends::simnet::SimNet::new(Network::Regtest);
    let merchant = net.add_node("m", Msat(0));
    let payer = net.add_node("p", Msat(1_000_000_000));
    let layer = L402Layer::new(
        L402Config::new("api").capabilities(["read"]),
        Arc::new(merchant),
        Arc::new(MemoryStore::new()),
    );
    let app = axum::Router::new()
        .route(
            "/read",
            axum::routing::get(|| async { "r" })
                .route_layer(layer.with_price(Price::sats(1)).with_capability("read")),
        )
        .route(
            "/write",
            axum::routing::get(|| async { "w" })
                .route_layer(layer.with_price(Price::sats(1)).with_capability("write")),
        );
    let r = send(&app, get_req("/read", &[])).await;
    let auth = pay(&payer, &r).await;
    assert_eq!(
        send(&app, get_req("/read", &[&auth])).await.status,
        StatusCode::OK
    );
    let w = send(&app, get_req("/write", &[&auth])).await;
    assert_eq!(w.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(w.reason(), "capability_denied");
}

/// `tenant=<id>`: the request must carry `X-Tenant: <id>`.
struct TenantSatisfier;

impl pay402_core::l402::Satisfier for TenantSatisfier {
    fn handles(&self, condition: &str, _: &pay402_core::l402::VerifyContext<'_>) -> bool {
        condition == "tenant"
    }
    fn satisfy_previous(
        &self,
        prev: &pay402_core::l402::Caveat<'_>,
        cur: &pay402_core::l402::Caveat<'_>,
        _: &pay402_core::l402::VerifyContext<'_>,
    ) -> Result<(), pay402_core::l402::CaveatError> {
        if prev.value == cur.value {
            Ok(())
        } else {
            Err(pay402_core::l402::CaveatError::Escalation("tenant".into()))
        }
    }
    fn satisfy_final(
        &self,
        cav: &pay402_core::l402::Caveat<'_>,
        ctx: &pay402_core::l402::VerifyContext<'_>,
    ) -> Result<(), pay402_core::l402::CaveatError> {
        let sent = ctx
            .request
            .and_then(|r| r.headers.get("x-tenant"))
            .and_then(|v| v.to_str().ok());
        if sent == Some(cav.value) {
            Ok(())
        } else {
            Err(pay402_core::l402::CaveatError::Failed {
                condition: "tenant".into(),
                detail: "wrong tenant".into(),
            })
        }
    }
}

#[tokio::test]
async fn user_satisfiers_see_the_request() {
    let env = env(L402Config::new("api")
        .caveat("tenant=acme")
        .satisfier(TenantSatisfier));
    let auth = buy(&env, "/paid").await;
    let with_tenant = |tenant: &str| {
        Request::get("/paid")
            .header(header::AUTHORIZATION, &auth)
            .header("x-tenant", tenant)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&env.app, with_tenant("acme")).await.status,
        StatusCode::OK
    );
    let r = send(&env.app, with_tenant("evil")).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(r.reason(), "caveat_not_satisfied");
    let r = send(&env.app, get_req("/paid", &[&auth])).await;
    assert_eq!(r.reason(), "caveat_not_satisfied");
}
