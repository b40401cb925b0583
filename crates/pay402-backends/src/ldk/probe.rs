//! A direct check of a bitcoind RPC endpoint before ldk-node uses it.

use std::net::SocketAddr;
use std::time::Duration;

use pay402_core::lightning::Network;

/// The bitcoind `chain` name of a network (`getblockchaininfo`).
fn bitcoind_chain_name(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "main",
        Network::Testnet => "test",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

/// Checks that a bitcoind RPC endpoint answers `getblockchaininfo` with
/// these credentials and is on `network`, so that a wrong host, port,
/// password or network fails [`LdkNode::start`](super::LdkNode::start) with a clear message
/// (ldk-node itself would start and then retry its chain sync forever).
pub(super) fn probe_bitcoind(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    network: Network,
    timeout: Duration,
) -> Result<(), String> {
    use base64::Engine as _;
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};

    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .collect();
    let mut last = format!("{host}:{port} resolves to no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let io = |e: std::io::Error| format!("RPC at {host}:{port}: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let body = r#"{"jsonrpc":"1.0","id":"pay402-probe","method":"getblockchaininfo","params":[]}"#;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    stream
        .take(1024 * 1024)
        .read_to_end(&mut response)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("RPC at {host}:{port} did not answer HTTP"))?;
    if status == 401 || status == 403 {
        return Err(format!(
            "RPC at {host}:{port} refused the credentials (HTTP {status})"
        ));
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let reply: Option<serde_json::Value> = if chunked {
        None
    } else {
        serde_json::from_str(body).ok()
    };
    if !(200..300).contains(&status) {
        let message = reply
            .as_ref()
            .and_then(|r| r["error"]["message"].as_str())
            .unwrap_or("");
        return Err(format!(
            "RPC at {host}:{port} answered getblockchaininfo with HTTP {status} {message}"
        ));
    }
    let want = bitcoind_chain_name(network);
    if let Some(chain) = reply.as_ref().and_then(|r| r["result"]["chain"].as_str())
        && chain != want
    {
        return Err(format!(
            "RPC at {host}:{port} is on chain {chain:?}, but the node is configured for {want:?}"
        ));
    }
    Ok(())
}
