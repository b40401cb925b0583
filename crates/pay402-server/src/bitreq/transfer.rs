//! The bit-transfer method against pay402's own ledger: verify the signed
//! transfer with core, check payee, amount, freshness and resource, then
//! debit the payer and credit the merchant in one SQL transaction.

use bitcoin::secp256k1::PublicKey;
use http::request::Parts;
use pay402_core::bitreq::transfer::verify;
use pay402_core::money::Sat;
use tracing::Instrument;

use super::error::BitreqServerError;
use super::layer::{BitreqPayment, PaymentMethod};
use super::server::{BitreqServer, now, resource_of};
use super::store::{Account, CreditOutcome, StoreError, TransferOutcome, TransferRecord};

/// Whether a transfer `description` (two1 sent the resource URL) names `path`:
/// the path of a URL, or the text itself, without query or fragment.
pub(crate) fn description_names_path(description: &str, path: &str) -> bool {
    let rest = match description.split_once("://") {
        Some((_, after)) => after.find('/').and_then(|i| after.get(i..)).unwrap_or("/"),
        None => description,
    };
    rest.split(['?', '#']).next() == Some(path)
}

/// A ledger username: 1 to 128 visible ASCII characters.
pub(crate) fn valid_username(u: &str) -> bool {
    !u.is_empty() && u.len() <= 128 && u.bytes().all(|b| (0x21..0x7f).contains(&b))
}

impl BitreqServer {
    /// Verifies and applies a bit-transfer for a request costing `price`.
    pub(crate) async fn pay_transfer(
        &self,
        parts: &Parts,
        transfer: &str,
        authorization: &str,
        price: Sat,
    ) -> Result<BitreqPayment, BitreqServerError> {
        let tc = self
            .inner
            .config
            .transfer
            .as_ref()
            .ok_or(BitreqServerError::MethodNotOffered("transfer"))?;
        let v = verify(transfer, authorization)?;
        let span = tracing::info_span!("bitreq.transfer", payer = %v.payer, id = %v.id_hex());
        async {
            v.check_payment(price, tc.amount, Some(&tc.username), None)?;
            let now = now();
            let ts = v.timestamp_secs();
            let too_old = ts.0.saturating_add(tc.max_age.as_secs()) < now.0;
            let too_new = ts.0 > now.0.saturating_add(tc.max_future_skew.as_secs());
            if too_old || too_new || !v.timestamp.is_finite() {
                return Err(BitreqServerError::TransferExpired);
            }
            if tc.bind_resource && !description_names_path(&v.description, parts.uri.path()) {
                return Err(BitreqServerError::TransferWrongResource);
            }
            let record = TransferRecord {
                id: v.id,
                payer: v.payer.clone(),
                payer_key: v.payer_pubkey,
                payee: tc.username.clone(),
                amount: v.amount,
                resource: resource_of(&parts.method, &parts.uri),
                created_at: now,
            };
            match self.inner.store.apply_transfer(&record).await? {
                TransferOutcome::Applied { payer_balance } => {
                    tracing::info!(
                        amount = v.amount.0,
                        payer_balance = payer_balance.0,
                        "bitreq.transfer.applied"
                    );
                    Ok(BitreqPayment {
                        method: PaymentMethod::Transfer,
                        amount: v.amount,
                        reference: v.id_hex(),
                    })
                }
                TransferOutcome::Replayed => Err(BitreqServerError::AlreadyUsed),
                TransferOutcome::UnknownPayer => Err(BitreqServerError::UnknownPayer),
                TransferOutcome::KeyMismatch => Err(BitreqServerError::PayerKeyMismatch),
                TransferOutcome::InsufficientBalance { balance } => {
                    Err(BitreqServerError::InsufficientBalance {
                        balance,
                        amount: v.amount,
                    })
                }
                TransferOutcome::LimitExceeded => Err(BitreqServerError::Store(
                    StoreError::Unavailable("merchant balance limit reached".into()),
                )),
            }
        }
        .instrument(span)
        .await
    }

    /// Opens a ledger account for `username`, whose transfers must be signed
    /// by `key`. Returns `false` if the account exists.
    ///
    /// ```no_run
    /// # async fn f(server: pay402_server::bitreq::BitreqServer, key: bitcoin::secp256k1::PublicKey) {
    /// assert!(server.open_account("alice", &key).await.unwrap());
    /// # }
    /// ```
    pub async fn open_account(&self, username: &str, key: &PublicKey) -> Result<bool, StoreError> {
        if !valid_username(username) {
            return Err(StoreError::Corrupt("invalid username".into()));
        }
        self.inner.store.open_account(username, key).await
    }

    /// Credits a ledger account once per `reference` (e.g. a deposit txid or
    /// an invoice number): repeating a credit is harmless.
    ///
    /// ```no_run
    /// # async fn f(server: pay402_server::bitreq::BitreqServer) {
    /// use pay402_server::bitreq::store::CreditOutcome;
    /// let out = server.credit("alice", pay402_core::money::Sat(50_000), "deposit-1").await.unwrap();
    /// assert!(matches!(out, CreditOutcome::Credited { .. }));
    /// # }
    /// ```
    pub async fn credit(
        &self,
        username: &str,
        amount: Sat,
        reference: &str,
    ) -> Result<CreditOutcome, StoreError> {
        self.inner.store.credit(username, amount, reference).await
    }

    /// A ledger account.
    ///
    /// ```no_run
    /// # async fn f(server: pay402_server::bitreq::BitreqServer) {
    /// let balance = server.account("alice").await.unwrap().map(|a| a.balance);
    /// # let _ = balance;
    /// # }
    /// ```
    pub async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.inner.store.account(username).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_binding() {
        assert!(description_names_path("http://h:1/r?x=1", "/r"));
        assert!(description_names_path("https://h/r", "/r"));
        assert!(description_names_path("/r", "/r"));
        assert!(!description_names_path("https://h/other", "/r"));
        assert!(!description_names_path("", "/r"));
        assert!(description_names_path("https://h", "/"));
    }
}
