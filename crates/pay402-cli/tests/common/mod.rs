//! Runs the real `pay402` binary against an in-process upstream.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::routing::{any, get};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_pay402");

/// A fresh directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pay402-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Told when the upstream received `/slow`.
pub static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Told when the upstream received `/paid/slow`.
pub static PAID_SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// `/gated` sends its second chunk only once this is told.
pub static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The upstream: `/echo` answers with the request's headers (JSON) and
/// body length, `/body` echoes the body back, `/stream` sends 5 chunks
/// 300 ms apart, `/gated` sends `first` and then `rest` once [`GATE`] is
/// told, `/big` sends 8 MiB, `/slow` answers 2 s after telling
/// [`SLOW_STARTED`] (one test only uses it), `/stall` answers after 2 s.
pub async fn start_upstream() -> SocketAddr {
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/paid/echo", any(echo))
        .route("/free/echo", any(echo))
        .route("/body", any(|body: Bytes| async move { body }))
        .route("/upgrade", get(upgrade_echo))
        .route("/paid/upgrade", get(upgrade_echo))
        .route("/stream", get(stream))
        .route("/gated", get(gated))
        .route("/big", get(|| async { big_body() }))
        .route(
            "/paid/slow",
            get(|| async {
                PAID_SLOW_STARTED.notify_one();
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow done"
            }),
        )
        .route(
            "/stall",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "stalled"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                SLOW_STARTED.notify_one();
                tokio::time::sleep(Duration::from_secs(2)).await;
                "slow done"
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn echo(req: Request) -> axum::Json<serde_json::Value> {
    let (parts, body) = req.into_parts();
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        headers.insert(k.as_str().to_owned(), v.to_str().unwrap_or("?").into());
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    axum::Json(serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": body.len(),
    }))
}

/// Switches to a raw echo protocol (`Upgrade: echo`): every byte sent
/// comes back.
async fn upgrade_echo(mut req: Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    if req.headers().get("upgrade").map(|v| v.as_bytes()) != Some(b"echo") {
        return (http::StatusCode::BAD_REQUEST, "want Upgrade: echo").into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.unwrap();
        let (mut r, mut w) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    (
        http::StatusCode::SWITCHING_PROTOCOLS,
        [("connection", "upgrade"), ("upgrade", "echo")],
    )
        .into_response()
}

async fn gated() -> Body {
    let s = futures_util::stream::unfold(0u32, |i| async move {
        match i {
            0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"first\n")), 1)),
            1 => {
                GATE.notified().await;
                Some((Ok(Bytes::from_static(b"rest\n")), 2))
            }
            _ => None,
        }
    });
    Body::from_stream(s)
}

async fn stream() -> Body {
    let s = futures_util::stream::unfold(0u32, |i| async move {
        if i == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    Body::from_stream(s)
}

/// 8 MiB of a repeating pattern.
pub fn big_body() -> Vec<u8> {
    (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect()
}

/// A running proxy: killed on drop.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub simnet: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub lines: mpsc::UnboundedReceiver<String>,
}

impl Proxy {
    /// Starts `pay402 proxy --config <dir>/pay402.toml` with `toml` and waits
    /// for its listening line (and the simnet wallet's, when configured).
    pub async fn start(dir: &std::path::Path, toml: &str) -> Proxy {
        let path = dir.join("pay402.toml");
        std::fs::write(&path, toml).unwrap();
        let mut child = Command::new(BIN)
            .args(["proxy", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the pay402 binary runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[pay402] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let wants_simnet = toml.contains("simnet-rest");
        let wants_admin = toml.contains("[admin]");
        let mut addr = None;
        let mut simnet = None;
        let mut admin = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while addr.is_none()
            || (wants_simnet && simnet.is_none())
            || (wants_admin && admin.is_none())
        {
            let line = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("the proxy announced its address in time")
                .expect("the proxy is running");
            let field = json_field(&line, "address");
            if line.contains("pay402 proxy listening") {
                addr = field;
            } else if line.contains("simnet wallet") {
                simnet = field;
            } else if line.contains("admin API listening") {
                admin = field;
            }
        }
        Proxy {
            child,
            addr: addr.unwrap(),
            simnet,
            admin,
            lines: rx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }
}

/// The `address` field of a JSON log line.
fn json_field(line: &str, name: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get(name)?.as_str()?.parse().ok()
}

/// A config with JSON logs on port 0, the in-memory store and `rest`.
pub fn config(rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nlog_format = \"json\"\nshutdown_grace_secs = 10\n\n[store]\nurl = \"sqlite::memory:\"\n\n{rest}"
    )
}

/// Sends `request` as written and reads the answer to the end.
pub async fn raw_request(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a response head (up to the blank line) byte by byte.
pub async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n == 1 && head.len() < 16 * 1024,
            "head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An L402 client paying through the proxy's simnet wallet (its LND REST face).
pub fn l402_client(proxy: &Proxy) -> pay402_client::L402Client {
    let wallet = proxy.simnet.expect("simnet wallet address");
    let lnd = pay402_backends::lnd::LndRest::new(pay402_backends::lnd::LndConfig::new(
        format!("http://{wallet}").parse().unwrap(),
        pay402_core::lightning::Network::Regtest,
    ))
    .unwrap();
    pay402_client::L402Client::builder(std::sync::Arc::new(lnd))
        .network(pay402_core::lightning::Network::Regtest)
        .max_price(pay402_core::money::Msat(100_000))
        .build()
}

/// GET `url` and its body as text.
pub async fn get_text(url: String) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// GET `url` and its body as JSON.
pub async fn get_json(url: String) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// [`config`] with the embedded simnet whose wallet speaks LND REST.
pub fn simnet_config(rest: &str) -> String {
    config(&format!(
        "[lightning]\nkind = \"simnet-rest\"\nlisten = \"127.0.0.1:0\"\n\n{rest}"
    ))
}

/// The `[x402]` sections of a proxy settling USDC at `asset` on anvil to
/// `payee` with its local facilitator, whose RPC URL and key are read from
/// `dir/rpc_url` and `dir/key`.
pub fn x402_anvil_sections(
    asset: impl std::fmt::Display,
    payee: impl std::fmt::Display,
    dir: &std::path::Path,
) -> String {
    use pay402_testkit::anvil::{USDC_NAME, USDC_VERSION};
    let dir = dir.display();
    format!(
        r#"
[x402]
network = "eip155:31337"
asset = "{asset}"
asset_name = "{USDC_NAME}"
asset_version = "{USDC_VERSION}"
pay_to = "{payee}"

[x402.facilitator]
kind = "local"
rpc_url = {{ file = "{dir}/rpc_url" }}
key = {{ file = "{dir}/key" }}
"#
    )
}

/// A fresh wallet seed in `dir/seed` and the account `user` opened for its
/// transfer key with `credit` sat, through the admin API.
pub async fn open_account(
    proxy: &Proxy,
    admin_token: &str,
    dir: &std::path::Path,
    user: &str,
    credit: u64,
) -> PathBuf {
    use pay402_client::bitreq::{Wallet, WalletConfig};
    let seed = hex::encode(rand::random::<[u8; 32]>());
    let path = dir.join(format!("{user}.seed"));
    std::fs::write(&path, &seed).unwrap();
    let wallet = Wallet::from_seed_hex(
        &seed,
        WalletConfig::new(pay402_server::bitreq::bitcoin::Network::Regtest),
        std::sync::Arc::new(pay402_cli::nochain::NoChain),
    )
    .unwrap();
    let key = wallet.transfer_public_key().unwrap().to_string();
    open_account_for_key(proxy, admin_token, user, &key, credit).await;
    path
}

/// Opens the ledger account `user` for the transfer key `key` (hex) through
/// the admin API (refused without the token) and credits it `credit` sat.
pub async fn open_account_for_key(
    proxy: &Proxy,
    admin_token: &str,
    user: &str,
    key: &str,
    credit: u64,
) {
    let admin = format!("http://{}/v1/bitreq", proxy.admin.expect("admin address"));
    let http = reqwest::Client::new();
    // The ledger's operator API wants the admin token.
    let refused = http
        .post(format!("{admin}/accounts"))
        .json(&serde_json::json!({ "username": user, "public_key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let opened = http
        .post(format!("{admin}/accounts"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({ "username": user, "public_key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201, "{:?}", opened.text().await);
    let credited = http
        .post(format!("{admin}/accounts/{user}/credits"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({ "amount": credit, "reference": format!("deposit-{user}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(credited.status(), 200, "{:?}", credited.text().await);
}

/// Runs `pay402 fetch --config <config> args...` (journal beside the config).
pub async fn fetch(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = tokio::process::Command::new(BIN)
        .arg("fetch")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("PAY402_LIGHTNING")
        .env_remove("PAY402_EVM_KEY_FILE")
        .output()
        .await
        .expect("the pay402 binary runs");
    eprintln!(
        "[pay402 fetch {args:?}] exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A pricer for `service` answering `{"sats": N}`, N read from `sats` on
/// each question (0: the pricer is down and answers 500).
pub async fn start_sats_pricer(
    service: &'static str,
    sats: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> SocketAddr {
    let app = Router::new().route(
        "/price",
        axum::routing::post(move |axum::Json(q): axum::Json<serde_json::Value>| {
            let sats = sats.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                assert_eq!(q["service"], service);
                if sats == 0 {
                    return Err(http::StatusCode::INTERNAL_SERVER_ERROR);
                }
                Ok(axum::Json(serde_json::json!({ "sats": sats })))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The `[[services]]` table of "priced": `rails = ["bitreq"]` in front of
/// `upstream`, priced by the pricer at `pricer` (`/price`, not cached, so
/// its price moves at once), the payment named in `X-Paid-By`.
pub fn priced_bitreq_service(upstream: SocketAddr, pricer: SocketAddr) -> String {
    format!(
        "[[services]]\nname = \"priced\"\nupstream = \"http://{upstream}\"\nrails = [\"bitreq\"]\n\
         pricer = {{ url = \"http://{pricer}/price\", timeout_ms = 2000, cache_secs = 0 }}\n\
         identity_header = \"X-Paid-By\"\n"
    )
}
