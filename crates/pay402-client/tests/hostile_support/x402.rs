//! A hostile x402 resource server: it offers one `exact` requirement in USDC
//! on anvil, settles every payment it receives through the real local
//! facilitator, and then misbehaves as its [`Misbehaviour`] says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pay402_backends::x402::LocalFacilitator;
use pay402_core::x402::header::{PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE};
use pay402_core::x402::{
    ExactEvmPayload, Extra, Facilitator, FacilitatorError, HeaderValue as _, PaymentPayloadV2,
    PaymentRequest, PaymentRequired, PaymentRequirements, ResourceInfo, SettleResponse,
    SupportedResponse, TokenAmount, VerifyResponse,
};
use pay402_server::x402::store::MemoryPaymentStore;
use pay402_server::x402::{X402Config, X402Layer, X402Route};
use pay402_testkit::anvil::{Anvil, DEV_ACCOUNTS, USDC_NAME, USDC_VERSION};
use serde_json::json;

use super::truncated_body;

/// anvil's CAIP-2 network.
pub const NETWORK: &str = "eip155:31337";
/// The price asked: 0.01 USDC.
pub const PRICE: u64 = 10_000;
/// What the payer is minted.
pub const START: u64 = 1_000_000;
/// `Transfer(address,address,uint256)`.
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// How the server misbehaves once it holds a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Settles, then answers 500.
    ServerErrorAfterSettling,
    /// Settles, then never answers.
    HangAfterSettling,
    /// Settles, then answers 402 with the very offer it made before payment.
    AskAgainAfterSettling,
    /// Settles (the transaction is mined), then answers 402 with a
    /// `PAYMENT-RESPONSE` saying `success: false` that names that transaction.
    FailWithMinedTransaction,
    /// Settles, then serves 200 with a settlement report for twice the amount.
    ReportOtherAmount,
    /// Does not settle: answers the payment with a 402 at twice the price.
    RaisePriceOnRetry,
    /// Settles, then drops the connection without answering.
    DropBeforeAnswering,
    /// Settles, then sends 200, its `PAYMENT-RESPONSE` and part of the body,
    /// and drops the connection.
    DropMidResponse,
}

/// The one place the tests build a facilitator (so that a change to its
/// builder, such as a required asset allow-list, is a one-line change here).
pub async fn facilitator(chain: &Anvil, usdc: Address) -> LocalFacilitator {
    LocalFacilitator::builder(chain.rpc_url())
        .signer(DEV_ACCOUNTS[1].private_key)
        .network(NETWORK)
        .allow_asset(usdc, USDC_NAME, USDC_VERSION)
        .receipt_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("build the local facilitator")
}

/// The `exact` USDC requirement at `amount`, paid to dev account 2.
pub fn offer(usdc: Address, amount: u64) -> PaymentRequirements {
    PaymentRequirements {
        scheme: "exact".into(),
        network: NETWORK.into(),
        amount: TokenAmount::from_u64(amount),
        asset: usdc.to_string(),
        pay_to: DEV_ACCOUNTS[2].address.to_string(),
        max_timeout_seconds: 60,
        extra: Some(Extra::eip712(USDC_NAME, USDC_VERSION)),
    }
}

struct Shared {
    mode: Misbehaviour,
    offer: PaymentRequirements,
    url: String,
    facilitator: Arc<dyn Facilitator>,
    received: Mutex<Vec<String>>,
    settlements: Mutex<Vec<SettleResponse>>,
}

/// A running hostile server.
pub struct HostileX402 {
    /// The paid resource's URL.
    pub url: String,
    shared: Arc<Shared>,
}

impl HostileX402 {
    /// Starts the server on a free loopback port.
    pub async fn start(
        facilitator: Arc<dyn Facilitator>,
        offer: PaymentRequirements,
        mode: Misbehaviour,
    ) -> HostileX402 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/paid", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            mode,
            offer,
            url: url.clone(),
            facilitator,
            received: Mutex::new(Vec::new()),
            settlements: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/paid", get(paid))
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HostileX402 { url, shared }
    }

    /// Every `PAYMENT-SIGNATURE` received, in order.
    pub fn received(&self) -> Vec<String> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Every answer of the facilitator's `settle`, in order.
    pub fn settlements(&self) -> Vec<SettleResponse> {
        self.shared.settlements.lock().unwrap().clone()
    }

    /// The transaction of the successful settlements: exactly one, however
    /// many times the facilitator answered `settle` for the payment.
    pub fn settled_transaction(&self) -> String {
        let mut settled: Vec<String> = self
            .settlements()
            .into_iter()
            .filter(|s| s.success)
            .map(|s| s.transaction.expect("a transaction hash"))
            .collect();
        settled.dedup();
        assert_eq!(
            settled.len(),
            1,
            "exactly one settlement transaction: {settled:?}"
        );
        settled.remove(0)
    }
}

fn challenge(url: &str, offer: &PaymentRequirements) -> Response {
    let required = PaymentRequired::new(ResourceInfo::new(url), vec![offer.clone()]);
    let mut response = (StatusCode::PAYMENT_REQUIRED, "{}").into_response();
    let h = response.headers_mut();
    h.insert(
        PAYMENT_REQUIRED,
        HeaderValue::from_str(&required.encode_header()).unwrap(),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn with_settlement(mut response: Response, settlement: &SettleResponse) -> Response {
    response.headers_mut().insert(
        PAYMENT_RESPONSE,
        HeaderValue::from_str(&settlement.encode_header()).unwrap(),
    );
    response
}

async fn paid(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(value) = headers.get(PAYMENT_SIGNATURE) else {
        return challenge(&s.url, &s.offer);
    };
    let value = value.to_str().unwrap().to_owned();
    s.received.lock().unwrap().push(value.clone());
    if s.mode == Misbehaviour::RaisePriceOnRetry {
        let mut dearer = s.offer.clone();
        dearer.amount = TokenAmount::from_u64(2 * PRICE);
        return challenge(&s.url, &dearer);
    }
    let payload = PaymentPayloadV2::decode_header(&value).expect("a v2 payment");
    let request = PaymentRequest::v2(payload, s.offer.clone());
    let settlement = match s.facilitator.settle(&request).await {
        Ok(settlement) => settlement,
        Err(e) => SettleResponse::failure(&format!("facilitator error: {e}"), NETWORK),
    };
    s.settlements.lock().unwrap().push(settlement.clone());
    match s.mode {
        Misbehaviour::ServerErrorAfterSettling => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": "internal"}).to_string(),
        )
            .into_response(),
        Misbehaviour::HangAfterSettling => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Misbehaviour::AskAgainAfterSettling => challenge(&s.url, &s.offer),
        Misbehaviour::FailWithMinedTransaction => {
            let lie = SettleResponse {
                success: false,
                error_reason: Some("unexpected_settle_error".into()),
                error_message: Some("settlement failed".into()),
                transaction: settlement.transaction.clone(),
                network: NETWORK.into(),
                payer: settlement.payer.clone(),
                ..SettleResponse::default()
            };
            with_settlement(challenge(&s.url, &s.offer), &lie)
        }
        Misbehaviour::ReportOtherAmount => {
            let mut lie = settlement.clone();
            lie.amount = Some(TokenAmount::from_u64(2 * PRICE));
            with_settlement((StatusCode::OK, "paid content").into_response(), &lie)
        }
        Misbehaviour::RaisePriceOnRetry => unreachable!("answered above"),
        Misbehaviour::DropBeforeAnswering => Response::new(truncated_body(None)),
        Misbehaviour::DropMidResponse => with_settlement(
            Response::new(truncated_body(Some("paid cont"))),
            &settlement,
        ),
    }
}

/// How many USDC `Transfer` events the chain holds from `payer`.
pub fn transfers_from(chain: &Anvil, usdc: Address, payer: Address) -> usize {
    let from = B256::left_padding_from(payer.as_slice());
    let logs = chain
        .rpc(
            "eth_getLogs",
            json!([{
                "address": usdc.to_string(),
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [TRANSFER_TOPIC, from.to_string()],
            }]),
        )
        .expect("eth_getLogs");
    logs.as_array().expect("a list of logs").len()
}

/// How a hostile facilitator misbehaves once it has settled a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FacilitatorMisbehaviour {
    /// Settles, then answers as if it had failed with a 500.
    ErrorAfterSettling,
    /// Settles, then never answers.
    HangAfterSettling,
    /// Settles (the transaction is mined), then answers `success: false`
    /// naming that transaction.
    FailWithMinedTransaction,
}

/// A facilitator that settles through the real local facilitator and then
/// misbehaves; it sits behind pay402's honest x402 layer.
pub struct HostileFacilitator {
    inner: Arc<LocalFacilitator>,
    mode: FacilitatorMisbehaviour,
    settled: Mutex<Vec<(ExactEvmPayload, SettleResponse)>>,
}

impl HostileFacilitator {
    /// Wraps `inner`.
    pub fn new(inner: LocalFacilitator, mode: FacilitatorMisbehaviour) -> HostileFacilitator {
        HostileFacilitator {
            inner: Arc::new(inner),
            mode,
            settled: Mutex::new(Vec::new()),
        }
    }

    /// Every payload `settle` was asked for, with the real facilitator's
    /// answer, in order.
    pub fn settled(&self) -> Vec<(ExactEvmPayload, SettleResponse)> {
        self.settled.lock().unwrap().clone()
    }
}

#[async_trait]
impl Facilitator for HostileFacilitator {
    async fn verify(&self, request: &PaymentRequest) -> Result<VerifyResponse, FacilitatorError> {
        self.inner.verify(request).await
    }

    async fn settle(&self, request: &PaymentRequest) -> Result<SettleResponse, FacilitatorError> {
        let settlement = self.inner.settle(request).await?;
        self.settled
            .lock()
            .unwrap()
            .push((request.exact_payload().clone(), settlement.clone()));
        match self.mode {
            FacilitatorMisbehaviour::ErrorAfterSettling => Err(FacilitatorError::Unavailable(
                "HTTP 500 Internal Server Error".into(),
            )),
            FacilitatorMisbehaviour::HangAfterSettling => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(settlement)
            }
            FacilitatorMisbehaviour::FailWithMinedTransaction => Ok(SettleResponse {
                success: false,
                error_reason: Some("unexpected_settle_error".into()),
                error_message: Some("settlement failed".into()),
                transaction: settlement.transaction.clone(),
                network: settlement.network.clone(),
                payer: settlement.payer.clone(),
                ..SettleResponse::default()
            }),
        }
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.inner.supported().await
    }
}

/// pay402's own x402 layer (settling after the handler, giving up on the
/// facilitator after `settle_timeout`) in front of `facilitator`, selling
/// `/paid` for [`PRICE`]; returns the resource's URL.
pub async fn honest_server(
    facilitator: Arc<dyn Facilitator>,
    usdc: Address,
    settle_timeout: Duration,
) -> String {
    let paywall = X402Layer::new(
        X402Config::new()
            .retry_after(Duration::from_secs(1))
            .settle_timeout(settle_timeout),
        facilitator,
        Arc::new(MemoryPaymentStore::new()),
    );
    let route = X402Route::new([offer(usdc, PRICE)]).expect("offer");
    let app = Router::new().route(
        "/paid",
        get(|| async { "paid content" }).route_layer(paywall.with_route(route)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
