//! The x402_mock dialect: its 402 body, the permit POSTed to the token
//! endpoint, the token endpoint's answer, and the bearer access token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::time::UnixTime;
use pay402_core::x402::TokenAmount;
use pay402_core::x402::mock::{
    AccessTokenClaims, AccessTokenResponse, MockPaymentRequired, MockPermitRequest,
    issue_access_token, select_component, verify_access_token,
};

const KEY: [u8; 32] = [7; 32];
const NOW: UnixTime = UnixTime(1_700_000_000);

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = verify_access_token(s, &KEY, "GET /premium", NOW);
    }
    let body: Option<MockPaymentRequired> = serde_json::from_slice(data).ok();
    if let Some(body) = &body {
        let comps = &body.payment_scheme.payment_components;
        for c in comps {
            let _ = c.required_base_units();
            let _ = c.domain().separator();
            let _ = select_component(comps, c.chain_id, &c.token, TokenAmount::from_u64(u64::MAX));
        }
    }
    if let Ok(req) = serde_json::from_slice::<MockPermitRequest>(data) {
        let _ = req.permit.to_eip2612();
        if let Some(body) = &body {
            for c in &body.payment_scheme.payment_components {
                let _ = req.permit.check(c, NOW);
            }
        }
    }
    let _ = serde_json::from_slice::<AccessTokenResponse>(data);
    // Claims that decode are issued and verified back to themselves.
    if let Ok(claims) = serde_json::from_slice::<AccessTokenClaims>(data)
        && let Ok(token) = issue_access_token(&claims, &KEY)
    {
        let now = UnixTime(claims.iat);
        match verify_access_token(&token, &KEY, &claims.resource, now) {
            Ok(back) => assert_eq!(back, claims),
            Err(e) => assert!(
                claims.exp <= claims.iat || token.len() > pay402_core::x402::mock::MAX_TOKEN_LEN,
                "issued token refused: {e:?}"
            ),
        }
    }
});
