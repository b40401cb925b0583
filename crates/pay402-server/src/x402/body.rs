//! Bounded buffering of a handler's response body.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyExt;

/// A response body read up to a limit.
pub(crate) enum Buffered {
    /// The whole body, within the limit.
    Full(Bytes),
    /// The limit was passed: what was read, and the rest still unread.
    Partial { prefix: Bytes, rest: Body },
}

impl Buffered {
    /// The body again, whole (a partial one streams its rest after the prefix).
    pub fn into_body(self) -> Body {
        match self {
            Buffered::Full(b) => Body::from(b),
            Buffered::Partial { prefix, rest } => Body::from_stream(
                futures_util::stream::once(async move { Ok::<_, axum::Error>(prefix) })
                    .chain(rest.into_data_stream()),
            ),
        }
    }
}

/// Reads `body` until its end or until more than `limit` bytes; trailers are
/// dropped.
pub(crate) async fn buffer(mut body: Body, limit: usize) -> Result<Buffered, String> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                return Ok(Buffered::Partial {
                    prefix: buf.freeze(),
                    rest: body,
                });
            }
        }
    }
    Ok(Buffered::Full(buf.freeze()))
}
