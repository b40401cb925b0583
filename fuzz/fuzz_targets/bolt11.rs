//! Reading a BOLT11 invoice as an L402 client does (`check_invoice`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pay402_core::l402::check_invoice;
use pay402_core::lightning::{Network, PaymentHash};
use pay402_core::money::Msat;
use pay402_core::time::UnixTime;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for network in [
        Network::Bitcoin,
        Network::Testnet,
        Network::Signet,
        Network::Regtest,
    ] {
        if let Err(pay402_core::l402::InvoiceError::HashMismatch) = check_invoice(
            s,
            &PaymentHash([0; 32]),
            network,
            UnixTime(0),
            Msat(u64::MAX),
        ) {
            // Parsed and on this network: check it fully against its own hash.
            let inv: Result<lightning_invoice::Bolt11Invoice, _> = s.parse();
            if let Ok(inv) = inv {
                let hash = PaymentHash(*inv.payment_hash().as_ref());
                let _ = check_invoice(s, &hash, network, UnixTime(0), Msat(u64::MAX));
            }
        }
    }
});
