//! What a paid request returns: [`X402Paid`] and its [`X402Receipt`].

use std::time::{Duration, SystemTime};

use pay402_core::x402::SettleResponse;
use reqwest::{Response, StatusCode, Url};

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
}
