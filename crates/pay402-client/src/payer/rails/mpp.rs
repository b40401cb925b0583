//! MPP `Payment` charges through an [`MppClient`]: `lightning`/`charge`
//! (the invoice paid on its own task) and `evm`/`charge` (an EIP-3009
//! authorization signed locally). The credential is journaled before it
//! leaves the process, never cached, and a 5xx to the paid request leaves
//! the entry open as "outcome unknown".

use std::sync::Arc;

use async_trait::async_trait;
use pay402_core::offer::{MppChallenge, Offer, Rail, RailChallenge};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Request, Url};
use tracing::{Instrument as _, info_span, warn};

use super::{RailMeans, rail_refusal, unresumable};
use crate::cache::KeyGuard;
use crate::journal::{EntryState, Step};
use crate::mpp::client::Payable;
use crate::mpp::{MppClient, MppError, MppReceipt, lightning};
use crate::payer::error::{PayerError, RefusalReason};
use crate::payer::receipt::{PayerPaid, RailReceipt};
use crate::payer::stored::StoredProof;
use crate::payer::{Inner, Purchase};

pub(crate) struct MppMeans {
    client: MppClient,
}

impl MppMeans {
    pub(crate) fn new(client: MppClient) -> MppMeans {
        MppMeans { client }
    }
}

fn challenge(offer: &Offer) -> Option<&MppChallenge> {
    match &offer.challenge {
        RailChallenge::Mpp(c) => Some(c),
        _ => None,
    }
}

fn mpp_error(p: &Purchase, e: MppError) -> PayerError {
    PayerError::Mpp {
        source: Box::new(e),
        entry: p.id.clone(),
        resumed: p.resumed,
    }
}

/// A credential ready to send: its field, its value, its public reference.
struct Credential {
    header: String,
    value: String,
    reference: String,
}

#[async_trait]
impl RailMeans for MppMeans {
    fn rail(&self) -> Rail {
        Rail::Mpp
    }

    fn handles(&self, offer: &Offer) -> bool {
        challenge(offer).is_some()
    }

    fn check(&self, offer: &Offer, now: UnixTime) -> Result<Amount, RefusalReason> {
        let c = challenge(offer).ok_or(RefusalReason::RailNotEnabled)?;
        if !self.client.pays(&c.challenge) {
            return Err(RefusalReason::RailNotEnabled);
        }
        let (_, amount) = self.client.check(&c.challenge, now).map_err(rail_refusal)?;
        Ok(amount)
    }

    fn weight(&self, offer: &Offer) -> u16 {
        challenge(offer).map_or(0, |c| self.client.weight(&c.challenge))
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
            .ok_or_else(|| unresumable(&p, "not an MPP offer"))?;
        let now = UnixTime::from_system(std::time::SystemTime::now());
        // Checked again right before paying: an expired challenge is never
        // paid. A resumed intent may have been paid before the crash: it is
        // judged as of when it was decided, and paid again (a Lightning
        // payment is idempotent on the payment hash; an EVM signature is
        // bound to the challenge hash, so it settles once at most).
        let at = if p.resumed {
            UnixTime::from_system(p.created)
        } else {
            now
        };
        let payable = match self.client.check(&c.challenge, at) {
            Ok((payable, _)) => payable,
            Err(e) => {
                let reason = rail_refusal(e);
                inner.fail(&p, reason.reason(), false).await;
                return Err(PayerError::NothingPayable {
                    refused: vec![crate::payer::Refusal {
                        rail: Some(Rail::Mpp),
                        offer: p.offer.label(),
                        amount: Some(p.offer.amount.clone()),
                        reason,
                    }],
                });
            }
        };
        let credential = match payable {
            Payable::Lightning(charge) => self.pay_lightning(&inner, &p, &c, charge).await?,
            #[cfg(feature = "x402")]
            Payable::Evm(evm) => {
                let (charge, token) = *evm;
                self.sign_evm(&inner, &p, &c, &charge, &token, now).await?
            }
        };
        drop(guard);
        present(&inner, p, template, &c, credential).await
    }

    async fn present_stored(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        proof: StoredProof,
    ) -> Result<PayerPaid, PayerError> {
        let (
            StoredProof::Mpp {
                header,
                value,
                reference,
            },
            Some(c),
        ) = (proof, challenge(&p.offer).cloned())
        else {
            return Err(unresumable(&p, "stored proof is of another rail"));
        };
        let credential = Credential {
            header,
            value,
            reference,
        };
        present(&inner, p, template, &c, credential).await
    }

    fn advertise(&self, headers: &mut HeaderMap) {
        let name = HeaderName::from_static("accept-payment");
        if !headers.contains_key(&name)
            && let Ok(v) = HeaderValue::from_str(self.client.accept_payment())
            && !v.is_empty()
        {
            headers.insert(name, v);
        }
    }
}

impl MppMeans {
    /// Pays the invoice on its own task (a dropped caller never loses a
    /// payment in flight) and records the credential.
    async fn pay_lightning(
        &self,
        inner: &Arc<Inner>,
        p: &Purchase,
        c: &MppChallenge,
        charge: lightning::PayableCharge,
    ) -> Result<Credential, PayerError> {
        let l = self
            .client
            .lightning_client()
            .cloned()
            .ok_or_else(|| mpp_error(p, MppError::NoLightning))?;
        let span = info_span!("payer.pay", rail = "mpp", method = "lightning", entry = %p.id, amount = %charge.amount, payment_hash = %charge.payment_hash);
        let (me, task_p, challenge) = (Arc::clone(inner), p.clone(), c.challenge.clone());
        let task = async move {
            let p = task_p;
            let paid = match l
                .rail()
                .pay_bolt11(&charge.bolt11, charge.payment_hash)
                .await
            {
                Ok(paid) => paid,
                Err(e) => {
                    me.fail(&p, e.reason(), e.may_have_paid()).await;
                    return Err(mpp_error(&p, MppError::Lightning(Box::new(e))));
                }
            };
            if !charge.accepts(&paid.preimage) {
                me.fail(&p, "preimage_mismatch", true).await;
                return Err(mpp_error(&p, MppError::PreimageMismatch));
            }
            let credential = Credential {
                header: challenge.credential_header().to_owned(),
                value: lightning::credential(&challenge, &paid.preimage, None),
                reference: charge.payment_hash.to_string(),
            };
            record(&me, &p, &credential).await?;
            Ok(credential)
        }
        .instrument(span);
        match tokio::spawn(task).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "payment task died; outcome unknown");
                Err(PayerError::OutcomeUnknown {
                    entry: p.id.clone(),
                    rail: Rail::Mpp,
                })
            }
        }
    }

    /// Signs the EIP-3009 authorization (nonce = the challenge hash) and
    /// records the credential; nothing leaves the process here.
    #[cfg(feature = "x402")]
    async fn sign_evm(
        &self,
        inner: &Inner,
        p: &Purchase,
        c: &MppChallenge,
        charge: &crate::mpp::evm::PayableCharge,
        token: &crate::mpp::MppToken,
        now: UnixTime,
    ) -> Result<Credential, PayerError> {
        let signer = self
            .client
            .signer()
            .ok_or_else(|| mpp_error(p, MppError::NoEvm))?;
        let auth = crate::mpp::evm::authorization_for(&c.challenge, charge, signer.address(), now);
        let domain = token.terms(charge.request.recipient).domain();
        let digest = auth.signing_hash(&domain);
        let signature = match signer.sign_digest(&digest).await {
            Ok(s) => s,
            Err(e) => {
                inner.fail(p, e.reason(), false).await;
                return Err(mpp_error(p, MppError::Signer(e)));
            }
        };
        let value = crate::mpp::evm::credential(
            &c.challenge,
            &auth,
            signature,
            charge.request.method_details.chain_id,
        );
        let credential = Credential {
            header: c.challenge.credential_header().to_owned(),
            value,
            reference: auth.nonce.to_string(),
        };
        record(inner, p, &credential).await?;
        Ok(credential)
    }
}

/// Records `paid` with the credential (a secret, in the owner-only journal).
async fn record(inner: &Inner, p: &Purchase, c: &Credential) -> Result<(), PayerError> {
    let proof = StoredProof::Mpp {
        header: c.header.clone(),
        value: c.value.clone(),
        reference: c.reference.clone(),
    };
    inner.paid(p, &proof, c.reference.clone()).await
}

/// The paid request: the template with the credential in the field the
/// challenge names (replacing any value there).
fn with_credential(
    p: &Purchase,
    template: &Request,
    c: &Credential,
) -> Result<Request, PayerError> {
    let mut request = template.try_clone().ok_or(PayerError::BodyNotCloneable)?;
    let name = HeaderName::from_bytes(c.header.as_bytes()).map_err(|_| {
        mpp_error(
            p,
            MppError::Credential("the challenge names an invalid header"),
        )
    })?;
    let mut value = HeaderValue::from_str(&c.value)
        .map_err(|_| mpp_error(p, MppError::Credential("not a header value")))?;
    value.set_sensitive(true);
    request.headers_mut().insert(name, value);
    Ok(request)
}

async fn present(
    inner: &Inner,
    p: Purchase,
    template: Request,
    c: &MppChallenge,
    credential: Credential,
) -> Result<PayerPaid, PayerError> {
    inner.presenting(&p).await?;
    let request = with_credential(&p, &template, &credential)?;
    let url: Url = request.url().clone();
    let response = match inner.send(request).await {
        Ok(r) => r,
        Err(e) => {
            // The credential stays: the same request presents it again.
            warn!(entry = %p.id, error = %e, "paid request failed in transit");
            return Err(mpp_error(&p, MppError::RetryFailed(e)));
        }
    };
    let status = response.status();
    if status.is_server_error() {
        warn!(entry = %p.id, status = status.as_u16(), "server error after payment; outcome unknown, not paying again");
        let step = Step::to(EntryState::Presented)
            .status(status.as_u16())
            .detail("payment_outcome_unknown");
        if let Err(e) = inner.step(&p, step).await {
            warn!(entry = %p.id, error = %e, "cannot record the unknown outcome");
        }
        return Err(mpp_error(
            &p,
            MppError::OutcomeUnknown {
                status: status.as_u16(),
            },
        ));
    }
    if status == reqwest::StatusCode::PAYMENT_REQUIRED {
        let problem = problem_type(response).await;
        let e = MppError::StillUnpaid {
            status: status.as_u16(),
            problem,
        };
        inner.fail(&p, e.reason(), true).await;
        return Err(mpp_error(&p, e));
    }
    let receipt = MppReceipt::from_headers(
        c.challenge.id.to_string(),
        c.kind(),
        credential.reference.clone(),
        response.headers(),
    );
    if let Some(err) = &receipt.receipt_error {
        warn!(entry = %p.id, error = %err, "unreadable Payment-Receipt");
    }
    let detail = receipt.receipt.as_ref().map(|r| r.reference.clone());
    inner.served(&p, status.as_u16(), detail).await;
    tracing::debug!(%url, "MPP payment served");
    Ok(PayerPaid {
        response,
        receipt: Some(p.receipt(
            credential.reference,
            receipt.receipt.as_ref().map(|r| r.reference.clone()),
            Some(RailReceipt::Mpp(Box::new(receipt))),
        )),
        reused_credential: false,
    })
}

/// The problem `type` of a refusal (bounded read; `None` when absent).
async fn problem_type(response: reqwest::Response) -> Option<String> {
    let (body, _) = crate::body::read_bounded(response, 16 * 1024).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v.get("type")?
        .as_str()
        .map(|t| t.chars().take(256).collect())
}
