//! BitRequests on-chain proof: the `Bitcoin-Transaction` hex and the
//! server's checks of the decoded transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::bitreq::onchain::{decode_tx_hex, fee_of, verify_payment_tx};
use pay402_core::bitreq::{AmountRule, OnChainPolicy};
use pay402_core::money::Sat;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tx) = decode_tx_hex(s) else {
        return;
    };
    // Pay to whatever the first output pays, at its own amount, so the
    // checks after the merchant match are reached.
    let Some(first) = tx.output.first() else {
        return;
    };
    let merchant = first.script_pubkey.clone();
    let price = Sat(first.value.to_sat());
    let inputs: Vec<Sat> = tx.input.iter().map(|_| Sat(price.0 / 2 + 1)).collect();
    let _ = fee_of(&tx, &inputs);
    for policy in [
        OnChainPolicy::default(),
        OnChainPolicy {
            amount: AmountRule::AtLeast,
            dust_limit: Sat(0),
            min_fee_rate_sat_vb: 0,
            reject_rbf: false,
        },
    ] {
        let _ = verify_payment_tx(tx.clone(), &merchant, price, Some(&inputs), &policy);
        let _ = verify_payment_tx(tx.clone(), &merchant, price, None, &policy);
    }
});
