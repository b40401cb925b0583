//! `pay402_backends::bitcoind::BitcoindRpc` against a real bcoin regtest
//! node: a real signed P2WPKH payment is broadcast, looked up, confirmed and
//! spent-checked; re-broadcasts, double spends and unknown txids give the
//! typed outcomes the on-chain rail relies on.
//!
//! bcoin is installed on first use (npm); the test fails, never skips, when
//! the node cannot start.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Address, Network, OutPoint, ScriptBuf, Txid};
use pay402_backends::bitcoind::{BitcoindConfig, BitcoindRpc};
use pay402_core::bitreq::onchain::build_payment;
use pay402_core::bitreq::{SpendKind, SpendableUtxo};
use pay402_core::chain::{BitcoinChain, ChainError};
use pay402_core::money::Sat;
use pay402_core::problem::Reason;
use pay402_testkit::bcoin::Bcoin;

const FUNDING: u64 = 100_000;
const PAYMENT: u64 = 40_000;
const FEE: u64 = 1_000;

fn start() -> Bcoin {
    let t = Instant::now();
    let node = Bcoin::start().unwrap_or_else(|e| panic!("bcoin test peer could not start: {e}"));
    eprintln!("bcoin started in {:?} (pid {})", t.elapsed(), node.pid());
    node
}

/// A fresh secret key (not reproducible across runs; tests only).
fn fresh_key() -> SecretKey {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let seed = format!("pay402-bcoin-chain-{}-{nanos}", std::process::id());
    SecretKey::from_slice(sha256::Hash::hash(seed.as_bytes()).as_byte_array())
        .expect("a hash is a valid secret key")
}

fn script_of(address: &str) -> ScriptBuf {
    address
        .parse::<Address<_>>()
        .expect("bcoin address parses")
        .require_network(Network::Regtest)
        .expect("regtest address")
        .script_pubkey()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoind_rpc_against_bcoin() {
    let node = start();
    let rpc = BitcoindRpc::new(BitcoindConfig {
        url: node.rpc_url().parse().expect("rpc url"),
        user: node.rpc_user().to_owned(),
        password: node.rpc_password().to_owned(),
        timeout: Duration::from_secs(30),
    })
    .expect("client builds");

    // Fund a P2WPKH output of a key we hold.
    let key = fresh_key();
    let probe = SpendableUtxo {
        outpoint: OutPoint::null(),
        amount: Sat(FUNDING),
        kind: SpendKind::P2wpkh,
        key: &key,
    };
    let our_script = probe.script_pubkey();
    let our_address = Address::from_script(&our_script, Network::Regtest).expect("p2wpkh address");
    let funding_txid: Txid = node
        .fund(&our_address.to_string(), FUNDING)
        .expect("fund")
        .parse()
        .expect("funding txid");
    let funding = rpc
        .get_transaction(&funding_txid)
        .await
        .expect("lookup funding tx")
        .expect("funding tx known");
    let vout = funding
        .tx
        .output
        .iter()
        .position(|o| o.script_pubkey == our_script)
        .expect("funding pays our script");
    assert_eq!(funding.tx.output[vout].value.to_sat(), FUNDING);
    let funding_outpoint = OutPoint::new(funding_txid, u32::try_from(vout).expect("vout"));
    let utxo = SpendableUtxo {
        outpoint: funding_outpoint,
        ..probe
    };
    let seen = rpc
        .get_tx_out(&funding_outpoint)
        .await
        .expect("gettxout")
        .expect("funding output unspent");
    assert_eq!(seen.value, Sat(FUNDING));
    assert_eq!(seen.script_pubkey, our_script);

    // Pay the node's wallet.
    let pay_to = script_of(&node.new_address().expect("new address"));
    let tx = build_payment(&[utxo], &pay_to, Sat(PAYMENT), &our_script, Sat(FEE))
        .expect("build payment");
    let txid = rpc.broadcast(&tx).await.expect("broadcast");
    assert_eq!(txid, tx.compute_txid());

    let info = rpc
        .get_transaction(&txid)
        .await
        .expect("lookup")
        .expect("payment known");
    assert_eq!(info.tx, tx);
    assert_eq!(info.confirmations, 0);
    assert_eq!(info.block_height, None);
    assert!(!info.is_confirmed());

    // Re-broadcast while in the mempool.
    let again = rpc.broadcast(&tx).await.unwrap_err();
    assert!(
        matches!(again, ChainError::AlreadyKnown { .. }),
        "re-broadcast from mempool: {again:?}"
    );
    assert_eq!(again.reason(), "chain_tx_already_known");

    // A double spend of the same input (mempool conflict).
    let double = build_payment(
        &[utxo],
        &our_script,
        Sat(PAYMENT / 2),
        &our_script,
        Sat(FEE),
    )
    .expect("build double spend");
    assert_ne!(double.compute_txid(), txid);
    let err = rpc.broadcast(&double).await.unwrap_err();
    assert!(
        matches!(err, ChainError::Conflict { .. }),
        "double spend (mempool): {err:?}"
    );
    assert_eq!(err.reason(), "chain_conflict");

    // Confirm it.
    node.mine(1).expect("mine");
    let height = node.block_count().expect("block count");
    let info = rpc
        .get_transaction(&txid)
        .await
        .expect("lookup")
        .expect("payment known");
    assert_eq!(info.confirmations, 1);
    assert_eq!(info.block_height, Some(height));
    assert_eq!(rpc.block_height().await.expect("height"), height);

    let out = rpc
        .get_tx_out(&OutPoint::new(txid, 0))
        .await
        .expect("gettxout")
        .expect("payment output unspent");
    assert_eq!(out.value, Sat(PAYMENT));
    assert_eq!(out.script_pubkey, pay_to);
    assert_eq!(out.confirmations, 1);
    assert!(!out.coinbase);
    let change = rpc
        .get_tx_out(&OutPoint::new(txid, 1))
        .await
        .expect("gettxout")
        .expect("change output unspent");
    assert_eq!(change.value, Sat(FUNDING - PAYMENT - FEE));
    assert!(
        rpc.get_tx_out(&funding_outpoint)
            .await
            .expect("gettxout")
            .is_none(),
        "the funding output is spent"
    );

    // Re-broadcast once confirmed, and a double spend against the chain.
    let again = rpc.broadcast(&tx).await.unwrap_err();
    assert!(
        matches!(again, ChainError::AlreadyKnown { .. }),
        "re-broadcast from chain: {again:?}"
    );
    let err = rpc.broadcast(&double).await.unwrap_err();
    assert!(
        matches!(err, ChainError::Conflict { .. }),
        "double spend (chain): {err:?}"
    );
    assert_eq!(err.status(), 409);

    // A transaction the node drops without an error (bcoin relays
    // asynchronously): below the minimum relay fee.
    let change_utxo = SpendableUtxo {
        outpoint: OutPoint::new(txid, 1),
        amount: change.value,
        ..probe
    };
    let free = build_payment(
        &[change_utxo],
        &pay_to,
        Sat(PAYMENT / 2),
        &our_script,
        Sat(0),
    )
    .expect("build zero-fee tx");
    let err = rpc.broadcast(&free).await.unwrap_err();
    assert!(
        matches!(err, ChainError::Rejected { .. }),
        "zero-fee tx: {err:?}"
    );
    assert_eq!(err.reason(), "chain_rejected");

    // Unknown transactions and outputs.
    let unknown = Txid::from_byte_array([0x42; 32]);
    assert_eq!(rpc.get_transaction(&unknown).await.expect("lookup"), None);
    assert_eq!(
        rpc.get_tx_out(&OutPoint::new(unknown, 0))
            .await
            .expect("gettxout"),
        None
    );

    // Fee estimates answer (regtest usually has none).
    let rate = rpc.estimate_fee_rate(6).await.expect("estimatesmartfee");
    eprintln!("estimatesmartfee 6: {rate:?}");

    assert_eq!(
        rpc.block_height().await.expect("height"),
        node.block_count().expect("block count")
    );
}
