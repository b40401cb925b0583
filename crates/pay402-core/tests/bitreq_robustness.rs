//! No-panic mutation loop over every BitRequests parser.

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{OutPoint, ScriptBuf, Transaction, Txid};
use pay402_core::bitreq::onchain::verify_payment;
use pay402_core::bitreq::transfer::verify;
use pay402_core::bitreq::*;
use pay402_core::money::Sat;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            _ => {
                // Printable substitution, to get past ASCII checks.
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = b' ' + (rng.next() % 95) as u8;
                }
            }
        }
    }
    v
}

#[test]
fn mutation_loop_never_panics() {
    let key = SecretKey::from_slice(&[0x33; 32]).unwrap();
    let pk = key.public_key(&Secp256k1::new());
    let transfer = BitTransfer {
        payer: "p".into(),
        payer_pubkey: pk,
        payee_address: "19tQ4iBbdhZsQKgZoeY3gVM1yyhGPxkiPM".into(),
        payee_username: "u".into(),
        amount: Sat(1000),
        timestamp: 1_700_000_000.25,
        description: "https://x/y".into(),
    }
    .sign(&key)
    .unwrap();
    let redeem = RedeemScript::new(pk, pk, 1_600_000_000, ExpiryEncoding::Two1Raw).unwrap();
    let params = ChannelParams {
        redeem,
        deposit: OutPoint::null(),
        deposit_value: Sat(200_000),
        fee: Sat(10_000),
        min_output: Sat(3_000),
    };
    let half = params.half_signed_payment(Sat(5_000), &key).unwrap();
    let half_bytes = bitcoin::consensus::encode::serialize(&half);
    let half_hex = serialize_hex(&half);
    let script = redeem.to_script().into_bytes();
    let merchant = ScriptBuf::new_p2pkh(&bitcoin::PublicKey::new(pk).pubkey_hash());
    let txid = Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros());
    let close = hex::encode(close_signature(&txid, &key));

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let t = mutate(&mut rng, transfer.transfer.as_bytes());
        let a = mutate(&mut rng, transfer.authorization.as_bytes());
        if let (Ok(t), Ok(a)) = (std::str::from_utf8(&t), std::str::from_utf8(&a))
            && verify(t, a).is_ok()
        {
            // Only a semantically identical header may still verify.
            assert_eq!(t, transfer.transfer);
        }
        let _ = Proof::from_pairs([("bitcoin-transfer", &t[..]), ("authorization", &a[..])]);
        let price = mutate(&mut rng, b"3500");
        let _ = PaymentInfo::from_pairs([(&b"price"[..], &price[..]), (&b"username"[..], &t[..])]);
        let name = mutate(&mut rng, b"Bitcoin-Payment-Channel-Token");
        let _ = Proof::from_pairs([(
            &name[..],
            &mutate(&mut rng, half_hex.as_bytes()[..64].as_ref())[..],
        )]);
        let hx = mutate(&mut rng, half_hex.as_bytes());
        if let Ok(hx) = std::str::from_utf8(&hx) {
            let _ = verify_payment(
                hx,
                &merchant,
                Sat(5_000),
                Some(&[Sat(200_000)]),
                &OnChainPolicy::default(),
            );
        }
        let raw = mutate(&mut rng, &half_bytes);
        if let Ok(tx) = deserialize::<Transaction>(&raw) {
            if params.verify_half_signed(&tx, Sat(0)).is_ok() {
                assert_eq!(tx, half);
            }
            let _ = params.complete_payment(&tx, &key);
        }
        let s = mutate(&mut rng, &script);
        let _ = RedeemScript::parse(&ScriptBuf::from_bytes(s));
        let c = mutate(&mut rng, close.as_bytes());
        if let Ok(c) = std::str::from_utf8(&c) {
            let _ = verify_close_signature(&txid, c, &pk);
        }
    }
}
