//! HTTP helpers shared by the client and the channel client: bounded
//! bodies, problem+json reasons, URL checks.

use std::net::IpAddr;

use reqwest::{Response, StatusCode, Url};

use super::error::BitRequestsError;

/// The largest body read from a server for parsing (256 KiB, the core's
/// channel body bound).
pub(crate) const MAX_BODY: usize = pay402_core::bitreq::rest::MAX_BODY_BYTES;

/// Reads at most `max` bytes of a body; more is an error.
pub(crate) async fn read_bounded(
    mut resp: Response,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, BitRequestsError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len().saturating_add(chunk.len()) > max {
            return Err(BitRequestsError::InvalidResponse {
                what,
                detail: format!("body larger than {max} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A printable excerpt of a body.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or_default());
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The `reason` (and `detail`) of a JSON problem body (pay402's
/// problem+json, or any JSON object with a string `reason`); two1's
/// `{"error": …}` / `{"detail": …}` give only a detail.
pub(crate) fn problem_of(body: &[u8]) -> (Option<String>, String) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return (None, snippet(body));
    };
    let text = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let reason = text("reason").filter(|r| {
        !r.is_empty()
            && r.len() <= 64
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    let detail = text("detail")
        .or_else(|| text("error"))
        .or_else(|| text("title"))
        .unwrap_or_else(|| snippet(body));
    (reason, snippet(detail.as_bytes()))
}

/// A channel-server error answer as [`BitRequestsError::ChannelServer`].
pub(crate) async fn server_error(resp: Response) -> BitRequestsError {
    let status = resp.status();
    let body = read_bounded(resp, MAX_BODY, "channel server")
        .await
        .unwrap_or_default();
    let (reason, detail) = problem_of(&body);
    BitRequestsError::ChannelServer {
        status,
        reason,
        detail,
    }
}

/// Whether a URL's host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The origin of a URL, as `scheme://host:port`.
pub(crate) fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Whether a status is worth resending the same proof for.
pub(crate) fn transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_and_urls() {
        let (r, d) = problem_of(br#"{"reason":"incorrect_payment_amount","detail":"x"}"#);
        assert_eq!(
            (r.as_deref(), d.as_str()),
            (Some("incorrect_payment_amount"), "x")
        );
        let (r, d) = problem_of(b"Payment already redeemed.");
        assert_eq!((r, d.as_str()), (None, "Payment already redeemed."));
        let (r, _) = problem_of(br#"{"reason":"<script>"}"#);
        assert_eq!(r, None);
        assert!(is_loopback(&"http://127.0.0.1:8/x".parse().unwrap()));
        assert!(is_loopback(&"http://[::1]/".parse().unwrap()));
        assert!(is_loopback(&"http://LOCALHOST/".parse().unwrap()));
        assert!(!is_loopback(&"http://example.com/".parse().unwrap()));
        assert_eq!(
            origin_of(&"http://h:81/a?b".parse().unwrap()),
            "http://h:81"
        );
    }
}
