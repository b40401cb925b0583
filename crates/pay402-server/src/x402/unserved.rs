//! Whether a handler's answer is a failure, which settle-after does not
//! charge: an HTTP status >= 400, or a gRPC call that ended with a non-zero
//! `grpc-status` (in the headers of a trailers-only answer, or in the
//! trailers).

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, response};

/// The header (or trailer) carrying a gRPC call's status.
const GRPC_STATUS: &str = "grpc-status";

/// Why a handler's answer is not served content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An HTTP status >= 400.
    Http(u16),
    /// A gRPC status other than 0 (`OK`); `None` when it is not a number.
    Grpc(Option<u32>),
}

impl Failure {
    /// The gRPC status, for the logs.
    pub fn grpc_status(self) -> Option<u32> {
        match self {
            Failure::Http(_) => None,
            Failure::Grpc(code) => code,
        }
    }
}

/// Whether `headers` describe a gRPC response (`application/grpc`,
/// `application/grpc+proto`, `application/grpc-web`, ...).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
}

/// A `grpc-status` value that is not `0`: a failure.
fn grpc_failure(status: &HeaderValue) -> Option<Failure> {
    let raw = status.as_bytes().trim_ascii();
    if raw == b"0" {
        return None;
    }
    let code = (raw.len() <= 10 && !raw.is_empty() && raw.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(raw).ok()?.parse::<u32>().ok())
        .flatten();
    Some(Failure::Grpc(code))
}

/// Judges an answer by its head: an HTTP status >= 400, or a gRPC
/// trailers-only answer whose `grpc-status` (in the headers) is not 0.
pub(crate) fn of_head(head: &response::Parts) -> Option<Failure> {
    let status = head.status.as_u16();
    if status >= 400 {
        return Some(Failure::Http(status));
    }
    if is_grpc(&head.headers) {
        return head.headers.get(GRPC_STATUS).and_then(grpc_failure);
    }
    None
}

/// Judges a gRPC answer by the trailers its body ended with (once
/// [`of_head`] found nothing): a `grpc-status` there that is not 0. An
/// answer without any `grpc-status` is not judged a failure.
pub(crate) fn of_trailers(head: &response::Parts, trailers: Option<&HeaderMap>) -> Option<Failure> {
    if !is_grpc(&head.headers) || head.headers.contains_key(GRPC_STATUS) {
        return None;
    }
    trailers?.get(GRPC_STATUS).and_then(grpc_failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Response, StatusCode};

    fn head(status: StatusCode, headers: &[(&'static str, &'static str)]) -> response::Parts {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn trailers(status: &'static str) -> HeaderMap {
        let mut t = HeaderMap::new();
        t.insert(GRPC_STATUS, HeaderValue::from_static(status));
        t
    }

    const GRPC: (&str, &str) = ("content-type", "application/grpc");

    #[test]
    fn http_errors_fail_whatever_the_content() {
        assert_eq!(
            of_head(&head(StatusCode::NOT_FOUND, &[])),
            Some(Failure::Http(404))
        );
        assert_eq!(
            of_head(&head(StatusCode::BAD_GATEWAY, &[GRPC])),
            Some(Failure::Http(502))
        );
        assert_eq!(of_head(&head(StatusCode::OK, &[])), None);
    }

    #[test]
    fn a_trailers_only_grpc_error_fails_by_its_head() {
        let h = head(StatusCode::OK, &[GRPC, ("grpc-status", "14")]);
        assert_eq!(of_head(&h), Some(Failure::Grpc(Some(14))));
        assert_eq!(of_head(&h).unwrap().grpc_status(), Some(14));
        // The trailers are not read again once the head holds the status.
        assert_eq!(of_trailers(&h, Some(&trailers("0"))), None);
        let ok = head(StatusCode::OK, &[GRPC, ("grpc-status", "0")]);
        assert_eq!(of_head(&ok), None);
        let plus = head(
            StatusCode::OK,
            &[
                ("content-type", "Application/GRPC+proto"),
                ("grpc-status", "3"),
            ],
        );
        assert_eq!(of_head(&plus), Some(Failure::Grpc(Some(3))));
    }

    #[test]
    fn a_grpc_status_in_the_trailers_decides() {
        let h = head(StatusCode::OK, &[GRPC]);
        assert_eq!(of_head(&h), None);
        assert_eq!(
            of_trailers(&h, Some(&trailers("13"))),
            Some(Failure::Grpc(Some(13)))
        );
        assert_eq!(of_trailers(&h, Some(&trailers(" 0 "))), None);
        assert_eq!(
            of_trailers(&h, Some(&trailers("thirteen"))),
            Some(Failure::Grpc(None))
        );
        assert_eq!(
            of_trailers(&h, Some(&trailers("99999999999999999999"))),
            Some(Failure::Grpc(None))
        );
        assert_eq!(of_trailers(&h, None), None);
        assert_eq!(of_trailers(&h, Some(&HeaderMap::new())), None);
    }

    #[test]
    fn a_grpc_status_outside_grpc_is_ignored() {
        let h = head(
            StatusCode::OK,
            &[("content-type", "text/plain"), ("grpc-status", "2")],
        );
        assert_eq!(of_head(&h), None);
        assert_eq!(of_trailers(&h, Some(&trailers("2"))), None);
        let short = head(StatusCode::OK, &[("content-type", "application/g")]);
        assert_eq!(of_trailers(&short, Some(&trailers("2"))), None);
    }
}
