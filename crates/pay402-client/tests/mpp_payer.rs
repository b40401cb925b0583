//! The `Payer` paying MPP `lightning`/`charge` end to end on simnet (real
//! BOLT11 invoices, real preimages) against a small server built directly
//! from `pay402_core::mpp`: one payment per purchase, every challenge
//! parameter echoed, the receipt parsed, and the hostile cases — an
//! understated declared amount, an expired challenge, a 500 after payment —
//! never paid (or never paid twice).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pay402_backends::simnet::{SimNet, SimNode};
use pay402_client::journal::{EntryState, Journal, Query};
use pay402_client::mpp::{MppClient, MppError};
use pay402_client::{Payer, PayerError, RailReceipt};
use pay402_core::lightning::{InvoiceIssuer, InvoiceRequest, Network};
use pay402_core::money::{Msat, Sat};
use pay402_core::mpp::methods::lightning;
use pay402_core::mpp::{
    Challenge, ChallengeKey, ChallengeKeys, Credential, credential, jcs, rfc3339,
};
use pay402_core::offer::Rail;
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;

const PRICE_SAT: u64 = 100;
const REALM: &str = "127.0.0.1";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// An honest charge.
    Honest,
    /// Declares `amount: "1"` for a 100-sat invoice.
    Understated,
    /// `expires` one minute in the past.
    Expired,
    /// Answers the first paid request 500 (after consuming the challenge),
    /// later presentations of the same credential 200.
    FailOnce,
    /// An honest charge, after an L402 challenge for its own invoice (in
    /// Aperture's order), one 402.
    WithL402,
    /// An honest charge whose challenge names `header="Payment-Authorization"`.
    HeaderField,
}

#[derive(Clone)]
struct Server {
    keys: Arc<ChallengeKeys>,
    merchant: SimNode,
    consumed: Arc<Mutex<HashSet<String>>>,
    accept_payment: Arc<Mutex<Vec<String>>>,
    credentials: Arc<Mutex<Vec<String>>>,
}

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

impl Server {
    async fn challenge(&self, mode: Mode) -> Challenge<'static> {
        let created = self
            .merchant
            .create_invoice(&InvoiceRequest::new(Msat(PRICE_SAT * 1000), "mpp test"))
            .await
            .expect("invoice");
        match mode {
            Mode::Honest | Mode::FailOnce | Mode::WithL402 | Mode::HeaderField => {
                lightning::issue_charge(
                    &self.keys,
                    &lightning::ChargeOffer {
                        description: Some("a report"),
                        opaque: Some("eyJvcmRlciI6IjQyIn0"),
                        header: (mode == Mode::HeaderField).then_some("Payment-Authorization"),
                        ..lightning::ChargeOffer::new(REALM, &created.bolt11)
                    },
                    now(),
                )
                .expect("issue")
            }
            Mode::Understated | Mode::Expired => {
                let amount = if mode == Mode::Understated {
                    "1"
                } else {
                    "100"
                };
                let request = jcs::encode_param(&serde_json::json!({
                    "amount": amount,
                    "currency": "sat",
                    "methodDetails": {
                        "invoice": created.bolt11,
                        "network": "regtest",
                        "paymentHash": created.payment_hash.to_string(),
                    },
                }))
                .unwrap();
                let mut c = Challenge::new("", REALM, "lightning", "charge", request);
                let expires = if mode == Mode::Expired {
                    UnixTime(now().0 - 60)
                } else {
                    now().saturating_add_secs(300)
                };
                c.expires = Some(rfc3339::format(expires).into());
                let mut c = c.into_owned();
                self.keys.bind(&mut c);
                c
            }
        }
    }

    /// A well-formed L402 challenge for a fresh invoice of the same price.
    async fn l402_challenge(&self) -> String {
        use pay402_core::l402::{Identifier, Macaroon, RootKey, Scheme, TokenId};
        let created = self
            .merchant
            .create_invoice(&InvoiceRequest::new(Msat(PRICE_SAT * 1000), "l402 twin"))
            .await
            .expect("invoice");
        let id = Identifier::new(created.payment_hash, TokenId([1; 32]));
        let mac = Macaroon::new(&RootKey::from_bytes([9; 32]), Some("lsat"), &id.encode());
        pay402_core::l402::Challenge::new(mac.to_base64(), created.bolt11)
            .to_header_value(Scheme::L402)
    }

    async fn handle(&self, mode: Mode, headers: &HeaderMap) -> Response {
        if let Some(v) = headers.get("accept-payment") {
            self.accept_payment
                .lock()
                .unwrap()
                .push(v.to_str().unwrap_or_default().to_owned());
        }
        let field = if mode == Mode::HeaderField {
            "payment-authorization"
        } else {
            "authorization"
        };
        let values = headers.get_all(field).iter().map(HeaderValue::as_bytes);
        match credential::find_token(values) {
            Ok(Some(token)) => {
                self.credentials.lock().unwrap().push(token.to_owned());
                let mut buf = Vec::new();
                let Ok(cred) = Credential::decode(token, &mut buf) else {
                    return StatusCode::BAD_REQUEST.into_response();
                };
                let meta =
                    std::collections::BTreeMap::from([("order".to_owned(), "42".to_owned())]);
                let mut verifier =
                    lightning::ChargeVerifier::new(&self.keys, REALM, PRICE_SAT, Network::Regtest);
                verifier.route.meta = Some(&meta);
                let paid = match verifier.verify(&cred, now()) {
                    Ok(p) => p,
                    Err(e) => return (StatusCode::PAYMENT_REQUIRED, e.to_string()).into_response(),
                };
                let first = self
                    .consumed
                    .lock()
                    .unwrap()
                    .insert(paid.challenge_id.clone());
                if mode == Mode::FailOnce && first {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "backend down").into_response();
                }
                if !first && mode != Mode::FailOnce {
                    return (StatusCode::FORBIDDEN, "replayed").into_response();
                }
                let receipt = paid.receipt(now()).encode();
                (
                    [
                        ("payment-receipt", receipt),
                        ("cache-control", "private".to_owned()),
                    ],
                    "the report",
                )
                    .into_response()
            }
            Ok(None) => {
                let c = self.challenge(mode).await;
                let mut response = (
                    StatusCode::PAYMENT_REQUIRED,
                    [
                        (header::WWW_AUTHENTICATE, c.to_header_value().unwrap()),
                        (header::CACHE_CONTROL, "no-store".to_owned()),
                        (header::CONTENT_TYPE, "application/problem+json".to_owned()),
                    ],
                    pay402_core::mpp::MppProblem::payment_required().to_json(),
                )
                    .into_response();
                if mode == Mode::WithL402 {
                    let l402 = self.l402_challenge().await;
                    let lines = response.headers_mut();
                    let mpp = lines.remove(header::WWW_AUTHENTICATE).unwrap();
                    lines.append(header::WWW_AUTHENTICATE, l402.parse().unwrap());
                    lines.append(header::WWW_AUTHENTICATE, mpp);
                }
                response
            }
            Err(_) => StatusCode::BAD_REQUEST.into_response(),
        }
    }
}

struct World {
    _net: SimNet,
    merchant: SimNode,
    payer: SimNode,
    server: Server,
    base: String,
}

async fn world() -> World {
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let payer = net.add_node("payer", Msat(10_000_000));
    let server = Server {
        keys: Arc::new(ChallengeKeys::new(ChallengeKey::new(&[7; 32]).unwrap())),
        merchant: merchant.clone(),
        consumed: Arc::default(),
        accept_payment: Arc::default(),
        credentials: Arc::default(),
    };
    let route = |mode: Mode| {
        get(move |State(s): State<Server>, h: HeaderMap| async move { s.handle(mode, &h).await })
    };
    let app = Router::new()
        .route("/paid", route(Mode::Honest))
        .route("/understated", route(Mode::Understated))
        .route("/expired", route(Mode::Expired))
        .route("/fail-once", route(Mode::FailOnce))
        .route("/with-l402", route(Mode::WithL402))
        .route("/header-field", route(Mode::HeaderField))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    World {
        _net: net,
        merchant,
        payer,
        server,
        base,
    }
}

async fn payer(w: &World, journal: Journal) -> Payer {
    Payer::builder()
        .mpp(MppClient::builder().lightning(Arc::new(w.payer.clone()), Network::Regtest))
        .journal(journal)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn pays_a_lightning_charge_once_and_reads_the_receipt() {
    let w = world().await;
    let payer = payer(&w, Journal::memory()).await;
    assert_eq!(payer.rails(), vec![Rail::Mpp]);

    let paid = payer.get(format!("{}/paid", w.base)).await.unwrap();
    assert_eq!(paid.status(), 200);
    let receipt = paid.receipt.clone().expect("receipt");
    assert_eq!(receipt.rail, Rail::Mpp);
    // Budgeted on the invoice's own amount.
    assert_eq!(receipt.amount, Amount::Msat(Msat(PRICE_SAT * 1000)));
    assert_eq!(receipt.cost, Some(Amount::Sat(Sat(PRICE_SAT))));
    let Some(RailReceipt::Mpp(mpp)) = &receipt.rail_receipt else {
        panic!("no MPP receipt: {:?}", receipt.rail_receipt);
    };
    let server_receipt = mpp.receipt.as_ref().expect("Payment-Receipt parsed");
    assert_eq!(server_receipt.method, "lightning");
    assert_eq!(server_receipt.status, "success");
    assert_eq!(server_receipt.reference, receipt.proof_id);
    assert_eq!(
        server_receipt.challenge_id.as_deref(),
        Some(mpp.challenge_id.as_str())
    );
    assert_eq!(mpp.kind, "lightning/charge");
    assert_eq!(paid.text().await.unwrap(), "the report");
    assert_eq!(w.payer.payments_sent(), 1);
    assert_eq!(w.merchant.balance(), Msat(PRICE_SAT * 1000));

    // Accept-Payment advertised; every challenge parameter echoed.
    assert_eq!(
        w.server
            .accept_payment
            .lock()
            .unwrap()
            .first()
            .map(String::as_str),
        Some("lightning/charge")
    );
    let token = w.server.credentials.lock().unwrap()[0].clone();
    let mut buf = Vec::new();
    let cred = Credential::decode(&token, &mut buf).unwrap();
    assert_eq!(cred.challenge.description.as_deref(), Some("a report"));
    assert_eq!(
        cred.challenge.opaque.as_deref(),
        Some("eyJvcmRlciI6IjQyIn0")
    );
    assert!(cred.challenge.expires.is_some());

    // Charge credentials are never cached: the next request pays again.
    let again = payer.get(format!("{}/paid", w.base)).await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(!again.reused_credential);
    assert_eq!(w.payer.payments_sent(), 2);

    let entries = payer.journal().payments(&Query::default()).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| e.rail == Rail::Mpp && e.state == EntryState::Served)
    );
    assert!(
        entries
            .iter()
            .all(|e| e.proof.as_deref().is_some_and(|p| p.contains("Payment ")))
    );
}

#[tokio::test]
async fn an_understated_declared_amount_is_refused_and_nothing_is_paid() {
    let w = world().await;
    let payer = payer(&w, Journal::memory()).await;
    let err = payer
        .get(format!("{}/understated", w.base))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "no_payable_offer");
    assert!(!err.may_have_paid());
    let refused = err.refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].rail, Some(Rail::Mpp));
    assert_eq!(refused[0].reason.reason(), "invoice_amount_mismatch");
    // The offer was priced on the invoice (100 sat), not the declared 1 sat.
    assert_eq!(
        refused[0].amount,
        Some(Amount::Msat(Msat(PRICE_SAT * 1000)))
    );
    assert_eq!(w.payer.payments_sent(), 0);
    assert!(w.server.credentials.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_challenge_is_refused_before_paying() {
    let w = world().await;
    let payer = payer(&w, Journal::memory()).await;
    let err = payer.get(format!("{}/expired", w.base)).await.unwrap_err();
    assert_eq!(err.reason(), "no_payable_offer");
    assert_eq!(err.refusals()[0].reason.reason(), "challenge_expired");
    assert_eq!(w.payer.payments_sent(), 0);
    assert!(w.server.credentials.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_500_after_payment_is_outcome_unknown_and_never_paid_twice() {
    let w = world().await;
    let journal = Journal::memory();
    let payer = payer(&w, journal.clone()).await;
    let url = format!("{}/fail-once", w.base);

    let err = payer.get(&url).await.unwrap_err();
    let PayerError::Mpp { source, entry, .. } = &err else {
        panic!("expected an MPP error, got {err:?}");
    };
    assert!(matches!(**source, MppError::OutcomeUnknown { status: 500 }));
    assert_eq!(err.reason(), "payment_outcome_unknown");
    assert!(err.may_have_paid());
    assert_eq!(w.payer.payments_sent(), 1);
    let record = journal.store().get(entry).await.unwrap().unwrap();
    assert_eq!(record.state, EntryState::Presented);
    assert_eq!(record.status, Some(500));
    assert_eq!(record.detail.as_deref(), Some("payment_outcome_unknown"));

    // The same request, even from a restarted payer: the same credential
    // again, never a second payment.
    drop(payer);
    let restarted = self::payer(&w, journal.clone()).await;
    let paid = restarted.get(&url).await.unwrap();
    assert_eq!(paid.status(), 200);
    let receipt = paid.receipt.expect("receipt");
    assert!(receipt.resumed);
    assert_eq!(&receipt.entry, entry);
    assert_eq!(w.payer.payments_sent(), 1);
    let sent = w.server.credentials.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0], sent[1],
        "the stored credential is presented byte for byte"
    );
    let record = journal.store().get(entry).await.unwrap().unwrap();
    assert_eq!(record.state, EntryState::Served);
}

#[tokio::test]
async fn a_method_weighed_zero_in_accept_payment_is_never_paid() {
    let w = world().await;
    let payer = Payer::builder()
        .mpp(
            MppClient::builder()
                .lightning(Arc::new(w.payer.clone()), Network::Regtest)
                .prefer("lightning", "charge", 0)
                .prefer("evm", "charge", 500),
        )
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    let err = payer.get(format!("{}/paid", w.base)).await.unwrap_err();
    assert_eq!(
        err.refusals()[0].reason.reason(),
        "payment_method_not_accepted"
    );
    assert_eq!(w.payer.payments_sent(), 0);
    assert_eq!(
        w.server
            .accept_payment
            .lock()
            .unwrap()
            .first()
            .map(String::as_str),
        Some("lightning/charge;q=0, evm/charge;q=0.5")
    );
}

#[tokio::test]
async fn payment_challenges_are_chosen_beside_l402_by_rail_order() {
    let w = world().await;
    let payer = Payer::builder()
        .lightning(Arc::new(w.payer.clone()), Network::Regtest)
        .mpp(MppClient::builder().lightning(Arc::new(w.payer.clone()), Network::Regtest))
        .choose(pay402_client::Choice::RailOrder(vec![
            Rail::Mpp,
            Rail::L402,
        ]))
        .journal(Journal::memory())
        .build()
        .await
        .unwrap();
    assert_eq!(payer.rails(), vec![Rail::L402, Rail::Mpp]);
    let paid = payer.get(format!("{}/with-l402", w.base)).await.unwrap();
    assert_eq!(paid.status(), 200);
    let receipt = paid.receipt.expect("receipt");
    assert_eq!(receipt.rail, Rail::Mpp);
    assert_eq!(receipt.offer, "mpp lightning/charge #0");
    // One payment, through MPP; the L402 invoice was not paid.
    assert_eq!(w.payer.payments_sent(), 1);
    assert_eq!(w.merchant.balance(), Msat(PRICE_SAT * 1000));
    assert_eq!(w.server.credentials.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_credential_goes_in_the_field_the_challenge_names() {
    let w = world().await;
    let payer = payer(&w, Journal::memory()).await;
    let rb = payer
        .request(reqwest::Method::GET, format!("{}/header-field", w.base))
        .header("authorization", "Bearer app-token");
    let paid = payer.send(rb).await.unwrap();
    assert_eq!(paid.status(), 200);
    assert_eq!(w.payer.payments_sent(), 1);
    let token = w.server.credentials.lock().unwrap()[0].clone();
    let mut buf = Vec::new();
    let cred = Credential::decode(&token, &mut buf).unwrap();
    assert_eq!(
        cred.challenge.header.as_deref(),
        Some("Payment-Authorization")
    );
}
