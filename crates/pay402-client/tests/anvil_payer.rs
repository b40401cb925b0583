//! One `Payer` against one 402 offering two rails at once: L402 (a real
//! `L402Layer` on a simnet merchant) and x402 (a real `X402Layer` settling
//! through pay402's local facilitator on anvil with Circle's USDC). The
//! policy picks the rail; money moves on exactly one of them, once.

mod payer_support;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use axum::Router;
use axum::routing::get;
use pay402_backends::simnet::SimNet;
use pay402_client::journal::{EntryState, Journal, Query};
use pay402_client::x402::{LocalSigner, X402Client};
use pay402_client::{Choice, Payer, RailReceipt};
use pay402_core::lightning::Network;
use pay402_core::money::Msat;
use pay402_core::offer::Rail;
use pay402_core::problem::Reason;
use pay402_core::rates::{Amount, FixedRates, TokenUnit, Unit};
use pay402_core::x402::TokenAmount;
use pay402_core::x402::evm::EvmAddress;
use pay402_server::x402::X402Payment;
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS};
use payer_support::{NETWORK, l402_app, serve_merged, usdc_route, x402_layer};

/// L402: 100 sat = 10 US cents at 100 000 USD per BTC.
const L402_SAT: u64 = 100;
/// x402 on `/paid`: 1 US cent; on `/other`: 20 US cents.
const CHEAP: u64 = 10_000;
const DEAR: u64 = 200_000;

async fn x402_app(chain: &Anvil, usdc: Address, payee: Address) -> Router {
    let layer = x402_layer(chain, usdc).await;
    Router::new()
        .route(
            "/paid",
            get(|p: X402Payment| async move { format!("x402 from {}", p.payer) })
                .route_layer(layer.with_route(usdc_route(usdc, payee, CHEAP))),
        )
        .route(
            "/other",
            get(|| async { "other via x402" })
                .route_layer(layer.with_route(usdc_route(usdc, payee, DEAR))),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_402_two_rails_paid_by_policy_once() {
    let chain = Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let node = net.add_node("payer", Msat(10_000_000));
    let signer = Arc::new(LocalSigner::random());
    usdc.mint(signer.address().0, U256::from(1_000_000u64))
        .expect("mint");
    let payee = DEV_ACCOUNTS[2].address;
    let server = serve_merged(
        Some(l402_app(&merchant, L402_SAT)),
        Some(x402_app(&chain, usdc.address, payee).await),
    )
    .await;
    let token = TokenUnit::new(NETWORK, usdc.address.to_string(), 6);
    let payer = |choice: Choice| {
        Payer::builder()
            .lightning(Arc::new(node.clone()), Network::Regtest)
            .x402(
                X402Client::builder(signer.clone())
                    .allow_asset(
                        NETWORK,
                        EvmAddress(usdc.address),
                        TokenAmount::from_u64(DEAR),
                    )
                    .max_resends(8)
                    .resend_delay(Duration::from_millis(200)),
            )
            .token(token.clone())
            .rates(
                FixedRates::new()
                    .usd_cents_per_btc(10_000_000)
                    .usd_stablecoin(token.clone()),
            )
            .reference_unit(Unit::UsdCents)
            .choose(choice)
            .journal(Journal::memory())
    };
    let payee_before = usdc.balance_of(payee).unwrap();

    // Cheapest: x402 at 1 cent beats L402 at 10 cents.
    let cheapest = payer(Choice::Cheapest).build().await.unwrap();
    let paid = cheapest.get(server.url("/paid")).await.expect("paid");
    assert_eq!(paid.status(), 200);
    let r = paid.receipt.clone().expect("receipt");
    assert_eq!(r.rail, Rail::X402);
    assert_eq!(r.cost, Some(Amount::UsdCents(1)));
    let tx = r.settlement.clone().expect("settlement transaction");
    assert_eq!(chain.wait_for_receipt(&tx).expect("mined").status, 1);
    match &r.rail_receipt {
        Some(RailReceipt::X402(x)) => assert_eq!(x.payment.amount, TokenAmount::from_u64(CHEAP)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        paid.text().await.unwrap(),
        format!("x402 from {}", signer.address())
    );
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(CHEAP)
    );
    assert_eq!(node.payments_sent(), 0);
    let e = &cheapest
        .journal()
        .payments(&Query::default())
        .await
        .unwrap()[0];
    assert_eq!((e.state, e.rail), (EntryState::Served, Rail::X402));
    assert_eq!(e.detail.as_deref(), Some(tx.as_str()));
    assert_eq!(e.cost.as_deref(), Some("1 US cents"));

    // Cheapest where x402 is dearer (20 cents): L402 at 10 cents.
    let paid = cheapest.get(server.url("/other")).await.expect("paid");
    assert_eq!(paid.receipt.as_ref().unwrap().rail, Rail::L402);
    assert_eq!(node.payments_sent(), 1);

    // An explicit rail order: L402 first, even where x402 is cheaper.
    let ordered = payer(Choice::RailOrder(vec![Rail::L402, Rail::X402]))
        .build()
        .await
        .unwrap();
    let paid = ordered.get(server.url("/paid")).await.expect("paid");
    assert_eq!(paid.receipt.as_ref().unwrap().rail, Rail::L402);
    assert_eq!(
        paid.receipt.as_ref().unwrap().cost,
        Some(Amount::UsdCents(10))
    );
    assert_eq!(node.payments_sent(), 2);

    // A user closure: whatever is not Lightning.
    let mine = payer(Choice::custom(|c| {
        c.iter().position(|c| c.offer.rail != Rail::L402)
    }))
    .build()
    .await
    .unwrap();
    let paid = mine.get(server.url("/other")).await.expect("paid");
    assert_eq!(paid.receipt.as_ref().unwrap().rail, Rail::X402);
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(CHEAP + DEAR)
    );

    // A per-request maximum of 5 cents refuses both rails, with reasons;
    // nothing moves.
    let capped = payer(Choice::Cheapest)
        .max_price(Amount::UsdCents(5))
        .build()
        .await
        .unwrap();
    let e = capped.get(server.url("/other")).await.unwrap_err();
    let mut reasons: Vec<(Option<Rail>, &str)> = e
        .refusals()
        .iter()
        .map(|r| (r.rail, r.reason.reason()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            (Some(Rail::L402), "price_above_max"),
            (Some(Rail::X402), "price_above_max"),
            // The layer's body repeats its offer in v1: paid in v2 or not at all.
            (Some(Rail::X402), "superseded"),
        ]
    );
    // Without rates for the token, a budget cannot price the x402 offer.
    let unpriced = Payer::builder()
        .lightning(Arc::new(node.clone()), Network::Regtest)
        .x402(X402Client::builder(signer.clone()).allow_asset(
            NETWORK,
            EvmAddress(usdc.address),
            TokenAmount::from_u64(DEAR),
        ))
        .token(token.clone())
        .max_price(Amount::Sat(pay402_core::money::Sat(50)))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    let e = unpriced.get(server.url("/paid")).await.unwrap_err();
    let mut reasons: Vec<&str> = e.refusals().iter().map(|r| r.reason.reason()).collect();
    reasons.sort();
    assert_eq!(reasons, ["no_rate", "price_above_max", "superseded"]);
    // The x402 client's own allow-list: an asset it does not allow.
    let strict = Payer::builder()
        .evm_signer(signer.clone())
        .token(token.clone())
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    let e = strict.get(server.url("/paid")).await.unwrap_err();
    let mut reasons: Vec<&str> = e.refusals().iter().map(|r| r.reason.reason()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["asset_not_allowed", "rail_not_enabled", "superseded"]
    );
    assert_eq!(node.payments_sent(), 2);
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        payee_before + U256::from(CHEAP + DEAR)
    );

    // Concurrent identical requests are purchases of their own (x402 pays
    // per request): each pays once, none resumes another's entry.
    let before = usdc.balance_of(payee).unwrap();
    let concurrent = payer(Choice::RailOrder(vec![Rail::X402]))
        .build()
        .await
        .unwrap();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (p, url) = (concurrent.clone(), server.url("/paid"));
            tokio::spawn(async move { p.get(url).await.map(|r| r.status()) })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 200);
    }
    let entries = concurrent
        .journal()
        .payments(&Query::default())
        .await
        .unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e.state == EntryState::Served));
    assert_eq!(
        usdc.balance_of(payee).unwrap(),
        before + U256::from(3 * CHEAP)
    );
}

/// The x402_mock dialect through the `Payer`: an EIP-2612 permit (signed by
/// the `MockClient`, nonce read on chain) buys a Bearer token from pay402's
/// `MockPaywall`, whose worker settles `permit` + `transferFrom` on anvil;
/// the token is kept in the journal and reused, even by a restarted payer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payer_pays_x402_mock_with_a_permit() {
    use pay402_backends::x402_mock::{AlloyPermitReader, AlloyPermitSettler, SpenderKey};
    use pay402_client::x402_mock::MockClient;
    use pay402_server::x402_mock::{
        AcceptedToken, MemorySettlementStore, MockConfig, MockPaidToken, MockPaywall, MockPrice,
    };

    let chain = Anvil::start().expect("anvil must start (npm registry + glibc >= 2.35 needed)");
    let usdc = chain.deploy_usdc().expect("deploy USDC");
    let token = EvmAddress(usdc.address);
    let (payer_account, spender) = (&DEV_ACCOUNTS[3], &DEV_ACCOUNTS[1]);
    usdc.mint(payer_account.address, U256::from(1_000_000u64))
        .expect("mint");
    let settler = AlloyPermitSettler::connect(
        &chain.rpc_url(),
        SpenderKey::from_hex(&spender.private_key.to_string()).unwrap(),
    )
    .await
    .unwrap()
    .with_poll_interval(Duration::from_millis(50));
    let reader = Arc::new(AlloyPermitReader::connect(&chain.rpc_url()).await.unwrap());
    let paywall = MockPaywall::new(
        MockConfig::new(zeroize::Zeroizing::new(vec![0x42; 32]))
            .accept(AcceptedToken::usdc(token, 31_337, "anvil")),
        Arc::new(settler),
        Arc::new(MemorySettlementStore::new()),
    )
    .unwrap();
    let layer = paywall
        .protect(
            "/premium",
            [MockPrice::new(token, TokenAmount::from_u64(CHEAP))],
        )
        .unwrap();
    let app = Router::new()
        .route(
            "/premium",
            get(
                |MockPaidToken(c): MockPaidToken| async move { format!("premium for {}", c.payer) },
            )
            .route_layer(layer),
        )
        .merge(paywall.token_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/premium", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let _worker = paywall.spawn_worker();
    let signer = Arc::new(LocalSigner::from_hex(&payer_account.private_key.to_string()).unwrap());
    let journal = Journal::memory();
    let payer = || {
        Payer::builder()
            .x402_mock(MockClient::builder(signer.clone(), reader.clone()).accept(
                31_337,
                token,
                TokenAmount::from_u64(CHEAP),
            ))
            .journal(journal.clone())
    };
    let spender_before = usdc.balance_of(spender.address).unwrap();

    let first = payer().build().await.unwrap();
    let paid = first.get(&url).await.expect("paid");
    assert_eq!(paid.status(), 200);
    let r = paid.receipt.clone().expect("receipt");
    assert_eq!((r.rail, r.offer.as_str()), (Rail::X402Mock, "x402_mock #0"));
    assert_eq!(
        paid.text().await.unwrap(),
        format!("premium for {}", signer.address())
    );
    let again = first.get(&url).await.unwrap();
    assert!(again.reused_credential && again.receipt.is_none());
    drop(first);
    // A restarted payer finds the token in the journal.
    let restarted = payer().build().await.unwrap();
    let again = restarted.get(&url).await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(again.reused_credential && again.receipt.is_none());
    let entries = journal.payments(&Query::default()).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, EntryState::Served);
    // The worker settles the permit: the price moved once.
    payer_support::eventually("the permit settles", || {
        usdc.balance_of(spender.address).unwrap() == spender_before + U256::from(CHEAP)
    })
    .await;
}
