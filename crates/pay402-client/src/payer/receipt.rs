//! What a [`Payer`](crate::Payer) call returns: [`PayerPaid`] and its
//! [`PayerReceipt`].

use std::time::SystemTime;

use pay402_core::offer::Rail;
use pay402_core::rates::Amount;
use reqwest::{Response, StatusCode, Url};

use super::error::PayerError;

/// The rail client's own receipt, when this call paid.
///
/// ```
/// # fn f(r: &pay402_client::RailReceipt) {
/// if let pay402_client::RailReceipt::L402(l) = r { println!("fee {}", l.fee); }
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RailReceipt {
    /// An L402 payment.
    L402(crate::Receipt),
    /// An x402 payment.
    #[cfg(feature = "x402")]
    X402(Box<crate::x402::X402Receipt>),
    /// An x402_mock permit.
    #[cfg(feature = "x402-mock")]
    X402Mock(Box<crate::x402_mock::MockReceipt>),
    /// A BitRequests payment.
    #[cfg(feature = "bitreq")]
    BitRequests(Box<crate::bitreq::Receipt>),
    /// An MPP charge: the challenge paid and the server's `Payment-Receipt`.
    Mpp(Box<crate::mpp::MppReceipt>),
}

/// What one paid request cost, whatever the rail.
///
/// ```
/// # fn show(r: &pay402_client::PayerReceipt) {
/// println!("{} paid {} ({:?} in the reference unit) to {} — proof {} — journal {}",
///     r.rail, r.amount, r.cost, r.origin, r.proof_id, r.entry);
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PayerReceipt {
    /// The journal entry.
    pub entry: String,
    /// The rail paid.
    pub rail: Rail,
    /// The offer's label (`l402`, `x402 v2 #0`, …).
    pub offer: String,
    /// The offer's price, with its unit.
    pub amount: Amount,
    /// Its cost in the reference unit (rounded up), when known.
    pub cost: Option<Amount>,
    /// The origin paid.
    pub origin: String,
    /// The URL whose request paid.
    pub url: Url,
    /// A public reference to the payment: payment hash, EIP-3009 nonce,
    /// txid, transfer hash, permit digest.
    pub proof_id: String,
    /// A settlement reference the server gave (x402 transaction), if any.
    pub settlement: Option<String>,
    /// When the purchase was recorded.
    pub paid_at: SystemTime,
    /// `true` when this call finished a purchase a former call (or
    /// process) had paid: it presented the stored proof.
    pub resumed: bool,
    /// `true` when the payment stands but the server has not served the
    /// request yet (a BitRequests on-chain payment answered `202` until its
    /// transaction confirms): the journal entry stays open, and the same
    /// request later presents the same proof instead of paying again.
    pub pending: bool,
    /// The rail client's receipt, when this call made the payment.
    pub rail_receipt: Option<RailReceipt>,
}

/// The response to a request made through a [`Payer`](crate::Payer).
///
/// ```no_run
/// # async fn f(payer: pay402_client::Payer) -> Result<(), pay402_client::PayerError> {
/// let paid = payer.get("http://127.0.0.1:8402/report").await?;
/// if let Some(r) = &paid.receipt { println!("paid {} with {}", r.amount, r.rail); }
/// println!("{}", paid.text().await?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct PayerPaid {
    /// The server's final response.
    pub response: Response,
    /// What this call paid (or resumed), if anything.
    pub receipt: Option<PayerReceipt>,
    /// Whether a credential paid earlier (an L402 or x402_mock token) was
    /// accepted.
    pub reused_credential: bool,
}

impl PayerPaid {
    /// The status of the final response.
    ///
    /// ```no_run
    /// # async fn f(payer: pay402_client::Payer) -> Result<(), pay402_client::PayerError> {
    /// assert!(payer.get("http://127.0.0.1:8402/report").await?.status().is_success());
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// Reads the whole body. A body cut short is
    /// [`PayerError::Http`]; the purchase stays served in the journal
    /// and a reusable credential stays kept.
    ///
    /// ```no_run
    /// # async fn f(payer: pay402_client::Payer) -> Result<(), pay402_client::PayerError> {
    /// let body = payer.get("http://127.0.0.1:8402/report").await?.bytes().await?;
    /// # let _ = body; Ok(()) }
    /// ```
    pub async fn bytes(self) -> Result<Vec<u8>, PayerError> {
        self.response
            .bytes()
            .await
            .map(Vec::from)
            .map_err(PayerError::Http)
    }

    /// Reads the whole body as text.
    ///
    /// ```no_run
    /// # async fn f(payer: pay402_client::Payer) -> Result<(), pay402_client::PayerError> {
    /// let text = payer.get("http://127.0.0.1:8402/report").await?.text().await?;
    /// # let _ = text; Ok(()) }
    /// ```
    pub async fn text(self) -> Result<String, PayerError> {
        self.response.text().await.map_err(PayerError::Http)
    }
}
