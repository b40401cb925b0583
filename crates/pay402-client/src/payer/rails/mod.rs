//! The payer's means of payment: one [`RailMeans`] per rail (per
//! BitRequests method), each in its own file of the same shape.
//!
//! A means says which offers it pays ([`RailMeans::handles`]), checks one
//! with its rail client's own rules and says what it costs in its own unit
//! ([`RailMeans::check`]), pays it — recording the proof in the journal
//! before it leaves the process — and presents the proof on the retry
//! ([`RailMeans::pay`]), or presents a proof kept by an earlier call or
//! process ([`RailMeans::present_stored`]). Means with reusable credentials
//! (L402 tokens, x402_mock access tokens) also keep, load and evict them.
//!
//! Every check, payment, proof and answer classification is the rail
//! client's own code; a means only journals between the steps. Adding a rail
//! is one file here (and its client's folder), one [`StoredProof`] variant,
//! one [`RailReceipt`](super::RailReceipt) variant and one
//! [`PayerError`] variant.

/// `fn challenge(offer) -> Option<&$ty>`: the offer's challenge when it is
/// one of rail `$rail` (the variant of the same name in [`Rail`] and
/// [`RailChallenge`](pay402_core::offer::RailChallenge)).
macro_rules! challenge_of_rail {
    ($rail:ident, $ty:ty) => {
        fn challenge(offer: &Offer) -> Option<&$ty> {
            match &offer.challenge {
                pay402_core::offer::RailChallenge::$rail(c) => Some(c),
                _ => None,
            }
        }
    };
}

/// [`RailMeans::rail`] and [`RailMeans::handles`] of a means that pays
/// every offer of one rail, read by the `challenge` of
/// [`challenge_of_rail!`].
macro_rules! means_of_rail {
    ($rail:ident) => {
        fn rail(&self) -> Rail {
            Rail::$rail
        }

        fn handles(&self, offer: &Offer) -> bool {
            challenge(offer).is_some()
        }
    };
}

#[cfg(feature = "bitreq")]
mod bitreq;
mod l402;
mod mpp;
#[cfg(feature = "x402")]
mod x402;
#[cfg(feature = "x402-mock")]
mod x402_mock;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pay402_core::offer::{Offer, Rail};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use reqwest::header::HeaderMap;
use reqwest::{Request, Url};

use super::error::{PayerError, RefusalReason};
use super::receipt::PayerPaid;
use super::stored::StoredProof;
use super::{Inner, Purchase, Sent};
use crate::cache::{KeyGuard, TokenScope};
use crate::client::L402ClientBuilder;
use crate::journal::{EntryState, Step, StoredToken};
use crate::timeouts::TotalTimeout as _;

pub(crate) use self::mpp::MppMeans;
#[cfg(feature = "bitreq")]
pub(crate) use bitreq::bitreq_method;

/// One means of payment of the payer: the client of one rail.
#[async_trait]
pub(crate) trait RailMeans: Send + Sync + 'static {
    /// The rail it pays.
    fn rail(&self) -> Rail;

    /// Whether `offer` is one this means pays (its rail, and for
    /// BitRequests its method).
    fn handles(&self, offer: &Offer) -> bool;

    /// The rail client's own checks of `offer` (nothing is paid), and what
    /// it costs in its own unit: the amount to convert and budget on.
    fn check(&self, offer: &Offer, now: UnixTime) -> Result<Amount, RefusalReason>;

    /// The weight (thousandths) the payer gives `offer` among equally
    /// priced ones: MPP's `Accept-Payment` q; `1000` for other rails.
    fn weight(&self, _offer: &Offer) -> u16 {
        1000
    }

    /// Whether an open purchase without a kept proof may be paid now
    /// (`Err`: its payment may have left the process; never paid again).
    fn may_repay(&self, _p: &Purchase) -> Result<(), PayerError> {
        Ok(())
    }

    /// Pays the purchase's offer, records the proof (`paid`), releases the
    /// single-flight `guard`, then presents the proof on the retry.
    async fn pay(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError>;

    /// Presents a proof kept in the journal (a resumed purchase).
    async fn present_stored(
        &self,
        inner: Arc<Inner>,
        p: Purchase,
        template: Request,
        proof: StoredProof,
    ) -> Result<PayerPaid, PayerError>;

    /// A reusable credential for `url` held in memory.
    fn cached_credential(&self, _url: &Url) -> Option<Sent> {
        None
    }

    /// Loads a credential kept in the journal (one of this rail's).
    fn load_token(&self, _url: &Url, _token: &StoredToken) {}

    /// Forgets a refused credential; what to forget in the journal
    /// (origin, scope, rail, credential), when it is one of this means'.
    fn evict(&self, _url: &Url, _sent: &Sent) -> Option<(String, String, Rail, String)> {
        None
    }

    /// A journal scope, besides the payer's, its credentials are kept under.
    fn token_scope(&self, _url: &Url) -> Option<String> {
        None
    }

    /// Headers sent with every request (MPP's `Accept-Payment`).
    fn advertise(&self, _headers: &mut HeaderMap) {}
}

/// The refusal for a rail client's own error.
pub(crate) fn rail_refusal<E: Reason + std::fmt::Display>(e: E) -> RefusalReason {
    RefusalReason::Rail {
        reason: e.reason(),
        detail: e.to_string().chars().take(256).collect(),
    }
}

/// An open purchase that cannot be finished.
pub(crate) fn unresumable(p: &Purchase, detail: &str) -> PayerError {
    PayerError::Unresumable {
        entry: p.id.clone(),
        detail: detail.to_owned(),
    }
}

/// Every means the payer holds, in a stable order (L402, x402, x402_mock,
/// BitRequests, MPP).
pub(crate) struct Means {
    list: Vec<Arc<dyn RailMeans>>,
}

/// The per-rail builders a [`PayerBuilder`](super::PayerBuilder) collects.
#[derive(Default)]
pub(crate) struct MeansBuilders {
    pub(crate) l402: Option<L402ClientBuilder>,
    #[cfg(feature = "x402")]
    pub(crate) x402: Option<crate::x402::X402ClientBuilder>,
    #[cfg(feature = "x402-mock")]
    pub(crate) mock: Option<crate::x402_mock::MockClientBuilder>,
    #[cfg(feature = "bitreq")]
    pub(crate) bitreq: Vec<crate::bitreq::BitRequestsBuilder>,
    pub(crate) mpp: Option<crate::mpp::MppClientBuilder>,
}

impl Means {
    /// Builds each rail's client on the payer's HTTP client (and its
    /// timeout, when one was set explicitly: `Some(None)` is none) and scope.
    pub(crate) fn build(
        http: &reqwest::Client,
        timeout: Option<Option<Duration>>,
        scope: TokenScope,
        b: MeansBuilders,
    ) -> Means {
        let mut list: Vec<Arc<dyn RailMeans>> = Vec::new();
        if let Some(b) = b.l402 {
            let b = b.scope(scope).http(http.clone());
            list.push(Arc::new(l402::L402Means::new(
                b.total_timeout(timeout).build(),
            )));
        }
        #[cfg(feature = "x402")]
        if let Some(b) = b.x402 {
            let b = b.http(http.clone());
            list.push(Arc::new(x402::X402Means::new(
                b.total_timeout(timeout).build(),
            )));
        }
        #[cfg(feature = "x402-mock")]
        if let Some(b) = b.mock {
            let b = b.http_client(http.clone());
            list.push(Arc::new(x402_mock::MockMeans::new(
                b.total_timeout(timeout).build(),
            )));
        }
        #[cfg(feature = "bitreq")]
        for b in b.bitreq {
            let b = b.http(http.clone());
            list.push(Arc::new(bitreq::BitreqMeans::new(
                b.total_timeout(timeout).build(),
            )));
        }
        if let Some(b) = b.mpp {
            list.push(Arc::new(MppMeans::new(b.build(http.clone(), timeout))));
        }
        Means { list }
    }

    /// The rails held, each once.
    pub(crate) fn rails(&self) -> Vec<Rail> {
        let mut v: Vec<Rail> = Vec::new();
        for m in &self.list {
            if !v.contains(&m.rail()) {
                v.push(m.rail());
            }
        }
        v
    }

    /// The means that pays `offer`.
    pub(crate) fn for_offer(&self, offer: &Offer) -> Option<&Arc<dyn RailMeans>> {
        self.list.iter().find(|m| m.handles(offer))
    }

    /// The rail client's own checks of `offer`; its cost in its unit.
    pub(crate) fn check(&self, offer: &Offer, now: UnixTime) -> Result<Amount, RefusalReason> {
        self.for_offer(offer)
            .ok_or(RefusalReason::RailNotEnabled)?
            .check(offer, now)
    }

    /// The weight of `offer` (see [`RailMeans::weight`]).
    pub(crate) fn weight(&self, offer: &Offer) -> u16 {
        self.for_offer(offer).map_or(1000, |m| m.weight(offer))
    }

    /// A credential for `url` held in memory by a rail client.
    pub(crate) fn cached_credential(&self, url: &Url) -> Option<Sent> {
        self.list.iter().find_map(|m| m.cached_credential(url))
    }

    /// Loads kept tokens into the rail clients; the credential for `url`.
    pub(crate) fn load_tokens(&self, url: &Url, tokens: &[StoredToken]) -> Option<Sent> {
        for t in tokens {
            for m in self.list.iter().filter(|m| m.rail() == t.rail) {
                m.load_token(url, t);
            }
        }
        self.cached_credential(url)
    }

    /// Forgets a refused credential; what to forget in the journal.
    pub(crate) fn evict(&self, url: &Url, sent: &Sent) -> Option<(String, String, Rail, String)> {
        self.list.iter().find_map(|m| m.evict(url, sent))
    }

    /// The journal scopes, besides the payer's, credentials are kept under.
    pub(crate) fn token_scopes(&self, url: &Url) -> Vec<String> {
        self.list
            .iter()
            .filter_map(|m| m.token_scope(url))
            .collect()
    }

    /// Headers every request carries.
    pub(crate) fn advertise(&self, headers: &mut HeaderMap) {
        for m in &self.list {
            m.advertise(headers);
        }
    }
}

impl Inner {
    /// Pays the purchase's offer through its rail, then presents the proof.
    pub(crate) async fn pay(
        self: Arc<Self>,
        p: Purchase,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let Some(means) = self.means.for_offer(&p.offer).cloned() else {
            return Err(unresumable(&p, "no means of payment for this rail"));
        };
        if p.resumed {
            means.may_repay(&p)?;
        }
        means.pay(self, p, template, guard).await
    }

    /// Presents a proof kept in the journal (a resumed purchase).
    pub(crate) async fn present_stored(
        self: Arc<Self>,
        p: Purchase,
        template: Request,
        proof: &str,
    ) -> Result<PayerPaid, PayerError> {
        let proof = StoredProof::read(proof).map_err(|d| unresumable(&p, &d))?;
        let Some(means) = self.means.for_offer(&p.offer).cloned() else {
            return Err(unresumable(&p, "no means of payment for this rail"));
        };
        means.present_stored(self, p, template, proof).await
    }

    /// Records `served`; a journal failure is logged (the caller has its
    /// response).
    pub(crate) async fn served(&self, p: &Purchase, status: u16, detail: Option<String>) {
        let mut step = Step::to(EntryState::Served).status(status);
        if let Some(d) = detail {
            step = step.detail(d);
        }
        if let Err(e) = self.step(p, step).await {
            tracing::warn!(entry = %p.id, error = %e, "served, but the journal failed");
        }
    }

    /// Records `presented` (before the proof is sent).
    pub(crate) async fn presenting(&self, p: &Purchase) -> Result<(), PayerError> {
        self.step(p, Step::to(EntryState::Presented))
            .await
            .map_err(|e| self.journal_after(p, e))
    }

    /// Records `paid` with the proof (before it leaves the process).
    pub(crate) async fn paid(
        &self,
        p: &Purchase,
        proof: &StoredProof,
        proof_id: String,
    ) -> Result<(), PayerError> {
        self.step(
            p,
            Step::to(EntryState::Paid).proof(proof.to_json(), proof_id),
        )
        .await
        .map_err(|e| self.journal_after(p, e))
    }
}
