//! BitRequests payment-channel REST bodies: the server's request bodies
//! (JSON or form), their hex transaction and script fields, the channel path,
//! the client's reading of the server's answers, and the redeem script.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::bitreq::RedeemScript;
use pay402_core::bitreq::rest::{
    ChannelInfo, ChannelStatus, CloseRequest, CloseResponse, OpenRequest, OpenResponse,
    PaymentRequest, PaymentResponse, channel_path_txid, decode_request,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_request::<OpenRequest>(data)
        && let Ok((_tx, script)) = r.decode()
    {
        let _ = RedeemScript::parse(&script);
    }
    if let Ok(r) = decode_request::<PaymentRequest>(data) {
        let _ = r.decode();
    }
    let _ = decode_request::<CloseRequest>(data);
    if let Ok(info) = serde_json::from_slice::<ChannelInfo>(data) {
        let _ = info.merchant_key();
    }
    let _ = serde_json::from_slice::<ChannelStatus>(data);
    let _ = serde_json::from_slice::<OpenResponse>(data);
    let _ = serde_json::from_slice::<PaymentResponse>(data);
    let _ = serde_json::from_slice::<CloseResponse>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = channel_path_txid(s, "/payment");
    }
    if let Ok(r) = RedeemScript::parse(bitcoin::Script::from_bytes(data)) {
        // A parsed script is rebuilt byte for byte.
        assert_eq!(r.to_script().as_bytes(), data);
    }
});
