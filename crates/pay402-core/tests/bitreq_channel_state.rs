//! Channel v2 state machines (server and client) and REST bodies, driven by
//! the two1 §7 vectors: transition tables, rejection reasons, serde round-trips.

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{OutPoint, Transaction, Txid};
use pay402_core::bitreq::rest::*;
use pay402_core::bitreq::state::*;
use pay402_core::bitreq::*;
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use pay402_core::time::UnixTime;

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
const PAYMENT_FULL_TXID: &str = "d172bc7eb4f5e4dd42cb54cc273b5756226f0ca79c6e54bf3183f027d3bc4249";

/// Well before the close deadline.
const EARLY: UnixTime = UnixTime(1_449_000_000);

fn key(h: &str) -> SecretKey {
    SecretKey::from_slice(&hex::decode(h).unwrap()).unwrap()
}

fn pk(k: &SecretKey) -> PublicKey {
    k.public_key(&Secp256k1::new())
}

fn params() -> ChannelParams {
    ChannelParams {
        redeem: RedeemScript::new(
            pk(&key(MERCHANT)),
            pk(&key(CUSTOMER)),
            EXPIRY,
            ExpiryEncoding::Two1Raw,
        )
        .unwrap(),
        deposit: OutPoint::new(DEPOSIT_TXID.parse().unwrap(), 0),
        deposit_value: Sat(111_000),
        fee: Sat(10_000),
        min_output: Sat(1_000),
    }
}

fn tx(h: &str) -> Transaction {
    deserialize(&hex::decode(h).unwrap()).unwrap()
}

fn ready_server() -> ServerChannel {
    let mut ch = ServerChannel::new(params(), false);
    ch.on_deposit(1).unwrap();
    ch
}

// ---------------------------------------------------------------- server

#[test]
fn server_open_table() {
    // (zeroconf, confirmations seen in order, final state)
    let cases: &[(bool, &[u32], ServerState)] = &[
        (false, &[], ServerState::Opening),
        (false, &[0], ServerState::Confirming),
        (false, &[0, 0], ServerState::Confirming),
        (false, &[0, 1], ServerState::Ready),
        (false, &[1], ServerState::Ready),
        (false, &[1, 0], ServerState::Ready),
        (true, &[0], ServerState::Ready),
    ];
    for (zeroconf, seen, want) in cases {
        let mut ch = ServerChannel::new(params(), *zeroconf);
        for c in *seen {
            ch.on_deposit(*c).unwrap();
        }
        assert_eq!(ch.state(), *want, "zeroconf={zeroconf} seen={seen:?}");
    }
}

#[test]
fn server_status_strings_are_two1s() {
    let table = [
        (ServerState::Opening, "confirming"),
        (ServerState::Confirming, "confirming"),
        (ServerState::Ready, "ready"),
        (ServerState::Closing, "closed"),
        (ServerState::Closed, "closed"),
    ];
    for (s, name) in table {
        assert_eq!(s.as_str(), name);
    }
}

#[test]
fn server_full_lifecycle_matches_vectors() {
    let mut ch = ready_server();
    let paid = ch.receive_payment(&tx(PAYMENT_HALF), EARLY).unwrap();
    assert_eq!(paid.token.to_string(), TOKEN);
    assert_eq!((paid.amount, paid.increment), (Sat(1_000), Sat(1_000)));
    assert_eq!(ch.last_amount(), Sat(1_000));
    assert_eq!(
        ch.spend(&paid.token),
        Some(Spend {
            increment: Sat(1_000),
            redeemed: false
        })
    );
    assert_eq!(ch.redeem(&paid.token, Sat(1_000)), Ok(Sat(1_000)));
    assert_eq!(
        ch.redeem(&paid.token, Sat(1_000)),
        Err(ChannelError::AlreadyRedeemed)
    );
    let full = ch.close(CLOSE_SIG, &key(MERCHANT)).unwrap();
    assert_eq!(full.compute_txid().to_string(), PAYMENT_FULL_TXID);
    assert_eq!(ch.state(), ServerState::Closing);
    assert_eq!(
        ch.close(CLOSE_SIG, &key(MERCHANT)),
        Err(ChannelError::Closed)
    );
    ch.on_deposit_spent();
    assert_eq!(ch.state(), ServerState::Closed);
    assert_eq!(
        ch.receive_payment(&tx(PAYMENT_HALF), EARLY),
        Err(ChannelError::Closed)
    );
}

#[test]
fn server_accepts_only_increasing_payments_and_credits_increments() {
    let p = params();
    let c = key(CUSTOMER);
    let mut ch = ready_server();
    let a = ch
        .receive_payment(&p.half_signed_payment(Sat(1_000), &c).unwrap(), EARLY)
        .unwrap();
    let b = ch
        .receive_payment(&p.half_signed_payment(Sat(21_001), &c).unwrap(), EARLY)
        .unwrap();
    assert_eq!(b.increment, Sat(20_001));
    // Not more than the last: refused, state unchanged.
    for amount in [21_001, 5_000] {
        let e = ch
            .receive_payment(&p.half_signed_payment(Sat(amount), &c).unwrap(), EARLY)
            .unwrap_err();
        assert_eq!(e, ChannelError::Invalid(BitreqError::IncorrectAmount));
        assert_eq!(e.status(), 402);
    }
    assert_eq!(ch.last_amount(), Sat(21_001));
    // Each token redeems once, for its own increment.
    assert_eq!(ch.redeem(&b.token, Sat(20_000)), Ok(Sat(20_001)));
    assert_eq!(ch.redeem(&a.token, Sat(1_000)), Ok(Sat(1_000)));
}

#[test]
fn server_underpaid_token_is_not_burned() {
    let mut ch = ready_server();
    let t = ch.receive_payment(&tx(PAYMENT_HALF), EARLY).unwrap().token;
    let e = ch.redeem(&t, Sat(1_001)).unwrap_err();
    assert_eq!(
        e,
        ChannelError::Underpaid {
            increment: Sat(1_000),
            price: Sat(1_001)
        }
    );
    assert_eq!((e.reason(), e.status()), ("underpaid", 402));
    assert!(!ch.spend(&t).unwrap().redeemed);
    assert_eq!(ch.redeem(&t, Sat(999)), Ok(Sat(1_000)), "overpay allowed");
}

#[test]
fn server_rejection_table() {
    let c = key(CUSTOMER);
    let p = params();
    let other = key(MERCHANT); // wrong customer key
    let unknown = Txid::from_byte_array([7; 32]);
    let deadline = UnixTime(u64::from(EXPIRY) - SERVER_CLOSE_MARGIN_SECS + 1);

    let mut opening = ServerChannel::new(p, false);
    assert_eq!(
        opening.receive_payment(&tx(PAYMENT_HALF), EARLY),
        Err(ChannelError::NotReady)
    );
    assert_eq!(
        opening.redeem(&unknown, Sat(1)),
        Err(ChannelError::NotReady)
    );

    let mut ch = ready_server();
    let cases: Vec<(
        &str,
        Result<channel::ChannelPayment, ChannelError>,
        &str,
        u16,
    )> = vec![
        (
            "wrong signer",
            ch.receive_payment(&p.half_signed_payment(Sat(1_000), &other).unwrap(), EARLY),
            "invalid_signature",
            401,
        ),
        (
            "past close deadline",
            ch.receive_payment(&tx(PAYMENT_HALF), deadline),
            "channel_expiring",
            409,
        ),
        (
            "malleated (refund presented as payment)",
            ch.receive_payment(&tx(REFUND), EARLY),
            "invalid_transaction",
            400,
        ),
    ];
    for (name, got, reason, status) in cases {
        let e = got.unwrap_err();
        assert_eq!((e.reason(), e.status()), (reason, status), "{name}");
    }
    assert_eq!(ch.redeem(&unknown, Sat(1)), Err(ChannelError::UnknownToken));
    assert_eq!(
        ch.close(CLOSE_SIG, &key(MERCHANT)),
        Err(ChannelError::NoPayment)
    );
    ch.receive_payment(&p.half_signed_payment(Sat(1_000), &c).unwrap(), EARLY)
        .unwrap();
    // A close signature by the merchant (not the customer) is refused.
    let bad = hex::encode(close_signature(&p.deposit.txid, &key(MERCHANT)));
    let e = ch.close(&bad, &key(MERCHANT)).unwrap_err();
    assert_eq!(e.reason(), "invalid_signature");
    assert_eq!(
        ch.close("zz", &key(MERCHANT)).unwrap_err().reason(),
        "malformed_signature"
    );
    assert_eq!(ch.state(), ServerState::Ready, "failed close leaves state");
}

#[test]
fn server_sync_closes_before_expiry() {
    let key_m = key(MERCHANT);
    let before = UnixTime(u64::from(EXPIRY) - SERVER_CLOSE_MARGIN_SECS);
    let after = UnixTime(before.0 + 1);
    assert!(!must_close(before, EXPIRY, SERVER_CLOSE_MARGIN_SECS));
    assert!(must_close(after, EXPIRY, SERVER_CLOSE_MARGIN_SECS));

    // No payment: nothing to close with.
    let mut empty = ready_server();
    assert_eq!(empty.sync(after, &key_m), Ok(None));
    assert_eq!(empty.state(), ServerState::Ready);

    let mut ch = ready_server();
    ch.receive_payment(&tx(PAYMENT_HALF), EARLY).unwrap();
    assert_eq!(ch.sync(before, &key_m), Ok(None));
    let full = ch.sync(after, &key_m).unwrap().unwrap();
    assert_eq!(full.compute_txid().to_string(), PAYMENT_FULL_TXID);
    assert_eq!(ch.state(), ServerState::Closing);
    assert_eq!(ch.sync(after, &key_m), Ok(None), "only once");

    // two1's test: a 1-hour margin.
    let mut ch = ServerChannel::new(params(), true).with_close_margin(3600);
    ch.on_deposit(0).unwrap();
    ch.receive_payment(&tx(PAYMENT_HALF), EARLY).unwrap();
    assert!(
        ch.sync(UnixTime(u64::from(EXPIRY) - 3600), &key_m)
            .unwrap()
            .is_none()
    );
    assert!(
        ch.sync(UnixTime(u64::from(EXPIRY) - 3599), &key_m)
            .unwrap()
            .is_some()
    );
}

#[test]
fn server_invalid_transitions() {
    let mut ch = ready_server();
    ch.receive_payment(&tx(PAYMENT_HALF), EARLY).unwrap();
    ch.close(CLOSE_SIG, &key(MERCHANT)).unwrap();
    let e = ch.on_deposit(1).unwrap_err();
    assert_eq!(
        e,
        ChannelError::InvalidTransition {
            state: "closing",
            event: "deposit_seen"
        }
    );
    assert_eq!(e.status(), 409);
    // Redemption of an outstanding token still works while closing.
    assert_eq!(
        ch.redeem(&TOKEN.parse().unwrap(), Sat(1_000)),
        Ok(Sat(1_000))
    );
}

#[test]
fn script_num_channel_runs_the_same_machine() {
    let mut p = params();
    p.redeem.encoding = ExpiryEncoding::ScriptNum;
    p.redeem.expiry = 0x8000_0001; // after 2038
    let c = key(CUSTOMER);
    let mut ch = ServerChannel::new(p, true);
    ch.on_deposit(0).unwrap();
    let paid = ch
        .receive_payment(&p.half_signed_payment(Sat(1_000), &c).unwrap(), EARLY)
        .unwrap();
    assert_eq!(ch.redeem(&paid.token, Sat(1_000)), Ok(Sat(1_000)));
    let sig = hex::encode(close_signature(&p.deposit.txid, &c));
    assert!(ch.close(&sig, &key(MERCHANT)).is_ok());
    // The Two1Raw script for the same expiry is a different channel.
    let mut raw = p;
    raw.redeem.encoding = ExpiryEncoding::Two1Raw;
    let mut ch = ServerChannel::new(p, true);
    ch.on_deposit(0).unwrap();
    let e = ch
        .receive_payment(&raw.half_signed_payment(Sat(1_000), &c).unwrap(), EARLY)
        .unwrap_err();
    assert_eq!(e.reason(), "invalid_redeem_script");
}

// ---------------------------------------------------------------- client

fn client() -> ClientChannel {
    ClientChannel::open(params(), &key(CUSTOMER)).unwrap()
}

#[test]
fn client_refund_and_first_payment_match_vectors() {
    let mut ch = client();
    assert_eq!(serialize_hex(ch.refund()), REFUND);
    ch.on_open_ack(false).unwrap();
    ch.on_deposit_confirmed().unwrap();
    let half = ch.pay(Sat(1), &key(CUSTOMER)).unwrap(); // raised to min output
    assert_eq!(serialize_hex(&half), PAYMENT_HALF);
    assert_eq!(ch.state(), ClientState::Outstanding);
    assert_eq!(ch.pay_ack(&TOKEN.parse().unwrap()), Ok(Sat(1_000)));
    assert_eq!(ch.close_signature_hex(&key(CUSTOMER)), CLOSE_SIG);
}

#[test]
fn client_transition_table() {
    use ClientState::*;
    let c = key(CUSTOMER);
    // (events, expected final state); every event must succeed.
    type Step = fn(&mut ClientChannel, &SecretKey) -> Result<(), ChannelError>;
    let ack0: Step = |ch, _| ch.on_open_ack(false).map(drop);
    let ack1: Step = |ch, _| ch.on_open_ack(true).map(drop);
    let conf: Step = |ch, _| ch.on_deposit_confirmed().map(drop);
    let pay: Step = |ch, k| ch.pay(Sat(1_000), k).map(drop);
    let nack: Step = |ch, _| ch.pay_nack().map(drop);
    let ack_pay: Step = |ch, _| {
        let t = ch_outstanding_token(ch);
        ch.pay_ack(&t).map(drop)
    };
    let close: Step = |ch, _| ch.on_close(Txid::all_zeros()).map(drop);
    let fin: Step = |ch, _| {
        let r = ch.refund().clone();
        ch.finalize(&r).map(drop)
    };
    let table: Vec<(&str, Vec<Step>, ClientState)> = vec![
        ("open", vec![], Opening),
        ("ack", vec![ack0], ConfirmingDeposit),
        ("ack zeroconf", vec![ack1], Ready),
        ("confirm", vec![ack0, conf], Ready),
        ("pay", vec![ack1, pay], Outstanding),
        ("pay nack", vec![ack1, pay, nack], Ready),
        ("pay ack", vec![ack1, pay, ack_pay], Ready),
        ("close", vec![ack1, pay, ack_pay, close], ConfirmingSpend),
        ("finalize", vec![ack1, pay, ack_pay, close, fin], Closed),
        ("refund seen early", vec![ack0, fin], Closed),
    ];
    for (name, steps, want) in table {
        let mut ch = client();
        for s in steps {
            s(&mut ch, &c).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(ch.state(), want, "{name}");
    }
}

fn ch_outstanding_token(ch: &ClientChannel) -> Txid {
    // Rebuild the payment deterministically (RFC 6979) to learn its txid.
    let amount = Sat(ch.last_amount().0 + 1_000);
    params()
        .half_signed_payment(amount, &key(CUSTOMER))
        .unwrap()
        .compute_txid()
}

#[test]
fn client_invalid_transitions() {
    let c = key(CUSTOMER);
    let mut ch = client();
    let cases: Vec<(&str, ChannelError)> = vec![
        ("pay", ch.pay(Sat(1_000), &c).unwrap_err()),
        ("pay_nack", ch.pay_nack().unwrap_err()),
        ("pay_ack", ch.pay_ack(&Txid::all_zeros()).unwrap_err()),
        ("close", ch.on_close(Txid::all_zeros()).unwrap_err()),
        ("finalize", ch.finalize(&tx(REFUND)).unwrap_err()),
        ("deposit_confirmed", ch.on_deposit_confirmed().unwrap_err()),
    ];
    for (event, e) in cases {
        assert_eq!(
            e,
            ChannelError::InvalidTransition {
                state: "OPENING",
                event
            }
        );
    }
    ch.on_open_ack(true).unwrap();
    assert!(ch.on_open_ack(true).is_err());
    ch.pay(Sat(1_000), &c).unwrap();
    assert!(ch.pay(Sat(1_000), &c).is_err(), "one outstanding payment");
    assert_eq!(
        ch.pay_ack(&Txid::all_zeros()),
        Err(ChannelError::TokenMismatch)
    );
    assert_eq!(ch.state(), ClientState::Outstanding);
}

#[test]
fn client_balance_and_limits() {
    let c = key(CUSTOMER);
    let mut ch = client();
    ch.on_open_ack(true).unwrap();
    assert_eq!(ch.balance(), Sat(100_000));
    assert_eq!(ch.pay(Sat(0), &c), Err(ChannelError::InsufficientBalance));
    assert_eq!(
        ch.pay(Sat(100_001), &c),
        Err(ChannelError::InsufficientBalance)
    );
    let half = ch.pay(Sat(100_000), &c).unwrap();
    ch.pay_ack(&half.compute_txid()).unwrap();
    assert_eq!(ch.balance(), Sat(0));
    assert_eq!(ch.pay(Sat(1), &c), Err(ChannelError::InsufficientBalance));
}

#[test]
fn client_finalize_checks_the_spend() {
    let mut ch = client();
    ch.on_open_ack(true).unwrap();
    // The deposit itself does not spend the deposit.
    assert_eq!(ch.finalize(&tx(DEPOSIT)), Err(ChannelError::NotOurSpend));
    // A spend of the right outpoint with a foreign script is refused.
    let mut forged = tx(REFUND);
    forged.input[0].script_sig = bitcoin::ScriptBuf::from_bytes(vec![0x51]);
    assert_eq!(ch.finalize(&forged), Err(ChannelError::NotOurSpend));
    // The merchant's completed payment is accepted.
    let full = params()
        .complete_payment(&tx(PAYMENT_HALF), &key(MERCHANT))
        .unwrap();
    assert_eq!(ch.finalize(&full), Ok(ClientState::Closed));
}

#[test]
fn client_refund_timing() {
    let ch = client();
    let e = u64::from(EXPIRY);
    let table = [
        (e - 1, false, false),
        (e, true, false),
        (e + CLIENT_REFUND_MARGIN_SECS, true, false),
        (e + CLIENT_REFUND_MARGIN_SECS + 1, true, true),
    ];
    for (now, expired, due) in table {
        assert_eq!(ch.is_expired(UnixTime(now)), expired, "{now}");
        assert_eq!(ch.refund_if_due(UnixTime(now)).is_some(), due, "{now}");
    }
    let mut closed = client();
    closed.on_open_ack(true).unwrap();
    closed.finalize(&tx(REFUND)).unwrap();
    assert!(closed.refund_if_due(UnixTime(u64::MAX)).is_none());
}

// ---------------------------------------------------------------- REST

#[test]
fn rest_bodies_round_trip() {
    let info = ChannelInfo::new(&pk(&key(MERCHANT)), false);
    let json = serde_json::to_string(&info).unwrap();
    assert_eq!(
        json,
        r#"{"public_key":"0316f5d704b828c3252432886a843649730e08ae01bbbd5c6bde63756d7f54f961","version":2,"zeroconf":false}"#
    );
    assert_eq!(serde_json::from_str::<ChannelInfo>(&json).unwrap(), info);
    assert_eq!(info.merchant_key().unwrap(), pk(&key(MERCHANT)));

    let open = OpenRequest {
        deposit_tx: DEPOSIT.into(),
        redeem_script: REDEEM.into(),
    };
    for body in [serde_json::to_string(&open).unwrap(), encode_form(&open)] {
        let back: OpenRequest = decode_request(body.as_bytes()).unwrap();
        assert_eq!(back, open);
    }
    let (deposit, script) = open.decode().unwrap();
    assert_eq!(deposit.compute_txid().to_string(), DEPOSIT_TXID);
    let (outpoint, value) = channel::verify_deposit(
        &deposit,
        &script,
        &pk(&key(MERCHANT)),
        UnixTime(u64::from(EXPIRY) - channel::MIN_CHANNEL_DURATION_SECS),
        channel::MIN_CHANNEL_DURATION_SECS,
    )
    .unwrap();
    assert_eq!((outpoint, value), (params().deposit, Sat(111_000)));

    let put = PaymentRequest {
        payment_tx: PAYMENT_HALF.into(),
    };
    let back: PaymentRequest = decode_request(encode_form(&put).as_bytes()).unwrap();
    assert_eq!(back.decode().unwrap(), tx(PAYMENT_HALF));
    let del = CloseRequest {
        signature: CLOSE_SIG.into(),
    };
    let back: CloseRequest = decode_request(encode_form(&del).as_bytes()).unwrap();
    assert_eq!(back, del);

    // Responses, as two1's server writes them (Python json.dumps spacing).
    let s: ChannelStatus =
        serde_json::from_str(r#"{"status": "ready", "balance": 1000, "time_left": 1450223410}"#)
            .unwrap();
    assert_eq!(
        s,
        ChannelStatus {
            status: "ready".into(),
            balance: 1000,
            time_left: 1450223410
        }
    );
    let r: OpenResponse =
        serde_json::from_str(&format!(r#"{{"deposit_txid": "{DEPOSIT_TXID}"}}"#)).unwrap();
    assert_eq!(r.deposit_txid, DEPOSIT_TXID);
    let r: PaymentResponse =
        serde_json::from_str(&format!(r#"{{"payment_txid": "{TOKEN}"}}"#)).unwrap();
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        format!(r#"{{"payment_txid":"{TOKEN}"}}"#)
    );
    let r = CloseResponse {
        payment_txid: PAYMENT_FULL_TXID.into(),
    };
    assert_eq!(
        serde_json::from_str::<CloseResponse>(&serde_json::to_string(&r).unwrap()).unwrap(),
        r
    );
}

#[test]
fn rest_form_escapes() {
    let r = CloseRequest {
        signature: "a b&c=d%é".into(),
    };
    let enc = encode_form(&r);
    assert_eq!(enc, "signature=a%20b%26c%3Dd%25%C3%A9");
    assert_eq!(decode_request::<CloseRequest>(enc.as_bytes()).unwrap(), r);
    let plus: CloseRequest = decode_request(b"signature=a+b").unwrap();
    assert_eq!(plus.signature, "a b");
}

#[test]
fn rest_bad_input_reasons() {
    let huge = vec![b'a'; MAX_BODY_BYTES + 1];
    let cases: Vec<(&str, ChannelError, &str, u16)> = vec![
        (
            "too large",
            decode_request::<CloseRequest>(&huge).unwrap_err(),
            "body_too_large",
            413,
        ),
        (
            "missing field",
            decode_request::<OpenRequest>(b"deposit_tx=00").unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "duplicate form field",
            decode_request::<CloseRequest>(b"signature=1&signature=2").unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "bad percent escape",
            decode_request::<CloseRequest>(b"signature=%zz").unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "not utf-8",
            decode_request::<CloseRequest>(b"signature=\xff").unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "wrong JSON type",
            decode_request::<ChannelStatus>(br#"{"status":"ready","balance":"1","time_left":2}"#)
                .unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "tx not hex",
            PaymentRequest {
                payment_tx: "zz".into(),
            }
            .decode()
            .unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "tx trailing bytes",
            PaymentRequest {
                payment_tx: format!("{PAYMENT_HALF}00"),
            }
            .decode()
            .unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "tx too long",
            PaymentRequest {
                payment_tx: "00".repeat(MAX_TX_HEX / 2 + 1),
            }
            .decode()
            .unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "script too long",
            OpenRequest {
                deposit_tx: DEPOSIT.into(),
                redeem_script: "00".repeat(82),
            }
            .decode()
            .unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "version 1",
            ChannelInfo {
                public_key: "02".into(),
                version: 1,
                zeroconf: false,
            }
            .merchant_key()
            .unwrap_err(),
            "unsupported_version",
            400,
        ),
        (
            "bad merchant key",
            ChannelInfo {
                public_key: format!("05{}", "02".repeat(32)),
                version: 2,
                zeroconf: false,
            }
            .merchant_key()
            .unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "path: other endpoint",
            channel_path_txid(&format!("/other/{DEPOSIT_TXID}"), "/payment").unwrap_err(),
            "channel_not_found",
            404,
        ),
        (
            "path: short id",
            channel_path_txid("/payment/abc", "/payment").unwrap_err(),
            "malformed_body",
            400,
        ),
        (
            "path: extra segment",
            channel_path_txid(&format!("/payment/{DEPOSIT_TXID}/x"), "/payment").unwrap_err(),
            "malformed_body",
            400,
        ),
    ];
    for (name, e, reason, status) in cases {
        assert_eq!((e.reason(), e.status()), (reason, status), "{name}");
    }
    for p in [
        format!("/payment/{DEPOSIT_TXID}"),
        format!("/payment/{DEPOSIT_TXID}/"),
        format!("/payments/channel/{DEPOSIT_TXID}"),
    ] {
        let ep = if p.starts_with("/payments") {
            "/payments/channel/"
        } else {
            "/payment"
        };
        assert_eq!(
            channel_path_txid(&p, ep).unwrap().to_string(),
            DEPOSIT_TXID,
            "{p}"
        );
    }
}

#[test]
fn error_bodies_use_the_four_statuses() {
    let table: Vec<(ChannelError, u16, &str)> = vec![
        (
            ChannelError::MalformedBody("payment_tx"),
            400,
            "malformed_body",
        ),
        (ChannelError::UnknownToken, 402, "unknown_token"),
        (
            ChannelError::Underpaid {
                increment: Sat(1),
                price: Sat(2),
            },
            402,
            "underpaid",
        ),
        (ChannelError::AlreadyRedeemed, 409, "payment_already_used"),
        (ChannelError::ChainUnavailable, 503, "chain_unavailable"),
        (ChannelError::ChannelNotFound, 404, "channel_not_found"),
    ];
    for (e, status, reason) in table {
        let (s, p) = error_body(&e);
        assert_eq!((s, p.status, p.reason.as_str()), (status, status, reason));
        let json = p.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["reason"], reason);
        assert_eq!(v["status"], status);
        assert_eq!(v["detail"], e.to_string());
    }
    // Transaction errors keep their own reason through the wrapper.
    let (s, p) = error_body(&ChannelError::from(BitreqError::NotPaidToMerchant));
    assert_eq!((s, p.reason.as_str()), (400, "not_paid_to_merchant"));
}

#[test]
fn rest_decoding_never_panics_on_mangled_bodies() {
    let json = serde_json::to_string(&OpenRequest {
        deposit_tx: DEPOSIT.into(),
        redeem_script: REDEEM.into(),
    })
    .unwrap();
    let form = encode_form(&PaymentRequest {
        payment_tx: PAYMENT_HALF.into(),
    });
    for body in [json.as_bytes(), form.as_bytes()] {
        for cut in 0..body.len() {
            let prefix = body.get(..cut).unwrap();
            if let Ok(r) = decode_request::<OpenRequest>(prefix) {
                let _ = r.decode();
            }
            if let Ok(r) = decode_request::<PaymentRequest>(prefix) {
                let _ = r.decode();
            }
        }
        for i in (0..body.len()).step_by(7) {
            for flip in [0x01u8, 0x20, 0x80] {
                let mut m = body.to_vec();
                m[i] ^= flip;
                if let Ok(r) = decode_request::<OpenRequest>(&m) {
                    let _ = r.decode();
                }
                if let Ok(r) = decode_request::<PaymentRequest>(&m)
                    && let Ok(t) = r.decode()
                {
                    let mut ch = ready_server();
                    let _ = ch.receive_payment(&t, EARLY);
                }
            }
        }
    }
}
