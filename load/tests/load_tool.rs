//! `queen-load` against the real server: what it pushes, its consumers get, exactly once.
//!
//! The server is the `queen` binary of the same build (`cargo test --workspace` builds it into
//! the same directory as this package's `queen-load`), on a fresh database.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `queen serve` on a free port and a fresh database; killed when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    async fn start(name: &str) -> Server {
        let load = PathBuf::from(env!("CARGO_BIN_EXE_queen-load"));
        let queen = load.with_file_name("queen");
        assert!(
            queen.exists(),
            "{} is missing: build the server first (cargo build --bin queen)",
            queen.display()
        );
        let db = queen_wire::embedded::test_config(name).await.unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("queen-load-test-{name}-{}", std::process::id()));
        let child = Command::new(queen)
            .arg("serve")
            .env("DATABASE_URL", db.to_key_values())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("FILE_BUFFER_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }
}

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
    let s = Server::start("load_tool").await;
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
    let a = Server::start("load_tool_a").await;
    let b = Server::start("load_tool_b").await;
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

/// The pgmq modes count what the database did: every message `pgmq-send` reports is a row of
/// the queue, and `pgmq-consume` reports exactly the rows it deleted. The schema here has
/// pgmq's call signatures over one table (the released pgmq SQL is fetched by the peers bench,
/// not kept in the repository); what is tested is the tool's side of those calls.
#[tokio::test]
async fn pgmq_modes_count_what_the_database_stored_and_deleted() {
    use queen_wire::{Client, Connection};
    let db = queen_wire::embedded::test_config("load_tool_pgmq")
        .await
        .unwrap();
    let conn = Connection::connect(&db).await.unwrap();
    conn.batch_execute(
        "CREATE SCHEMA pgmq;
         CREATE TABLE pgmq.q_bench (msg_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                    message jsonb NOT NULL);
         CREATE FUNCTION pgmq.send_batch(q text, msgs jsonb[]) RETURNS SETOF bigint
           LANGUAGE sql AS $$ INSERT INTO pgmq.q_bench (message)
                              SELECT unnest(msgs) RETURNING msg_id $$;
         CREATE FUNCTION pgmq.send(q text, msg jsonb) RETURNS SETOF bigint
           LANGUAGE sql AS $$ INSERT INTO pgmq.q_bench (message) VALUES (msg)
                              RETURNING msg_id $$;
         CREATE FUNCTION pgmq.read(q text, vt integer, qty integer)
           RETURNS TABLE (msg_id bigint)
           LANGUAGE sql AS $$ SELECT msg_id FROM pgmq.q_bench ORDER BY msg_id LIMIT qty
                              FOR UPDATE SKIP LOCKED $$;
         CREATE FUNCTION pgmq.delete(q text, ids bigint[]) RETURNS SETOF bigint
           LANGUAGE sql AS $$ DELETE FROM pgmq.q_bench WHERE msg_id = ANY (ids)
                              RETURNING msg_id $$;",
    )
    .await
    .unwrap();
    let url = db.to_key_values();
    let count = || async {
        let rows = conn
            .query_sql("SELECT count(*) AS n FROM pgmq.q_bench", &[])
            .await
            .unwrap();
        rows[0].get::<i64>("n").unwrap() as u64
    };
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            load(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let common = |mode: &str, extra: &[&str]| -> Vec<String> {
        [mode, "--database-url", &url, "--duration", "1"]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let batch = run(common(
        "pgmq-send",
        &["--connections", "3", "--batch", "20"],
    ))
    .await
    .unwrap();
    let single = run(common("pgmq-send", &["--connections", "3", "--batch", "1"]))
        .await
        .unwrap();
    let pushed = batch["pushed"].as_u64().unwrap() + single["pushed"].as_u64().unwrap();
    assert!(batch["pushed"].as_u64().unwrap() >= 20, "{batch}");
    assert!(single["pushed"].as_u64().unwrap() >= 1, "{single}");
    assert_eq!(batch["errors"], 0, "{batch}");
    assert_eq!(count().await, pushed);
    let consumed = run(common(
        "pgmq-consume",
        &["--consumers", "2", "--batch", "7"],
    ))
    .await
    .unwrap();
    assert_eq!(consumed["errors"], 0, "{consumed}");
    assert_eq!(
        count().await,
        pushed - consumed["consumed"].as_u64().unwrap()
    );
}
