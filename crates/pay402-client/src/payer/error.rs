//! [`PayerError`], and why an offer was refused ([`Refusal`]).

use pay402_core::offer::{OfferError, Rail};
use pay402_core::problem::Reason;
use pay402_core::rates::{Amount, ConvertError};
use reqwest::StatusCode;

use crate::error::ClientError;
use crate::journal::JournalError;

/// Why one offer of a 402 was not paid.
///
/// ```
/// use pay402_client::RefusalReason;
/// use pay402_core::problem::Reason;
/// assert_eq!(RefusalReason::RailNotEnabled.reason(), "rail_not_enabled");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The payer holds no means for this rail.
    #[error("no means of payment for this rail")]
    RailNotEnabled,
    /// Not an offer pay402 can read (unknown scheme, unknown token,
    /// malformed challenge).
    #[error("{0}")]
    Unreadable(OfferError),
    /// The rail's client refused it (its own checks: network, expiry,
    /// invoice hash, allowed assets and recipients, its own caps).
    #[error("{detail}")]
    Rail {
        /// The rail error's stable reason.
        reason: &'static str,
        /// The rail error's message.
        detail: String,
    },
    /// The same offer in an older form: an x402 v1 offer while the 402
    /// carries v2 offers, an `LSAT` challenge beside an `L402` one.
    #[error("the newer form of this offer is preferred (x402 v2, L402)")]
    Superseded,
    /// Not a rail of the explicit rail order.
    #[error("rail not in the payer's rail order")]
    NotInRailOrder,
    /// Its cost in the reference unit is unknown, and a budget needs it.
    #[error("cannot price it in the reference unit: {0}")]
    NoRate(ConvertError),
    /// Over the most one request may pay.
    #[error("costs {cost}, above the maximum of {max} per request")]
    OverMaxPrice {
        /// The offer's cost in the reference unit (rounded up).
        cost: Box<Amount>,
        /// The maximum.
        max: Box<Amount>,
    },
    /// Over what is left of the origin's budget for the period.
    #[error("costs {cost}, {remaining} left in this origin's budget")]
    OverOriginBudget {
        /// The offer's cost.
        cost: Box<Amount>,
        /// What is left.
        remaining: Box<Amount>,
    },
    /// Over what is left of the total budget for the period.
    #[error("costs {cost}, {remaining} left in the total budget")]
    OverTotalBudget {
        /// The offer's cost.
        cost: Box<Amount>,
        /// What is left.
        remaining: Box<Amount>,
    },
    /// A user policy declined every candidate.
    #[error("declined by the payer's policy")]
    Declined,
}

impl Reason for RefusalReason {
    fn reason(&self) -> &'static str {
        match self {
            RefusalReason::RailNotEnabled => "rail_not_enabled",
            RefusalReason::Unreadable(e) => e.reason(),
            RefusalReason::Rail { reason, .. } => reason,
            RefusalReason::Superseded => "superseded",
            RefusalReason::NotInRailOrder => "rail_not_in_order",
            RefusalReason::NoRate(e) => e.reason(),
            RefusalReason::OverMaxPrice { .. } => "price_above_max",
            RefusalReason::OverOriginBudget { .. } => "origin_budget_exhausted",
            RefusalReason::OverTotalBudget { .. } => "total_budget_exhausted",
            RefusalReason::Declined => "declined_by_policy",
        }
    }
    fn status(&self) -> u16 {
        402
    }
}

/// One offer of a 402 that was not paid, and why.
///
/// ```
/// # fn show(e: &pay402_client::PayerError) {
/// for r in e.refusals() {
///     println!("{} ({:?}, {:?}): {} — {}", r.offer, r.rail, r.amount, pay402_core::problem::Reason::reason(&r.reason), r.reason);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The rail, when known.
    pub rail: Option<Rail>,
    /// The offer's label (`l402`, `x402 v2 #0`, `bitreq onchain`, or what
    /// could not be read).
    pub offer: String,
    /// Its price, when read.
    pub amount: Option<Amount>,
    /// Why.
    pub reason: RefusalReason,
}

/// Why a [`Payer`](crate::Payer) could not deliver a response.
///
/// As with every pay402 client, [`may_have_paid`](Self::may_have_paid)
/// says whether money may have moved; when it has, the journal entry
/// ([`entry`](Self::entry)) stays open (or records the payment), so calling
/// again with the same request presents the same proof and never pays
/// twice.
///
/// ```
/// use pay402_client::PayerError;
/// use pay402_core::problem::Reason;
/// let e = PayerError::NothingPayable { refused: vec![] };
/// assert_eq!(e.reason(), "no_payable_offer");
/// assert!(!e.may_have_paid());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayerError {
    /// A 402 without any offer pay402 can read or recognise.
    #[error("{status} without any payment offer")]
    NoOffer {
        /// The status (402, or 401 with a challenge).
        status: StatusCode,
    },
    /// Offers were read, none can be paid: each refusal says why.
    #[error("no offer can be paid ({} refused)", refused.len())]
    NothingPayable {
        /// Every offer (and unreadable challenge) with its reason.
        refused: Vec<Refusal>,
    },
    /// The 402 came from another origin than the one requested (a
    /// redirect); nothing is paid.
    #[error("402 from {responded}, not the requested origin {requested}")]
    CrossOriginChallenge {
        /// The origin requested.
        requested: String,
        /// The origin that answered.
        responded: String,
    },
    /// The request body cannot be replayed; nothing was paid.
    #[error("request body cannot be cloned for the paid retry; nothing was paid")]
    BodyNotCloneable,
    /// The HTTP request failed before any payment.
    #[error("HTTP request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The journal failed. With `paid: false` nothing was paid; with
    /// `paid: true` the payment was made but its step could not be
    /// recorded, and the proof was not sent.
    #[error("journal failed{}: {source}", if *paid { " after paying" } else { "" })]
    Journal {
        /// The journal error.
        #[source]
        source: JournalError,
        /// The entry, if one was recorded.
        entry: Option<String>,
        /// Whether a payment was made.
        paid: bool,
    },
    /// The L402 rail failed (its typed error: nothing paid, or paid with a
    /// receipt).
    #[error("L402: {source}")]
    L402 {
        /// The rail error.
        #[source]
        source: Box<ClientError>,
        /// The journal entry.
        entry: String,
        /// The proof was presented by an earlier call or process (a
        /// resumed purchase): a refusal now may follow a payment then.
        resumed: bool,
    },
    /// The x402 rail failed.
    #[cfg(feature = "x402")]
    #[error("x402: {source}")]
    X402 {
        /// The rail error.
        #[source]
        source: Box<crate::x402::X402Error>,
        /// The journal entry.
        entry: String,
        /// The proof was presented by an earlier call or process (a
        /// resumed purchase): a refusal now may follow a payment then.
        resumed: bool,
    },
    /// The x402_mock rail failed.
    #[cfg(feature = "x402-mock")]
    #[error("x402_mock: {source}")]
    X402Mock {
        /// The rail error.
        #[source]
        source: Box<crate::x402_mock::MockClientError>,
        /// The journal entry.
        entry: String,
        /// The proof was presented by an earlier call or process (a
        /// resumed purchase): a refusal now may follow a payment then.
        resumed: bool,
    },
    /// The BitRequests rail failed.
    #[cfg(feature = "bitreq")]
    #[error("BitRequests: {source}")]
    BitRequests {
        /// The rail error.
        #[source]
        source: Box<crate::bitreq::BitRequestsError>,
        /// The journal entry.
        entry: String,
        /// The proof was presented by an earlier call or process (a
        /// resumed purchase): a refusal now may follow a payment then.
        resumed: bool,
    },
    /// The MPP rail failed (nothing paid, or paid: see
    /// [`MppError::may_have_paid`](crate::mpp::MppError::may_have_paid)).
    #[error("MPP: {source}")]
    Mpp {
        /// The rail error.
        #[source]
        source: Box<crate::mpp::MppError>,
        /// The journal entry.
        entry: String,
        /// The proof was presented by an earlier call or process (a
        /// resumed purchase): a refusal now may follow a payment then.
        resumed: bool,
    },
    /// An open journal entry whose payment may have left the process
    /// without its proof being recorded (an x402_mock permit sent to the
    /// token endpoint, a channel payment); it is never paid again. Check
    /// with the server or the chain, then close it with
    /// [`Journal::abandon`](crate::journal::Journal::abandon).
    #[error("journal entry {entry} ({rail}): the payment's outcome is unknown; not paying again")]
    OutcomeUnknown {
        /// The entry.
        entry: String,
        /// Its rail.
        rail: Rail,
    },
    /// An open journal entry that no longer reads back (its offer or
    /// proof); nothing is paid again.
    #[error("journal entry {entry} cannot be resumed: {detail}")]
    Unresumable {
        /// The entry.
        entry: String,
        /// What is wrong.
        detail: String,
    },
}

impl PayerError {
    /// Whether money was, or may have been, spent (see each rail's
    /// `may_have_paid`). When it is `true`, do not pay again for the same
    /// purchase: calling again with the same request resumes it.
    ///
    /// ```
    /// assert!(!pay402_client::PayerError::BodyNotCloneable.may_have_paid());
    /// ```
    pub fn may_have_paid(&self) -> bool {
        match self {
            PayerError::Journal { paid, .. } => *paid,
            PayerError::L402 {
                source, resumed, ..
            } => *resumed || source.may_have_paid(),
            #[cfg(feature = "x402")]
            PayerError::X402 {
                source, resumed, ..
            } => *resumed || source.may_have_paid(),
            #[cfg(feature = "x402-mock")]
            PayerError::X402Mock {
                source, resumed, ..
            } => *resumed || source.may_have_paid(),
            #[cfg(feature = "bitreq")]
            PayerError::BitRequests {
                source, resumed, ..
            } => *resumed || source.may_have_paid(),
            PayerError::Mpp {
                source, resumed, ..
            } => *resumed || source.may_have_paid(),
            PayerError::OutcomeUnknown { .. } | PayerError::Unresumable { .. } => true,
            _ => false,
        }
    }

    /// The journal entry of the purchase, once one was recorded.
    ///
    /// ```
    /// assert!(pay402_client::PayerError::BodyNotCloneable.entry().is_none());
    /// ```
    pub fn entry(&self) -> Option<&str> {
        match self {
            PayerError::Journal { entry, .. } => entry.as_deref(),
            PayerError::L402 { entry, .. }
            | PayerError::Mpp { entry, .. }
            | PayerError::OutcomeUnknown { entry, .. }
            | PayerError::Unresumable { entry, .. } => Some(entry),
            #[cfg(feature = "x402")]
            PayerError::X402 { entry, .. } => Some(entry),
            #[cfg(feature = "x402-mock")]
            PayerError::X402Mock { entry, .. } => Some(entry),
            #[cfg(feature = "bitreq")]
            PayerError::BitRequests { entry, .. } => Some(entry),
            _ => None,
        }
    }

    /// The refused offers of [`NothingPayable`](Self::NothingPayable).
    ///
    /// ```
    /// assert!(pay402_client::PayerError::BodyNotCloneable.refusals().is_empty());
    /// ```
    pub fn refusals(&self) -> &[Refusal] {
        match self {
            PayerError::NothingPayable { refused } => refused,
            _ => &[],
        }
    }
}

/// Stable reasons: `no_offer`, `no_payable_offer`, `cross_origin_challenge`,
/// `body_not_cloneable`, `http_error`, the journal's reason, the rail
/// error's own reason, `payment_outcome_unknown`, `journal_unresumable`.
impl Reason for PayerError {
    fn reason(&self) -> &'static str {
        match self {
            PayerError::NoOffer { .. } => "no_offer",
            PayerError::NothingPayable { .. } => "no_payable_offer",
            PayerError::CrossOriginChallenge { .. } => "cross_origin_challenge",
            PayerError::BodyNotCloneable => "body_not_cloneable",
            PayerError::Http(_) => "http_error",
            PayerError::Journal { source, .. } => source.reason(),
            PayerError::L402 { source, .. } => source.reason(),
            #[cfg(feature = "x402")]
            PayerError::X402 { source, .. } => source.reason(),
            #[cfg(feature = "x402-mock")]
            PayerError::X402Mock { source, .. } => source.reason(),
            #[cfg(feature = "bitreq")]
            PayerError::BitRequests { source, .. } => source.reason(),
            PayerError::Mpp { source, .. } => source.reason(),
            PayerError::OutcomeUnknown { .. } => "payment_outcome_unknown",
            PayerError::Unresumable { .. } => "journal_unresumable",
        }
    }

    fn status(&self) -> u16 {
        match self {
            PayerError::NothingPayable { .. } => 402,
            PayerError::Journal { .. } => 500,
            _ => 502,
        }
    }
}
