//! Issue 10, caching on the L402 rail: a paid response is `private,
//! no-store` (unless the operator opts in) and a 402 is `no-store` and
//! varies on `Authorization`, so a shared cache never hands a paid body to
//! an unpaid client. Paid on simnet, as the other L402 layer tests.

mod common;

use common::*;
use http::StatusCode;
use pay402_server::L402Config;
use pay402_server::cache::PaidCaching;

#[tokio::test]
async fn paid_l402_responses_are_not_cacheable_and_402s_vary_on_authorization() {
    let shop = env(L402Config::new("api"));
    let challenge = send(&shop.app, get_req("/paid", &[])).await;
    assert_eq!(challenge.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(challenge.headers["cache-control"], "no-store");
    assert_eq!(challenge.headers["vary"], "Authorization");
    let auth = buy(&shop, "/paid").await;
    let paid = send(&shop.app, get_req("/paid", &[&auth])).await;
    assert_eq!(paid.status, StatusCode::OK);
    assert_eq!(paid.headers["cache-control"], "private, no-store");
    assert_eq!(paid.headers["vary"], "Authorization");

    // The operator's opt-in leaves the handler's caching alone.
    let mut cfg = L402Config::new("api");
    cfg.paid_caching = PaidCaching::HandlerDecides;
    let open = env(cfg);
    let auth = buy(&open, "/paid").await;
    let paid = send(&open.app, get_req("/paid", &[&auth])).await;
    assert_eq!(paid.status, StatusCode::OK);
    assert!(paid.headers.get("cache-control").is_none());
}
