//! `pay402 config from-aperture` through the real binary: an Aperture-style
//! configuration (written here, covering the keys Aperture documents) is
//! converted, and the result passes `pay402 proxy --check`.

mod common;

use std::process::Command;

use std::net::SocketAddr;

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
        "authenticator.network: simnet mapped to regtest",
        "pay402 uses lnd's REST API, written as https://localhost:8080",
        "services.quotes.authwhitelistpaths \"^/v1/(docs|spec)$\": refused (not a plain path or prefix: the path stays paid)",
        "services.quotes.ratelimits: refused (1 rules not enforced",
        "services.quotes.headers: mapped to add_headers as written",
        "services.open.auth: off, mapped to a free service",
        "services.dynamic: refused, service left out (services.dynamic.dynamicprice.enabled: Aperture's gRPC pricer is not supported",
        "staticroot: ignored (pay402 serves no static files)",
        "prometheus: mapped to [server] ops_listen localhost:9000",
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
    // The dynamically priced service is left out, never served free.
    assert!(
        !text.contains("service dynamic") && text.contains("service open"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_aperture_yaml_is_refused() {
    let dir = temp_dir("aperture-bad");
    let input = dir.join("aperture.yaml");
    for (yaml, expected) in [
        ("services: [", "not an Aperture configuration"),
        ("- a list", "not an Aperture configuration: not a mapping"),
        (
            "insecure: true\nauthenticator: { disable: true }\nservices: 5\n",
            "services: not a list",
        ),
        (
            "insecure: true\nauthenticator: { disable: true }\nservices: [ { name: x } ]\n",
            "services.x.address: missing",
        ),
        (
            "insecure: true\nservices: [ { name: x, address: \"a:1\" } ]\n",
            "authenticator: missing",
        ),
        (
            "insecure: true\nauthenticator: { passphrase: words }\nservices: [ { name: x, address: \"a:1\" } ]\n",
            "authenticator.lndhost: missing: Lightning Node Connect (passphrase) is not supported",
        ),
        (
            "autocert: true\nauthenticator: { disable: true }\nservices: [ { name: x, address: \"a:1\" } ]\n",
            "autocert: Let's Encrypt certificates are not built into pay402",
        ),
        ("insecure: 3\nservices: []\n", "insecure: not true or false"),
    ] {
        std::fs::write(&input, yaml).unwrap();
        let out = Command::new(BIN)
            .args(["config", "from-aperture"])
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{yaml}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(expected), "{yaml}: {err}");
    }
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
        notes.contains("note: services.quotes.ratelimits: refused"),
        "{notes}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for service in ["quotes", "tasting", "open"] {
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
            "listenaddr: \"127.0.0.1:{port}\"\ninsecure: true\nauthenticator:\n  disable: true\nservices:\n  - name: \"open\"\n    hostregexp: '.*'\n    pathregexp: '^/echo$'\n    address: \"{upstream}\"\n    protocol: http\n    auth: \"off\"\n"
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

/// Aperture's own `sample-conf.yaml` (tests/fixtures/aperture, unchanged).
fn sample_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/aperture/sample-conf.yaml")
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The notes every conversion of the sample prints, key by key: each
/// top-level section and each key of its services is named.
const SAMPLE_NOTES: &[&str] = &[
    "note: prometheus: mapped to [server] ops_listen",
    "note: insecure: false: mapped to [server.tls] with Aperture's",
    "note: servername: ignored (only for autocert)",
    "note: debuglevel: ignored (pay402 logs to standard error; set RUST_LOG",
    "note: logging: ignored",
    "note: configfile: ignored",
    "note: basedir: ignored",
    "note: strictverify: ignored",
    "note: invoicebatchsize: ignored",
    "note: profile: ignored (pay402 serves no pprof)",
    "note: idletimeout: ignored",
    "note: readtimeout: ignored",
    "note: writetimeout: ignored",
    "note: wspinginterval: ignored",
    "note: wspongwait: ignored",
    "note: staticroot: ignored",
    "note: blocklist: refused (2 addresses not blocked by pay402",
    "note: tor.control: refused (no onion services",
    "note: hashmail.enabled: refused (no Lightning Node Connect mailbox",
    "note: sqlite.skipmigrations: ignored",
    "note: sqlite: mapped to [store] url sqlite://",
    "tokens Aperture issued are not carried over",
    "note: postgres: ignored (dbbackend is \"sqlite\", not postgres)",
    "note: etcd: ignored (dbbackend is \"sqlite\", not etcd)",
    "note: authenticator.passphrase: refused (Lightning Node Connect is not supported)",
    "note: authenticator.mailboxaddress: ignored",
    "note: authenticator.devserver: ignored",
    "note: authenticator.network: simnet mapped to regtest",
    "note: authenticator.lndhost",
    "note: services.service1.authskipinvoicecreationpaths: refused",
    "note: services.service1.ratelimits: refused (2 rules not enforced",
    "note: services.service1: refused, service left out (services.service1.dynamicprice.enabled: Aperture's gRPC pricer is not supported",
    "note: services.service3.dynamicprice.enbled: unknown key, ignored (Aperture ignores it too, so dynamic prices stay off and the static price applies)",
    "note: services.service3.dynamicprice: ignored (not enabled)",
];

#[test]
fn aperture_sample_as_it_stands_names_every_key_and_refuses_its_placeholders() {
    // The sample's service addresses are placeholders ("123.456.789:8082"
    // is no address) and service1 prices through Aperture's gRPC pricer:
    // every service is refused, so nothing runs, and each refusal says why.
    for args in [
        vec!["proxy", "--check", "--aperture"],
        vec!["config", "from-aperture"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .arg(sample_path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        for expected in SAMPLE_NOTES
            .iter()
            .chain(&[
                "note: services.service2: refused, service left out (services.service2.address: \"123.456.789:8082\" is not a host:port)",
                "note: services.service3: refused, service left out (services.service3.address: \"123.456.789:8082\" is not a host:port)",
                "services: every service was refused (see the notes)",
            ])
        {
            assert!(err.contains(expected), "{args:?}: missing {expected:?} in:\n{err}");
        }
        assert!(
            !err.contains("unknown key, ignored (Aperture ignores it too)\n"),
            "{err}"
        );
    }
}

/// The sample with its placeholders filled in for this machine: the
/// listener, Aperture's base directory (its TLS certificate and key, the
/// SQLite file), lnd's certificate and macaroon directory, the metrics
/// address, and the address of service2 and service3 (a plain-HTTP test
/// upstream). Nothing else changes.
fn filled_sample(dir: &std::path::Path, listen: u16, ops: u16, upstream: SocketAddr) -> String {
    let base = dir.join("aperture");
    let macdir = dir.join("lnd");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&macdir).unwrap();
    std::fs::copy(fixture("server.cert"), base.join("tls.cert")).unwrap();
    std::fs::copy(fixture("server.key"), base.join("tls.key")).unwrap();
    std::fs::write(macdir.join("invoice.macaroon"), b"\x02\x01test-macaroon").unwrap();
    let sample = std::fs::read_to_string(sample_path()).unwrap();
    let mut filled = sample.clone();
    for (from, to) in [
        (
            "listenaddr: \"localhost:8081\"",
            format!("listenaddr: \"127.0.0.1:{listen}\""),
        ),
        (
            "listenaddr: \"localhost:9000\"",
            format!("listenaddr: \"127.0.0.1:{ops}\""),
        ),
        ("/path/to/.aperture", base.display().to_string()),
        (
            "/path/to/lnd/tls.cert",
            fixture("ca.cert").display().to_string(),
        ),
        (
            "/path/to/lnd/data/chain/bitcoin/simnet",
            macdir.display().to_string(),
        ),
        (
            "address: \"123.456.789:8082\"\n    protocol: https",
            format!("address: \"{upstream}\"\n    protocol: http"),
        ),
    ] {
        assert!(filled.contains(from), "the sample has {from:?}");
        filled = filled.replace(from, &to);
    }
    filled
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `app` over TLS with the fixture's `localhost` certificate.
async fn serve_tls(app: axum::Router) -> SocketAddr {
    use tower::ServiceExt;
    let acceptor =
        pay402_cli::tls::acceptor(&fixture("server.cert"), &fixture("server.key")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        app.clone().oneshot(req.map(axum::body::Body::new))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn aperture_sample_filled_in_runs_and_takes_a_real_l402_payment_on_simnet() {
    use pay402_backends::simnet::{SimNet, rest};
    use pay402_core::lightning::Network;
    use pay402_core::money::Msat;

    // The merchant's "lnd": a simnet node behind an LND-compatible REST
    // face over TLS (the fixture certificate, whose CA stands in for lnd's
    // tls.cert); the payer is another node of the same network.
    let net = SimNet::new(Network::Regtest);
    let merchant = net.add_node("merchant", Msat(0));
    let wallet = net.add_node("wallet", Msat(10_000_000));
    let lnd = serve_tls(rest::router(merchant.clone())).await;
    let upstream = common::start_upstream().await;
    let dir = temp_dir("aperture-sample");
    let (listen, ops) = (free_port(), free_port());
    let input = dir.join("aperture.yaml");
    std::fs::write(&input, filled_sample(&dir, listen, ops, upstream)).unwrap();
    let lnd_rest = format!("https://localhost:{}", lnd.port());

    // --check: service1 is left out, service2 and service3 run at 1 sat
    // (service3's price missing: Aperture's default), TLS with Aperture's
    // certificate, the metrics listener from `prometheus`.
    let check = Command::new(BIN)
        .args(["proxy", "--check", "--lnd-rest", &lnd_rest, "--aperture"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let text = String::from_utf8(check.stdout).unwrap();
    let notes = String::from_utf8(check.stderr).unwrap();
    for expected in SAMPLE_NOTES {
        assert!(
            notes.contains(expected),
            "missing {expected:?} in:\n{notes}"
        );
    }
    assert!(
        notes.contains(
            "note: services.service3.price: missing, mapped to Aperture's default of 1 sat"
        ),
        "{notes}"
    );
    assert!(
        notes.contains(&format!(
            "mapped to lnd's REST API at {lnd_rest} (--lnd-rest)"
        )),
        "{notes}"
    );
    assert!(!text.contains("service service1"), "{text}");
    for expected in [
        format!("listen 127.0.0.1:{listen}"),
        format!("operations on 127.0.0.1:{ops}"),
        "service service2".to_owned(),
        "service service3".to_owned(),
        "l402 1000 msat".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }

    let mut child = tokio::process::Command::new(BIN)
        .args(["proxy", "--lnd-rest", &lnd_rest, "--aperture"])
        .arg(&input)
        .current_dir(&dir)
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The proxy serves TLS with Aperture's certificate; the client trusts
    // its CA and names the service by its Host (service2.com:8083).
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.cert")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://localhost:{listen}");
    let mut up = false;
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{ops}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the proxy's operations listener answers");

    // Unpaid: the 402 carries an invoice from the merchant's node.
    let unpaid = http
        .get(format!("{base}/echo"))
        .header("host", "service2.com:8083")
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    assert_eq!(merchant.invoices_created(), 1);
    // service1's host is refused, not served by another service.
    let refused = http
        .get(format!("{base}/echo"))
        .header("host", "service1.com")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);

    // Paid through simnet: the request reaches the upstream without the
    // token, once paid; the token is reused without paying again.
    let client = pay402_client::L402Client::builder(std::sync::Arc::new(wallet.clone()))
        .network(Network::Regtest)
        .http(http.clone())
        .build();
    for pays in [true, false] {
        let paid = client
            .send(
                client
                    .http()
                    .get(format!("{base}/echo"))
                    .header("host", "service2.com:8083"),
            )
            .await
            .unwrap();
        assert_eq!(paid.receipt.is_some(), pays);
        let resp = paid.into_response();
        assert_eq!(resp.status(), 200);
        let echoed: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(echoed["uri"], "/echo", "{echoed}");
        assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
    }
    assert_eq!(merchant.payments_received(), 1);
    assert_eq!(wallet.payments_sent(), 1);

    // The metrics moved on the `prometheus` listener.
    let metrics = http
        .get(format!("http://127.0.0.1:{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pay402_payments_total")
                && l.contains("service=\"service2\"")
                && l.contains("outcome=\"accepted\"")),
        "{metrics}"
    );
    child.kill().await.unwrap();
}

#[test]
fn truncations_of_the_sample_convert_or_are_refused_without_panicking() {
    let sample = std::fs::read_to_string(sample_path()).unwrap();
    let (mut converted, mut refused) = (0, 0);
    for cut in (0..=sample.len())
        .step_by(7)
        .filter(|i| sample.is_char_boundary(*i))
    {
        match pay402_cli::aperture::convert(&sample[..cut]) {
            // service1 before its `dynamicprice` converts (its placeholder
            // address is a host:port); never at a price of 0.
            Ok(c) => {
                assert!(!c.toml.contains("sats = 0"), "{}", c.toml);
                converted += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    assert!(converted > 0 && refused > 0, "{converted} {refused}");
}
