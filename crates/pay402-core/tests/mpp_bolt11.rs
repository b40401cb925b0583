//! The fast BOLT11 reader of the MPP verify path against `lightning-invoice`:
//! the same facts for invoices of every network, amount unit and expiry, and
//! refusal of what `lightning-invoice` refuses to parse.

use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use pay402_core::mpp::methods::{bolt11, lightning::InvoiceFacts};

fn invoice(currency: Currency, msat: Option<u64>, expiry: Option<u64>, seed: u8) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let b = InvoiceBuilder::new(currency)
        .description(format!("test {seed}"))
        .payment_hash(sha256::Hash::from_byte_array([seed; 32]))
        .payment_secret(PaymentSecret([5; 32]))
        .duration_since_epoch(Duration::from_secs(1_767_225_600 + u64::from(seed)))
        .min_final_cltv_expiry_delta(144);
    let b = match expiry {
        Some(e) => b.expiry_time(Duration::from_secs(e)),
        None => b,
    };
    match msat {
        Some(m) => b
            .amount_milli_satoshis(m)
            .build_signed(|h| secp.sign_ecdsa_recoverable(h, &key)),
        None => b.build_signed(|h| secp.sign_ecdsa_recoverable(h, &key)),
    }
    .unwrap()
    .to_string()
}

#[test]
fn agrees_with_lightning_invoice() {
    let mut seed = 0u8;
    for currency in [
        Currency::Bitcoin,
        Currency::Regtest,
        Currency::Signet,
        Currency::BitcoinTestnet,
        Currency::Simnet,
    ] {
        for msat in [
            None,
            Some(1),
            Some(10),
            Some(1_000),
            Some(100_000),
            Some(123_456_789),
            Some(2_100_000_000_000_000),
        ] {
            for expiry in [None, Some(60), Some(3600), Some(86_400 * 365)] {
                seed = seed.wrapping_add(1);
                let s = invoice(currency.clone(), msat, expiry, seed);
                let full = InvoiceFacts::read(&s).expect("lightning-invoice reads it");
                let fast = bolt11::read(&s).expect("the fast reader reads it");
                assert_eq!(fast, full, "{s}");
                assert_eq!(bolt11::read(&s.to_uppercase()), Some(full), "upper case");
            }
        }
    }
}

#[test]
fn the_derived_vector_invoice() {
    let s = "lnbcrt1u1p54twgqdpywpshjdpsxgsx6ursyp6x2um5ypmx2cm5daeqpp5qt2yngclhvn8ere496vk3fu78e0ujhqmh649qt7kg48tmedyhmwqsp5yg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3q9qrsgqxqrrsscqzys7dz5y6tks849lptg8k2c4yahuj5kr37mthak4fls76k8748h7ujrmqrqd4zhrdgx63qhymjansz6vxq4juhvtpraperrpjh5d7su99sqg8e6k7";
    let fast = bolt11::read(s).unwrap();
    assert_eq!(fast, InvoiceFacts::read(s).unwrap());
    assert_eq!(
        fast.payment_hash.to_hex(),
        "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc"
    );
    assert_eq!(fast.amount, Some(pay402_core::money::Msat(100_000)));
    assert_eq!(fast.expires_at, pay402_core::time::UnixTime(1_767_229_200));
}

#[test]
fn refuses_what_does_not_parse() {
    let good = invoice(Currency::Regtest, Some(100_000), None, 7);
    // Every single-character change breaks the checksum (or the grammar).
    let chars: Vec<char> = good.chars().collect();
    for i in (0..chars.len()).step_by(3) {
        let mut c = chars.clone();
        c[i] = if c[i] == 'q' { 'p' } else { 'q' };
        let s: String = c.into_iter().collect();
        let fast = bolt11::read(&s);
        if fast.is_some() {
            assert_eq!(fast, InvoiceFacts::read(&s), "{s}");
        }
    }
    for bad in [
        "",
        "lnbc",
        "lnxx1qqqqqqq",
        "LnBc1qqqqqqqqq",
        &good[..good.len() - 1],
        &format!("{good}q"),
    ] {
        assert!(bolt11::read(bad).is_none(), "{bad}");
    }
    // Amounts that are not whole msat, leading zeros, unknown multipliers.
    for hrp in ["lnbcrt1p", "lnbcrt01u", "lnbcrt1x", "lnbcrtu"] {
        let s = format!("{hrp}1{}", &good[good.rfind('1').unwrap() + 1..]);
        assert!(bolt11::read(&s).is_none(), "{s}");
    }
}
