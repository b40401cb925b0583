//! The x402_mock dialect through a [`MockClient`](crate::x402_mock::MockClient):
//! a permit exchanged for an access token, kept by origin and path.

use std::sync::Arc;

use async_trait::async_trait;
use pay402_core::offer::{MockChallenge, Offer, Rail};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use reqwest::{Request, Url};
use tracing::warn;

use super::{RailMeans, rail_refusal, unresumable};
use crate::cache::{KeyGuard, origin_of};
use crate::journal::StoredToken;
use crate::payer::error::{PayerError, RefusalReason};
use crate::payer::receipt::{PayerPaid, RailReceipt};
use crate::payer::stored::StoredProof;
use crate::payer::{Inner, Purchase, Sent};
use crate::x402_mock::MockClient;

pub(crate) struct MockMeans {
    client: MockClient,
}

impl MockMeans {
    pub(crate) fn new(client: MockClient) -> MockMeans {
        MockMeans { client }
    }
}

/// The scope an x402_mock token is kept under: its origin and path.
pub(crate) fn mock_scope(url: &Url) -> String {
    format!("{}{}", origin_of(url), url.path())
}

challenge_of_rail!(X402Mock, MockChallenge);

#[async_trait]
impl RailMeans for MockMeans {
    means_of_rail!(X402Mock);

    fn check(&self, offer: &Offer, _now: UnixTime) -> Result<Amount, RefusalReason> {
        let c = challenge(offer).ok_or(RefusalReason::RailNotEnabled)?;
        let comp = c.component().ok_or(RefusalReason::RailNotEnabled)?;
        self.client.accepts(comp).map_err(rail_refusal)?;
        Ok(offer.amount.clone())
    }

    fn may_repay(&self, p: &Purchase) -> Result<(), PayerError> {
        // The permit may have reached the token endpoint.
        Err(PayerError::OutcomeUnknown {
            entry: p.id.clone(),
            rail: Rail::X402Mock,
        })
    }

    async fn pay(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let m = &self.client;
        let c = challenge(&p.offer)
            .cloned()
            .ok_or_else(|| unresumable(&p, "not an x402_mock offer"))?;
        let err = |source, p: &Purchase| PayerError::X402Mock {
            source: Box::new(source),
            entry: p.id.clone(),
            resumed: p.resumed,
        };
        let comp = c
            .component()
            .ok_or_else(|| unresumable(&p, "x402_mock component index"))?;
        let endpoint = match crate::x402_mock::client::token_endpoint(
            &p.offer_url,
            &p.url,
            &c.required.access_token_endpoint,
        ) {
            Ok(e) => e,
            Err(e) => {
                inner.fail(&p, e.reason(), false).await;
                return Err(err(e, &p));
            }
        };
        let (bearer, receipt) = match m.buy(comp, &endpoint, &p.url).await {
            Ok(r) => r,
            Err(e) => {
                inner.fail(&p, e.reason(), e.may_have_paid()).await;
                return Err(err(e, &p));
            }
        };
        let stored = StoredProof::mock(bearer.as_str(), &receipt);
        inner.paid(&p, &stored, receipt.digest.to_string()).await?;
        let kept = StoredToken::new(
            &p.key.origin,
            &mock_scope(&p.url),
            Rail::X402Mock,
            format!("Bearer {}", bearer.as_str()),
            &p.id,
            receipt
                .token_expires_at
                .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)),
        );
        if let Err(e) = inner.journal.store().put_token(&kept).await {
            warn!(error = %e, "cannot keep the x402_mock token in the journal");
        }
        drop(guard);
        present(&inner, m, p, template, bearer.as_str().to_owned(), receipt).await
    }

    async fn present_stored(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        proof: StoredProof,
    ) -> Result<PayerPaid, PayerError> {
        let Some(c) = challenge(&p.offer).cloned() else {
            return Err(unresumable(&p, "stored proof is of another rail"));
        };
        if !matches!(proof, StoredProof::X402Mock { .. }) {
            return Err(unresumable(&p, "stored proof is of another rail"));
        }
        let receipt = proof
            .mock_receipt(&c, &p.url)
            .ok_or_else(|| unresumable(&p, "stored x402_mock token does not read back"))?;
        let StoredProof::X402Mock { token, .. } = proof else {
            return Err(unresumable(&p, "stored x402_mock token"));
        };
        present(&inner, &self.client, p, template, token, receipt).await
    }

    fn cached_credential(&self, url: &Url) -> Option<Sent> {
        let t = crate::x402_mock::client::cached_for(&self.client, url)?;
        Some(Sent::Mock(t.as_str().to_owned()))
    }

    fn load_token(&self, url: &Url, t: &StoredToken) {
        let Some(bearer) = t.credential.strip_prefix("Bearer ") else {
            return;
        };
        let exp = t
            .expires_ms
            .map_or(0, |ms| u64::try_from(ms / 1000).unwrap_or(0));
        crate::x402_mock::client::remember(
            &self.client,
            url,
            zeroize::Zeroizing::new(bearer.to_owned()),
            exp,
        );
    }

    fn evict(&self, url: &Url, sent: &Sent) -> Option<(String, String, Rail, String)> {
        let Sent::Mock(bearer) = sent else {
            return None;
        };
        crate::x402_mock::client::evict_for(&self.client, url, bearer);
        Some((
            origin_of(url),
            mock_scope(url),
            Rail::X402Mock,
            format!("Bearer {bearer}"),
        ))
    }

    fn token_scope(&self, url: &Url) -> Option<String> {
        Some(mock_scope(url))
    }
}

async fn present(
    inner: &Inner,
    m: &MockClient,
    p: Purchase,
    template: Request,
    bearer: String,
    receipt: crate::x402_mock::MockReceipt,
) -> Result<PayerPaid, PayerError> {
    use crate::x402_mock::MockClientError;
    inner.presenting(&p).await?;
    let digest = receipt.digest.to_string();
    match m.present(&template, &bearer, receipt).await {
        Ok(paid) => {
            inner
                .served(&p, paid.response.status().as_u16(), None)
                .await;
            let rail_receipt = paid.receipt.map(|r| RailReceipt::X402Mock(Box::new(r)));
            Ok(PayerPaid {
                response: paid.response,
                receipt: Some(p.receipt(digest, None, rail_receipt)),
                reused_credential: false,
            })
        }
        Err(e) => {
            match &e {
                MockClientError::StillUnpaid { .. } => {
                    let credential = format!("Bearer {bearer}");
                    if let Err(err) = inner
                        .journal
                        .store()
                        .remove_token(
                            &p.key.origin,
                            &mock_scope(&p.url),
                            Rail::X402Mock,
                            &credential,
                        )
                        .await
                    {
                        warn!(error = %err, "cannot forget a refused token");
                    }
                    inner.fail(&p, e.reason(), true).await;
                }
                MockClientError::RetryFailed { .. } => {}
                _ => {
                    inner
                        .fail(&p, e.reason(), e.may_have_paid() || p.resumed)
                        .await
                }
            }
            Err(PayerError::X402Mock {
                source: Box::new(e),
                entry: p.id.clone(),
                resumed: p.resumed,
            })
        }
    }
}
