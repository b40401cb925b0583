//! What a paid request returns: [`X402Paid`] and its [`X402Receipt`].

use std::time::{Duration, SystemTime};

use pay402_core::x402::SettleResponse;
use reqwest::{Response, StatusCode, Url};

use super::error::X402Error;
use super::payment::{PaymentDetails, SignedPayment};

/// What one paid request cost, and what the server reported about the
/// settlement (`PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`).
///
/// ```
/// # fn show(r: &pay402_client::x402::X402Receipt) {
/// println!("paid {} of {} on {} (tx {:?}, settled: {})",
///     r.payment.amount, r.payment.asset, r.payment.network, r.transaction(), r.settled());
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct X402Receipt {
    /// What the signed payment commits to.
    pub payment: PaymentDetails,
    /// The signed payment as it was sent (already spent once settled; kept
    /// for audits, and to check a server's replay protection).
    pub signed: SignedPayment,
    /// The server's settlement report, when it sent a readable one.
    pub settlement: Option<SettleResponse>,
    /// The URL whose request triggered the payment.
    pub url: Url,
    /// The origin it was paid to, e.g. `http://127.0.0.1:8402`.
    pub origin: String,
    /// When the payment was signed.
    pub paid_at: SystemTime,
    /// From signing to the final answer.
    pub elapsed: Duration,
    /// How many times the same payment was sent (1 unless a transport error
    /// or a pending settlement made the client send it again).
    pub attempts: u32,
}

impl X402Receipt {
    /// Whether the server reported a successful settlement.
    ///
    /// ```
    /// # fn f(r: &pay402_client::x402::X402Receipt) {
    /// if !r.settled() { eprintln!("served without a settlement report"); }
    /// # }
    /// ```
    pub fn settled(&self) -> bool {
        self.settlement.as_ref().is_some_and(|s| s.success)
    }

    /// The settlement transaction hash, if the server reported one.
    ///
    /// ```
    /// # fn f(r: &pay402_client::x402::X402Receipt) {
    /// if let Some(tx) = r.transaction() { println!("settled in {tx}"); }
    /// # }
    /// ```
    pub fn transaction(&self) -> Option<&str> {
        self.settlement
            .as_ref()
            .and_then(|s| s.transaction.as_deref())
            .filter(|t| !t.is_empty())
    }
}

/// The response to a request made through
/// [`X402Client`](super::X402Client).
///
/// `receipt` is `Some` when this call signed and sent a payment, `None` when
/// the endpoint did not ask for one.
///
/// ```no_run
/// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
/// let paid = client.get("http://127.0.0.1:8402/paid").await?;
/// if let Some(r) = &paid.receipt {
///     println!("paid {} base units", r.payment.amount);
/// }
/// let body = paid.response.text().await.map_err(pay402_client::x402::X402Error::Http)?;
/// # let _ = body; Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct X402Paid {
    /// The server's final response.
    pub response: Response,
    /// What this call paid, if it paid.
    pub receipt: Option<X402Receipt>,
}

impl X402Paid {
    /// The final response.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
    /// let resp = client.get("http://127.0.0.1:8402/paid").await?.into_response();
    /// # let _ = resp; Ok(()) }
    /// ```
    pub fn into_response(self) -> Response {
        self.response
    }

    /// The status of the final response.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
    /// assert!(client.get("http://127.0.0.1:8402/paid").await?.status().is_success());
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// Reads the whole body. A body cut short (the connection dropped
    /// mid-response) is [`X402Error::BodyInterrupted`] carrying the receipt,
    /// so the caller learns that it paid (do not pay again) rather than a
    /// bare transport error. Clone [`receipt`](Self::receipt) first to keep
    /// it on success.
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
    /// let paid = client.get("http://127.0.0.1:8402/paid").await?;
    /// let receipt = paid.receipt.clone();
    /// match paid.bytes().await {
    ///     Ok(body) => println!("{} bytes, paid: {}", body.len(), receipt.is_some()),
    ///     Err(e) if e.may_have_paid() => eprintln!("paid, but the body was lost: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn bytes(self) -> Result<Vec<u8>, X402Error> {
        let X402Paid { response, receipt } = self;
        match response.bytes().await {
            Ok(body) => Ok(Vec::from(body)),
            Err(source) => Err(X402Error::BodyInterrupted {
                source,
                receipt: receipt.map(Box::new),
            }),
        }
    }

    /// Reads the whole body as text (decoded as reqwest's
    /// [`Response::text`] does); a body cut short is
    /// [`X402Error::BodyInterrupted`] as in [`bytes`](Self::bytes).
    ///
    /// ```no_run
    /// # async fn demo(client: pay402_client::x402::X402Client) -> Result<(), pay402_client::x402::X402Error> {
    /// let text = client.get("http://127.0.0.1:8402/paid").await?.text().await?;
    /// # let _ = text; Ok(()) }
    /// ```
    pub async fn text(self) -> Result<String, X402Error> {
        let X402Paid { response, receipt } = self;
        response
            .text()
            .await
            .map_err(|source| X402Error::BodyInterrupted {
                source,
                receipt: receipt.map(Box::new),
            })
    }
}
