//! On-chain: building (P2WPKH, P2PKH) and verifying presented transactions.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{CompressedPublicKey, OutPoint, ScriptBuf, Sequence};
use pay402_core::bitreq::onchain::{
    BuildOptions, build_payment, build_payment_with, verify_payment,
};
use pay402_core::bitreq::*;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;

/// two1's `bitrequests/docs/README.md` example: pays 1000 sat to the fake
/// "ayy lmao" hash160.
const README_TX: &str = "0100000002b443358253dcd55b2f0761b58e44584f0c18670b9dd0f0ba6b96e092a26d4e93000000006b483045022100abb81fed203e79900b8f173e35e6eabd43e77e3c711fe6dd55c14b17bc8dc81b022001694074a820eec9925baccf264f82fc64c2b0e54674a45ddf8fe145d64fd0fe012102a9f537eadeee9384d5d42c90d20376f0e171fbba43b8a6726eb35d7bb7c11255ffffffff51f518e0d5694d53fa7c5d5e0396c4f5b8f1ee5b5cbc0f0f0e380ad5e547c644000000006a47304402202b836f0038234809bf8e9f1945f7cd615ae56ef3cf22a2be463620a3dddff254022007d70d6e7329973a422893b373eecc7881cb7ae4bd8a6ddfc160b0843ecc42ce012102a9f537eadeee9384d5d42c90d20376f0e171fbba43b8a6726eb35d7bb7c11255ffffffff02e8030000000000001976a914617979206c6d616f20202020202020202020202088acc8190000000000001976a914f6955d9fb2ccca7de9e4d1fd3a9509e2a10234d688ac00000000";

fn ayy() -> ScriptBuf {
    ScriptBuf::from_bytes(
        hex::decode("76a914617979206c6d616f20202020202020202020202088ac").unwrap(),
    )
}

#[test]
fn two1_readme_transaction() {
    let lax = OnChainPolicy {
        dust_limit: Sat(0),
        min_fee_rate_sat_vb: 0,
        ..Default::default()
    };
    let v = verify_payment(README_TX, &ayy(), Sat(1000), None, &lax).unwrap();
    assert_eq!(v.vout, 0);
    assert_eq!(v.amount, Sat(1000));
    assert_eq!(v.fee, None);
    assert!(!v.signals_rbf);
    // two1's 3000 dust floor rejects this price.
    let e = verify_payment(
        README_TX,
        &ayy(),
        Sat(1000),
        None,
        &OnChainPolicy::default(),
    )
    .unwrap_err();
    assert_eq!(e.reason(), "below_dust_limit");
}

fn keys() -> (SecretKey, SecretKey) {
    (
        SecretKey::from_slice(&[0x11; 32]).unwrap(),
        SecretKey::from_slice(&[0x22; 32]).unwrap(),
    )
}

fn merchant_script(k: &SecretKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&CompressedPublicKey(k.public_key(&Secp256k1::new())).wpubkey_hash())
}

#[test]
fn build_and_verify_p2wpkh_and_p2pkh() {
    let (payer, merchant) = keys();
    let to = merchant_script(&merchant);
    for kind in [SpendKind::P2wpkh, SpendKind::P2pkh] {
        let a = SpendableUtxo {
            outpoint: OutPoint::new(bitcoin::Txid::from_byte_array([1; 32]), 0),
            amount: Sat(20_000),
            kind,
            key: &payer,
        };
        let b = SpendableUtxo {
            outpoint: OutPoint::new(bitcoin::Txid::from_byte_array([2; 32]), 3),
            amount: Sat(30_000),
            kind,
            key: &payer,
        };
        let change = a.script_pubkey();
        let tx = build_payment(&[a, b], &to, Sat(5_000), &change, Sat(2_000)).unwrap();
        assert_eq!(tx.output[1].value.to_sat(), 43_000);
        let hex = serialize_hex(&tx);
        let v = verify_payment(
            &hex,
            &to,
            Sat(5_000),
            Some(&[Sat(20_000), Sat(30_000)]),
            &OnChainPolicy::default(),
        )
        .unwrap();
        assert_eq!(v.fee, Some(Sat(2_000)));
        assert_eq!(v.txid, tx.compute_txid());
        // Real script validation is the node's job; check the shape here.
        match kind {
            SpendKind::P2wpkh => assert!(
                tx.input
                    .iter()
                    .all(|i| i.witness.len() == 2 && i.script_sig.is_empty())
            ),
            SpendKind::P2pkh => assert!(
                tx.input
                    .iter()
                    .all(|i| i.witness.is_empty() && i.script_sig.len() > 100)
            ),
        }
        // At-least accepts overpayment; exact does not.
        let at_least = OnChainPolicy {
            amount: AmountRule::AtLeast,
            ..Default::default()
        };
        verify_payment(
            &hex,
            &to,
            Sat(4_000),
            Some(&[Sat(20_000), Sat(30_000)]),
            &at_least,
        )
        .unwrap();
        let e = verify_payment(
            &hex,
            &to,
            Sat(4_000),
            Some(&[Sat(20_000), Sat(30_000)]),
            &OnChainPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(e, BitreqError::IncorrectAmount);
    }
}

#[test]
fn p2wpkh_signature_verifies_against_sighash() {
    use bitcoin::sighash::{EcdsaSighashType, SighashCache};
    let (payer, merchant) = keys();
    let u = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(10_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let tx = build_payment(
        &[u],
        &merchant_script(&merchant),
        Sat(5_000),
        &u.script_pubkey(),
        Sat(500),
    )
    .unwrap();
    let h = SighashCache::new(&tx)
        .p2wpkh_signature_hash(
            0,
            &u.script_pubkey(),
            bitcoin::Amount::from_sat(10_000),
            EcdsaSighashType::All,
        )
        .unwrap();
    let sig = bitcoin::ecdsa::Signature::from_slice(tx.input[0].witness.nth(0).unwrap()).unwrap();
    Secp256k1::new()
        .verify_ecdsa(
            &bitcoin::secp256k1::Message::from_digest(h.to_byte_array()),
            &sig.signature,
            &payer.public_key(&Secp256k1::new()),
        )
        .unwrap();
}

#[test]
fn rbf_and_fee_policy() {
    let (payer, merchant) = keys();
    let to = merchant_script(&merchant);
    let u = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(10_000),
        kind: SpendKind::P2wpkh,
        key: &payer,
    };
    let rbf = BuildOptions {
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        ..Default::default()
    };
    let tx = build_payment_with(&[u], &to, Sat(5_000), &u.script_pubkey(), Sat(500), &rbf).unwrap();
    let hex = serialize_hex(&tx);
    assert_eq!(
        verify_payment(
            &hex,
            &to,
            Sat(5_000),
            Some(&[Sat(10_000)]),
            &OnChainPolicy::default()
        ),
        Err(BitreqError::RbfSignaled).map(|()| unreachable!())
    );
    let allow = OnChainPolicy {
        reject_rbf: false,
        ..Default::default()
    };
    assert!(
        verify_payment(&hex, &to, Sat(5_000), Some(&[Sat(10_000)]), &allow)
            .unwrap()
            .signals_rbf
    );
    // The boundary: floor(fee / vsize) passes, one more fails.
    let v = verify_payment(&hex, &to, Sat(5_000), Some(&[Sat(10_000)]), &allow).unwrap();
    let rate = 500 / v.vsize;
    assert!(rate >= 1);
    let ok = OnChainPolicy {
        min_fee_rate_sat_vb: rate,
        ..allow
    };
    verify_payment(&hex, &to, Sat(5_000), Some(&[Sat(10_000)]), &ok).unwrap();
    let strict = OnChainPolicy {
        min_fee_rate_sat_vb: rate + 1,
        ..allow
    };
    let e = verify_payment(&hex, &to, Sat(5_000), Some(&[Sat(10_000)]), &strict).unwrap_err();
    assert_eq!(e.reason(), "fee_too_low");
}

use bitcoin::hashes::Hash as _;
