//! Proves the bcoin regtest harness runs a real Bitcoin node that Rust
//! Bitcoin tooling accepts: Core-style RPC, rust-bitcoin-compatible
//! addresses, real funding and confirmation, independent parallel nodes, and
//! no process left behind.
//!
//! These tests install bcoin on first use (npm) and fail, never skip, when
//! that is impossible.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bitcoin::address::NetworkUnchecked;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, Amount, Block, CompressedPublicKey, Network, PrivateKey, Transaction};
use pay402_testkit::PeerError;
use pay402_testkit::bcoin::Bcoin;
use serde_json::{Value, json};

fn start() -> Bcoin {
    let t = Instant::now();
    let node = Bcoin::start().unwrap_or_else(|e| panic!("bcoin test peer could not start: {e}"));
    eprintln!("bcoin started in {:?} (pid {})", t.elapsed(), node.pid());
    node
}

fn regtest_p2wpkh(seed: u8) -> Address {
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[seed; 32]).expect("valid secret key");
    let pk = CompressedPublicKey::from_private_key(&secp, &PrivateKey::new(sk, Network::Regtest))
        .expect("compressed key");
    Address::p2wpkh(&pk, Network::Regtest)
}

fn btc_to_sats(v: &Value) -> u64 {
    let btc = v
        .as_f64()
        .unwrap_or_else(|| panic!("not a BTC amount: {v}"));
    Amount::from_btc(btc).expect("valid amount").to_sat()
}

fn assert_core_bits(json: &Value, context: &str) {
    let bits = json["bits"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: `bits` is not a string: {json}"));
    assert_eq!(
        bits.len(),
        8,
        "{context}: bits {bits:?} is not 8 hex digits"
    );
    assert!(
        bits.chars().all(|c| c.is_ascii_hexdigit()),
        "{context}: bits {bits:?} is not hex"
    );
    assert_eq!(bits, "207fffff", "{context}: regtest pow limit bits");
    assert!(
        json["nonce"].is_u64(),
        "{context}: no numeric nonce: {json}"
    );
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Bcoin>();
}

#[test]
fn real_regtest_node_funds_and_confirms_a_rust_bitcoin_address() {
    let node = start();
    assert_eq!(node.rpc_host(), "127.0.0.1");
    assert_eq!(
        node.rpc_url(),
        format!("http://127.0.0.1:{}", node.rpc_port())
    );
    assert_eq!(
        node.wallet_url(),
        format!("http://127.0.0.1:{}", node.wallet_port())
    );
    assert!(!node.rpc_password().is_empty());
    assert_eq!(node.block_count().unwrap(), 0, "a fresh node is at genesis");

    let info = node.rpc("getblockchaininfo", Value::Null).unwrap();
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["bip9_softforks"]["segwit"]["status"], "active");
    assert_eq!(info["bip9_softforks"]["csv"]["status"], "active");

    // Genesis header: Core shape, no previousblockhash.
    let genesis = node.get_block_hash(0).unwrap();
    assert_eq!(
        genesis, "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
        "Bitcoin Core's regtest genesis"
    );
    let header = node.rpc("getblockheader", json!([genesis])).unwrap();
    assert_core_bits(&header, "genesis getblockheader");
    assert!(header.get("previousblockhash").is_none(), "{header}");
    assert!(header.get("nextblockhash").is_none(), "{header}");

    // Mine to maturity.
    let t = Instant::now();
    let hashes = node.mine(101).unwrap();
    eprintln!("mined 101 blocks in {:?}", t.elapsed());
    assert_eq!(hashes.len(), 101);
    assert_eq!(node.block_count().unwrap(), 101);
    assert_eq!(node.best_block_hash().unwrap(), hashes[100]);

    // The wallet's own addresses parse with rust-bitcoin as regtest addresses.
    let wallet_address = node.new_address().unwrap();
    Address::<NetworkUnchecked>::from_str(&wallet_address)
        .unwrap_or_else(|e| panic!("rust-bitcoin rejects bcoin's address {wallet_address}: {e}"))
        .require_network(Network::Regtest)
        .unwrap_or_else(|e| panic!("{wallet_address} is not a regtest address: {e}"));

    // bcoin accepts rust-bitcoin's bech32 regtest address.
    let address = regtest_p2wpkh(0x42);
    let address_str = address.to_string();
    assert!(address_str.starts_with("bcrt1q"), "{address_str}");
    let valid = node.rpc("validateaddress", json!([address_str])).unwrap();
    assert_eq!(valid["isvalid"], true, "{valid}");

    // Fund it, see it in the mempool, confirm it in the next block.
    let sats = 123_456u64;
    let t = Instant::now();
    let txid = node.fund(&address_str, sats).unwrap();
    eprintln!("funded in {:?}", t.elapsed());
    let mempool = node.rpc("getrawmempool", Value::Null).unwrap();
    assert!(
        mempool
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == &json!(txid)),
        "{txid} not in mempool {mempool}"
    );
    let unconfirmed = node.get_raw_transaction(&txid).unwrap();
    assert_eq!(
        unconfirmed["confirmations"].as_u64().unwrap_or(0),
        0,
        "{unconfirmed}"
    );

    let block_hash = node.mine(1).unwrap().remove(0);
    let tx = node
        .wait_for_confirmations(&txid, 1, Duration::from_secs(10))
        .unwrap();
    assert_eq!(tx["txid"], json!(txid));
    assert_eq!(tx["blockhash"], json!(block_hash), "{tx}");

    // The decoded JSON output has the exact amount and address.
    let vouts = tx["vout"].as_array().expect("vout array");
    let (vout_index, vout) = vouts
        .iter()
        .enumerate()
        .find(|(_, o)| o["scriptPubKey"]["addresses"][0] == json!(address_str))
        .unwrap_or_else(|| panic!("no output to {address_str} in {tx}"));
    assert_eq!(btc_to_sats(&vout["value"]), sats);
    assert_eq!(vout["n"], json!(vout_index));

    // rust-bitcoin decodes the raw transaction and finds the exact output.
    let raw: Transaction =
        bitcoin::consensus::encode::deserialize_hex(&node.get_raw_transaction_hex(&txid).unwrap())
            .expect("rust-bitcoin decodes bcoin's raw transaction");
    assert_eq!(raw.compute_txid().to_string(), txid);
    let out = &raw.output[vout_index];
    assert_eq!(out.value, Amount::from_sat(sats));
    assert_eq!(out.script_pubkey, address.script_pubkey());

    // gettxout: unspent, confirmed once, exact amount.
    let utxo = node
        .get_tx_out(&txid, u32::try_from(vout_index).unwrap())
        .unwrap()
        .expect("the funded output is unspent");
    assert_eq!(btc_to_sats(&utxo["value"]), sats);
    assert_eq!(utxo["confirmations"], 1, "{utxo}");
    assert!(
        node.get_tx_out(&txid, 99).unwrap().is_none(),
        "a missing output is None"
    );

    // Block JSON: Core shape; the tip has no nextblockhash.
    let block = node.rpc("getblock", json!([block_hash])).unwrap();
    assert_core_bits(&block, "getblock");
    assert!(block.get("nextblockhash").is_none(), "{block}");
    assert_eq!(block["previousblockhash"], json!(hashes[100]));
    assert!(
        block["tx"].as_array().unwrap().contains(&json!(txid)),
        "{block}"
    );
    let header = node.rpc("getblockheader", json!([block_hash])).unwrap();
    assert_core_bits(&header, "getblockheader");
    assert_eq!(header["height"], 102);
    let parent = node.rpc("getblockheader", json!([hashes[100]])).unwrap();
    assert_eq!(parent["nextblockhash"], json!(block_hash));

    // Raw block (Core verbosity 0) decodes with rust-bitcoin and checks out.
    let raw_block: Block = bitcoin::consensus::encode::deserialize_hex(
        node.rpc("getblock", json!([block_hash, 0]))
            .unwrap()
            .as_str()
            .expect("hex block"),
    )
    .expect("rust-bitcoin decodes bcoin's block");
    assert_eq!(raw_block.block_hash().to_string(), block_hash);
    assert!(raw_block.check_merkle_root());
    assert!(raw_block.check_witness_commitment());
    assert_eq!(raw_block.header.bits.to_consensus(), 0x207f_ffff);
    assert!(
        raw_block
            .txdata
            .iter()
            .any(|t| t.compute_txid().to_string() == txid)
    );
    // Core verbosity 2 (transactions decoded) is accepted too.
    let verbose = node.rpc("getblock", json!([block_hash, 2])).unwrap();
    assert!(verbose["tx"][0]["txid"].is_string(), "{verbose}");

    // estimatesmartfee answers in Core's shape, with and without a mode.
    for params in [
        json!([6]),
        json!([6, "ECONOMICAL"]),
        json!([2, "CONSERVATIVE"]),
    ] {
        let fee = node.rpc("estimatesmartfee", params.clone()).unwrap();
        assert!(fee["blocks"].is_u64(), "{params}: {fee}");
        match (fee.get("feerate"), fee.get("errors")) {
            (Some(rate), None) => assert!(rate.as_f64().unwrap() > 0.0, "{fee}"),
            (None, Some(errors)) => {
                let errors = errors.as_array().expect("errors array");
                assert!(
                    !errors.is_empty() && errors.iter().all(Value::is_string),
                    "{fee}"
                );
            }
            _ => panic!("estimatesmartfee {params}: not Core-shaped: {fee}"),
        }
    }

    // Errors are typed.
    match node.rpc("nosuchmethod", Value::Null) {
        Err(PeerError::Rpc { method, .. }) => assert_eq!(method, "nosuchmethod"),
        other => panic!("expected an RPC error, got {other:?}"),
    }
    match node.get_raw_transaction(&"00".repeat(32)) {
        Err(PeerError::Rpc { .. }) => {}
        other => panic!("expected an RPC error for an unknown tx, got {other:?}"),
    }
}

#[test]
fn parallel_nodes_are_independent() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(start);
        let b = s.spawn(start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.pid(), b.pid());
    assert_ne!(a.rpc_port(), b.rpc_port());
    assert_ne!(a.wallet_port(), b.wallet_port());
    assert_ne!(a.rpc_password(), b.rpc_password());

    a.mine(3).unwrap();
    assert_eq!(a.block_count().unwrap(), 3);
    assert_eq!(
        b.block_count().unwrap(),
        0,
        "mining on one node leaves the other alone"
    );
    b.mine(1).unwrap();
    assert_eq!(a.get_block_hash(0).unwrap(), b.get_block_hash(0).unwrap());
    assert_ne!(a.get_block_hash(1).unwrap(), b.get_block_hash(1).unwrap());

    // Each node only accepts its own API key.
    assert_eq!(
        rpc_status_with_password(&a.rpc_url(), a.rpc_password()),
        200
    );
    assert_eq!(
        rpc_status_with_password(&a.rpc_url(), b.rpc_password()),
        401,
        "node A must reject node B's API key"
    );
}

/// One `getblockcount` call with the given password; returns the HTTP status.
fn rpc_status_with_password(url: &str, password: &str) -> u16 {
    use base64::Engine as _;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("x:{password}"));
    agent
        .post(url)
        .header("Authorization", &format!("Basic {auth}"))
        .content_type("application/json")
        .send(r#"{"method":"getblockcount","params":[],"id":1}"#)
        .expect("HTTP round trip")
        .status()
        .as_u16()
}

#[test]
fn dropping_the_handle_stops_the_node() {
    let node = start();
    let pid = node.pid();
    let url = node.rpc_url();
    assert!(process_alive(pid));
    let t = Instant::now();
    drop(node);
    eprintln!("stopped in {:?}", t.elapsed());
    assert!(
        !process_alive(pid),
        "node process {pid} is still there after drop"
    );
    assert!(
        std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err(),
        "the RPC port still accepts connections after drop"
    );
}

#[test]
fn a_panicking_test_still_stops_its_node() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let node = start();
        tx.send(node.pid()).unwrap();
        panic!("simulated test failure while the node runs");
    }));
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(!process_alive(pid), "node process {pid} survived the panic");
}

#[test]
fn launcher_exits_when_its_stdin_closes() {
    // The guarantee that protects against a test process killed with SIGKILL:
    // the launcher's stdin pipe closes and it exits by itself.
    let modules = Bcoin::install().unwrap_or_else(|e| panic!("bcoin install: {e}"));
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/bcoin/launch.js");
    let mut child = Command::new("node")
        .arg(&launcher)
        .arg("--modules")
        .arg(&modules)
        .args(["--api-key", "stdin-test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("PAY402_BCOIN_READY {"), "{line:?}");
    let info: Value = serde_json::from_str(line.trim_start_matches("PAY402_BCOIN_READY ")).unwrap();
    assert_eq!(info["pid"], json!(child.id()));

    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("launcher did not exit within 10 s of its stdin closing");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}
