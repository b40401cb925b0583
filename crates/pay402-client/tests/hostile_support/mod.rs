//! Hostile servers for the client battery (`hostile_x402.rs`,
//! `hostile_l402.rs`): each takes the payment for real (x402: settles it on
//! anvil through the local facilitator; L402: accepts a credential whose
//! preimage proves the invoice was paid on the simnet) and then misbehaves in
//! one chosen way.
#![allow(dead_code)]

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::{StreamExt as _, stream};

#[cfg(feature = "x402")]
pub mod x402;

pub mod l402;

/// A body that yields `first` (if any) and then fails: hyper aborts the
/// connection. With no `first` chunk nothing of the answer is sent (a server
/// dropping the connection before answering); with one, the status, headers
/// and `first` reach the client, and the rest never does (a server dropping
/// the connection mid-response). The short pause after `first` lets hyper
/// flush what it has before the failure aborts the connection.
pub fn truncated_body(first: Option<&'static str>) -> Body {
    let chunks = stream::unfold(
        first.map(|f| Bytes::from_static(f.as_bytes())),
        |state| async move {
            match state {
                Some(chunk) => Some((Ok(chunk), None)),
                None => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    None::<(Result<Bytes, io::Error>, Option<Bytes>)>
                }
            }
        },
    );
    let fail = stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "dropped mid-response",
        ))
    });
    if first.is_some() {
        Body::from_stream(chunks.chain(fail))
    } else {
        Body::from_stream(fail)
    }
}
