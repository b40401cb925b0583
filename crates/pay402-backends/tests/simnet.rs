//! Behaviour of the in-process simnet.
#![cfg(feature = "simnet")]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning_invoice::{
    Bolt11Invoice, Bolt11InvoiceDescriptionRef, Currency, InvoiceBuilder, PaymentSecret,
};
use pay402_backends::simnet::{FeePolicy, SimNet, SimNode};
use pay402_core::lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, LightningError, LightningPayer, Network,
    PayRequest, PaymentHash,
};
use pay402_core::money::Msat;

fn now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

fn net_with_two() -> (SimNet, SimNode, SimNode) {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000_000));
    (net, merchant, payer)
}

async fn invoice(node: &SimNode, msat: u64) -> pay402_core::lightning::CreatedInvoice {
    node.create_invoice(&InvoiceRequest::new(Msat(msat), "GET /hello"))
        .await
        .unwrap()
}

fn pay_req(bolt11: &str) -> PayRequest {
    PayRequest::new(bolt11, Msat(10_000))
}

fn failure_reason(res: Result<pay402_core::lightning::Payment, LightningError>) -> String {
    match res {
        Err(LightningError::PaymentFailed { reason }) => reason,
        other => panic!("expected PaymentFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn invoice_is_a_real_signed_bolt11() {
    let (_net, merchant, _) = net_with_two();
    let req = InvoiceRequest {
        amount: Msat(123_456),
        memo: "GET /weather".into(),
        expiry: Duration::from_secs(600),
    };
    let created = merchant.create_invoice(&req).await.unwrap();
    assert!(created.bolt11.starts_with("lnbcrt"), "{}", created.bolt11);

    // from_str verifies the signature, the field counts and the payment secret.
    let inv = Bolt11Invoice::from_str(&created.bolt11).unwrap();
    assert!(inv.check_signature().is_ok());
    assert_eq!(inv.payment_hash().to_byte_array(), created.payment_hash.0);
    assert_eq!(inv.amount_milli_satoshis(), Some(123_456));
    assert_eq!(inv.currency(), Currency::Regtest);
    assert_eq!(inv.network(), Network::Regtest);
    assert_eq!(inv.recover_payee_pub_key(), merchant.node_id());
    assert_eq!(inv.min_final_cltv_expiry_delta(), 144);
    assert_eq!(inv.expiry_time(), Duration::from_secs(600));
    assert_ne!(inv.payment_secret().0, [0u8; 32]);
    assert!(!inv.would_expire(now()));
    match inv.description() {
        Bolt11InvoiceDescriptionRef::Direct(d) => assert_eq!(d.to_string(), "GET /weather"),
        Bolt11InvoiceDescriptionRef::Hash(_) => panic!("expected a direct description"),
    }
    assert_eq!(
        merchant
            .lookup_invoice(&created.payment_hash)
            .await
            .unwrap(),
        InvoiceState::Open
    );
    assert_eq!(merchant.invoices_created(), 1);
}

#[tokio::test]
async fn invoice_prefix_follows_the_network() {
    for (network, prefix) in [
        (Network::Bitcoin, "lnbc1"),
        (Network::Testnet, "lntb1"),
        (Network::Testnet4, "lntb1"),
        (Network::Signet, "lntbs1"),
        (Network::Regtest, "lnbcrt1"),
    ] {
        let node = SimNet::new(network).add_node("n", Msat(0));
        assert_eq!(node.network(), network);
        let inv = invoice(&node, 1_000).await;
        assert!(inv.bolt11.starts_with(prefix), "{network}: {}", inv.bolt11);
        Bolt11Invoice::from_str(&inv.bolt11).unwrap();
    }
}

#[tokio::test]
async fn pay_moves_balances_exactly_and_releases_the_preimage() {
    let (net, merchant, payer) = net_with_two();
    let inv = invoice(&merchant, 100_000).await;
    let payment = payer.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();

    assert_eq!(payment.payment_hash, inv.payment_hash);
    assert!(payment.preimage.matches(&inv.payment_hash));
    assert_eq!(payment.preimage.payment_hash(), inv.payment_hash);
    assert!(!payment.preimage.is_all_zero());
    assert_eq!(payment.amount, Msat(100_000));
    assert_eq!(payment.fee, Msat(0));
    assert_eq!(merchant.balance(), Msat(100_000));
    assert_eq!(payer.balance(), Msat(10_000_000_000 - 100_000));
    assert_eq!(net.fees_collected(), Msat(0));

    match merchant.lookup_invoice(&inv.payment_hash).await.unwrap() {
        InvoiceState::Settled {
            preimage,
            amount_paid,
        } => {
            assert_eq!(preimage, payment.preimage);
            assert_eq!(amount_paid, Msat(100_000));
        }
        other => panic!("expected Settled, got {other:?}"),
    }
    assert_eq!(merchant.payments_received(), 1);
    assert_eq!(payer.payments_sent(), 1);
    assert_eq!(payer.payment(&inv.payment_hash), Some(payment));
    let info = merchant.invoice(&inv.payment_hash).unwrap();
    assert_eq!(info.paid_by, Some(payer.node_id()));
}

#[tokio::test]
async fn repaying_is_idempotent() {
    let (_net, merchant, payer) = net_with_two();
    let inv = invoice(&merchant, 5_000).await;
    let first = payer.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    let balances = (payer.balance(), merchant.balance());
    let second = payer.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    assert_eq!(first, second);
    assert_eq!((payer.balance(), merchant.balance()), balances);
    assert_eq!(payer.payments_sent(), 1);
    assert_eq!(merchant.payments_received(), 1);
}

#[tokio::test]
async fn another_payer_cannot_pay_a_paid_invoice() {
    let (net, merchant, payer) = net_with_two();
    let other = net.add_node("other", Msat(1_000_000));
    let inv = invoice(&merchant, 5_000).await;
    payer.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    let reason = failure_reason(other.pay_invoice(&pay_req(&inv.bolt11)).await);
    assert!(reason.contains("already paid"), "{reason}");
    assert_eq!(other.balance(), Msat(1_000_000));
    assert_eq!(merchant.balance(), Msat(5_000));
}

#[tokio::test]
async fn insufficient_balance_fails_without_moving_money() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let poor = net.add_node("poor", Msat(999));
    let inv = invoice(&merchant, 1_000).await;
    let reason = failure_reason(poor.pay_invoice(&pay_req(&inv.bolt11)).await);
    assert!(reason.contains("insufficient balance"), "{reason}");
    assert_eq!(poor.balance(), Msat(999));
    assert_eq!(merchant.balance(), Msat(0));
    assert_eq!(
        merchant.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    // Topping up makes the same invoice payable.
    poor.deposit(Msat(1));
    poor.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    assert_eq!(poor.balance(), Msat(0));
    assert_eq!(merchant.balance(), Msat(1_000));
}

#[tokio::test]
async fn fail_next_payments_fails_exactly_n_calls() {
    let (_net, merchant, payer) = net_with_two();
    let before = payer.balance();
    let inv = invoice(&merchant, 2_000).await;
    payer.fail_next_payments(2);
    for _ in 0..2 {
        let reason = failure_reason(payer.pay_invoice(&pay_req(&inv.bolt11)).await);
        assert!(reason.contains("simulated"), "{reason}");
    }
    assert_eq!(payer.balance(), before);
    assert_eq!(
        merchant.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    let p = payer.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    assert_eq!(p.amount, Msat(2_000));
    assert_eq!(payer.balance(), Msat(before.0 - 2_000));
}

#[tokio::test]
async fn fee_policy_and_max_fee() {
    let (net, merchant, payer) = net_with_two();
    net.set_fee(FeePolicy {
        base: Msat(1_000),
        ppm: 2_500,
    });
    // fee = 1000 + 400_000 * 2500 / 1e6 = 2000 msat
    let inv = invoice(&merchant, 400_000).await;

    let too_low = PayRequest::new(&inv.bolt11, Msat(1_999));
    let reason = failure_reason(payer.pay_invoice(&too_low).await);
    assert!(reason.starts_with("no route"), "{reason}");
    assert_eq!(payer.balance(), Msat(10_000_000_000));

    let ok = PayRequest::new(&inv.bolt11, Msat(2_000));
    let p = payer.pay_invoice(&ok).await.unwrap();
    assert_eq!(p.fee, Msat(2_000));
    assert_eq!(p.amount, Msat(400_000));
    assert_eq!(payer.balance(), Msat(10_000_000_000 - 402_000));
    assert_eq!(merchant.balance(), Msat(400_000));
    assert_eq!(net.fees_collected(), Msat(2_000));

    // The balance must cover amount + fee.
    let tight = net.add_node("tight", Msat(400_000));
    let inv2 = invoice(&merchant, 400_000).await;
    let reason = failure_reason(
        tight
            .pay_invoice(&PayRequest::new(&inv2.bolt11, Msat(10_000)))
            .await,
    );
    assert!(reason.contains("insufficient balance"), "{reason}");
    assert_eq!(tight.balance(), Msat(400_000));
}

#[tokio::test]
async fn expired_invoices_cannot_be_paid_and_look_canceled() {
    let (net, merchant, payer) = net_with_two();
    let req = InvoiceRequest {
        amount: Msat(1_000),
        memo: "short-lived".into(),
        expiry: Duration::from_secs(60),
    };
    let inv = merchant.create_invoice(&req).await.unwrap();
    net.advance_clock(Duration::from_secs(62));
    let reason = failure_reason(payer.pay_invoice(&pay_req(&inv.bolt11)).await);
    assert!(reason.contains("expired"), "{reason}");
    assert_eq!(
        merchant.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Canceled
    );
    assert_eq!(merchant.balance(), Msat(0));
}

#[tokio::test]
async fn canceled_invoices_cannot_be_paid() {
    let (_net, merchant, payer) = net_with_two();
    let inv = invoice(&merchant, 1_000).await;
    merchant.cancel_invoice(&inv.payment_hash).unwrap();
    let reason = failure_reason(payer.pay_invoice(&pay_req(&inv.bolt11)).await);
    assert!(reason.contains("canceled"), "{reason}");
    assert_eq!(
        merchant.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Canceled
    );
    // A settled invoice cannot be canceled.
    let inv2 = invoice(&merchant, 1_000).await;
    payer.pay_invoice(&pay_req(&inv2.bolt11)).await.unwrap();
    assert!(matches!(
        merchant.cancel_invoice(&inv2.payment_hash),
        Err(LightningError::Rejected { .. })
    ));
    assert_eq!(
        merchant.cancel_invoice(&PaymentHash([1; 32])),
        Err(LightningError::NotFound)
    );
}

#[tokio::test]
async fn unknown_payee_has_no_route() {
    let (_net, _merchant, payer) = net_with_two();
    // A node in a different simnet.
    let elsewhere = SimNet::new(Network::Regtest).add_node("elsewhere", Msat(0));
    let foreign = invoice(&elsewhere, 1_000).await;
    let reason = failure_reason(payer.pay_invoice(&pay_req(&foreign.bolt11)).await);
    assert!(reason.starts_with("no route"), "{reason}");

    // An invoice signed by a key no simnet node has.
    let sk = SecretKey::from_slice(&[0x11; 32]).unwrap();
    let raw = InvoiceBuilder::new(Currency::Regtest)
        .description("external".into())
        .payment_hash(sha256::Hash::from_byte_array([0x22; 32]))
        .payment_secret(PaymentSecret([0x33; 32]))
        .duration_since_epoch(now())
        .min_final_cltv_expiry_delta(144)
        .amount_milli_satoshis(1_000)
        .build_signed(|m| Secp256k1::new().sign_ecdsa_recoverable(m, &sk))
        .unwrap();
    let reason = failure_reason(payer.pay_invoice(&pay_req(&raw.to_string())).await);
    assert!(reason.starts_with("no route"), "{reason}");
    assert_eq!(payer.balance(), Msat(10_000_000_000));
}

#[tokio::test]
async fn malformed_wrong_network_amountless_and_self_payments_fail() {
    let (_net, merchant, payer) = net_with_two();
    let reason = failure_reason(payer.pay_invoice(&pay_req("lnbcrt1garbage")).await);
    assert!(reason.contains("invalid invoice"), "{reason}");

    let mainnet = SimNet::new(Network::Bitcoin).add_node("main", Msat(0));
    let inv = invoice(&mainnet, 1_000).await;
    let reason = failure_reason(payer.pay_invoice(&pay_req(&inv.bolt11)).await);
    assert!(reason.contains("bitcoin"), "{reason}");

    let sk = SecretKey::from_slice(&[0x12; 32]).unwrap();
    let amountless = InvoiceBuilder::new(Currency::Regtest)
        .description("any amount".into())
        .payment_hash(sha256::Hash::from_byte_array([0x23; 32]))
        .payment_secret(PaymentSecret([0x34; 32]))
        .duration_since_epoch(now())
        .min_final_cltv_expiry_delta(144)
        .build_signed(|m| Secp256k1::new().sign_ecdsa_recoverable(m, &sk))
        .unwrap();
    let reason = failure_reason(payer.pay_invoice(&pay_req(&amountless.to_string())).await);
    assert!(reason.contains("amountless"), "{reason}");

    let own = invoice(&merchant, 1_000).await;
    merchant.deposit(Msat(5_000));
    let reason = failure_reason(merchant.pay_invoice(&pay_req(&own.bolt11)).await);
    assert!(reason.contains("own invoice"), "{reason}");
    assert_eq!(merchant.balance(), Msat(5_000));
}

#[tokio::test]
async fn lookups_are_per_node() {
    let (net, merchant, _payer) = net_with_two();
    let other = net.add_node("other", Msat(0));
    let inv = invoice(&merchant, 1_000).await;
    assert_eq!(
        other.lookup_invoice(&inv.payment_hash).await,
        Err(LightningError::NotFound)
    );
    assert_eq!(
        merchant.lookup_invoice(&PaymentHash([7; 32])).await,
        Err(LightningError::NotFound)
    );
    assert!(other.invoice(&inv.payment_hash).is_none());
}

#[tokio::test]
async fn invalid_invoice_requests_are_rejected() {
    let (_net, merchant, _payer) = net_with_two();
    let zero = merchant
        .create_invoice(&InvoiceRequest::new(Msat(0), "free"))
        .await;
    assert!(matches!(
        zero,
        Err(LightningError::Rejected {
            backend: "simnet",
            call: "create_invoice",
            ..
        })
    ));
    let long_memo = merchant
        .create_invoice(&InvoiceRequest::new(Msat(1), "x".repeat(700)))
        .await;
    assert!(
        matches!(long_memo, Err(LightningError::Rejected { .. })),
        "{long_memo:?}"
    );
    let no_expiry = merchant
        .create_invoice(&InvoiceRequest {
            amount: Msat(1),
            memo: String::new(),
            expiry: Duration::ZERO,
        })
        .await;
    assert!(matches!(no_expiry, Err(LightningError::Rejected { .. })));
    assert_eq!(merchant.invoices_created(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pays_of_one_invoice_by_one_payer_pay_once() {
    let (_net, merchant, payer) = net_with_two();
    payer.set_latency(Duration::from_millis(50));
    let inv = invoice(&merchant, 70_000).await;
    let bolt11 = Arc::new(inv.bolt11.clone());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let payer = payer.clone();
        let bolt11 = Arc::clone(&bolt11);
        tasks.push(tokio::spawn(async move {
            payer
                .pay_invoice(&PayRequest::new(bolt11.as_str(), Msat(0)))
                .await
        }));
    }
    let mut payments = Vec::new();
    for t in tasks {
        payments.push(t.await.unwrap().unwrap());
    }
    assert!(payments.iter().all(|p| *p == payments[0]));
    assert!(payments[0].preimage.matches(&inv.payment_hash));
    assert_eq!(payer.balance(), Msat(10_000_000_000 - 70_000));
    assert_eq!(merchant.balance(), Msat(70_000));
    assert_eq!(merchant.payments_received(), 1);
    assert_eq!(payer.payments_sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_payers_race_for_one_invoice_and_one_wins() {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let inv = invoice(&merchant, 1_000).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let payer = net.add_node(format!("payer{i}"), Msat(1_000));
        let bolt11 = inv.bolt11.clone();
        tasks.push(tokio::spawn(async move {
            payer.pay_invoice(&PayRequest::new(bolt11, Msat(0))).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(LightningError::PaymentFailed { reason }) => {
                assert!(reason.contains("already paid"), "{reason}")
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(merchant.balance(), Msat(1_000));
    assert_eq!(merchant.payments_received(), 1);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_payments() {
    let (_net, merchant, payer) = net_with_two();
    payer.set_latency(Duration::from_secs(5));
    let inv = invoice(&merchant, 1_000).await;
    let start = tokio::time::Instant::now();
    payer.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn latency_beyond_the_timeout_is_unknown_then_idempotent() {
    let (_net, merchant, payer) = net_with_two();
    payer.set_latency(Duration::from_secs(120));
    let inv = invoice(&merchant, 3_000).await;
    let start = tokio::time::Instant::now();
    let res = payer.pay_invoice(&pay_req(&inv.bolt11)).await; // 60 s timeout
    assert_eq!(
        res,
        Err(LightningError::Unknown {
            payment_hash: inv.payment_hash
        })
    );
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(60) && waited < Duration::from_secs(120));
    // The stuck payment completed: paying again returns it without paying twice.
    payer.set_latency(Duration::ZERO);
    let p = payer.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    assert!(p.preimage.matches(&inv.payment_hash));
    assert_eq!(merchant.balance(), Msat(3_000));
    assert_eq!(payer.payments_sent(), 1);
}

#[tokio::test]
async fn seeded_networks_are_deterministic() {
    async fn run() -> (bitcoin::secp256k1::PublicKey, PaymentHash, [u8; 32]) {
        let net = SimNet::with_seed([42; 32]);
        let m = net.add_node("merchant", Msat(0));
        let inv = invoice(&m, 1_000).await;
        let secret = m.invoice(&inv.payment_hash).unwrap().payment_secret;
        (m.node_id(), inv.payment_hash, secret)
    }
    let a = run().await;
    let b = run().await;
    assert_eq!(a, b);
    let other = SimNet::with_seed([43; 32]).add_node("merchant", Msat(0));
    assert_ne!(other.node_id(), a.0);
    let random = SimNet::new(Network::Regtest).add_node("merchant", Msat(0));
    assert_ne!(random.node_id(), a.0);
}

#[tokio::test]
async fn works_through_the_port_traits_as_trait_objects() {
    let (_net, merchant, payer) = net_with_two();
    let issuer: Arc<dyn InvoiceIssuer> = Arc::new(merchant.clone());
    let wallet: Arc<dyn LightningPayer> = Arc::new(payer.clone());
    let inv = issuer
        .create_invoice(&InvoiceRequest::new(Msat(9_000), "dyn"))
        .await
        .unwrap();
    let p = wallet.pay_invoice(&pay_req(&inv.bolt11)).await.unwrap();
    assert!(
        issuer
            .lookup_invoice(&inv.payment_hash)
            .await
            .unwrap()
            .is_settled()
    );
    assert_eq!(p.amount, Msat(9_000));
    assert_eq!(issuer.network(), Network::Regtest);
}
