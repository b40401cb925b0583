//! BitRequests payment channel, server side, after the REST body is decoded:
//! the deposit and redeem script of `POST /payment`, the half-signed payment
//! of `PUT /payment/<txid>` (against a fixed open channel whose keys the seeds
//! use), and the close signature of `DELETE /payment/<txid>`.
#![no_main]

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{OutPoint, Txid};
use libfuzzer_sys::fuzz_target;
use pay402_core::bitreq::channel::{ExpiryEncoding, RedeemScript, verify_deposit};
use pay402_core::bitreq::rest::{CloseRequest, OpenRequest, PaymentRequest, decode_request};
use pay402_core::bitreq::{ChannelParams, ServerChannel, verify_close_signature};
use pay402_core::money::Sat;
use pay402_core::time::UnixTime;

const NOW: UnixTime = UnixTime(1_700_000_000);

fn pk(b: u8) -> Option<PublicKey> {
    Some(
        SecretKey::from_slice(&[b; 32])
            .ok()?
            .public_key(&Secp256k1::new()),
    )
}

fuzz_target!(|data: &[u8]| {
    let (Some(merchant), Some(customer)) = (pk(4), pk(7)) else {
        return;
    };
    if let Ok(r) = decode_request::<OpenRequest>(data)
        && let Ok((deposit, script)) = r.decode()
    {
        let _ = verify_deposit(&deposit, &script, &merchant, NOW, 0);
    }
    if let Ok(r) = decode_request::<PaymentRequest>(data)
        && let Ok(tx) = r.decode()
        && let Ok(redeem) =
            RedeemScript::new(merchant, customer, 1_800_000_000, ExpiryEncoding::ScriptNum)
    {
        let params = ChannelParams {
            redeem,
            deposit: OutPoint::null(),
            deposit_value: Sat(111_000),
            fee: Sat(10_000),
            min_output: Sat(1_000),
        };
        let mut ch = ServerChannel::new(params, false);
        if ch.on_deposit(1).is_ok()
            && let Ok(paid) = ch.receive_payment(&tx, NOW)
        {
            assert!(paid.amount.0 <= params.deposit_value.0);
            let _ = ch.redeem(&paid.token, Sat(500));
            let _ = ch.redeem(&paid.token, Sat(500));
        }
    }
    if let Ok(r) = decode_request::<CloseRequest>(data) {
        let _ = verify_close_signature(&Txid::from_byte_array([0; 32]), &r.signature, &customer);
    }
});
