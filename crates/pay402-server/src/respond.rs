//! RFC 9457 problem+json responses.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use pay402_core::problem::{PROBLEM_JSON, Problem};

/// Builds a problem+json response (with `Cache-Control: no-store` and the
/// CORS header that lets browsers read `WWW-Authenticate`).
///
/// ```
/// use pay402_core::problem::Problem;
/// let resp = pay402_server::respond::problem(&Problem::new(402, "payment_required", "Payment required"));
/// assert_eq!(resp.status(), 402);
/// assert_eq!(resp.headers()["content-type"], "application/problem+json");
/// // A 413 (body not read to its end) also closes the connection.
/// let resp = pay402_server::respond::problem(&Problem::new(413, "body_too_large", "Too large"));
/// assert_eq!(resp.headers()["connection"], "close");
/// ```
pub fn problem(p: &Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = Response::new(Body::from(p.to_json()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate"),
    );
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was not read to its end: the connection cannot carry
        // another request, and a client that reused it would fail writing.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
