//! Bad inputs, each with its stable reason.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{CompressedPublicKey, OutPoint, ScriptBuf};
use pay402_core::bitreq::onchain::{build_payment, verify_payment};
use pay402_core::bitreq::*;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;

/// (name, header pairs, expected reason)
type HeaderCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
/// (name, tx hex, merchant script, price, input amounts, expected reason)
type TxCase<'a> = (
    &'a str,
    &'a str,
    &'a ScriptBuf,
    u64,
    Option<&'a [Sat]>,
    &'a str,
);

#[test]
fn header_table() {
    let long_user = "u".repeat(129);
    let long_tx = "0".repeat(200_002);
    let g64 = "g".repeat(64);
    let cases: Vec<HeaderCase<'_>> = vec![
        ("negative price", vec![("Price", "-5")], "invalid_price"),
        ("decimal price", vec![("Price", "5.0")], "invalid_price"),
        ("exponent price", vec![("Price", "5e3")], "invalid_price"),
        ("plus price", vec![("Price", "+5")], "invalid_price"),
        (
            "overflow price",
            vec![("Price", "18446744073709551616")],
            "invalid_price",
        ),
        ("empty price", vec![("Price", "")], "invalid_price"),
        ("hex price", vec![("Price", "0x10")], "invalid_price"),
        (
            "oversized price",
            vec![("Price", "000000000000000000001")],
            "header_too_long",
        ),
        ("missing price", vec![("Username", "a")], "missing_header"),
        (
            "duplicate price",
            vec![("Price", "1"), ("PRICE", "2")],
            "duplicate_header",
        ),
        (
            "oversized username",
            vec![("Price", "1"), ("Username", long_user.as_str())],
            "header_too_long",
        ),
        (
            "control char",
            vec![("Price", "1"), ("Username", "a\u{1}b")],
            "invalid_header_value",
        ),
        (
            "space in address",
            vec![("Price", "1"), ("Bitcoin-Address", "1a b")],
            "invalid_header_value",
        ),
    ];
    for (name, pairs, reason) in cases {
        let e = PaymentInfo::from_pairs(pairs).expect_err(name);
        assert_eq!(e.reason(), reason, "{name}: {e:?}");
    }
    let proofs: Vec<HeaderCase<'_>> = vec![
        ("none", vec![("Price", "1")], "payment_required"),
        (
            "transfer without authorization",
            vec![("Bitcoin-Transfer", "{}")],
            "payment_required",
        ),
        (
            "short token",
            vec![("Bitcoin-Payment-Channel-Token", "abcd")],
            "invalid_channel_token",
        ),
        (
            "non-hex token",
            vec![("Bitcoin-Payment-Channel-Token", g64.as_str())],
            "invalid_channel_token",
        ),
        (
            "oversized tx",
            vec![("Bitcoin-Transaction", long_tx.as_str())],
            "header_too_long",
        ),
        (
            "duplicate tx",
            vec![("Bitcoin-Transaction", "00"), ("bitcoin-transaction", "00")],
            "duplicate_header",
        ),
    ];
    for (name, pairs, reason) in proofs {
        let e = Proof::from_pairs(pairs).expect_err(name);
        assert_eq!(e.reason(), reason, "{name}: {e:?}");
    }
}

#[test]
fn header_names_are_case_insensitive_and_order_is_channel_onchain_transfer() {
    let all = [
        ("AUTHORIZATION", "sig"),
        ("bitcoin-transfer", "{}"),
        ("BiTcOiN-TrAnSaCtIoN", "00"),
        (
            "Bitcoin-Payment-Channel-Token",
            "ebe4d541199430f0ae07f5250455e0fe612051848ec70f21ca81bb9ca5e9e096",
        ),
    ];
    assert_eq!(Proof::from_pairs(all).unwrap().method(), "channel");
    assert_eq!(
        Proof::from_pairs(all[..3].iter().copied())
            .unwrap()
            .method(),
        "onchain"
    );
    assert_eq!(
        Proof::from_pairs(all[..2].iter().copied())
            .unwrap()
            .method(),
        "transfer"
    );
    let info = PaymentInfo::from_pairs([
        ("price", " 4000 "),
        ("BITCOIN-ADDRESS", "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM"),
        ("username", "HelloNakaMoto"),
        ("bitcoin-payment-channel-server", "http://h/payment"),
    ])
    .unwrap();
    assert_eq!(info.price, Sat(4000));
    let names: Vec<&str> = info.header_pairs().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "Price",
            "Bitcoin-Address",
            "Username",
            "Bitcoin-Payment-Channel-Server"
        ]
    );
    let mut map = http::HeaderMap::new();
    info.insert_into(&mut map).unwrap();
    assert_eq!(PaymentInfo::from_header_map(&map).unwrap(), info);
    assert_eq!(
        info.address(bitcoin::Network::Testnet)
            .unwrap_err()
            .reason(),
        "invalid_address"
    );
}

#[test]
fn onchain_table() {
    let payer = SecretKey::from_slice(&[0x11; 32]).unwrap();
    let merchant = SecretKey::from_slice(&[0x22; 32]).unwrap();
    let secp = Secp256k1::new();
    let to = ScriptBuf::new_p2wpkh(&CompressedPublicKey(merchant.public_key(&secp)).wpubkey_hash());
    let u = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(20_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let good = serialize_hex(
        &build_payment(&[u], &to, Sat(5_000), &u.script_pubkey(), Sat(1_000)).unwrap(),
    );
    let dust = serialize_hex(
        &build_payment(&[u], &to, Sat(2_999), &u.script_pubkey(), Sat(1_000)).unwrap(),
    );
    let ins = [Sat(20_000)];
    let pol = OnChainPolicy::default();
    let wrong = wrong_only(&u.script_pubkey());
    let truncated = good[..good.len() - 8].to_owned();
    let trailing = format!("{good}00");
    let cases: Vec<TxCase<'_>> = vec![
        (
            "malformed hex",
            "zz",
            &to,
            5_000,
            Some(&ins),
            "invalid_transaction_hex",
        ),
        (
            "odd hex",
            "012",
            &to,
            5_000,
            Some(&ins),
            "invalid_transaction_hex",
        ),
        (
            "truncated tx",
            &truncated,
            &to,
            5_000,
            Some(&ins),
            "invalid_transaction",
        ),
        (
            "trailing bytes",
            &trailing,
            &to,
            5_000,
            Some(&ins),
            "invalid_transaction",
        ),
        (
            "wrong address",
            &good,
            &wrong,
            5_000,
            Some(&ins),
            "not_paid_to_merchant",
        ),
        (
            "underpayment",
            &good,
            &to,
            5_001,
            Some(&ins),
            "incorrect_payment_amount",
        ),
        (
            "overpayment (exact)",
            &good,
            &to,
            4_000,
            Some(&ins),
            "incorrect_payment_amount",
        ),
        (
            "price below dust",
            &good,
            &to,
            2_000,
            Some(&ins),
            "below_dust_limit",
        ),
        (
            "output below dust",
            &dust,
            &to,
            3_000,
            Some(&ins),
            "below_dust_limit",
        ),
        (
            "no input amounts",
            &good,
            &to,
            5_000,
            None,
            "input_amounts_mismatch",
        ),
        (
            "wrong input count",
            &good,
            &to,
            5_000,
            Some(&[Sat(1), Sat(2)]),
            "input_amounts_mismatch",
        ),
        (
            "outputs exceed inputs",
            &good,
            &to,
            5_000,
            Some(&[Sat(100)]),
            "outputs_exceed_inputs",
        ),
        (
            "fee too low",
            &good,
            &to,
            5_000,
            Some(&[Sat(19_001)]),
            "fee_too_low",
        ),
    ];
    for (name, hex, script, price, ins, reason) in cases {
        let e = verify_payment(hex, script, Sat(price), ins, &pol).expect_err(name);
        assert_eq!(e.reason(), reason, "{name}: {e:?}");
    }
}

fn wrong_only(s: &ScriptBuf) -> ScriptBuf {
    // A P2PKH script with the same hash160 as nothing in the transaction.
    let mut b = s.to_bytes();
    if let Some(last) = b.last_mut() {
        *last ^= 1;
    }
    ScriptBuf::from_bytes(b)
}

#[test]
fn every_reason_is_snake_case() {
    let all = [
        BitreqError::MissingHeader("Price"),
        BitreqError::HeaderTooLong("Price"),
        BitreqError::NoPaymentProof,
        BitreqError::HighSSignature,
        BitreqError::InvalidChannelParameter,
        BitreqError::Sighash,
    ];
    for e in all {
        assert!(
            e.reason()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
        let p = pay402_core::problem::Problem::from_reason(&e, e.status());
        assert_eq!(p.reason, e.reason());
    }
    assert_eq!(BitreqError::NoPaymentProof.status(), 402);
}
