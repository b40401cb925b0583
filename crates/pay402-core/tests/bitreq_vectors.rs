//! two1 golden vectors (bitrequests-21.md §7), byte for byte.

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::hashes::{Hash, hash160};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::transaction::Version;
use bitcoin::{OutPoint, Sequence, Transaction, Txid};
use pay402_core::bitreq::onchain::{BuildOptions, build_payment_with};
use pay402_core::bitreq::*;
use pay402_core::money::Sat;

const CUSTOMER: &str = "83407377a24a5cef75dedb0445d2da3a5389ed34c0f0c57266b1ed0a5ebb30c1";
const MERCHANT: &str = "9d1ad8f765996474ff478ef65692a95dba0af2e24cd9e2cb6dfeee52ce2d38e8";
const EXPIRY: u32 = 1450223410;
const REDEEM: &str = "63210316f5d704b828c3252432886a843649730e08ae01bbbd5c6bde63756d7f54f961ad670432a77056b175682103ee071c95cb772e57a6d8f4f987e9c61b857e63d9f3b5be7a84bdba0b5847099dac";
const DEPOSIT: &str = "010000000119de54dd7043927219cca4c06cc8b94c7c862b6486b0f989ea4c6569fb34383d010000006b483045022100c45e5bd8d00caa1cd3ad46e078ec132c9c505b3168d1d1ffe6285cf054f54ed302203ea12c4203ccee8a9de616cc22f081eed47a78660ce0a01cb3a97e302178a573012103ee071c95cb772e57a6d8f4f987e9c61b857e63d9f3b5be7a84bdba0b5847099dffffffff0198b101000000000017a9149bc3354ccfd998cf16628449b940e6914210f1098700000000";
const DEPOSIT_TXID: &str = "7e1a558c84abd5aaf57999557f4a7205d4b69241b7c9cab6c0795fdd663a51ef";
const REFUND: &str = "0100000001ef513a66dd5f79c0b6cac9b74192b6d405724a7f559979f5aad5ab848c551a7e000000009d483045022100d00fb043ab32361c4e574e4f7f59ba0b3d1c2fbe758c3d26555cb3748e3270050220729cb95327245aa6f428f87b1e13cbc9c82dfa6dbc2bac0fc4641fc720dc0b220101004c5063210316f5d704b828c3252432886a843649730e08ae01bbbd5c6bde63756d7f54f961ad670432a77056b175682103ee071c95cb772e57a6d8f4f987e9c61b857e63d9f3b5be7a84bdba0b5847099dacfeffffff01888a0100000000001976a914b42fb00f78266bba89feee86036df44401320fba88ac32a77056";
const PAYMENT_HALF: &str = "0100000001ef513a66dd5f79c0b6cac9b74192b6d405724a7f559979f5aad5ab848c551a7e000000009c483045022100e0758baae39dfb1c4402c37a3382ae96a34786734265ea2bc94977299dfd2573022047957838a067ad0bbd575ec219e71c1c750685f6a70da3baa9d294c8a8202d7b01514c5063210316f5d704b828c3252432886a843649730e08ae01bbbd5c6bde63756d7f54f961ad670432a77056b175682103ee071c95cb772e57a6d8f4f987e9c61b857e63d9f3b5be7a84bdba0b5847099dacffffffff02e8030000000000001976a914a5f30391271dfccc133d321960ffe1dccc88e1b488aca0860100000000001976a914b42fb00f78266bba89feee86036df44401320fba88ac00000000";
const TOKEN: &str = "ebe4d541199430f0ae07f5250455e0fe612051848ec70f21ca81bb9ca5e9e096";
const CLOSE_SIG: &str = "30450221008f51b6565a8ee67c32529ed840116c44e1f60a628c51ac59720cc8c6df1b5eab02204ccc32c89f81425f483c64c6f8dd77e57eefd3b6a5b7548d1875f5ef3f86cf27";
const PAYMENT_FULL: &str = "0100000001ef513a66dd5f79c0b6cac9b74192b6d405724a7f559979f5aad5ab848c551a7e00000000e5483045022100e0758baae39dfb1c4402c37a3382ae96a34786734265ea2bc94977299dfd2573022047957838a067ad0bbd575ec219e71c1c750685f6a70da3baa9d294c8a8202d7b01483045022100d212f10ed1674776c3d302a3354ce05fd7be9eedbc802fa36a1c81f0a2a3ad3c02202612bfcfbca9e415e32923c8e373e8bd5282060b7a5789d58ac8f606577ce5be01514c5063210316f5d704b828c3252432886a843649730e08ae01bbbd5c6bde63756d7f54f961ad670432a77056b175682103ee071c95cb772e57a6d8f4f987e9c61b857e63d9f3b5be7a84bdba0b5847099dacffffffff02e8030000000000001976a914a5f30391271dfccc133d321960ffe1dccc88e1b488aca0860100000000001976a914b42fb00f78266bba89feee86036df44401320fba88ac00000000";
const PAYMENT_FULL_TXID: &str = "d172bc7eb4f5e4dd42cb54cc273b5756226f0ca79c6e54bf3183f027d3bc4249";

fn key(h: &str) -> SecretKey {
    SecretKey::from_slice(&hex::decode(h).unwrap()).unwrap()
}

fn pk(k: &SecretKey) -> PublicKey {
    k.public_key(&Secp256k1::new())
}

fn redeem() -> RedeemScript {
    RedeemScript::new(
        pk(&key(MERCHANT)),
        pk(&key(CUSTOMER)),
        EXPIRY,
        ExpiryEncoding::Two1Raw,
    )
    .unwrap()
}

fn params() -> ChannelParams {
    ChannelParams {
        redeem: redeem(),
        deposit: OutPoint::new(DEPOSIT_TXID.parse().unwrap(), 0),
        deposit_value: channel::deposit_output_value(Sat(100_000), Sat(1_000), Sat(10_000))
            .unwrap(),
        fee: Sat(10_000),
        min_output: Sat(1_000),
    }
}

#[test]
fn redeem_script_vector() {
    let r = redeem();
    assert_eq!(hex::encode(r.to_script().as_bytes()), REDEEM);
    assert_eq!(
        hash160::Hash::hash(r.to_script().as_bytes()).to_string(),
        "9bc3354ccfd998cf16628449b940e6914210f109"
    );
    // ScriptNum gives the same bytes before 2038.
    let fixed = RedeemScript {
        encoding: ExpiryEncoding::ScriptNum,
        ..r
    };
    assert_eq!(hex::encode(fixed.to_script().as_bytes()), REDEEM);
    let parsed = RedeemScript::parse(&r.to_script()).unwrap();
    assert_eq!(parsed, r);
}

#[test]
fn redeem_script_after_2038_differs() {
    let r = RedeemScript {
        expiry: 0x8000_0001,
        ..redeem()
    };
    let fixed = RedeemScript {
        encoding: ExpiryEncoding::ScriptNum,
        ..r
    };
    assert_eq!(r.to_script().len(), 80);
    assert_eq!(fixed.to_script().len(), 81);
    assert_eq!(RedeemScript::parse(&fixed.to_script()).unwrap(), fixed);
    assert_eq!(RedeemScript::parse(&r.to_script()).unwrap(), r);
}

#[test]
fn deposit_vector() {
    let customer = key(CUSTOMER);
    let utxo = SpendableUtxo {
        outpoint: "3d3834fb69654cea89f9b086642b867c4cb9c86cc0a4cc1972924370dd54de19:1"
            .parse()
            .unwrap(),
        // The mock UTXO's value is not in the vector; legacy sighash does not cover it.
        amount: Sat(111_000),
        kind: SpendKind::P2pkh,
        key: &customer,
    };
    let opts = BuildOptions {
        version: Version::ONE,
        sequence: Sequence::MAX,
        ..Default::default()
    };
    let value = params().deposit_value;
    let tx = build_payment_with(
        &[utxo],
        &redeem().p2sh_script_pubkey(),
        value,
        &utxo.script_pubkey(),
        Sat(0),
        &opts,
    )
    .unwrap();
    assert_eq!(serialize_hex(&tx), DEPOSIT);
    assert_eq!(tx.compute_txid().to_string(), DEPOSIT_TXID);
    let same =
        channel::build_deposit(&[utxo], &redeem(), value, &utxo.script_pubkey(), Sat(0)).unwrap();
    assert_eq!(serialize_hex(&same), DEPOSIT);
    // Server `open` checks on the vector: P2SH output 0 worth 111000.
    let presented: Transaction = deserialize(&hex::decode(DEPOSIT).unwrap()).unwrap();
    let redeem_script = bitcoin::ScriptBuf::from_bytes(hex::decode(REDEEM).unwrap());
    let now = pay402_core::time::UnixTime(u64::from(EXPIRY) - channel::MIN_CHANNEL_DURATION_SECS);
    let (outpoint, amount) = channel::verify_deposit(
        &presented,
        &redeem_script,
        &pk(&key(MERCHANT)),
        now,
        channel::MIN_CHANNEL_DURATION_SECS,
    )
    .unwrap();
    assert_eq!(outpoint, params().deposit);
    assert_eq!(amount, Sat(111_000));
    // Wrong merchant key.
    assert_eq!(
        channel::verify_deposit(&presented, &redeem_script, &pk(&key(CUSTOMER)), now, 0),
        Err(BitreqError::InvalidRedeemScript)
    );
}

#[test]
fn refund_vector() {
    let tx = params().refund(&key(CUSTOMER)).unwrap();
    assert_eq!(serialize_hex(&tx), REFUND);
}

#[test]
fn refund_fixed_flavor_uses_op_0() {
    let mut p = params();
    p.redeem.encoding = ExpiryEncoding::ScriptNum;
    let tx = p.refund(&key(CUSTOMER)).unwrap();
    let ss = tx.input[0].script_sig.as_bytes();
    // <72-byte sig push> OP_0 PUSHDATA1 80 <redeem>
    assert_eq!(ss[73], 0x00);
    assert_eq!(ss[74], 0x4c);
}

#[test]
fn half_signed_payment_vector_and_token() {
    let p = params();
    let tx = p.half_signed_payment(Sat(1_000), &key(CUSTOMER)).unwrap();
    assert_eq!(serialize_hex(&tx), PAYMENT_HALF);
    assert_eq!(tx.compute_txid().to_string(), TOKEN);
    let presented: Transaction = deserialize(&hex::decode(PAYMENT_HALF).unwrap()).unwrap();
    let ok = p.verify_half_signed(&presented, Sat(0)).unwrap();
    assert_eq!(ok.token.to_string(), TOKEN);
    assert_eq!(ok.amount, Sat(1_000));
    assert_eq!(ok.increment, Sat(1_000));
    // The token parses from the header.
    let proof = Proof::from_pairs([("bitcoin-payment-channel-token", TOKEN)]).unwrap();
    assert_eq!(
        proof,
        Proof::Channel {
            token: TOKEN.parse().unwrap()
        }
    );
}

#[test]
fn other_two1_payment_amounts_roundtrip() {
    let p = params();
    let mut last = Sat(0);
    for amount in [1_000, 5_000, 7_123, 21_001, 21_002] {
        let tx = p.half_signed_payment(Sat(amount), &key(CUSTOMER)).unwrap();
        let ok = p.verify_half_signed(&tx, last).unwrap();
        assert_eq!(ok.increment.0, amount - last.0);
        last = Sat(amount);
    }
    // The second two1 set: 300000 deposit, 20000 fee.
    let p2 = ChannelParams {
        deposit_value: channel::deposit_output_value(Sat(300_000), Sat(1_000), Sat(20_000))
            .unwrap(),
        fee: Sat(20_000),
        ..p
    };
    let tx = p2.half_signed_payment(Sat(1_000), &key(CUSTOMER)).unwrap();
    assert_eq!(tx.output[1].value.to_sat(), 300_000);
}

#[test]
fn full_payment_vector() {
    let p = params();
    let half: Transaction = deserialize(&hex::decode(PAYMENT_HALF).unwrap()).unwrap();
    let full = p.complete_payment(&half, &key(MERCHANT)).unwrap();
    assert_eq!(serialize_hex(&full), PAYMENT_FULL);
    assert_eq!(full.compute_txid().to_string(), PAYMENT_FULL_TXID);
}

#[test]
fn close_signature_vector() {
    let txid: Txid = DEPOSIT_TXID.parse().unwrap();
    let sig = close_signature(&txid, &key(CUSTOMER));
    assert_eq!(hex::encode(&sig), CLOSE_SIG);
    verify_close_signature(&txid, CLOSE_SIG, &pk(&key(CUSTOMER))).unwrap();
    assert_eq!(
        verify_close_signature(&txid, CLOSE_SIG, &pk(&key(MERCHANT))),
        Err(BitreqError::InvalidSignature)
    );
}

#[test]
fn half_signed_rejections() {
    let p = params();
    let good: Transaction = deserialize(&hex::decode(PAYMENT_HALF).unwrap()).unwrap();
    // Tampered output amount: no longer the template.
    let mut t = good.clone();
    t.output[1].value = bitcoin::Amount::from_sat(99_999);
    assert_eq!(
        p.verify_half_signed(&t, Sat(0)),
        Err(BitreqError::InvalidTransaction)
    );
    // Merchant amount bumped: template matches, signature does not.
    let mut t = good.clone();
    t.output[0].value = bitcoin::Amount::from_sat(2_000);
    t.output[1].value = bitcoin::Amount::from_sat(99_000);
    assert_eq!(
        p.verify_half_signed(&t, Sat(0)),
        Err(BitreqError::InvalidSignature)
    );
    // Not above the last amount.
    assert_eq!(
        p.verify_half_signed(&good, Sat(1_000)),
        Err(BitreqError::IncorrectAmount)
    );
    // Another redeem script.
    let mut other = p;
    other.redeem.expiry += 1;
    assert_eq!(
        other.verify_half_signed(&good, Sat(0)),
        Err(BitreqError::InvalidRedeemScript)
    );
    // Fully signed is not half-signed.
    let full: Transaction = deserialize(&hex::decode(PAYMENT_FULL).unwrap()).unwrap();
    assert_eq!(
        p.verify_half_signed(&full, Sat(0)),
        Err(BitreqError::InvalidTransaction)
    );
}
