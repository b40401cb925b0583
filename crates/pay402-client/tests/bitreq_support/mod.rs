//! An in-test BitRequests merchant (axum on 127.0.0.1) that verifies every
//! proof with `pay402_core::bitreq`: on-chain transactions (broadcast through
//! a chain backend when it has one), bit-transfers (signature, payee, amount,
//! replay) and payment channels (the five REST endpoints on core's
//! `ServerChannel`, the deposit's confirmations read from the chain).
//! It records what it saw, so tests can assert what the client sent.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network, ScriptBuf, Transaction, Txid};
use pay402_core::bitreq::onchain::{OnChainPolicy, decode_tx_hex, verify_payment_tx};
use pay402_core::bitreq::rest::{
    ChannelInfo, ChannelStatus, CloseRequest, CloseResponse, OpenRequest, OpenResponse,
    PaymentRequest, PaymentResponse, decode_request, error_body,
};
use pay402_core::bitreq::state::{ChannelError, ServerChannel};
use pay402_core::bitreq::transfer::VerifiedTransfer;
use pay402_core::bitreq::{
    AmountRule, BitreqError, ChannelParams, PaymentInfo, Proof, RedeemScript,
    channel::verify_deposit, transfer,
};
use pay402_core::chain::BitcoinChain;
use pay402_core::money::Sat;
use pay402_core::problem::{PROBLEM_JSON, Reason};
use pay402_core::time::UnixTime;

/// How the merchant is set up.
#[derive(Clone)]
pub struct MerchantConfig {
    pub network: Network,
    pub price: Sat,
    pub username: String,
    /// Which methods the 402 advertises.
    pub onchain: bool,
    pub transfer: bool,
    pub channel: bool,
    pub channel_fee: Sat,
    pub min_output: Sat,
    pub min_duration_secs: u64,
    pub zeroconf: bool,
}

impl MerchantConfig {
    pub fn new(network: Network, price: Sat) -> MerchantConfig {
        MerchantConfig {
            network,
            price,
            username: "merchant".into(),
            onchain: true,
            transfer: true,
            channel: true,
            channel_fee: Sat(10_000),
            min_output: Sat(3_000),
            min_duration_secs: 3_600,
            zeroconf: false,
        }
    }
}

/// What the merchant accepted.
#[derive(Clone, Debug)]
pub enum Seen {
    OnChain { txid: Txid, tx: Transaction },
    Transfer(VerifiedTransfer),
    Channel { token: Txid, credited: Sat },
}

#[derive(Default)]
struct Books {
    channels: HashMap<Txid, ServerChannel>,
    onchain: HashSet<Txid>,
    transfers: HashSet<[u8; 32]>,
    accepted: Vec<Seen>,
    closes: Vec<Transaction>,
}

pub struct Merchant {
    pub config: MerchantConfig,
    pub key: SecretKey,
    pub chain: Option<Arc<dyn BitcoinChain>>,
    pub base: String,
    /// Requests to /resource.
    pub requests: AtomicUsize,
    /// Requests to /resource that carried a proof header of any kind.
    pub proofs: AtomicUsize,
    books: Mutex<Books>,
}

pub struct MerchantServer {
    pub merchant: Arc<Merchant>,
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MerchantServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

impl Merchant {
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key(&Secp256k1::new())
    }

    /// The merchant's P2WPKH payout address.
    pub fn address(&self) -> Address {
        Address::p2wpkh(&CompressedPublicKey(self.public_key()), self.config.network)
    }

    pub fn script(&self) -> ScriptBuf {
        self.address().script_pubkey()
    }

    pub fn resource_url(&self) -> String {
        format!("{}/resource", self.base)
    }

    pub fn channel_url(&self) -> String {
        format!("{}/payment", self.base)
    }

    pub fn info(&self) -> PaymentInfo {
        let c = &self.config;
        let mut info = PaymentInfo::new(c.price);
        if c.onchain || c.transfer {
            info = info.with_bitcoin_address(self.address().to_string());
        }
        if c.transfer {
            info = info.with_username(c.username.clone());
        }
        if c.channel {
            info = info.with_channel_server(self.channel_url());
        }
        info
    }

    pub fn accepted(&self) -> Vec<Seen> {
        self.books.lock().unwrap().accepted.clone()
    }

    pub fn closes(&self) -> Vec<Transaction> {
        self.books.lock().unwrap().closes.clone()
    }

    pub fn channel_amount(&self, deposit: &Txid) -> Option<Sat> {
        self.books
            .lock()
            .unwrap()
            .channels
            .get(deposit)
            .map(ServerChannel::last_amount)
    }
}

impl MerchantServer {
    pub async fn start(
        config: MerchantConfig,
        key: SecretKey,
        chain: Option<Arc<dyn BitcoinChain>>,
    ) -> MerchantServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let merchant = Arc::new(Merchant {
            config,
            key,
            chain,
            base: base.clone(),
            requests: AtomicUsize::new(0),
            proofs: AtomicUsize::new(0),
            books: Mutex::new(Books::default()),
        });
        let app = Router::new()
            .route("/resource", any(resource))
            .route("/payment", get(channel_info).post(channel_open))
            .route(
                "/payment/{id}",
                get(channel_status).put(channel_pay).delete(channel_close),
            )
            .with_state(Arc::clone(&merchant));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MerchantServer {
            merchant,
            base,
            task,
        }
    }
}

fn problem<E: Reason + std::fmt::Display>(err: &E) -> Response {
    let (status, body) = error_body(err);
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body.to_json(),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

fn payment_required(m: &Merchant) -> Response {
    let mut headers = HeaderMap::new();
    m.info().insert_into(&mut headers).unwrap();
    (StatusCode::PAYMENT_REQUIRED, headers, "Payment Required").into_response()
}

async fn resource(State(m): State<Arc<Merchant>>, uri: Uri, headers: HeaderMap) -> Response {
    m.requests.fetch_add(1, Ordering::SeqCst);
    let proof = match Proof::from_header_map(&headers) {
        Err(BitreqError::NoPaymentProof) => return payment_required(&m),
        Err(e) => {
            m.proofs.fetch_add(1, Ordering::SeqCst);
            return problem(&e);
        }
        Ok(p) => p,
    };
    m.proofs.fetch_add(1, Ordering::SeqCst);
    let price = m.config.price;
    match proof {
        Proof::OnChain { tx_hex, .. } => {
            let tx = match decode_tx_hex(&tx_hex) {
                Ok(tx) => tx,
                Err(e) => return problem(&e),
            };
            // With a chain: the fee rate is checked from the real prevouts.
            let mut amounts = Vec::new();
            let mut policy = OnChainPolicy::default();
            match &m.chain {
                Some(chain) => {
                    for input in &tx.input {
                        match chain.get_tx_out(&input.previous_output).await {
                            Ok(Some(out)) => amounts.push(out.value),
                            Ok(None) => return problem(&BitreqError::InputAmountsMismatch),
                            Err(e) => return problem(&e),
                        }
                    }
                }
                None => policy.min_fee_rate_sat_vb = 0,
            }
            let amounts = m.chain.as_ref().map(|_| amounts.as_slice());
            let verified = match verify_payment_tx(tx.clone(), &m.script(), price, amounts, &policy)
            {
                Ok(v) => v,
                Err(e) => return problem(&e),
            };
            if !m.books.lock().unwrap().onchain.insert(verified.txid) {
                return problem(&ChannelError::AlreadyRedeemed);
            }
            if let Some(chain) = &m.chain
                && let Err(e) = chain.broadcast(&tx).await
            {
                m.books.lock().unwrap().onchain.remove(&verified.txid);
                return problem(&e);
            }
            m.books.lock().unwrap().accepted.push(Seen::OnChain {
                txid: verified.txid,
                tx,
            });
            (StatusCode::OK, format!("paid onchain {}", uri.path())).into_response()
        }
        Proof::Transfer {
            transfer,
            authorization,
        } => {
            let v = match transfer::verify(&transfer, &authorization) {
                Ok(v) => v,
                Err(e) => return problem(&e),
            };
            let address = m.address().to_string();
            if let Err(e) = v.check_payment(
                price,
                AmountRule::Exact,
                Some(&m.config.username),
                Some(&address),
            ) {
                return problem(&e);
            }
            if !m.books.lock().unwrap().transfers.insert(v.id) {
                return problem(&ChannelError::AlreadyRedeemed);
            }
            m.books.lock().unwrap().accepted.push(Seen::Transfer(v));
            (StatusCode::OK, format!("paid transfer {}", uri.path())).into_response()
        }
        Proof::Channel { token } => {
            let mut books = m.books.lock().unwrap();
            let Some(ch) = books
                .channels
                .values_mut()
                .find(|c| c.spend(&token).is_some())
            else {
                return problem(&ChannelError::UnknownToken);
            };
            match ch.redeem(&token, price) {
                Ok(credited) => {
                    books.accepted.push(Seen::Channel { token, credited });
                    (StatusCode::OK, format!("paid channel {}", uri.path())).into_response()
                }
                Err(e) => problem(&e),
            }
        }
    }
}

async fn channel_info(State(m): State<Arc<Merchant>>) -> Response {
    axum::Json(ChannelInfo::new(&m.public_key(), m.config.zeroconf)).into_response()
}

async fn channel_open(State(m): State<Arc<Merchant>>, body: Bytes) -> Response {
    let req: OpenRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return problem(&e),
    };
    let (tx, script) = match req.decode() {
        Ok(v) => v,
        Err(e) => return problem(&e),
    };
    let checked = verify_deposit(
        &tx,
        &script,
        &m.public_key(),
        now(),
        m.config.min_duration_secs,
    )
    .and_then(|(outpoint, value)| Ok((RedeemScript::parse(&script)?, outpoint, value)));
    let (redeem, deposit, value) = match checked {
        Ok(v) => v,
        Err(e) => return problem(&e),
    };
    let params = ChannelParams {
        redeem,
        deposit,
        deposit_value: value,
        fee: m.config.channel_fee,
        min_output: m.config.min_output,
    };
    let mut ch = ServerChannel::new(params, m.config.zeroconf);
    if m.config.zeroconf {
        ch.on_deposit(0).unwrap();
    }
    let mut books = m.books.lock().unwrap();
    if books.channels.contains_key(&deposit.txid) {
        return problem(&ChannelError::ChannelExists);
    }
    books.channels.insert(deposit.txid, ch);
    axum::Json(OpenResponse {
        deposit_txid: deposit.txid.to_string(),
    })
    .into_response()
}

fn parse_id(id: &str) -> Result<Txid, ChannelError> {
    id.parse()
        .map_err(|_| ChannelError::MalformedBody("deposit_txid"))
}

async fn channel_status(State(m): State<Arc<Merchant>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return problem(&e),
    };
    let books = m.books.lock().unwrap();
    let Some(ch) = books.channels.get(&id) else {
        return problem(&ChannelError::ChannelNotFound);
    };
    axum::Json(ChannelStatus {
        status: ch.state().as_str().to_owned(),
        balance: ch.last_amount().0,
        time_left: u64::from(ch.params().redeem.expiry),
    })
    .into_response()
}

async fn channel_pay(
    State(m): State<Arc<Merchant>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return problem(&e),
    };
    let req: PaymentRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return problem(&e),
    };
    let tx = match req.decode() {
        Ok(tx) => tx,
        Err(e) => return problem(&e),
    };
    if !m.books.lock().unwrap().channels.contains_key(&id) {
        return problem(&ChannelError::ChannelNotFound);
    }
    // two1 §4.5 step 4: a confirming channel needs its deposit confirmed.
    let confirmations = match &m.chain {
        Some(chain) => match chain.get_transaction(&id).await {
            Ok(info) => info.map_or(0, |i| i.confirmations),
            Err(e) => return problem(&e),
        },
        None => 0,
    };
    let mut books = m.books.lock().unwrap();
    let Some(ch) = books.channels.get_mut(&id) else {
        return problem(&ChannelError::ChannelNotFound);
    };
    if confirmations > 0 {
        let _ = ch.on_deposit(u32::try_from(confirmations).unwrap_or(u32::MAX));
    }
    match ch.receive_payment(&tx, now()) {
        Ok(paid) => axum::Json(PaymentResponse {
            payment_txid: paid.token.to_string(),
        })
        .into_response(),
        Err(e) => problem(&e),
    }
}

async fn channel_close(
    State(m): State<Arc<Merchant>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return problem(&e),
    };
    let req: CloseRequest = match decode_request(&body) {
        Ok(r) => r,
        Err(e) => return problem(&e),
    };
    let full = {
        let mut books = m.books.lock().unwrap();
        let Some(ch) = books.channels.get_mut(&id) else {
            return problem(&ChannelError::ChannelNotFound);
        };
        match ch.close(&req.signature, &m.key) {
            Ok(full) => full,
            Err(e) => return problem(&e),
        }
    };
    if let Some(chain) = &m.chain
        && let Err(e) = chain.broadcast(&full).await
    {
        return problem(&e);
    }
    m.books.lock().unwrap().closes.push(full.clone());
    axum::Json(CloseResponse {
        payment_txid: full.compute_txid().to_string(),
    })
    .into_response()
}
