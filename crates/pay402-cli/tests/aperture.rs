//! `pay402 config from-aperture` through the real binary: an Aperture-style
//! configuration (written here, covering the keys Aperture documents) is
//! converted, and the result passes `pay402 proxy --check`.

mod common;

use std::process::Command;

use common::{BIN, temp_dir};

const APERTURE_YAML: &str = r#"
listenaddr: "localhost:8081"
staticroot: "./static"
servestatic: false
debuglevel: "debug"
insecure: true
authenticator:
  network: "simnet"
  lndhost: "localhost:10009"
  tlspath: "/home/lnd/.lnd/tls.cert"
  macdir: "/home/lnd/.lnd/data/chain/bitcoin/simnet/"
dbbackend: "sqlite"
sqlite:
  dbfile: "/home/aperture/aperture.db"
prometheus:
  enabled: true
  listenaddr: "localhost:9000"
services:
  - name: "quotes"
    hostregexp: '^quotes.example.com$'
    pathregexp: '^/v1/.*$'
    address: "127.0.0.1:9000"
    protocol: https
    tlscertpath: "/etc/quotes/tls.cert"
    rewrite:
      prefix: "/api"
    headers:
      X-Upstream-Key: "literal-value"
    capabilities: "read,write"
    constraints:
      "tier": "gold"
      "max_calls": 100
    timeout: 31557600
    price: 21
    authwhitelistpaths:
      - '^/v1/health$'
      - '^/v1/public/.*$'
      - '^/v1/(docs|spec)$'
    ratelimits:
      - pathregexp: '^/v1/quote$'
        requests: 5
        per: 1s
  - name: "tasting"
    hostregexp: '.*'
    pathregexp: '^/taste'
    address: "127.0.0.1:9001"
    protocol: http
    auth: "freebie 3"
    price: 2
  - name: "open"
    hostregexp: '.*'
    address: "127.0.0.1:9002"
    auth: "off"
  - name: "dynamic"
    hostregexp: '.*'
    address: "127.0.0.1:9003"
    price: 0
    dynamicprice:
      enabled: true
      grpcaddress: "127.0.0.1:10010"
"#;

#[test]
fn an_aperture_configuration_converts_to_one_that_passes_check() {
    let dir = temp_dir("aperture");
    let input = dir.join("aperture.yaml");
    let output = dir.join("pay402.toml");
    std::fs::write(&input, APERTURE_YAML).unwrap();
    let out = Command::new(BIN)
        .args(["config", "from-aperture"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let notes = String::from_utf8(out.stderr).unwrap();
    for expected in [
        "authenticator.network: simnet written as regtest",
        "pay402 uses lnd's REST API, written as https://localhost:8080",
        "services.quotes.authwhitelistpaths \"^/v1/(docs|spec)$\": not a plain path or prefix, refused",
        "services.quotes.ratelimits: not supported, refused",
        "services.quotes.headers: copied as written",
        "services.open: auth off, written free",
        "services.dynamic.dynamicprice: Aperture's gRPC pricer is not supported; written free",
        "staticroot: not used by pay402 (ignored)",
        "prometheus: not used by pay402 (ignored)",
        "tokens Aperture issued are not carried over",
    ] {
        assert!(
            notes.contains(expected),
            "missing note {expected:?} in:\n{notes}"
        );
    }
    let toml = std::fs::read_to_string(&output).unwrap();
    for expected in [
        "listen = \"localhost:8081\"",
        "kind = \"lnd\"",
        "network = \"regtest\"",
        "macaroon = { file = \"/home/lnd/.lnd/data/chain/bitcoin/simnet/invoice.macaroon\" }",
        "tls_cert_file = \"/home/lnd/.lnd/tls.cert\"",
        "host = \"^quotes.example.com$\"",
        "path = \"^/v1/.*$\"",
        "upstream = \"https://127.0.0.1:9000/api\"",
        "upstream_ca_file = \"/etc/quotes/tls.cert\"",
        "l402_capabilities = [\"read\", \"write\"]",
        "l402_caveats = [\"max_calls=100\", \"tier=gold\"]",
        "token_lifetime_secs = 31557600",
        "free_paths = [\"/v1/health\", \"/v1/public/*\"]",
        "price = { sats = 21 }",
        "freebies = { requests = 3, period_secs = 86400 }",
    ] {
        assert!(toml.contains(expected), "missing {expected:?} in:\n{toml}");
    }

    let check = Command::new(BIN)
        .args(["proxy", "--check", "--config"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}\n{toml}");
    let text = String::from_utf8(check.stdout).unwrap();
    assert!(
        text.contains("service quotes") && text.contains("l402 21000 msat"),
        "{text}"
    );
    assert!(
        text.contains("service dynamic") && text.contains("service open"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_aperture_yaml_is_refused() {
    let dir = temp_dir("aperture-bad");
    let input = dir.join("aperture.yaml");
    std::fs::write(&input, "services: [ { name: x } ]\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "from-aperture"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("not an Aperture configuration") && err.contains("address"),
        "{err}"
    );
}

#[test]
fn proxy_check_reads_an_aperture_configuration_directly() {
    let dir = temp_dir("aperture-check");
    let input = dir.join("aperture.yaml");
    std::fs::write(&input, APERTURE_YAML).unwrap();
    let out = Command::new(BIN)
        .args(["proxy", "--check", "--aperture"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let notes = String::from_utf8(out.stderr).unwrap();
    assert!(
        notes.contains("note: services.quotes.ratelimits: not supported, refused"),
        "{notes}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for service in ["quotes", "tasting", "open", "dynamic"] {
        assert!(text.contains(&format!("service {service}")), "{text}");
    }
    assert!(text.contains("l402 21000 msat"), "{text}");

    // `--aperture` and `--config` are exclusive; a bad file exits 2.
    let both = Command::new(BIN)
        .args(["proxy", "--check", "--config", "pay402.toml", "--aperture"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "services: [ { name: x } ]\n").unwrap();
    let out = Command::new(BIN)
        .args(["proxy", "--check", "--aperture"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test]
async fn proxy_runs_an_aperture_configuration_as_converted() {
    let upstream = common::start_upstream().await;
    // A free port for Aperture's `listenaddr` (which has no port 0 log line
    // to read back in text logs).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("aperture-run");
    let input = dir.join("aperture.yaml");
    std::fs::write(
        &input,
        format!(
            "listenaddr: \"127.0.0.1:{port}\"\nservices:\n  - name: \"open\"\n    hostregexp: '.*'\n    pathregexp: '^/echo$'\n    address: \"{upstream}\"\n    protocol: http\n    auth: \"off\"\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["proxy", "--aperture"])
        .arg(&input)
        .current_dir(&dir)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/echo");
    let mut answer = None;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(&url).await {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let answer = answer.expect("the proxy answers on Aperture's listenaddr");
    assert_eq!(answer.status(), 200);
    let echoed: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(echoed["uri"], "/echo", "{echoed}");
    assert!(echoed["headers"]["x-forwarded-for"].is_string(), "{echoed}");
    // Outside the service's path regex: no service.
    let none = reqwest::get(format!("http://127.0.0.1:{port}/other"))
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    child.kill().await.unwrap();
}
