//! `pay402 init` and `pay402 proxy --check`, through the real binary.

mod common;

use std::process::Command;

use common::{BIN, temp_dir};

fn check(dir: &std::path::Path, toml: &str) -> std::process::Output {
    let path = dir.join("pay402.toml");
    std::fs::write(&path, toml).unwrap();
    Command::new(BIN)
        .args(["proxy", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn unknown_key_is_named_with_file_line_and_column() {
    let dir = temp_dir("unknown-key");
    let out = check(
        &dir,
        "[server]\nlisten = \"127.0.0.1:0\"\n  listne = 1\n\n[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let want = format!(
        "{}:3:3: server.listne: unknown field `listne`",
        dir.join("pay402.toml").display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn bad_value_in_a_service_names_its_key_and_place() {
    let dir = temp_dir("bad-regex");
    let out = check(
        &dir,
        "[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n\n[[services]]\nname = \"b\"\npath = '^/(unclosed'\nupstream = \"http://127.0.0.1:1\"\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("pay402.toml:7:8: services[1].path: not a regex"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_the_nested_key() {
    let dir = temp_dir("bad-type");
    let out = check(
        &dir,
        "[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\ntimeout_secs = \"soon\"\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("pay402.toml:4:16: services[0].timeout_secs:"),
        "{err}"
    );
}

#[test]
fn a_paid_rail_without_its_backend_is_refused() {
    let dir = temp_dir("no-backend");
    let out = check(
        &dir,
        "[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"x402\"]\nprice = { x402_units = \"1000\" }\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("pay402.toml:1:1: services[0].rails: x402 needs an [x402] section"),
        "{err}"
    );
}

#[test]
fn a_postgres_store_is_shown_by_check_without_its_password() {
    let dir = temp_dir("pg");
    let service = "[[services]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n";
    let out = check(
        &dir,
        &format!(
            "[store]\nurl = \"postgres://pay402@db.internal:5433/pay402?sslmode=verify-full\"\n\
             password = {{ env = \"PAY402_PG_PASSWORD\" }}\nmax_connections = 20\n\
             statement_timeout_ms = 2500\nacquire_timeout_ms = 1500\n{service}"
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "store postgres://pay402@db.internal:5433/pay402?sslmode=verify-full \
             (password from env $PAY402_PG_PASSWORD), pool 20, statement timeout 2500 ms, \
             acquire timeout 1500 ms"
        ),
        "{text}"
    );

    // A password inline (in the authority or the query) is refused, placed.
    for url in [
        "postgres://pay402:hunter2@db.internal/pay402",
        "postgres://pay402@db.internal/pay402?password=hunter2",
    ] {
        let out = check(&dir, &format!("[store]\nurl = \"{url}\"\n{service}"));
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("pay402.toml:2:7: store.url: no password in the URL"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
    // Other schemes, a password for SQLite, a zero pool.
    for (toml, want) in [
        (
            "url = \"mysql://db/pay402\"",
            "store.url: store configuration: unsupported store URL scheme \"mysql\"",
        ),
        (
            "url = \"sqlite://x.sqlite\"\npassword = { env = \"X\" }",
            "store.password: a password is only for a postgres:// store",
        ),
        (
            "url = \"postgres://db/pay402\"\nmax_connections = 0",
            "store.max_connections: must be 1 to 1000",
        ),
        (
            "url = \"postgres://db/pay402\"\nstatement_timeout_ms = 0",
            "store.statement_timeout_ms: must be 1 to 3600000",
        ),
    ] {
        let out = check(&dir, &format!("[store]\n{toml}\n{service}"));
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(want), "{toml}: {err}");
    }
}

#[test]
fn init_output_passes_check_and_prints_the_resolved_services() {
    let dir = temp_dir("init");
    let path = dir.join("pay402.toml");
    let out = Command::new(BIN)
        .args(["init", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // A second init does not overwrite.
    let again = Command::new(BIN)
        .args(["init", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["proxy", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("service api"), "{text}");
    assert!(text.contains("l402 10000 msat"), "{text}");
    assert!(text.contains("upstream http://127.0.0.1:8080/"), "{text}");
}

#[test]
fn usd_cents_price_is_converted_exactly_per_rail() {
    let dir = temp_dir("usd");
    let out = check(
        &dir,
        r#"
[rates]
usd_cents_per_btc = 10000000
[lightning]
kind = "simnet"
[x402]
network = "eip155:8453"
asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
asset_name = "USD Coin"
pay_to = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
[x402.facilitator]
kind = "remote"
url = "https://facilitator.example.com"
[[services]]
name = "a"
upstream = "http://127.0.0.1:1"
rails = ["l402", "x402"]
price = { usd_cents = 5 }
"#,
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // 5 cents at 100 000 USD/BTC = 50 sat; 5 cents of a 6-decimal token = 50 000 units.
    assert!(text.contains("l402 50000 msat"), "{text}");
    assert!(text.contains("x402 50000 base units"), "{text}");
}

#[test]
fn a_bitreq_service_is_checked_and_priced_in_sat() {
    let dir = temp_dir("bitreq-check");
    let base = r#"
[rates]
usd_cents_per_btc = 10000000
[bitrequests]
network = "regtest"
transfer_username = "shop"
[[services]]
name = "b"
upstream = "http://127.0.0.1:1"
upstream_http2 = true
rails = ["bitreq"]
"#;
    let out = check(&dir, &format!("{base}price = {{ usd_cents = 3 }}\n"));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // 3 cents at 100 000 USD/BTC = 30 sat.
    assert!(text.contains("bitreq 30 sat"), "{text}");
    assert!(text.contains("bitrequests: ledger on regtest"), "{text}");
    assert!(text.contains("(HTTP/2, timeout 30 s)"), "{text}");

    // A pricer prices BitRequests too (its `sats`).
    let out = check(
        &dir,
        &format!("{base}pricer = {{ url = \"http://127.0.0.1:9/p\", cache_secs = 5 }}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("bitreq priced by http://127.0.0.1:9/p (timeout 1000 ms, cached 5 s)"),
        "{text}"
    );
    assert!(
        text.contains("bitreq at the pricer's sats (transfer)"),
        "{text}"
    );

    for (toml, want) in [
        (
            "[[services]]\nname = \"b\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"bitreq\"]\nprice = { sats = 5 }\n".to_owned(),
            "services[0].rails: bitreq needs a [bitrequests] section",
        ),
        (
            format!("{base}price = {{ sats = 0 }}\n"),
            "services[0].price: the bitreq price must be above zero",
        ),
        (
            "[[services]]\nname = \"b\"\nupstream = \"http://127.0.0.1:1\"\nrails = [\"bitreq\"]\npricer = { url = \"http://127.0.0.1:9/p\" }\n".to_owned(),
            "services[0].pricer: bitreq needs a [bitrequests] section",
        ),
        (
            format!("{base}pricer = {{ url = \"http://127.0.0.1:9/p\" }}\nprice = {{ sats = 5 }}\n"),
            "services[0].pricer: give a price or a pricer, not both",
        ),
        (
            base.replace("usd_cents_per_btc = 10000000", "") + "price = { usd_cents = 3 }\n",
            "services[0].price.usd_cents: needs [rates] usd_cents_per_btc for bitreq",
        ),
        (
            base.replace("\"regtest\"", "\"simnet\"") + "price = { sats = 5 }\n",
            "bitrequests.network: \"simnet\" is not bitcoin, testnet, signet or regtest",
        ),
        (
            base.replace("\"shop\"", "\"two words\"") + "price = { sats = 5 }\n",
            "bitrequests.transfer_username: 1 to 128 visible ASCII characters",
        ),
    ] {
        let out = check(&dir, &toml);
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["dev", "--help"],
        &["fetch", "--help"],
        &["proxy", "--help"],
        &["init", "--help"],
        &["config", "--help"],
        &["config", "from-aperture", "--help"],
        &["facilitator", "--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .contains("Usage: pay402")
        );
    }
}
