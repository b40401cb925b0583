//! L402 (and LSAT) through an [`L402Client`]: pays the invoice on its own
//! task, keeps the token (memory and journal), presents it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pay402_core::l402::Credential;
use pay402_core::lightning::Preimage;
use pay402_core::offer::{L402Challenge, Offer, Rail};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use reqwest::header::HeaderValue;
use reqwest::{Request, Url};
use tracing::{Instrument as _, info_span, warn};

use super::{RailMeans, rail_refusal, unresumable};
use crate::cache::{KeyGuard, Token};
use crate::client::{L402Client, token_header};
use crate::error::ClientError;
use crate::journal::{EntryState, Step, StoredToken};
use crate::payer::error::{PayerError, RefusalReason};
use crate::payer::receipt::{PayerPaid, RailReceipt};
use crate::payer::stored::StoredProof;
use crate::payer::{Inner, Purchase, Sent, scope_string};

pub(crate) struct L402Means {
    client: L402Client,
}

impl L402Means {
    pub(crate) fn new(client: L402Client) -> L402Means {
        L402Means { client }
    }
}

challenge_of_rail!(L402, L402Challenge);

#[async_trait]
impl RailMeans for L402Means {
    means_of_rail!(L402);

    fn check(&self, offer: &Offer, now: UnixTime) -> Result<Amount, RefusalReason> {
        let c = challenge(offer).ok_or(RefusalReason::RailNotEnabled)?;
        self.client
            .rail()
            .check(&c.to_challenge(), now)
            .map_err(rail_refusal)?;
        Ok(offer.amount.clone())
    }

    async fn pay(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let c = challenge(&p.offer)
            .cloned()
            .ok_or_else(|| unresumable(&p, "not an L402 offer"))?;
        let l = self.client.clone();
        let span = info_span!("payer.pay", rail = "l402", entry = %p.id, amount = %p.offer.amount, payment_hash = %c.payment_hash);
        let me = Arc::clone(&inner);
        let (task_p, task_c, task_l) = (p.clone(), c.clone(), l.clone());
        // Its own task: a dropped caller never loses a payment in flight.
        let task = async move {
            let (p, c, l) = (task_p, task_c, task_l);
            let paid = match l.rail().pay_bolt11(&c.invoice, c.payment_hash).await {
                Ok(paid) => paid,
                Err(e) => {
                    me.fail(&p, e.reason(), e.may_have_paid()).await;
                    return Err(PayerError::L402 {
                        source: Box::new(e),
                        entry: p.id.clone(),
                        resumed: p.resumed,
                    });
                }
            };
            let proof = StoredProof::L402 {
                preimage: paid.preimage.to_hex(),
            };
            me.step(
                &p,
                Step::to(EntryState::Paid).proof(proof.to_json(), c.payment_hash.to_string()),
            )
            .await
            .map_err(|e| me.journal_after(&p, e))?;
            let token = l402_token(&me, &l, &p, &c, &paid.preimage).await?;
            let receipt = paid.receipt(c.payment_hash, p.key.origin.clone(), p.url.clone());
            Ok((token, receipt))
        }
        .instrument(span);
        let (token, receipt) = match tokio::spawn(task).await {
            Ok(r) => r?,
            Err(e) => {
                warn!(error = %e, "payment task died; outcome unknown");
                return Err(PayerError::L402 {
                    source: Box::new(ClientError::PaymentOutcomeUnknown {
                        payment_hash: c.payment_hash,
                    }),
                    entry: p.id.clone(),
                    resumed: p.resumed,
                });
            }
        };
        drop(guard);
        present(&inner, &l, p, template, token, receipt).await
    }

    async fn present_stored(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        proof: StoredProof,
    ) -> Result<PayerPaid, PayerError> {
        let (StoredProof::L402 { preimage }, Some(c)) = (proof, challenge(&p.offer).cloned())
        else {
            return Err(unresumable(&p, "stored proof is of another rail"));
        };
        let l = &self.client;
        let preimage = Preimage::from_hex(&preimage)
            .ok()
            .filter(|pre| pre.matches(&c.payment_hash))
            .ok_or_else(|| unresumable(&p, "stored preimage does not match"))?;
        let token = l402_token(&inner, l, &p, &c, &preimage).await?;
        let amount = match &p.offer.amount {
            Amount::Msat(m) => *m,
            _ => pay402_core::money::Msat(0),
        };
        let receipt = crate::client::LnPaid {
            preimage,
            amount,
            fee: pay402_core::money::Msat(0),
            paid_in: Duration::ZERO,
            paid_at: p.created,
        }
        .receipt(c.payment_hash, p.key.origin.clone(), p.url.clone());
        present(&inner, l, p, template, token, receipt).await
    }

    fn cached_credential(&self, url: &Url) -> Option<Sent> {
        let key = self.client.rail().scope.key(url);
        let token = self.client.rail().cache.get(&key)?;
        Some(Sent::L402(token, key))
    }

    fn load_token(&self, url: &Url, t: &StoredToken) {
        let Ok(cred) = Credential::parse(&t.credential) else {
            return;
        };
        let payment_hash = cred.preimage().payment_hash();
        let Ok(mut header) = HeaderValue::from_str(&t.credential) else {
            return;
        };
        header.set_sensitive(true);
        let key = self.client.rail().scope.key(url);
        self.client.rail().cache.insert(
            key,
            Arc::new(Token {
                header,
                payment_hash,
            }),
        );
    }

    fn evict(&self, _url: &Url, sent: &Sent) -> Option<(String, String, Rail, String)> {
        #[allow(irrefutable_let_patterns)]
        let Sent::L402(token, key) = sent else {
            return None;
        };
        self.client.rail().cache.evict_if_current(key, token);
        Some((
            key.origin().to_owned(),
            scope_string(key),
            Rail::L402,
            token.header.to_str().ok()?.to_owned(),
        ))
    }
}

/// The token for a paid challenge, cached in the L402 client and kept in
/// the journal by origin and scope.
async fn l402_token(
    inner: &Inner,
    l: &L402Client,
    p: &Purchase,
    c: &L402Challenge,
    preimage: &Preimage,
) -> Result<Arc<Token>, PayerError> {
    let header = token_header(c.scheme, &c.macaroon, preimage).map_err(|e| PayerError::L402 {
        source: Box::new(e),
        entry: p.id.clone(),
        resumed: p.resumed,
    })?;
    let credential = header.to_str().unwrap_or_default().to_owned();
    let token = Arc::new(Token {
        header,
        payment_hash: c.payment_hash,
    });
    let key = l.rail().scope.key(&p.url);
    l.rail().cache.insert(key.clone(), Arc::clone(&token));
    let kept = StoredToken::new(
        key.origin(),
        &scope_string(&key),
        Rail::L402,
        credential,
        &p.id,
        None,
    );
    if let Err(e) = inner.journal.store().put_token(&kept).await {
        warn!(error = %e, "cannot keep the L402 token in the journal");
    }
    Ok(token)
}

async fn present(
    inner: &Inner,
    l: &L402Client,
    p: Purchase,
    template: Request,
    token: Arc<Token>,
    receipt: crate::Receipt,
) -> Result<PayerPaid, PayerError> {
    inner.presenting(&p).await?;
    let proof_id = receipt.payment_hash.to_string();
    match l.rail().present(&template, &token, receipt.clone()).await {
        Ok(paid) => {
            inner
                .served(&p, paid.response.status().as_u16(), None)
                .await;
            Ok(PayerPaid {
                response: paid.response,
                receipt: Some(p.receipt(proof_id, None, Some(RailReceipt::L402(receipt)))),
                reused_credential: false,
            })
        }
        Err(e) => {
            match &e {
                ClientError::StillUnpaid { .. } => {
                    let key = l.rail().scope.key(&p.url);
                    l.rail().cache.evict_if_current(&key, &token);
                    if let Ok(cred) = token.header.to_str()
                        && let Err(err) = inner
                            .journal
                            .store()
                            .remove_token(key.origin(), &scope_string(&key), Rail::L402, cred)
                            .await
                    {
                        warn!(error = %err, "cannot forget a refused token");
                    }
                    inner.fail(&p, e.reason(), true).await;
                }
                // The token stays: the same request presents it again.
                ClientError::RetryFailed { .. } | ClientError::ServerErrorAfterPayment { .. } => {}
                _ => {
                    inner
                        .fail(&p, e.reason(), e.may_have_paid() || p.resumed)
                        .await
                }
            }
            Err(PayerError::L402 {
                source: Box::new(e),
                entry: p.id.clone(),
                resumed: p.resumed,
            })
        }
    }
}
