//! `queen-load` against the real server: what it pushes, its consumers get, exactly once.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use serde_json::Value;
use support::Server;

/// Every run of `queen-load <args> --json`: one array of runs per server.
fn load_runs(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_queen-load"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["runs"].clone()
}

/// The one run of `queen-load <args>` against one server.
fn load(args: &[&str]) -> Value {
    load_runs(args)[0][0].clone()
}

#[tokio::test]
async fn pushes_then_consumes_everything_exactly_once() {
    let s = Server::start("load_tool", &[]).await;
    let url = format!("127.0.0.1:{}", s.port);
    let pushed = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            load(&[
                "push",
                "--url",
                &url,
                "--duration",
                "1",
                "--connections",
                "4",
                "--batch",
                "5",
                "--queue",
                "lt",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(pushed["errors"], 0);
    let n = pushed["pushed"].as_u64().unwrap();
    assert!(n > 0);
    let consumed = tokio::task::spawn_blocking(move || {
        load(&[
            "consume",
            "--url",
            &url,
            "--duration",
            "3",
            "--consumers",
            "3",
            "--batch",
            "50",
            "--queue",
            "lt",
        ])
    })
    .await
    .unwrap();
    assert_eq!(consumed["errors"], 0);
    assert_eq!(consumed["duplicates"], 0);
    assert_eq!(
        consumed["consumed"].as_u64().unwrap(),
        n,
        "every pushed message consumed once"
    );
    assert!(consumed["request_latency"]["p99_ms"].as_f64().is_some());
}

/// With two servers, consume runs drain a fresh queue each, filled first with `--prefill`
/// messages: every run consumes exactly those, once. Without `--prefill` the tool refuses.
#[tokio::test]
async fn compare_consume_prefills_each_run() {
    let a = Server::start("load_tool_a", &[]).await;
    let b = Server::start("load_tool_b", &[]).await;
    let (ua, ub) = (
        format!("127.0.0.1:{}", a.port),
        format!("127.0.0.1:{}", b.port),
    );
    let runs = tokio::task::spawn_blocking({
        let (ua, ub) = (ua.clone(), ub.clone());
        move || {
            load_runs(&[
                "consume",
                "--url",
                &ua,
                "--compare",
                &ub,
                "--prefill",
                "300",
                "--connections",
                "4",
                "--consumers",
                "3",
                "--batch",
                "50",
                "--duration",
                "2",
                "--rounds",
                "2",
            ])
        }
    })
    .await
    .unwrap();
    for server in runs.as_array().unwrap() {
        let server = server.as_array().unwrap();
        assert_eq!(server.len(), 2, "two rounds per server");
        for run in server {
            assert_eq!(run["consumed"], 300, "{run}");
            assert_eq!(run["duplicates"], 0);
            assert_eq!(run["errors"], 0);
        }
    }
    let refused = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_queen-load"))
            .args(["consume", "--url", &ua, "--compare", &ub, "--duration", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--prefill"));
}
