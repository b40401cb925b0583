//! The proxy's HTTP/1.1 upstream connections: reused across requests when
//! the upstream keeps them open, reopened when it closes them, through the
//! real binary against a raw TCP upstream that counts its connections.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Proxy, config, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the raw upstream treats a connection after each response.
#[derive(Clone, Copy)]
enum After {
    /// Keeps it open for the next request.
    KeepAlive,
    /// Answers with `Connection: close` and closes.
    AnnouncedClose,
    /// Closes it shortly after the response, without saying so (as an
    /// upstream whose keep-alive timeout ran out).
    SilentClose,
}

/// A raw HTTP/1.1 upstream answering `ok <body length>`; returns its
/// address and how many connections it accepted.
async fn counting_upstream(after: After) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = read_until_head_end(&mut s, &mut buf).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + len);
                    let body = format!("ok {len}");
                    let close = match after {
                        After::AnnouncedClose => "connection: close\r\n",
                        _ => "",
                    };
                    // A HEAD answer has the length of the body it leaves out.
                    let sent = if head.starts_with("head ") { "" } else { &body };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n{sent}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    match after {
                        After::KeepAlive => {}
                        After::AnnouncedClose => return,
                        After::SilentClose => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Reads into `buf` until it holds a whole request head; its length.
async fn read_until_head_end(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn service(upstream: SocketAddr) -> String {
    config(&format!(
        "[[services]]\nname = \"pool\"\nupstream = \"http://{upstream}\"\ntimeout_secs = 5\n"
    ))
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let (upstream, accepted) = counting_upstream(After::KeepAlive).await;
    let dir = temp_dir("pool-reuse");
    let proxy = Proxy::start(&dir, &service(upstream)).await;
    let http = reqwest::Client::new();
    for i in 0..20 {
        let resp = http.get(proxy.url(&format!("/r{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok 0");
    }
    let resp = http
        .post(proxy.url("/upload"))
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok 100000");
    let head = http.head(proxy.url("/h")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let resp = http.get(proxy.url("/after-head")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok 0");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection for all"
    );

    // Concurrent requests open more, which are reused afterwards.
    let calls = (0..16).map(|i| {
        let http = http.clone();
        let url = proxy.url(&format!("/c{i}"));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });
    for body in futures_util::future::join_all(calls).await {
        assert_eq!(body, "ok 0");
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!((1..=16).contains(&opened), "{opened} connections");
    for i in 0..10 {
        let resp = http.get(proxy.url(&format!("/s{i}"))).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "ok 0");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), opened, "idle ones reused");
}

#[tokio::test]
async fn connections_the_upstream_closes_are_replaced() {
    for after in [After::AnnouncedClose, After::SilentClose] {
        let (upstream, accepted) = counting_upstream(after).await;
        let dir = temp_dir("pool-close");
        let proxy = Proxy::start(&dir, &service(upstream)).await;
        let http = reqwest::Client::new();
        for i in 0..10 {
            let resp = http.get(proxy.url(&format!("/r{i}"))).send().await.unwrap();
            assert_eq!(resp.status(), 200, "request {i}");
            assert_eq!(resp.text().await.unwrap(), "ok 0");
            // Lets a silent close land before the next request.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    }
}
