//! x402 JSON read from bodies: the v1 and v2 402 bodies, the facilitator's
//! `/verify`, `/settle` and `/supported` answers, and the scalar fields
//! (uint256 decimals, CAIP-2 ids, addresses, bytes32, signatures).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::x402::evm::{Bytes32, EvmAddress, EvmSignature};
use pay402_core::x402::network::{Caip2, evm_chain_id, slug_to_caip2};
use pay402_core::x402::{
    EvmTimestamp, PaymentRequired, PaymentRequiredV1, SettleResponse, SupportedResponse,
    TokenAmount, VerifyResponse, select_requirement_v1,
};

fn roundtrip<T>(data: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&v).expect("serialize a decoded value");
    let again: T = serde_json::from_slice(&json).expect("re-decode of an encoded value");
    assert_eq!(again, v);
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let _ = roundtrip::<PaymentRequired>(data);
    if let Some(v1) = roundtrip::<PaymentRequiredV1>(data) {
        for offer in &v1.accepts {
            let _ = select_requirement_v1(&v1.accepts, &offer.scheme, &offer.network);
        }
    }
    let _ = roundtrip::<SettleResponse>(data);
    let _ = roundtrip::<VerifyResponse>(data);
    if let Some(s) = roundtrip::<SupportedResponse>(data) {
        let _ = s.supports(2, "exact", "eip155:84532");
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = TokenAmount::parse(s) {
        assert_eq!(TokenAmount::parse(&a.to_string()), Ok(a));
    }
    let _ = EvmTimestamp::parse(s);
    for decimals in [0, 6, 18, 255] {
        let _ = TokenAmount::from_human(s, decimals);
    }
    if let Ok(c) = Caip2::parse(s) {
        let _ = (
            c.namespace(),
            c.reference(),
            c.is_wildcard(),
            c.evm_chain_id(),
        );
    }
    let _ = evm_chain_id(s);
    let _ = slug_to_caip2(s);
    let _ = s.parse::<EvmAddress>();
    let _ = s.parse::<Bytes32>();
    let _ = s.parse::<EvmSignature>();
});
