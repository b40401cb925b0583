//! The payer's means of payment, and how it pays and presents through each
//! rail's client: every check, payment, proof and answer classification is
//! the rail client's own code (its crate-internal "answer this 402" entry
//! points); this module only journals between the steps.

use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "x402")]
use std::time::SystemTime;

use pay402_core::l402::Credential;
use pay402_core::lightning::Preimage;
use pay402_core::offer::{L402Challenge, Offer, Rail, RailChallenge};
use pay402_core::problem::Reason;
use pay402_core::rates::Amount;
use pay402_core::time::UnixTime;
use reqwest::header::HeaderValue;
use reqwest::{Request, Url};
use tracing::{Instrument as _, info_span, warn};

use super::error::{PayerError, RefusalReason};
use super::receipt::{PayerPaid, RailReceipt};
use super::stored::StoredProof;
use super::{Inner, Purchase, Sent, scope_string};
#[cfg(feature = "x402-mock")]
use crate::cache::origin_of;
use crate::cache::{KeyGuard, Token, TokenScope};
use crate::client::{L402Client, L402ClientBuilder, token_header};
use crate::error::ClientError;
use crate::journal::{EntryState, Step, StoredToken};
use crate::timeouts::TotalTimeout as _;

/// The per-rail clients the payer pays with.
pub(crate) struct Means {
    pub(crate) l402: Option<L402Client>,
    #[cfg(feature = "x402")]
    pub(crate) x402: Option<crate::x402::X402Client>,
    #[cfg(feature = "x402-mock")]
    pub(crate) mock: Option<crate::x402_mock::MockClient>,
    #[cfg(feature = "bitreq")]
    pub(crate) bitreq: Vec<crate::bitreq::BitRequests>,
}

fn rail_refusal<E: Reason + std::fmt::Display>(e: E) -> RefusalReason {
    RefusalReason::Rail {
        reason: e.reason(),
        detail: e.to_string().chars().take(256).collect(),
    }
}

#[cfg(feature = "bitreq")]
pub(crate) fn bitreq_method(m: pay402_core::offer::BitreqMethod) -> crate::bitreq::PaymentMethod {
    use crate::bitreq::PaymentMethod;
    use pay402_core::offer::BitreqMethod;
    match m {
        BitreqMethod::OnChain => PaymentMethod::OnChain,
        BitreqMethod::Transfer => PaymentMethod::BitTransfer,
        BitreqMethod::Channel => PaymentMethod::Channel,
    }
}

impl Means {
    /// Builds each rail's client on the payer's HTTP client (and its
    /// timeout, when one was set explicitly: `Some(None)` is none) and scope.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        http: &reqwest::Client,
        timeout: Option<Option<Duration>>,
        scope: TokenScope,
        l402: Option<L402ClientBuilder>,
        #[cfg(feature = "x402")] x402: Option<crate::x402::X402ClientBuilder>,
        #[cfg(feature = "x402-mock")] mock: Option<crate::x402_mock::MockClientBuilder>,
        #[cfg(feature = "bitreq")] bitreq: Vec<crate::bitreq::BitRequestsBuilder>,
    ) -> Means {
        Means {
            l402: l402.map(|b| {
                let b = b.scope(scope).http(http.clone());
                b.total_timeout(timeout).build()
            }),
            #[cfg(feature = "x402")]
            x402: x402.map(|b| {
                let b = b.http(http.clone());
                b.total_timeout(timeout).build()
            }),
            #[cfg(feature = "x402-mock")]
            mock: mock.map(|b| {
                let b = b.http_client(http.clone());
                b.total_timeout(timeout).build()
            }),
            #[cfg(feature = "bitreq")]
            bitreq: bitreq
                .into_iter()
                .map(|b| {
                    let b = b.http(http.clone());
                    b.total_timeout(timeout).build()
                })
                .collect(),
        }
    }

    pub(crate) fn rails(&self) -> Vec<Rail> {
        let mut v = Vec::new();
        if self.l402.is_some() {
            v.push(Rail::L402);
        }
        #[cfg(feature = "x402")]
        if self.x402.is_some() {
            v.push(Rail::X402);
        }
        #[cfg(feature = "x402-mock")]
        if self.mock.is_some() {
            v.push(Rail::X402Mock);
        }
        #[cfg(feature = "bitreq")]
        if !self.bitreq.is_empty() {
            v.push(Rail::BitRequests);
        }
        v
    }

    #[cfg(feature = "bitreq")]
    fn bitreq_for(
        &self,
        method: pay402_core::offer::BitreqMethod,
    ) -> Option<&crate::bitreq::BitRequests> {
        let m = bitreq_method(method);
        self.bitreq.iter().find(|c| c.method() == m)
    }

    /// The rail client's own checks of `offer` (nothing is paid).
    pub(crate) fn check(&self, offer: &Offer, now: UnixTime) -> Result<(), RefusalReason> {
        match &offer.challenge {
            RailChallenge::L402(c) => {
                let l = self.l402.as_ref().ok_or(RefusalReason::RailNotEnabled)?;
                l.rail()
                    .check(&c.to_challenge(), now)
                    .map(|_| ())
                    .map_err(rail_refusal)
            }
            #[cfg(feature = "x402")]
            RailChallenge::X402(c) => {
                let x = self.x402.as_ref().ok_or(RefusalReason::RailNotEnabled)?;
                let offers = crate::x402::offer::offers_of(&c.required);
                let o = offers.get(c.index).ok_or(RefusalReason::RailNotEnabled)?;
                x.rail().accepts(o).map_err(rail_refusal)
            }
            #[cfg(feature = "x402-mock")]
            RailChallenge::X402Mock(c) => {
                let m = self.mock.as_ref().ok_or(RefusalReason::RailNotEnabled)?;
                let comp = c.component().ok_or(RefusalReason::RailNotEnabled)?;
                m.accepts(comp).map_err(rail_refusal)
            }
            #[cfg(feature = "bitreq")]
            RailChallenge::BitRequests(c) => {
                let b = self
                    .bitreq_for(c.method)
                    .ok_or(RefusalReason::RailNotEnabled)?;
                b.rail().check(&c.info, b.max_price()).map_err(rail_refusal)
            }
            _ => Err(RefusalReason::RailNotEnabled),
        }
    }

    /// A credential for `url` held in memory by a rail client.
    pub(crate) fn cached_credential(&self, url: &Url) -> Option<Sent> {
        if let Some(l) = &self.l402 {
            let key = l.rail().scope.key(url);
            if let Some(token) = l.rail().cache.get(&key) {
                return Some(Sent::L402(token, key));
            }
        }
        #[cfg(feature = "x402-mock")]
        if let Some(m) = &self.mock
            && let Some(t) = crate::x402_mock::client::cached_for(m, url)
        {
            return Some(Sent::Mock(t.as_str().to_owned()));
        }
        None
    }

    /// Loads kept tokens into the rail clients; the credential for `url`.
    pub(crate) fn load_tokens(&self, url: &Url, tokens: &[StoredToken]) -> Option<Sent> {
        for t in tokens {
            match t.rail {
                Rail::L402 => {
                    let Some(l) = &self.l402 else { continue };
                    let Ok(cred) = Credential::parse(&t.credential) else {
                        continue;
                    };
                    let payment_hash = cred.preimage().payment_hash();
                    let Ok(mut header) = HeaderValue::from_str(&t.credential) else {
                        continue;
                    };
                    header.set_sensitive(true);
                    let key = l.rail().scope.key(url);
                    l.rail().cache.insert(
                        key,
                        Arc::new(Token {
                            header,
                            payment_hash,
                        }),
                    );
                }
                #[cfg(feature = "x402-mock")]
                Rail::X402Mock => {
                    let Some(m) = &self.mock else { continue };
                    let Some(bearer) = t.credential.strip_prefix("Bearer ") else {
                        continue;
                    };
                    let exp = t
                        .expires_ms
                        .map_or(0, |ms| u64::try_from(ms / 1000).unwrap_or(0));
                    crate::x402_mock::client::remember(
                        m,
                        url,
                        zeroize::Zeroizing::new(bearer.to_owned()),
                        exp,
                    );
                }
                _ => {}
            }
        }
        self.cached_credential(url)
    }

    /// Forgets a refused credential; what to forget in the journal.
    #[cfg_attr(not(feature = "x402-mock"), allow(unused_variables))]
    pub(crate) fn evict(&self, url: &Url, sent: &Sent) -> Option<(String, String, Rail, String)> {
        match sent {
            Sent::L402(token, key) => {
                let l = self.l402.as_ref()?;
                l.rail().cache.evict_if_current(key, token);
                Some((
                    key.origin().to_owned(),
                    scope_string(key),
                    Rail::L402,
                    token.header.to_str().ok()?.to_owned(),
                ))
            }
            #[cfg(feature = "x402-mock")]
            Sent::Mock(bearer) => {
                let m = self.mock.as_ref()?;
                crate::x402_mock::client::evict_for(m, url, bearer);
                Some((
                    origin_of(url),
                    mock_scope(url),
                    Rail::X402Mock,
                    format!("Bearer {bearer}"),
                ))
            }
        }
    }
}

/// The scope an x402_mock token is kept under: its origin and path.
#[cfg(feature = "x402-mock")]
pub(crate) fn mock_scope(url: &Url) -> String {
    format!("{}{}", origin_of(url), url.path())
}

fn unresumable(p: &Purchase, detail: &str) -> PayerError {
    PayerError::Unresumable {
        entry: p.id.clone(),
        detail: detail.to_owned(),
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
        match p.offer.challenge.clone() {
            RailChallenge::L402(c) => self.pay_l402(p, c, template, guard).await,
            #[cfg(feature = "x402")]
            RailChallenge::X402(c) => self.pay_x402(p, c, template, guard).await,
            #[cfg(feature = "x402-mock")]
            RailChallenge::X402Mock(c) => {
                if p.resumed {
                    // The permit may have reached the token endpoint.
                    return Err(PayerError::OutcomeUnknown {
                        entry: p.id.clone(),
                        rail: Rail::X402Mock,
                    });
                }
                self.pay_mock(p, c, template, guard).await
            }
            #[cfg(feature = "bitreq")]
            RailChallenge::BitRequests(c) => {
                if p.resumed && c.method == pay402_core::offer::BitreqMethod::Channel {
                    // A channel payment is sent to the channel server as it is made.
                    return Err(PayerError::OutcomeUnknown {
                        entry: p.id.clone(),
                        rail: Rail::BitRequests,
                    });
                }
                self.pay_bitreq(p, c, template, guard).await
            }
            _ => Err(unresumable(&p, "no means of payment for this rail")),
        }
    }

    /// Presents a proof kept in the journal (a resumed purchase).
    pub(crate) async fn present_stored(
        self: Arc<Self>,
        p: Purchase,
        template: Request,
        proof: &str,
    ) -> Result<PayerPaid, PayerError> {
        let proof = StoredProof::read(proof).map_err(|d| unresumable(&p, &d))?;
        match (proof, p.offer.challenge.clone()) {
            (StoredProof::L402 { preimage }, RailChallenge::L402(c)) => {
                let l = self
                    .means
                    .l402
                    .clone()
                    .ok_or_else(|| unresumable(&p, "no Lightning payer"))?;
                let preimage = Preimage::from_hex(&preimage)
                    .ok()
                    .filter(|pre| pre.matches(&c.payment_hash))
                    .ok_or_else(|| unresumable(&p, "stored preimage does not match"))?;
                let token = self.l402_token(&l, &p, &c, &preimage).await?;
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
                self.present_l402(&l, p, template, token, receipt).await
            }
            #[cfg(feature = "x402")]
            (
                StoredProof::X402 {
                    header,
                    value,
                    details,
                },
                RailChallenge::X402(c),
            ) => {
                let x = self
                    .means
                    .x402
                    .clone()
                    .ok_or_else(|| unresumable(&p, "no EVM signer"))?;
                let signed = crate::x402::SignedPayment::from_parts(details, &header, &value)
                    .ok_or_else(|| unresumable(&p, "stored x402 payment does not read back"))?;
                let asked = c.required.error().map(str::to_owned);
                let paid_at = p.created;
                self.present_x402(&x, p, template, signed, paid_at, asked)
                    .await
            }
            #[cfg(feature = "x402-mock")]
            (stored @ StoredProof::X402Mock { .. }, RailChallenge::X402Mock(c)) => {
                let m = self
                    .means
                    .mock
                    .clone()
                    .ok_or_else(|| unresumable(&p, "no x402_mock means"))?;
                let receipt = stored
                    .mock_receipt(&c, &p.url)
                    .ok_or_else(|| unresumable(&p, "stored x402_mock token does not read back"))?;
                let StoredProof::X402Mock { token, .. } = stored else {
                    return Err(unresumable(&p, "stored x402_mock token"));
                };
                self.present_mock(&m, p, template, token, receipt).await
            }
            #[cfg(feature = "bitreq")]
            (
                StoredProof::BitRequests {
                    headers, proof_id, ..
                },
                RailChallenge::BitRequests(c),
            ) => {
                let b = self
                    .means
                    .bitreq_for(c.method)
                    .cloned()
                    .ok_or_else(|| unresumable(&p, "no BitRequests client for this method"))?;
                let stored_proof = pay402_core::bitreq::Proof::from_pairs(
                    headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
                )
                .map_err(|e| unresumable(&p, &e.to_string()))?;
                let made = crate::bitreq::client::Made {
                    proof: stored_proof,
                    receipt: super::stored::bitreq_receipt(&c, &p, proof_id),
                    onchain: None,
                };
                self.present_bitreq(&b, p, template, made).await
            }
            _ => Err(unresumable(&p, "stored proof is of another rail")),
        }
    }

    // ---- L402 -------------------------------------------------------------

    async fn pay_l402(
        self: Arc<Self>,
        p: Purchase,
        c: L402Challenge,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let l = self
            .means
            .l402
            .clone()
            .ok_or_else(|| unresumable(&p, "no Lightning payer"))?;
        let span = info_span!("payer.pay", rail = "l402", entry = %p.id, amount = %p.offer.amount, payment_hash = %c.payment_hash);
        let me = Arc::clone(&self);
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
            let token = me.l402_token(&l, &p, &c, &paid.preimage).await?;
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
        self.present_l402(&l, p, template, token, receipt).await
    }

    /// The token for a paid challenge, cached in the L402 client and kept
    /// in the journal by origin and scope.
    async fn l402_token(
        &self,
        l: &L402Client,
        p: &Purchase,
        c: &L402Challenge,
        preimage: &Preimage,
    ) -> Result<Arc<Token>, PayerError> {
        let header =
            token_header(c.scheme, &c.macaroon, preimage).map_err(|e| PayerError::L402 {
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
        if let Err(e) = self.journal.store().put_token(&kept).await {
            warn!(error = %e, "cannot keep the L402 token in the journal");
        }
        Ok(token)
    }

    async fn present_l402(
        &self,
        l: &L402Client,
        p: Purchase,
        template: Request,
        token: Arc<Token>,
        receipt: crate::Receipt,
    ) -> Result<PayerPaid, PayerError> {
        self.step(&p, Step::to(EntryState::Presented))
            .await
            .map_err(|e| self.journal_after(&p, e))?;
        let proof_id = c_hash(&receipt);
        match l.rail().present(&template, &token, receipt.clone()).await {
            Ok(paid) => {
                self.served(&p, paid.response.status().as_u16(), None).await;
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
                            && let Err(err) = self
                                .journal
                                .store()
                                .remove_token(key.origin(), &scope_string(&key), Rail::L402, cred)
                                .await
                        {
                            warn!(error = %err, "cannot forget a refused token");
                        }
                        self.fail(&p, e.reason(), true).await;
                    }
                    // The token stays: the same request presents it again.
                    ClientError::RetryFailed { .. }
                    | ClientError::ServerErrorAfterPayment { .. } => {}
                    _ => {
                        self.fail(&p, e.reason(), e.may_have_paid() || p.resumed)
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

    /// Records `served`; a journal failure is logged (the caller has its
    /// response).
    async fn served(&self, p: &Purchase, status: u16, detail: Option<String>) {
        let mut step = Step::to(EntryState::Served).status(status);
        if let Some(d) = detail {
            step = step.detail(d);
        }
        if let Err(e) = self.step(p, step).await {
            warn!(entry = %p.id, error = %e, "served, but the journal failed");
        }
    }

    // ---- x402 -------------------------------------------------------------

    #[cfg(feature = "x402")]
    async fn pay_x402(
        self: Arc<Self>,
        p: Purchase,
        c: pay402_core::offer::X402Challenge,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let x = self
            .means
            .x402
            .clone()
            .ok_or_else(|| unresumable(&p, "no EVM signer"))?;
        let offers = crate::x402::offer::offers_of(&c.required);
        let o = offers
            .get(c.index)
            .ok_or_else(|| unresumable(&p, "x402 requirement index"))?;
        let now = SystemTime::now();
        let span = crate::x402::client::pay_span(o, x.address());
        let signed = match x
            .rail()
            .sign_offer(&c.required, o, now)
            .instrument(span.clone())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                // Signing is local: nothing left the process.
                self.fail(&p, e.reason(), false).await;
                return Err(PayerError::X402 {
                    source: Box::new(e),
                    entry: p.id.clone(),
                    resumed: p.resumed,
                });
            }
        };
        let proof = StoredProof::X402 {
            header: signed.header_name().as_str().to_owned(),
            value: signed
                .header_value()
                .to_str()
                .unwrap_or_default()
                .to_owned(),
            details: signed.details().clone(),
        };
        self.step(
            &p,
            Step::to(EntryState::Paid).proof(proof.to_json(), signed.details().nonce.to_string()),
        )
        .await
        .map_err(|e| self.journal_after(&p, e))?;
        drop(guard);
        let asked = c.required.error().map(str::to_owned);
        self.present_x402(&x, p, template, signed, now, asked)
            .instrument(span)
            .await
    }

    #[cfg(feature = "x402")]
    async fn present_x402(
        &self,
        x: &crate::x402::X402Client,
        p: Purchase,
        template: Request,
        signed: crate::x402::SignedPayment,
        paid_at: SystemTime,
        asked: Option<String>,
    ) -> Result<PayerPaid, PayerError> {
        use crate::x402::X402Error;
        self.step(&p, Step::to(EntryState::Presented))
            .await
            .map_err(|e| self.journal_after(&p, e))?;
        let nonce = signed.details().nonce.to_string();
        match x
            .rail()
            .deliver(template, &signed, p.url.clone(), paid_at, asked.as_deref())
            .await
        {
            Ok(paid) => {
                let tx = paid
                    .receipt
                    .as_ref()
                    .and_then(|r| r.transaction())
                    .map(str::to_owned);
                self.served(&p, paid.response.status().as_u16(), tx.clone())
                    .await;
                let rail_receipt = paid.receipt.map(|r| RailReceipt::X402(Box::new(r)));
                Ok(PayerPaid {
                    response: paid.response,
                    receipt: Some(p.receipt(nonce, tx, rail_receipt)),
                    reused_credential: false,
                })
            }
            Err(e) => {
                match &e {
                    // The same payment is sent again by the same request.
                    X402Error::RetryFailed { .. }
                    | X402Error::SettlementPending { .. }
                    | X402Error::ServerErrorAfterPayment { .. } => {}
                    _ => {
                        self.fail(&p, e.reason(), e.may_have_paid() || p.resumed)
                            .await
                    }
                }
                Err(PayerError::X402 {
                    source: Box::new(e),
                    entry: p.id.clone(),
                    resumed: p.resumed,
                })
            }
        }
    }

    // ---- x402_mock --------------------------------------------------------

    #[cfg(feature = "x402-mock")]
    async fn pay_mock(
        self: Arc<Self>,
        p: Purchase,
        c: pay402_core::offer::MockChallenge,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let m = self
            .means
            .mock
            .clone()
            .ok_or_else(|| unresumable(&p, "no x402_mock means"))?;
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
                self.fail(&p, e.reason(), false).await;
                return Err(err(e, &p));
            }
        };
        let (bearer, receipt) = match m.buy(comp, &endpoint, &p.url).await {
            Ok(r) => r,
            Err(e) => {
                self.fail(&p, e.reason(), e.may_have_paid()).await;
                return Err(err(e, &p));
            }
        };
        let stored = StoredProof::mock(bearer.as_str(), &receipt);
        self.step(
            &p,
            Step::to(EntryState::Paid).proof(stored.to_json(), receipt.digest.to_string()),
        )
        .await
        .map_err(|e| self.journal_after(&p, e))?;
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
        if let Err(e) = self.journal.store().put_token(&kept).await {
            warn!(error = %e, "cannot keep the x402_mock token in the journal");
        }
        drop(guard);
        self.present_mock(&m, p, template, bearer.as_str().to_owned(), receipt)
            .await
    }

    #[cfg(feature = "x402-mock")]
    async fn present_mock(
        &self,
        m: &crate::x402_mock::MockClient,
        p: Purchase,
        template: Request,
        bearer: String,
        receipt: crate::x402_mock::MockReceipt,
    ) -> Result<PayerPaid, PayerError> {
        use crate::x402_mock::MockClientError;
        self.step(&p, Step::to(EntryState::Presented))
            .await
            .map_err(|e| self.journal_after(&p, e))?;
        let digest = receipt.digest.to_string();
        match m.present(&template, &bearer, receipt).await {
            Ok(paid) => {
                self.served(&p, paid.response.status().as_u16(), None).await;
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
                        if let Err(err) = self
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
                        self.fail(&p, e.reason(), true).await;
                    }
                    MockClientError::RetryFailed { .. } => {}
                    _ => {
                        self.fail(&p, e.reason(), e.may_have_paid() || p.resumed)
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

    // ---- BitRequests ------------------------------------------------------

    #[cfg(feature = "bitreq")]
    async fn pay_bitreq(
        self: Arc<Self>,
        p: Purchase,
        c: pay402_core::offer::BitreqChallenge,
        template: Request,
        guard: KeyGuard,
    ) -> Result<PayerPaid, PayerError> {
        let b = self
            .means
            .bitreq_for(c.method)
            .cloned()
            .ok_or_else(|| unresumable(&p, "no BitRequests client for this method"))?;
        let made = match Arc::clone(b.rail())
            .make(c.info.clone(), p.url.clone(), b.max_price())
            .await
        {
            Ok(m) => m,
            Err(e) => {
                self.fail(&p, e.reason(), e.may_have_paid()).await;
                return Err(PayerError::BitRequests {
                    source: Box::new(e),
                    entry: p.id.clone(),
                    resumed: p.resumed,
                });
            }
        };
        let stored = StoredProof::bitreq(&made);
        self.step(
            &p,
            Step::to(EntryState::Paid).proof(stored.to_json(), made.receipt.proof_id.clone()),
        )
        .await
        .map_err(|e| self.journal_after(&p, e))?;
        drop(guard);
        self.present_bitreq(&b, p, template, made).await
    }

    #[cfg(feature = "bitreq")]
    async fn present_bitreq(
        &self,
        b: &crate::bitreq::BitRequests,
        p: Purchase,
        template: Request,
        made: crate::bitreq::client::Made,
    ) -> Result<PayerPaid, PayerError> {
        use crate::bitreq::BitRequestsError;
        self.step(&p, Step::to(EntryState::Presented))
            .await
            .map_err(|e| self.journal_after(&p, e))?;
        let proof_id = made.receipt.proof_id.clone();
        match b.rail().present(template, made).await {
            Ok(paid) => {
                let status = paid.response.status().as_u16();
                let Some(receipt) = paid.receipt else {
                    // Not spent (the chain never saw the transaction).
                    self.fail(&p, "not_spent", false).await;
                    return Ok(PayerPaid {
                        response: paid.response,
                        receipt: None,
                        reused_credential: false,
                    });
                };
                self.served(&p, status, Some(proof_id.clone())).await;
                Ok(PayerPaid {
                    response: paid.response,
                    receipt: Some(p.receipt(
                        proof_id,
                        None,
                        Some(RailReceipt::BitRequests(Box::new(receipt))),
                    )),
                    reused_credential: false,
                })
            }
            Err(e) => {
                match &e {
                    BitRequestsError::RetryFailed { .. } => {}
                    _ => {
                        self.fail(&p, e.reason(), e.may_have_paid() || p.resumed)
                            .await
                    }
                }
                Err(PayerError::BitRequests {
                    source: Box::new(e),
                    entry: p.id.clone(),
                    resumed: p.resumed,
                })
            }
        }
    }
}

/// The public reference of an L402 payment: its payment hash.
fn c_hash(receipt: &crate::Receipt) -> String {
    receipt.payment_hash.to_string()
}
