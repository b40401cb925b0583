//! `examples/mpp_server.rs` and `examples/mpp_client.rs` run against each
//! other as real processes: the built example binaries (cargo builds the
//! package's examples before its tests), on free loopback ports given
//! through `PAY402_LISTEN`, `PAY402_SIMNET_LISTEN` and `PAY402_URL`. The
//! client must print a payment through MPP `lightning/charge` and the
//! server's `Payment-Receipt`, and exit 0; a second run pays again.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `target/<profile>/examples/<name>`, next to this test's `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test -p pay402-examples` (it builds the examples)",
        path.display()
    );
    path
}

/// A loopback port free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server by its own pid when the test ends, also on failure.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mpp_client_pays_mpp_server() {
    let listen = format!("127.0.0.1:{}", free_port());
    let simnet = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(example("mpp_server"))
        .env("PAY402_LISTEN", &listen)
        .env("PAY402_SIMNET_LISTEN", &simnet)
        .env("PAY402_DB", ":memory:")
        .env("PAY402_LIGHTNING", "simnet")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mpp_server");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    // Wait for the server's "MPP API: …" line (printed once it listens).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let ready = line.starts_with("MPP API: ");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => panic!("mpp_server did not start; it printed: {seen:#?}"),
        }
    }
    assert!(seen.iter().any(|l| l.contains(&simnet)), "{seen:#?}");

    let url = format!("http://{listen}/hello");
    let mut hashes = Vec::new();
    for run in 1..=2 {
        let out = Command::new(example("mpp_client"))
            .env("PAY402_URL", &url)
            .env("PAY402_SIMNET_LISTEN", &simnet)
            .env("PAY402_JOURNAL", "memory")
            .env_remove("RUST_LOG")
            .output()
            .expect("run mpp_client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "run {run}: mpp_client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stdout.contains("through mpp (mpp lightning/charge"),
            "run {run}: {stdout}"
        );
        let receipt = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Payment-Receipt: success "))
            .unwrap_or_else(|| panic!("run {run}: no receipt printed\n{stdout}"));
        let hash = receipt.split(' ').next().unwrap().to_owned();
        assert_eq!(hash.len(), 64, "the payment hash: {receipt}");
        assert!(
            stdout.contains(&format!("payment hash {hash}")),
            "the receipt names the hash paid: {stdout}"
        );
        assert!(stdout.contains("200 OK"), "{stdout}");
        assert!(
            stdout.contains(&format!("hello, paid world (payment hash {hash})")),
            "{stdout}"
        );
        hashes.push(hash);
    }
    // Each run paid its own charge.
    assert_ne!(hashes[0], hashes[1]);
    drop(server);
}
