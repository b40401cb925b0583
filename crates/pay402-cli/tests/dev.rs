//! `pay402 dev` run as the real binary: the commands it prints are run as
//! printed (the real `pay402 fetch`), each pays through its rail, and
//! Ctrl-C stops the proxy and anvil.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::BIN;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The pid in `... anvil (pid N) ...`.
fn anvil_pid(line: &str) -> i32 {
    let rest = line.split("(pid ").nth(1).expect("a pid");
    rest.split(')').next().unwrap().parse().unwrap()
}

/// Whether a process exists.
fn alive(pid: i32) -> bool {
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::test_kill_process(pid).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_prints_one_fetch_command_per_rail_each_pays_through_it_and_ctrl_c_stops_the_peers() {
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", "127.0.0.1:0", "--peers", "install"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the pay402 binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    // Installing anvil from npm on a first run takes about a minute.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("pay402 dev printed its banner in time")
            .unwrap()
            .expect("pay402 dev is running");
        eprintln!("[dev] {line}");
        let done = line.contains("Ctrl-C stops it");
        printed.push(line);
        if done {
            break;
        }
    }
    let anvil = anvil_pid(
        printed
            .iter()
            .find(|l| l.trim_start().starts_with("x402") && l.contains("anvil"))
            .expect("the x402 line names anvil"),
    );
    assert!(alive(anvil));
    let url_line = printed
        .iter()
        .find(|l| l.contains("a paid API at"))
        .unwrap();
    assert!(url_line.contains("http://127.0.0.1:"), "{url_line}");

    // Each printed `pay402 fetch --rail R` command, run as printed (with
    // --json for a machine-readable receipt), pays through R.
    let commands: Vec<Vec<String>> = printed
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("pay402 fetch ") && l.contains("--rail"))
        .map(|l| l.split_whitespace().skip(1).map(str::to_owned).collect())
        .collect();
    let rails: Vec<String> = commands
        .iter()
        .map(|c| {
            let i = c.iter().position(|a| a == "--rail").unwrap();
            c[i + 1].clone()
        })
        .collect();
    assert_eq!(
        rails,
        ["l402", "mpp", "x402", "bitreq"],
        "one command per rail"
    );
    for (args, rail) in commands.iter().zip(&rails) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--json")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let receipt: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(receipt["paid"], true, "{receipt}");
        assert_eq!(receipt["rail"], rail.as_str(), "{receipt}");
        assert_eq!(receipt["status"], 200, "{receipt}");
        if rail == "x402" {
            assert!(receipt["settlement"].as_str().unwrap().starts_with("0x"));
        }
    }
    // The printed body command: the upstream names what paid.
    let bitreq = &commands[rails.iter().position(|r| r == "bitreq").unwrap()];
    let out = Command::new(BIN).args(bitreq).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        body["paid_with"]
            .as_str()
            .unwrap()
            .starts_with("bitreq:transfer:"),
        "{body}"
    );

    // Ctrl-C: the proxy drains and exits 0, anvil is stopped.
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("pay402 dev exits after Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(
        rest.iter()
            .any(|l| l.contains(&format!("stopped anvil (pid {anvil})"))),
        "{rest:?}"
    );
    assert!(!alive(anvil), "anvil (pid {anvil}) is gone");
    let port = url_line.split("127.0.0.1:").nth(1).unwrap();
    let port: u16 = port.split('/').next().unwrap().parse().unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the proxy no longer listens"
    );
}
