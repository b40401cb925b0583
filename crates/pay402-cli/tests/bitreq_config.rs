//! `[bitrequests]` with on-chain payments and payment channels through the
//! real binary: `pay402 proxy --check` prints every method without
//! reading a secret, every mistake is named by file, line, column and key,
//! and the fetch configuration's BitRequests means are checked the same
//! way (exit 2, nothing paid).

mod common;

use std::process::Command;

use common::{BIN, temp_dir};

/// A regtest account xpub (from a fixed test seed).
fn tpub() -> String {
    use pay402_server::bitreq::bitcoin::bip32::{Xpriv, Xpub};
    use pay402_server::bitreq::bitcoin::{Network, secp256k1::Secp256k1};
    let xprv = Xpriv::new_master(Network::Regtest, &[7; 32]).unwrap();
    Xpub::from_priv(&Secp256k1::new(), &xprv).to_string()
}

fn check(dir: &std::path::Path, toml: &str) -> std::process::Output {
    let path = dir.join("pay402.toml");
    std::fs::write(&path, toml).unwrap();
    Command::new(BIN)
        .args(["proxy", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

const SERVICE: &str = "\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"bitreq\"]\nprice = { sats = 5000 }\n";

const CHAIN: &str = "[bitrequests.chain]\nkind = \"bitcoind\"\nurl = \"http://127.0.0.1:18443\"\nuser = \"rpc\"\npassword = { file = \"/etc/pay402/rpc.password\" }\n";

#[test]
fn check_prints_onchain_and_channel_settings_without_secrets() {
    let dir = temp_dir("bitreq-check-methods");
    let toml = format!(
        "[bitrequests]\nnetwork = \"regtest\"\ntransfer_username = \"shop\"\nsync_secs = 5\n{CHAIN}\
         [bitrequests.onchain]\nxpub = \"{}\"\nconfirmations = 2\naccept_unconfirmed_up_to_sats = 4000\n\
         [bitrequests.channel]\nkey = {{ env = \"PAY402_TEST_CHANNEL_KEY\" }}\npath = \"/payments/channel\"\nzeroconf = true\nfee_sats = 10000\n{SERVICE}",
        tpub()
    );
    let out = check(&dir, &toml);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "bitrequests: ledger on regtest, bit-transfers to \"shop\" (accounts through the admin API)",
        "chain: bitcoind at http://127.0.0.1:18443, user \"rpc\", password from file /etc/pay402/rpc.password, timeout 30s, sync every 5s",
        "onchain: to a fresh address per 402 from tpub",
        "2 confirmation(s), unconfirmed up to 4000 sat",
        "channel: endpoints at /payments/channel, key from env $PAY402_TEST_CHANNEL_KEY, zeroconf true, payment fee 10000 sat",
        "bitreq 5000 sat (transfer, onchain, channel)",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
}

/// Each mistake: exit 2 and `pay402.toml:<line>:<col>: <key>: …`.
#[test]
fn bitreq_config_errors_name_file_line_column_and_key() {
    let dir = temp_dir("bitreq-config-errors");
    let file = dir.join("pay402.toml").display().to_string();
    let tpub = tpub();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n{CHAIN}[bitrequests.onchain]\nxpub = \"{tpub}\"\n  confirmation = 2\n"),
            ":10:3: bitrequests.onchain.confirmation: unknown field `confirmation`",
            "unknown key in [bitrequests.onchain]",
        ),
        (
            "[bitrequests]\nnetwork = \"regtest\"\n[bitrequests.channel]\nkey = \"00aa\"\n".into(),
            ":4:7: bitrequests.channel.key:",
            "a channel key written in the file",
        ),
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n[bitrequests.onchain]\nxpub = \"{tpub}\"\n"),
            ":1:1: bitrequests.chain: on-chain payments and channels need a [bitrequests.chain] backend",
            "on-chain without a chain",
        ),
        (
            "[bitrequests]\nnetwork = \"regtest\"\n".into(),
            ":1:1: bitrequests: no method",
            "no method at all",
        ),
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n{CHAIN}[bitrequests.onchain]\nxpub = \"{tpub}\"\naddress = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n"),
            ":8:1: bitrequests.onchain: give exactly one of xpub",
            "xpub and address",
        ),
        (
            format!("[bitrequests]\nnetwork = \"bitcoin\"\n{CHAIN}[bitrequests.onchain]\nxpub = \"{tpub}\"\n"),
            ":8:1: bitrequests.onchain.xpub: not an extended public key of bitcoin",
            "a testnet xpub on mainnet",
        ),
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n{CHAIN}[bitrequests.onchain]\naddress = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"\n"),
            ":8:1: bitrequests.onchain.address: \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\" is not an address of regtest",
            "a mainnet address on regtest",
        ),
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n{CHAIN}[bitrequests.onchain]\nxpub = \"{tpub}\"\nconfirmations = 0\n"),
            ":8:1: bitrequests.onchain.confirmations: at least 1",
            "zero confirmations",
        ),
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n{CHAIN}[bitrequests.onchain]\nxpub = \"{tpub}\"\nconfirmations = -1\n"),
            ":10:17: bitrequests.onchain.confirmations:",
            "negative confirmations",
        ),
        (
            "[bitrequests]\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"bitcoind\"\nurl = \"http://127.0.0.1:18443\"\nuser = \"rpc\"\n[bitrequests.onchain]\naddress = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n".into(),
            ":3:1: bitrequests.chain.password: bitcoind needs the RPC password",
            "bitcoind without a password",
        ),
        (
            "[bitrequests]\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"esplora\"\nurl = \"http://me:pw@127.0.0.1:3002\"\n[bitrequests.onchain]\naddress = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n".into(),
            ":3:1: bitrequests.chain.url: \"http://me:pw@127.0.0.1:3002\" is not an http(s) URL without credentials",
            "credentials in the chain URL",
        ),
        (
            "[bitrequests]\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"electrum\"\nurl = \"http://127.0.0.1:3002\"\n".into(),
            ":4:8: bitrequests.chain.kind: unknown variant `electrum`",
            "an unknown chain kind",
        ),
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n{CHAIN}[bitrequests.channel]\nkey = {{ file = \"/k\" }}\npath = \"payment\"\n"),
            ":8:1: bitrequests.channel.path: \"payment\" is not a path",
            "a channel path without its slash",
        ),
        (
            format!("[bitrequests]\nnetwork = \"regtest\"\n{CHAIN}[bitrequests.channel]\nkey = {{ file = \"/k\", env = \"K\" }}\n"),
            ":8:1: bitrequests.channel.key: give exactly one of file",
            "a channel key from two sources",
        ),
        (
            "[bitrequests]\nnetwork = \"regtest\"\ntransfer_username = \"shop\"\npublic_url = \"ftp://shop\"\n".into(),
            ":1:1: bitrequests.public_url: \"ftp://shop\" is not an http(s) origin",
            "a public URL that is not http(s)",
        ),
    ];
    let mut wrong = Vec::new();
    for (toml, want, what) in cases {
        let out = check(&dir, &format!("{toml}{SERVICE}"));
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!("{file}{want}");
        if out.status.code() != Some(2) || !err.contains(&want) {
            wrong.push(format!(
                "{what}: want {want:?}, got {:?} {err}",
                out.status.code()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn init_example_shows_the_bitreq_methods_commented() {
    let dir = temp_dir("bitreq-init");
    let path = dir.join("pay402.toml");
    let out = Command::new(BIN)
        .args(["init", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    for want in [
        "# [bitrequests.chain]",
        "# [bitrequests.onchain]",
        "# accept_unconfirmed_up_to_sats",
        "# [bitrequests.channel]",
        "# key = { file = \"/etc/pay402/channel.key\" }",
    ] {
        assert!(text.contains(want), "{want:?}");
    }
    // Uncommented, the BitRequests block is a valid configuration.
    let mut block = String::new();
    let mut on = false;
    for line in text.lines() {
        if line.starts_with("# [bitrequests]") {
            on = true;
        } else if on && !line.starts_with('#') {
            break;
        }
        if on {
            let l = line.trim_start_matches('#').trim_start();
            if l.is_empty() || !(l.starts_with('[') || l.contains(" = ")) {
                continue;
            }
            block.push_str(l);
            block.push('\n');
        }
    }
    let block = block.replace(
        "xpub = \"xpub...\"",
        &format!("xpub = \"{}\"", xpub_mainnet()),
    );
    let out = check(&dir, &format!("{block}{SERVICE}"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{block}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn xpub_mainnet() -> String {
    use pay402_server::bitreq::bitcoin::bip32::{Xpriv, Xpub};
    use pay402_server::bitreq::bitcoin::{Network, secp256k1::Secp256k1};
    let xprv = Xpriv::new_master(Network::Bitcoin, &[7; 32]).unwrap();
    Xpub::from_priv(&Secp256k1::new(), &xprv).to_string()
}

/// The fetch side: BitRequests means refused before anything is sent.
#[test]
fn fetch_bitreq_means_errors_exit_2() {
    let dir = temp_dir("bitreq-fetch-config");
    std::fs::write(dir.join("seed"), "11".repeat(32)).unwrap();
    let seed = dir.join("seed").display().to_string();
    let cases = [
        (
            format!("[bitrequests]\nseed_file = \"{seed}\"\nnetwork = \"regtest\"\n"),
            "a seed file needs a username (bit-transfers) or a [bitrequests.chain]",
        ),
        (
            format!(
                "[bitrequests]\nseed_file = \"{seed}\"\nnetwork = \"regtest\"\nusername = \"me\"\nmethods = [\"onchain\"]\n"
            ),
            "bitrequests.methods: Onchain needs [bitrequests.chain]",
        ),
        (
            format!(
                "[bitrequests]\nseed_file = \"{seed}\"\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"bitcoind\"\nurl = \"http://127.0.0.1:1\"\nuser = \"rpc\"\n"
            ),
            "bitcoind needs user and password_file",
        ),
        (
            format!(
                "[bitrequests]\nseed_file = \"{seed}\"\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"bitcoind\"\nurl = \"http://rpc:pw@127.0.0.1:1\"\nuser = \"rpc\"\npassword_file = \"/p\"\n"
            ),
            "no credentials in the URL",
        ),
        (
            format!(
                "[bitrequests]\nseed_file = \"{seed}\"\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"esplora\"\nurl = \"http://127.0.0.1:1\"\npassword = \"x\"\n"
            ),
            "unknown field `password`",
        ),
    ];
    // `pay402 fetch --rail bitreq` with `toml` as its configuration.
    let fetch = |toml: &str| {
        let config = dir.join("fetch.toml");
        std::fs::write(&config, toml).unwrap();
        Command::new(BIN)
            .args(["fetch", "--rail", "bitreq", "--config"])
            .arg(&config)
            .arg("http://127.0.0.1:1/x")
            .env_remove("PAY402_BITREQ_SEED_FILE")
            .env_remove("PAY402_BITREQ_USERNAME")
            .output()
            .unwrap()
    };
    for (toml, want) in cases {
        let out = fetch(&toml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(want), "{toml}: want {want:?}, got {err}");
    }

    // A chain that cannot be reached: with `--rail bitreq` alone, exit 1
    // before anything is sent.
    std::fs::write(dir.join("password"), "pw").unwrap();
    let out = fetch(&format!(
        "[bitrequests]\nseed_file = \"{seed}\"\nnetwork = \"regtest\"\n[bitrequests.chain]\nkind = \"bitcoind\"\n\
         url = \"http://127.0.0.1:1\"\nuser = \"rpc\"\npassword_file = \"{}\"\ntimeout_secs = 2\n",
        dir.join("password").display()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bitrequests wallet sync"), "{err}");
}
