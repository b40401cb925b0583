//! What [`LdkNode`](super::LdkNode) reports: channels, balances, payments
//! and events, in pay402's own types (unit-typed amounts, no ldk-node types).

use std::fmt;
use std::time::{Duration, SystemTime};

use bitcoin::secp256k1::PublicKey;
use ldk_node::Event;
use ldk_node::payment::{PaymentDetails, PaymentDirection, PaymentKind, PaymentStatus};
use pay402_core::lightning::{PaymentHash, Preimage};
use pay402_core::money::{Msat, Sat};

/// A channel id (32 bytes), shown as hex.
///
/// ```
/// let id = pay402_backends::ldk::ChannelId([0xab; 32]);
/// assert!(id.to_string().starts_with("abab"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub [u8; 32]);

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

/// The local id ldk-node gives a channel when it is opened (known before
/// the channel's [`ChannelId`]).
///
/// ```
/// let id = pay402_backends::ldk::UserChannelId(7);
/// assert_eq!(id.0, 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserChannelId(pub u128);

impl fmt::Display for UserChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One channel of the node.
///
/// ```
/// # fn show(node: &pay402_backends::ldk::LdkNode) {
/// for ch in node.channels() {
///     println!("{} with {}: {} out / {} in, usable: {}", ch.channel_id, ch.counterparty, ch.outbound, ch.inbound, ch.is_usable);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel id.
    pub channel_id: ChannelId,
    /// The local id returned by [`LdkNode::open_channel`](super::LdkNode::open_channel) (random for
    /// inbound channels).
    pub user_channel_id: UserChannelId,
    /// The peer.
    pub counterparty: PublicKey,
    /// The channel's total capacity.
    pub capacity: Sat,
    /// What this node can send now (its balance minus the reserve it must
    /// keep and pending HTLCs).
    pub outbound: Msat,
    /// What this node can receive now.
    pub inbound: Msat,
    /// The largest single HTLC this node can send now.
    pub next_outbound_htlc_limit: Msat,
    /// Whether this node opened (and funded) the channel.
    pub is_outbound: bool,
    /// Whether the funding transaction is confirmed and `channel_ready` was
    /// exchanged.
    pub is_ready: bool,
    /// Whether the channel is ready and the peer is connected.
    pub is_usable: bool,
    /// Confirmations of the funding transaction.
    pub confirmations: Option<u32>,
    /// Confirmations required before the channel is ready.
    pub confirmations_required: Option<u32>,
    /// The funding transaction, once known.
    pub funding_txid: Option<bitcoin::Txid>,
}

/// The node's balances.
///
/// ```
/// # fn show(node: &pay402_backends::ldk::LdkNode) {
/// let b = node.balances();
/// println!("on-chain {} ({} spendable), lightning: can send {}", b.onchain_total, b.onchain_spendable, b.lightning_outbound);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    /// The on-chain wallet's total balance.
    pub onchain_total: Sat,
    /// What the on-chain wallet can spend now: confirmed funds minus the
    /// anchor reserve.
    pub onchain_spendable: Sat,
    /// The part of the on-chain balance kept as the anchor-channel reserve.
    pub anchor_reserve: Sat,
    /// What the node could claim on-chain if all channels closed now (whole
    /// satoshis; amounts below the dust limit do not count).
    pub lightning_claimable: Sat,
    /// What the node can send over Lightning now: the sum of the channels'
    /// [`ChannelInfo::outbound`].
    pub lightning_outbound: Msat,
    /// What the node can receive over Lightning now: the sum of the
    /// channels' [`ChannelInfo::inbound`].
    pub lightning_inbound: Msat,
}

/// Which way a payment went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received (an invoice of this node).
    Inbound,
    /// Sent by this node.
    Outbound,
}

/// The state of a payment in the node's payment store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not resolved yet: an open invoice, or a payment in flight.
    Pending,
    /// Paid.
    Succeeded,
    /// Failed (for an outbound payment: nothing was spent).
    Failed,
}

/// A payment as the node's payment store records it.
///
/// ```
/// # fn show(node: &pay402_backends::ldk::LdkNode, hash: &pay402_core::lightning::PaymentHash) {
/// if let Some(p) = node.payment(hash) {
///     println!("{:?} {:?}: {:?} (fee {:?})", p.direction, p.status, p.amount, p.fee);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentInfo {
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Pending, succeeded or failed.
    pub status: Status,
    /// The amount (for inbound payments: what was received, once paid).
    pub amount: Option<Msat>,
    /// The routing fee paid (outbound payments, once succeeded).
    pub fee: Option<Msat>,
    /// The preimage, if known (inbound invoices know it from the start).
    pub preimage: Option<Preimage>,
    /// When the record last changed.
    pub updated_at: SystemTime,
}

/// A node event, as published to [`LdkNode::subscribe`](super::LdkNode::subscribe).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LdkEvent {
    /// A payment this node sent succeeded.
    PaymentSuccessful {
        /// Its payment hash.
        payment_hash: PaymentHash,
        /// The routing fee, if known.
        fee: Option<Msat>,
    },
    /// A payment this node sent failed.
    PaymentFailed {
        /// Its payment hash, if known.
        payment_hash: Option<PaymentHash>,
        /// LDK's reason.
        reason: String,
    },
    /// An invoice of this node was paid.
    PaymentReceived {
        /// Its payment hash.
        payment_hash: PaymentHash,
        /// The amount received.
        amount: Msat,
    },
    /// A channel was negotiated; its funding transaction awaits confirmation.
    ChannelPending {
        /// The channel id.
        channel_id: ChannelId,
        /// The local id.
        user_channel_id: UserChannelId,
        /// The peer.
        counterparty: PublicKey,
    },
    /// A channel became ready to use.
    ChannelReady {
        /// The channel id.
        channel_id: ChannelId,
        /// The local id.
        user_channel_id: UserChannelId,
        /// The peer, if known.
        counterparty: Option<PublicKey>,
    },
    /// A channel was closed.
    ChannelClosed {
        /// The channel id.
        channel_id: ChannelId,
        /// The local id.
        user_channel_id: UserChannelId,
        /// Why, as LDK tells it.
        reason: String,
    },
    /// Any other ldk-node event, in its `Debug` form.
    Other(String),
}

fn system_time(unix_secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs)
}

/// The hash and preimage recorded for a Lightning payment.
pub(super) fn hash_and_preimage(kind: &PaymentKind) -> Option<(PaymentHash, Option<Preimage>)> {
    match kind {
        PaymentKind::Bolt11 { hash, preimage, .. }
        | PaymentKind::Bolt11Jit { hash, preimage, .. } => Some((
            PaymentHash(hash.0),
            preimage.map(|p| Preimage::from_bytes(p.0)),
        )),
        PaymentKind::Spontaneous { hash, preimage } => Some((
            PaymentHash(hash.0),
            preimage.map(|p| Preimage::from_bytes(p.0)),
        )),
        _ => None,
    }
}

pub(super) fn payment_info(d: &PaymentDetails) -> Option<PaymentInfo> {
    let (payment_hash, preimage) = hash_and_preimage(&d.kind)?;
    Some(PaymentInfo {
        payment_hash,
        direction: match d.direction {
            PaymentDirection::Inbound => Direction::Inbound,
            PaymentDirection::Outbound => Direction::Outbound,
        },
        status: match d.status {
            PaymentStatus::Pending => Status::Pending,
            PaymentStatus::Succeeded => Status::Succeeded,
            PaymentStatus::Failed => Status::Failed,
        },
        amount: d.amount_msat.map(Msat),
        fee: d.fee_paid_msat.map(Msat),
        preimage,
        updated_at: system_time(d.latest_update_timestamp),
    })
}

pub(super) fn map_event(event: &Event) -> LdkEvent {
    match event {
        Event::PaymentSuccessful {
            payment_hash,
            fee_paid_msat,
            ..
        } => LdkEvent::PaymentSuccessful {
            payment_hash: PaymentHash(payment_hash.0),
            fee: fee_paid_msat.map(Msat),
        },
        Event::PaymentFailed {
            payment_hash,
            reason,
            ..
        } => LdkEvent::PaymentFailed {
            payment_hash: payment_hash.map(|h| PaymentHash(h.0)),
            reason: failure_reason(reason.as_ref()),
        },
        Event::PaymentReceived {
            payment_hash,
            amount_msat,
            ..
        } => LdkEvent::PaymentReceived {
            payment_hash: PaymentHash(payment_hash.0),
            amount: Msat(*amount_msat),
        },
        Event::ChannelPending {
            channel_id,
            user_channel_id,
            counterparty_node_id,
            ..
        } => LdkEvent::ChannelPending {
            channel_id: ChannelId(channel_id.0),
            user_channel_id: UserChannelId(user_channel_id.0),
            counterparty: *counterparty_node_id,
        },
        Event::ChannelReady {
            channel_id,
            user_channel_id,
            counterparty_node_id,
            ..
        } => LdkEvent::ChannelReady {
            channel_id: ChannelId(channel_id.0),
            user_channel_id: UserChannelId(user_channel_id.0),
            counterparty: *counterparty_node_id,
        },
        Event::ChannelClosed {
            channel_id,
            user_channel_id,
            reason,
            ..
        } => LdkEvent::ChannelClosed {
            channel_id: ChannelId(channel_id.0),
            user_channel_id: UserChannelId(user_channel_id.0),
            reason: reason
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
        },
        other => LdkEvent::Other(format!("{other:?}")),
    }
}

fn failure_reason(reason: Option<&ldk_node::lightning::events::PaymentFailureReason>) -> String {
    use ldk_node::lightning::events::PaymentFailureReason as R;
    match reason {
        None => "unknown".into(),
        Some(R::RecipientRejected) => "recipient rejected the payment".into(),
        Some(R::UserAbandoned) => "abandoned".into(),
        Some(R::RetriesExhausted) => "no route (retries exhausted)".into(),
        Some(R::PaymentExpired) => "invoice expired".into(),
        Some(R::RouteNotFound) => "no route".into(),
        Some(other) => format!("{other:?}"),
    }
}
