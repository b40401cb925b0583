//! Bounded buffering of a handler's response body, its trailers included.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::HeaderMap;
use http_body_util::{BodyExt, BodyStream, StreamBody};

/// A whole response body: its data and, when it ended with them, its
/// trailers (gRPC's `grpc-status`, for example).
pub(crate) struct Held {
    /// The data frames, concatenated.
    pub data: Bytes,
    /// The trailers, when the body sent some.
    pub trailers: Option<HeaderMap>,
}

impl Held {
    /// The body again: the data, then the trailers.
    pub fn into_body(self) -> Body {
        match self.trailers {
            None => Body::from(self.data),
            Some(trailers) => then_trailers(Body::from(self.data), trailers),
        }
    }
}

/// A response body read up to a limit.
pub(crate) enum Buffered {
    /// The whole body, within the limit.
    Full(Held),
    /// The limit was passed: what was read, and the rest still unread
    /// (its trailers included).
    Partial { prefix: Bytes, rest: Body },
}

impl Buffered {
    /// The body again, whole (a partial one streams its rest, trailers
    /// included, after the prefix).
    pub fn into_body(self) -> Body {
        match self {
            Buffered::Full(held) => held.into_body(),
            Buffered::Partial { prefix, rest } => chain(Body::from(prefix), rest),
        }
    }
}

/// The bytes a trailer block holds (names and values), as counted against
/// the buffer's limit.
fn trailer_bytes(trailers: &HeaderMap) -> usize {
    trailers
        .iter()
        .map(|(name, value)| name.as_str().len().saturating_add(value.len()))
        .fold(0, usize::saturating_add)
}

/// Reads `body` until its end or until more than `limit` bytes, counting the
/// data and the trailers (names and values).
pub(crate) async fn buffer(mut body: Body, limit: usize) -> Result<Buffered, String> {
    let mut buf = BytesMut::new();
    let mut trailers: Option<HeaderMap> = None;
    let mut trailer_len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let frame = match frame.into_data() {
            Ok(data) => {
                buf.extend_from_slice(&data);
                if buf.len().saturating_add(trailer_len) > limit {
                    return Ok(Buffered::Partial {
                        prefix: buf.freeze(),
                        rest: with_trailers_first(trailers, body),
                    });
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(t) = frame.into_trailers() {
            trailer_len = trailer_len.saturating_add(trailer_bytes(&t));
            match &mut trailers {
                Some(all) => all.extend(t),
                None => trailers = Some(t),
            }
            if buf.len().saturating_add(trailer_len) > limit {
                return Ok(Buffered::Partial {
                    prefix: buf.freeze(),
                    rest: with_trailers_first(trailers, body),
                });
            }
        }
    }
    Ok(Buffered::Full(Held {
        data: buf.freeze(),
        trailers,
    }))
}

/// `body`'s frames, then `trailers`.
fn then_trailers(body: Body, trailers: HeaderMap) -> Body {
    Body::new(body.with_trailers(std::future::ready(Some(Ok(trailers)))))
}

/// `first`'s frames, then `rest`'s (trailers included).
fn chain(first: Body, rest: Body) -> Body {
    Body::new(StreamBody::new(
        BodyStream::new(first).chain(BodyStream::new(rest)),
    ))
}

/// The rest of a body, after the trailers already read from it (if any).
fn with_trailers_first(trailers: Option<HeaderMap>, rest: Body) -> Body {
    match trailers {
        None => rest,
        Some(t) => chain(then_trailers(Body::empty(), t), rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trailers(status: &'static str) -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static(status));
        t.insert("grpc-message", HeaderValue::from_static("done"));
        t
    }

    fn grpc_body(data: &'static [u8], status: &'static str) -> Body {
        then_trailers(Body::from(data), trailers(status))
    }

    async fn collect(body: Body) -> (Bytes, Option<HeaderMap>) {
        let c = body.collect().await.unwrap();
        let t = c.trailers().cloned();
        (c.to_bytes(), t)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_held_with_its_trailers_and_given_back_whole() {
        let Buffered::Full(held) = buffer(grpc_body(b"hello", "0"), 1024).await.unwrap() else {
            panic!("within the limit");
        };
        assert_eq!(held.data, "hello");
        assert_eq!(held.trailers.as_ref().unwrap()["grpc-status"], "0");
        let (data, t) = collect(held.into_body()).await;
        assert_eq!(data, "hello");
        assert_eq!(t.unwrap()["grpc-message"], "done");
    }

    #[tokio::test]
    async fn trailers_count_against_the_limit_and_a_partial_body_keeps_them() {
        // 5 data bytes fit in 10; the trailers (grpc-status 0, grpc-message
        // done: 11 + 1 + 12 + 4 bytes) do not.
        let partial = buffer(grpc_body(b"hello", "0"), 10).await.unwrap();
        assert!(matches!(partial, Buffered::Partial { .. }));
        let (data, t) = collect(partial.into_body()).await;
        assert_eq!(data, "hello");
        assert_eq!(t.unwrap()["grpc-status"], "0");
        // Over the limit on the data: the trailers still follow the rest.
        let partial = buffer(grpc_body(b"hello world", "13"), 4).await.unwrap();
        let Buffered::Partial { prefix, .. } = &partial else {
            panic!("over the limit");
        };
        assert_eq!(prefix, "hello world");
        let (data, t) = collect(partial.into_body()).await;
        assert_eq!(data, "hello world");
        assert_eq!(t.unwrap()["grpc-status"], "13");
    }

    #[tokio::test]
    async fn a_body_without_trailers_is_held_without() {
        let Buffered::Full(held) = buffer(Body::from("plain"), 1024).await.unwrap() else {
            panic!("within the limit");
        };
        assert!(held.trailers.is_none());
        let (data, t) = collect(held.into_body()).await;
        assert_eq!(data, "plain");
        assert!(t.is_none());
    }
}
