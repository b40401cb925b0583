//! [`ChannelClient`]: the customer side of two1's payment channels (v2):
//! open (deposit + refund), pay through the five REST endpoints, close, and
//! refund after expiry.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{OutPoint, Transaction, Txid};
use pay402_core::bitreq::channel::{DEFAULT_CHANNEL_FEE, MIN_OUTPUT_AMOUNT, deposit_output_value};
use pay402_core::bitreq::rest::{
    ChannelInfo, ChannelStatus, CloseRequest, CloseResponse, OpenRequest, OpenResponse,
    PaymentRequest, PaymentResponse, encode_form,
};
use pay402_core::bitreq::state::{
    CLIENT_REFUND_MARGIN_SECS, ChannelError, ClientChannel, ClientState, SERVER_CLOSE_MARGIN_SECS,
};
use pay402_core::bitreq::{ChannelParams, ExpiryEncoding, RedeemScript};
use pay402_core::chain::ChainError;
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tracing::{Instrument, debug, info, info_span, warn};

use super::error::BitRequestsError;
use super::http::{MAX_BODY, is_loopback, read_bounded, server_error, snippet};
use super::keys::KeyChain;
use super::wallet::Wallet;

/// How the channel client opens and uses channels.
///
/// The defaults are two1's: a 100 000 sat deposit, 8 days, a 125 000 sat
/// channel fee and 3000 sat minimum outputs. The fee and the minimum output
/// must equal the server's (the server rebuilds every payment transaction
/// and compares it byte for byte).
///
/// ```
/// use pay402_client::bitreq::ChannelConfig;
/// let c = ChannelConfig::default();
/// assert_eq!(c.deposit.0, 100_000);
/// assert_eq!(c.duration.as_secs(), 691_200);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// What a new channel can pay in total (two1's `deposit_amount`).
    pub deposit: Sat,
    /// How long a new channel lasts (two1's `duration`, 8 days); servers
    /// refuse less than 4 days.
    pub duration: Duration,
    /// The fee left to miners by the refund and payment transactions (two1's
    /// `TWO1_CHANNELS_FEE`); must match the server's.
    pub channel_fee: Sat,
    /// The minimum output of payment transactions; must match the server's.
    pub min_output: Sat,
    /// How the expiry is pushed. Default [`ExpiryEncoding::ScriptNum`]: the
    /// same redeem script bytes as two1 before 2038, and a refund that
    /// standard-policy nodes relay (two1's one-byte `0x00` push is not
    /// minimal).
    pub expiry_encoding: ExpiryEncoding,
    /// How long a payment waits for a new channel's deposit to confirm
    /// (polling the chain) before failing with
    /// [`BitRequestsError::ChannelNotReady`]. Default 0: fail at once.
    pub deposit_wait: Duration,
    /// Allow plain `http://` channel servers on non-loopback hosts (default
    /// `false`; loopback is always allowed).
    pub allow_insecure_http: bool,
    /// The refund is broadcast once `now > expiry + margin` (two1: 90 min,
    /// for BIP 113 median time past).
    pub refund_margin_secs: u64,
    /// A channel within this many seconds of its expiry is not paid into
    /// (servers stop accepting payments 3 days before expiry).
    pub close_margin_secs: u64,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            deposit: Sat(100_000),
            duration: Duration::from_secs(691_200),
            channel_fee: DEFAULT_CHANNEL_FEE,
            min_output: MIN_OUTPUT_AMOUNT,
            expiry_encoding: ExpiryEncoding::ScriptNum,
            deposit_wait: Duration::ZERO,
            allow_insecure_http: false,
            refund_margin_secs: CLIENT_REFUND_MARGIN_SECS,
            close_margin_secs: SERVER_CLOSE_MARGIN_SECS,
        }
    }
}

/// One channel as [`ChannelClient::channels`] reports it.
///
/// ```
/// # fn show(c: &pay402_client::bitreq::ChannelSummary) {
/// println!("{} {} paid {} of {}", c.server, c.state.as_str(), c.paid, c.deposit_value);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelSummary {
    /// The channel server URL.
    pub server: Url,
    /// The deposit transaction.
    pub deposit_txid: Txid,
    /// The client state.
    pub state: ClientState,
    /// The CLTV expiry (UNIX time).
    pub expiry: u32,
    /// The deposit output's value.
    pub deposit_value: Sat,
    /// The cumulative amount paid to the merchant.
    pub paid: Sat,
    /// What can still be paid.
    pub balance: Sat,
    /// The signed refund (valid after the expiry). Keep it if the process
    /// may stop before the channel closes: broadcasting it after the expiry
    /// recovers the deposit.
    pub refund_tx: Transaction,
    /// The transaction that spent the deposit, once known.
    pub spend_txid: Option<Txid>,
}

/// What one channel payment did.
///
/// ```
/// # fn show(p: &pay402_client::bitreq::ChannelPayment) {
/// println!("token {} credits {}", p.token, p.increment);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelPayment {
    /// The token: the half-signed payment's txid.
    pub token: Txid,
    /// The channel's deposit txid.
    pub deposit_txid: Txid,
    /// What this payment moved to the merchant (the first payment of a
    /// channel is raised to the minimum output).
    pub increment: Sat,
    /// The channel's cumulative payment.
    pub total: Sat,
}

struct Channel {
    server: Url,
    params: ChannelParams,
    key_index: u32,
    machine: ClientChannel,
    deposit_tx: Transaction,
    deposit_sent: bool,
    /// The payment `PUT` in flight: its txid and cumulative amount.
    outstanding: Option<(Txid, Sat)>,
    spend_txid: Option<Txid>,
    /// The deposit is spent (closed, refunded, or spent by the merchant).
    done: bool,
}

impl Channel {
    fn deposit_txid(&self) -> Txid {
        self.params.deposit.txid
    }

    fn url(&self) -> String {
        format!(
            "{}/{}",
            self.server.as_str().trim_end_matches('/'),
            self.deposit_txid()
        )
    }

    fn summary(&self) -> ChannelSummary {
        ChannelSummary {
            server: self.server.clone(),
            deposit_txid: self.deposit_txid(),
            state: self.machine.state(),
            expiry: self.params.redeem.expiry,
            deposit_value: self.params.deposit_value,
            paid: self.machine.last_amount(),
            balance: self.machine.balance(),
            refund_tx: self.machine.refund().clone(),
            spend_txid: self.spend_txid,
        }
    }

    fn expiring(&self, now: UnixTime, margin: u64) -> bool {
        now.0.saturating_add(margin) >= u64::from(self.params.redeem.expiry)
    }

    /// What paying `price` would move: the increment after the minimum-output raise.
    fn increment_for(&self, price: Sat) -> Sat {
        let last = self.machine.last_amount();
        let amount = last.0.saturating_add(price.0).max(self.params.min_output.0);
        Sat(amount - last.0)
    }
}

/// The customer side of two1's payment channels (protocol v2), over any
/// [`BitcoinChain`](pay402_core::chain::BitcoinChain) backend.
///
/// - **Open** ([`ChannelClient::open`]): `GET` the server (merchant key,
///   version 2, zeroconf), build the redeem script with a fresh wallet key
///   and the expiry, sign the deposit (from the wallet) and keep the signed
///   refund, `POST` deposit and script, then broadcast the deposit.
/// - **Pay** ([`ChannelClient::pay`]): a half-signed payment for the new
///   cumulative amount, `PUT`; the returned token must be its txid. A
///   channel that is expiring or too small is closed and a new one opened;
///   one the server forgot (404) is replaced once.
/// - **Close** ([`ChannelClient::close`]): `DELETE` with the close signature;
///   the server signs and broadcasts the last payment.
/// - **Sync and refund** ([`ChannelClient::sync`]): confirm deposits, see
///   spends, and broadcast the refund of any channel still open once
///   `now > expiry + margin`.
///
/// Channels live in memory: keep [`ChannelSummary::refund_tx`] if the
/// process may stop before its channels close.
///
/// ```no_run
/// use std::sync::Arc;
/// use pay402_client::bitreq::{ChannelClient, ChannelConfig, Wallet};
/// use pay402_core::money::Sat;
///
/// async fn demo(wallet: Arc<Wallet>) -> Result<(), pay402_client::bitreq::BitRequestsError> {
///     let channels = ChannelClient::new(wallet, reqwest::Client::new(), ChannelConfig::default());
///     let server = "https://merchant.example/payment";
///     channels.open(server).await?;
///     let paid = channels.pay(server, Sat(3_000), Sat(10_000)).await?;
///     println!("token {}", paid.token);
///     channels.close(server).await?;
///     Ok(())
/// }
/// ```
pub struct ChannelClient {
    wallet: Arc<Wallet>,
    http: reqwest::Client,
    /// Total timeout of each call (set by the BitRequests builder).
    timeout: Option<std::time::Duration>,
    config: ChannelConfig,
    channels: Mutex<Vec<Channel>>,
}

impl fmt::Debug for ChannelClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

impl ChannelClient {
    /// A channel client paying from `wallet`, talking HTTP through `http`.
    ///
    /// ```no_run
    /// # fn f(wallet: std::sync::Arc<pay402_client::bitreq::Wallet>) {
    /// use pay402_client::bitreq::{ChannelClient, ChannelConfig};
    /// let c = ChannelClient::new(wallet, reqwest::Client::new(), ChannelConfig::default());
    /// # let _ = c; }
    /// ```
    pub fn new(wallet: Arc<Wallet>, http: reqwest::Client, config: ChannelConfig) -> ChannelClient {
        ChannelClient {
            wallet,
            http,
            timeout: None,
            config,
            channels: Mutex::new(Vec::new()),
        }
    }

    /// Gives every channel call this total timeout (unless `None`).
    pub(crate) fn with_timeout(mut self, timeout: Option<std::time::Duration>) -> ChannelClient {
        self.timeout = timeout;
        self
    }

    /// The configuration.
    ///
    /// ```no_run
    /// # fn f(c: &pay402_client::bitreq::ChannelClient) {
    /// println!("{}", c.config().deposit);
    /// # }
    /// ```
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// Checks a channel server URL: `https`, or `http` to loopback (or any
    /// host with [`ChannelConfig::allow_insecure_http`]).
    ///
    /// ```no_run
    /// # fn f(c: &pay402_client::bitreq::ChannelClient) {
    /// assert!(c.check_server("http://merchant.example/payment").is_err());
    /// assert!(c.check_server("http://127.0.0.1:8080/payment").is_ok());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BitRequestsError::InsecureChannelServer`].
    pub fn check_server(&self, server: &str) -> Result<Url, BitRequestsError> {
        let bad = || BitRequestsError::InsecureChannelServer(snippet(server.as_bytes()));
        let url: Url = server.trim().parse().map_err(|_| bad())?;
        let ok = match url.scheme() {
            "https" => true,
            "http" => self.config.allow_insecure_http || is_loopback(&url),
            _ => false,
        };
        if !ok || url.host_str().is_none() || !url.username().is_empty() || url.password().is_some()
        {
            return Err(bad());
        }
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        form: Option<String>,
        what: &'static str,
    ) -> Result<T, BitRequestsError> {
        let mut rb = self.http.request(method, url);
        if let Some(t) = self.timeout {
            rb = rb.timeout(t);
        }
        if let Some(body) = form {
            rb = rb
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = rb.send().await?;
        if resp.status() != StatusCode::OK {
            return Err(server_error(resp).await);
        }
        let body = read_bounded(resp, MAX_BODY, what).await?;
        serde_json::from_slice(&body).map_err(|e| BitRequestsError::InvalidResponse {
            what,
            detail: format!("{e}: {}", snippet(&body)),
        })
    }

    /// Opens a new channel with `server` (see the type documentation) and
    /// returns it. The deposit is broadcast after the server accepted it.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::ChannelClient) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// let ch = c.open("https://merchant.example/payment").await?;
    /// println!("deposit {}", ch.deposit_txid);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BitRequestsError::InsecureChannelServer`], the server's answers
    /// ([`BitRequestsError::ChannelServer`],
    /// [`BitRequestsError::Channel`] for a protocol version other than 2),
    /// wallet errors ([`BitRequestsError::InsufficientBalance`], …).
    pub async fn open(&self, server: &str) -> Result<ChannelSummary, BitRequestsError> {
        let server = self.check_server(server)?;
        let mut channels = self.channels.lock().await;
        let i = self.open_locked(&mut channels, &server).await?;
        Ok(channels[i].summary())
    }

    async fn open_locked(
        &self,
        channels: &mut Vec<Channel>,
        server: &Url,
    ) -> Result<usize, BitRequestsError> {
        let span = info_span!("bitreq.channel.open", server = %server);
        async {
            let info: ChannelInfo = self
                .call(Method::GET, server.as_str(), None, "channel info")
                .await?;
            let merchant = info.merchant_key()?;
            let (key_index, customer) = self.wallet.fresh_channel_key().await?;
            let expiry = now().0.saturating_add(self.config.duration.as_secs());
            let expiry = u32::try_from(expiry)
                .map_err(|_| ChannelError::Invalid(pay402_core::bitreq::BitreqError::InvalidChannelParameter))?;
            let redeem = RedeemScript::new(merchant, customer, expiry, self.config.expiry_encoding)
                .map_err(ChannelError::from)?;
            let value = deposit_output_value(
                self.config.deposit,
                self.config.min_output,
                self.config.channel_fee,
            )
            .ok_or(ChannelError::Invalid(
                pay402_core::bitreq::BitreqError::AmountOverflow,
            ))?;
            let prepared = self.wallet.prepare_deposit(&redeem, value).await?;
            let deposit_txid = prepared.txid();
            let params = ChannelParams {
                redeem,
                deposit: OutPoint::new(deposit_txid, 0),
                deposit_value: value,
                fee: self.config.channel_fee,
                min_output: self.config.min_output,
            };
            let key = self.wallet.private_key(KeyChain::External, key_index)?;
            let machine = match ClientChannel::open(params, key.secret()) {
                Ok(m) => m.with_refund_margin(self.config.refund_margin_secs),
                Err(e) => {
                    let _ = self.wallet.cancel(&deposit_txid).await;
                    return Err(e.into());
                }
            };
            drop(key);
            let form = encode_form(&OpenRequest {
                deposit_tx: serialize_hex(&prepared.tx),
                redeem_script: redeem.to_script().to_hex_string(),
            });
            let answer: Result<OpenResponse, _> = self
                .call(Method::POST, server.as_str(), Some(form), "channel open")
                .await;
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    // The server did not take the deposit: it was never broadcast.
                    let _ = self.wallet.cancel(&deposit_txid).await;
                    return Err(e);
                }
            };
            if answer.deposit_txid.parse::<Txid>().ok() != Some(deposit_txid) {
                let _ = self.wallet.cancel(&deposit_txid).await;
                return Err(BitRequestsError::InvalidResponse {
                    what: "channel open",
                    detail: format!(
                        "deposit_txid {:?} is not {deposit_txid}",
                        snippet(answer.deposit_txid.as_bytes())
                    ),
                });
            }
            let mut channel = Channel {
                server: server.clone(),
                params,
                key_index,
                machine,
                deposit_tx: prepared.tx.clone(),
                deposit_sent: false,
                outstanding: None,
                spend_txid: None,
                done: false,
            };
            channel.machine.on_open_ack(info.zeroconf)?;
            // The refund is kept before the deposit goes out.
            match self.wallet.broadcast(&prepared).await {
                Ok(_) => channel.deposit_sent = true,
                Err(e) => {
                    warn!(%deposit_txid, error = %e, "deposit broadcast failed; retried by sync");
                    if matches!(e, super::WalletError::Chain(ChainError::Conflict { .. })) {
                        channel.done = true;
                    }
                }
            }
            info!(%deposit_txid, expiry, value = value.0, zeroconf = info.zeroconf, "channel opened");
            channels.push(channel);
            Ok(channels.len() - 1)
        }
        .instrument(span)
        .await
    }

    /// Pays `price` to `server` through a channel, opening (or replacing) a
    /// channel when needed, and returns the token for
    /// `Bitcoin-Payment-Channel-Token`. Nothing moves if the increment
    /// (the first payment of a channel is raised to the minimum output)
    /// exceeds `max`.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::ChannelClient) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// use pay402_core::money::Sat;
    /// let p = c.pay("https://merchant.example/payment", Sat(3_000), Sat(10_000)).await?;
    /// assert!(p.increment >= Sat(3_000));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BitRequestsError::PriceExceedsMaximum`],
    /// [`BitRequestsError::InsufficientBalance`] (price above the deposit,
    /// or the wallet cannot fund a deposit),
    /// [`BitRequestsError::ChannelNotReady`], the server's refusals
    /// ([`BitRequestsError::ChannelServer`]), chain and wallet errors.
    pub async fn pay(
        &self,
        server: &str,
        price: Sat,
        max: Sat,
    ) -> Result<ChannelPayment, BitRequestsError> {
        let server = self.check_server(server)?;
        let mut channels = self.channels.lock().await;
        let span = info_span!("bitreq.channel.pay", server = %server, price = price.0);
        self.pay_locked(&mut channels, &server, price, max)
            .instrument(span)
            .await
    }

    async fn pay_locked(
        &self,
        channels: &mut Vec<Channel>,
        server: &Url,
        price: Sat,
        max: Sat,
    ) -> Result<ChannelPayment, BitRequestsError> {
        if price.0 == 0 {
            return Err(BitRequestsError::InvalidPaymentInfo(
                pay402_core::bitreq::BitreqError::InvalidPrice,
            ));
        }
        if price > self.config.deposit {
            return Err(BitRequestsError::InsufficientBalance {
                needed: price,
                available: Some(self.config.deposit),
            });
        }
        let mut replaced = false;
        loop {
            let t = now();
            // Settle a payment left in flight by a dropped call.
            for ch in channels.iter_mut() {
                if ch.server == *server && ch.outstanding.is_some() {
                    self.resolve_outstanding(ch).await?;
                }
            }
            let usable = channels.iter().position(|c| {
                c.server == *server
                    && !c.done
                    && matches!(
                        c.machine.state(),
                        ClientState::Ready | ClientState::ConfirmingDeposit
                    )
                    && !c.expiring(t, self.config.close_margin_secs)
                    && c.machine.balance() >= c.increment_for(price)
            });
            let i = match usable {
                Some(i) => i,
                None => {
                    let first = Sat(price.0.max(self.config.min_output.0));
                    if first > max {
                        return Err(BitRequestsError::PriceExceedsMaximum { price: first, max });
                    }
                    // Close what cannot pay any more (best effort), then open.
                    for c in channels.iter_mut().filter(|c| {
                        c.server == *server && !c.done && c.machine.state() == ClientState::Ready
                    }) {
                        if c.machine.last_amount().0 > 0
                            && let Err(e) = self.close_channel(c).await
                        {
                            warn!(deposit = %c.deposit_txid(), error = %e, "closing an exhausted channel failed");
                        }
                    }
                    self.open_locked(channels, server).await?
                }
            };
            let ch = &mut channels[i];
            self.ensure_ready(ch).await?;
            let increment = ch.increment_for(price);
            if increment > max {
                return Err(BitRequestsError::PriceExceedsMaximum {
                    price: increment,
                    max,
                });
            }
            let key = self.wallet.private_key(KeyChain::External, ch.key_index)?;
            let half = ch.machine.pay(price, key.secret())?;
            drop(key);
            let txid = half.compute_txid();
            let total = Sat(ch.machine.last_amount().0.saturating_add(increment.0));
            ch.outstanding = Some((txid, total));
            let form = encode_form(&PaymentRequest {
                payment_tx: serialize_hex(&half),
            });
            let url = ch.url();
            let answer: Result<PaymentResponse, _> = self
                .call(Method::PUT, &url, Some(form), "channel payment")
                .await;
            match answer {
                Ok(r) => {
                    let token = r.payment_txid.parse::<Txid>().ok();
                    if token != Some(txid) {
                        // The server may still have recorded it: find out next time.
                        return Err(BitRequestsError::InvalidResponse {
                            what: "channel payment",
                            detail: format!(
                                "payment_txid {:?} is not {txid}",
                                snippet(r.payment_txid.as_bytes())
                            ),
                        });
                    }
                    ch.outstanding = None;
                    let total = ch.machine.pay_ack(&txid)?;
                    debug!(%txid, increment = increment.0, total = total.0, "channel payment acknowledged");
                    return Ok(ChannelPayment {
                        token: txid,
                        deposit_txid: ch.deposit_txid(),
                        increment,
                        total,
                    });
                }
                Err(BitRequestsError::ChannelServer { status, .. })
                    if status == StatusCode::NOT_FOUND && !replaced =>
                {
                    ch.outstanding = None;
                    ch.machine.pay_nack()?;
                    warn!(deposit = %ch.deposit_txid(), "the server does not know the channel; opening another");
                    ch.done = true;
                    replaced = true;
                }
                Err(e @ BitRequestsError::ChannelServer { .. }) => {
                    ch.outstanding = None;
                    ch.machine.pay_nack()?;
                    return Err(e);
                }
                // Transport failure: the outcome is unknown; settled on the next call.
                Err(e) => return Err(e),
            }
        }
    }

    /// A `PUT` whose answer was lost: ask the server where the channel stands.
    async fn resolve_outstanding(&self, ch: &mut Channel) -> Result<(), BitRequestsError> {
        let Some((txid, amount)) = ch.outstanding else {
            return Ok(());
        };
        let status: ChannelStatus = self
            .call(Method::GET, &ch.url(), None, "channel status")
            .await?;
        if status.balance >= amount.0 {
            ch.machine.pay_ack(&txid)?;
        } else {
            ch.machine.pay_nack()?;
        }
        ch.outstanding = None;
        Ok(())
    }

    /// Waits (up to [`ChannelConfig::deposit_wait`]) for the deposit of a
    /// non-zeroconf channel to confirm.
    async fn ensure_ready(&self, ch: &mut Channel) -> Result<(), BitRequestsError> {
        if ch.machine.state() == ClientState::Ready {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.config.deposit_wait;
        loop {
            if !ch.deposit_sent {
                self.rebroadcast_deposit(ch).await;
            }
            let confirmed = self
                .wallet
                .chain()
                .get_transaction(&ch.deposit_txid())
                .await?
                .is_some_and(|t| t.is_confirmed());
            if confirmed {
                ch.machine.on_deposit_confirmed()?;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BitRequestsError::ChannelNotReady {
                    deposit_txid: ch.deposit_txid(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn rebroadcast_deposit(&self, ch: &mut Channel) {
        match self.wallet.broadcast_tx(&ch.deposit_tx).await {
            Ok(_) => ch.deposit_sent = true,
            Err(super::WalletError::Chain(ChainError::Conflict { .. })) => ch.done = true,
            Err(e) => warn!(deposit = %ch.deposit_txid(), error = %e, "deposit broadcast failed"),
        }
    }

    /// Closes the channel with `server` that holds payments: the server
    /// signs and broadcasts the last payment. Returns the spend's txid, or
    /// `None` when there is no channel with a payment to close.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::ChannelClient) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// if let Some(txid) = c.close("https://merchant.example/payment").await? {
    ///     println!("closed by {txid}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BitRequestsError::InsecureChannelServer`], the server's refusal
    /// ([`BitRequestsError::ChannelServer`]), HTTP errors.
    pub async fn close(&self, server: &str) -> Result<Option<Txid>, BitRequestsError> {
        let server = self.check_server(server)?;
        let mut channels = self.channels.lock().await;
        let mut closed = None;
        for ch in channels.iter_mut().filter(|c| {
            c.server == server
                && !c.done
                && c.machine.state() == ClientState::Ready
                && c.machine.last_amount().0 > 0
        }) {
            closed = Some(self.close_channel(ch).await?);
        }
        Ok(closed)
    }

    async fn close_channel(&self, ch: &mut Channel) -> Result<Txid, BitRequestsError> {
        let key = self.wallet.private_key(KeyChain::External, ch.key_index)?;
        let signature = ch.machine.close_signature_hex(key.secret());
        drop(key);
        let form = encode_form(&CloseRequest { signature });
        let answer: CloseResponse = self
            .call(Method::DELETE, &ch.url(), Some(form), "channel close")
            .await?;
        let spend =
            answer
                .payment_txid
                .parse::<Txid>()
                .map_err(|_| BitRequestsError::InvalidResponse {
                    what: "channel close",
                    detail: format!("payment_txid {:?}", snippet(answer.payment_txid.as_bytes())),
                })?;
        ch.machine.on_close(spend)?;
        ch.spend_txid = Some(spend);
        info!(deposit = %ch.deposit_txid(), %spend, paid = ch.machine.last_amount().0, "channel closed");
        // The server broadcast it: settle now if the node already has it.
        if let Ok(Some(info)) = self.wallet.chain().get_transaction(&spend).await
            && ch.machine.finalize(&info.tx).is_ok()
        {
            ch.done = true;
        }
        Ok(spend)
    }

    /// [`ChannelClient::sync_at`] with the system clock.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::ChannelClient) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// for ch in c.sync().await? { println!("{:?}", ch.state); }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`ChannelClient::sync_at`].
    pub async fn sync(&self) -> Result<Vec<ChannelSummary>, BitRequestsError> {
        self.sync_at(now()).await
    }

    /// Brings every channel up to date at time `now`: rebroadcasts a deposit
    /// that did not go out, marks confirmed deposits ready, settles closes
    /// whose spend the node has, and broadcasts the refund of every channel
    /// still open once `now > expiry + margin`. A refund the node refuses
    /// (not final yet by median time past) is tried again next time.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::ChannelClient) -> Result<(), pay402_client::bitreq::BitRequestsError> {
    /// let later = pay402_core::time::UnixTime(2_000_000_000);
    /// let channels = c.sync_at(later).await?;
    /// # let _ = channels; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Chain errors other than the refusals above.
    pub async fn sync_at(&self, now: UnixTime) -> Result<Vec<ChannelSummary>, BitRequestsError> {
        let mut channels = self.channels.lock().await;
        let chain = Arc::clone(self.wallet.chain());
        for ch in channels.iter_mut().filter(|c| !c.done) {
            if !ch.deposit_sent {
                self.rebroadcast_deposit(ch).await;
            }
            if ch.machine.state() == ClientState::ConfirmingDeposit
                && chain
                    .get_transaction(&ch.deposit_txid())
                    .await?
                    .is_some_and(|t| t.is_confirmed())
            {
                ch.machine.on_deposit_confirmed()?;
            }
            if let Some(spend) = ch.spend_txid
                && let Some(info) = chain.get_transaction(&spend).await?
                && ch.machine.finalize(&info.tx).is_ok()
            {
                ch.done = true;
                continue;
            }
            if let Some(refund) = ch.machine.refund_if_due(now).cloned() {
                let refund_txid = refund.compute_txid();
                match chain.broadcast(&refund).await {
                    Ok(_) | Err(ChainError::AlreadyKnown { .. }) => {
                        info!(deposit = %ch.deposit_txid(), %refund_txid, "refund broadcast");
                        if ch.machine.finalize(&refund).is_ok() {
                            ch.spend_txid = Some(refund_txid);
                        }
                        ch.done = true;
                    }
                    Err(ChainError::Conflict { .. }) => {
                        // The deposit is already spent (the merchant closed).
                        info!(deposit = %ch.deposit_txid(), "deposit already spent; no refund needed");
                        ch.done = true;
                    }
                    Err(e @ ChainError::Rejected { .. }) => {
                        warn!(deposit = %ch.deposit_txid(), error = %e, "refund refused for now; will retry");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(channels.iter().map(Channel::summary).collect())
    }

    /// Every channel this client opened.
    ///
    /// ```no_run
    /// # async fn f(c: &pay402_client::bitreq::ChannelClient) {
    /// for ch in c.channels().await { println!("{} {}", ch.deposit_txid, ch.paid); }
    /// # }
    /// ```
    pub async fn channels(&self) -> Vec<ChannelSummary> {
        self.channels
            .lock()
            .await
            .iter()
            .map(Channel::summary)
            .collect()
    }
}
