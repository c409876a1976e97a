//! `target_session_attrs` against real servers: a hot standby streaming from a private primary
//! (made with `pg_basebackup`), the primary made read-only under an open connection, and the
//! standby promoted. Skips (saying so) when no PostgreSQL binaries are installed.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Command;
use std::time::Duration;

use queen_wire::embedded::{Cluster, Options, find_binaries, private_test_cluster};
use queen_wire::{Client, Config, Connection, Error, Host, TargetSessionAttrs};

fn read_write(mut c: Config) -> Config {
    c.target_session_attrs = TargetSessionAttrs::ReadWrite;
    c
}

/// A hot standby of `primary`, streaming from it, in a directory of its own.
fn standby_of(primary: &Cluster) -> Cluster {
    // pg_basebackup sits beside the real `postgres` (the one found may be a link to it).
    let postgres = std::fs::canonicalize(find_binaries().unwrap().join("postgres")).unwrap();
    let basebackup = postgres.with_file_name("pg_basebackup");
    let cfg = primary.config("postgres");
    let Host::Unix(socket_dir) = &cfg.host else {
        panic!("the private cluster listens on a Unix socket");
    };
    let dir = std::env::temp_dir().join(format!("queen-standby-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&basebackup);
        c
    } else {
        Command::new(&basebackup)
    };
    let out = cmd
        .arg("-D")
        .arg(&dir)
        .arg("-h")
        .arg(socket_dir)
        .args([
            "-p",
            &cfg.port.to_string(),
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The primary's socket lives in its data directory: the copy holds its lock file.
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with(".s.PGSQL.") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let mut opts = Options::new(dir);
    opts.durable = false;
    opts.stop_with_process = true;
    opts.remove_on_stop = true;
    Cluster::start(opts).unwrap()
}

/// Makes the whole server read-only (as a demoted or fenced primary is), or writable again;
/// each backend applies it before its next command.
async fn set_read_only(admin: &Connection, on: bool) {
    let sql = if on {
        "ALTER SYSTEM SET default_transaction_read_only = on"
    } else {
        "ALTER SYSTEM RESET default_transaction_read_only"
    };
    admin.batch_execute(sql).await.unwrap();
    admin
        .query_sql("SELECT pg_reload_conf()", &[])
        .await
        .unwrap();
}

async fn in_recovery(c: &Connection) -> bool {
    let rows = c
        .query_sql("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap();
    rows[0].get::<bool>(0).unwrap()
}

#[tokio::test]
async fn read_write_sessions_refuse_standbys_and_follow_a_promotion() {
    let Some(primary) = private_test_cluster("standby-primary").unwrap() else {
        return;
    };
    let standby = standby_of(&primary);
    let on_standby = standby.config("postgres");

    // Any server will do: the standby answers reads.
    let c = Connection::connect(&on_standby).await.unwrap();
    assert!(in_recovery(&c).await);
    // Read-write: refused, as an unreachable server would be (the pool retries).
    let e = Connection::connect(&read_write(on_standby.clone()))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::ReadOnly), "{e}");
    assert!(e.is_connection());
    // The primary is writable.
    let rw = Connection::connect(&read_write(primary.config("postgres")))
        .await
        .unwrap();
    rw.batch_execute("CREATE TABLE t (n int)").await.unwrap();

    // The standby replays the table...
    let mut streamed = false;
    for _ in 0..400 {
        let rows = c
            .query_sql("SELECT to_regclass('t') IS NOT NULL", &[])
            .await
            .unwrap();
        streamed = rows[0].get::<bool>(0).unwrap();
        if streamed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(streamed, "the standby never replayed the primary's table");
    // ...and, promoted (pg_promote waits for the promotion), takes read-write sessions.
    let rows = c.query_sql("SELECT pg_promote()", &[]).await.unwrap();
    assert!(rows[0].get::<bool>(0).unwrap());
    let promoted = Connection::connect(&read_write(on_standby)).await.unwrap();
    assert!(!in_recovery(&promoted).await);
    promoted
        .query_sql("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_connection_whose_server_turns_read_only_is_closed() {
    let Some(cluster) = private_test_cluster("turns-read-only").unwrap() else {
        return;
    };
    let admin = Connection::connect(&cluster.config("postgres"))
        .await
        .unwrap();
    admin.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    let rw = Connection::connect(&read_write(cluster.config("postgres")))
        .await
        .unwrap();
    let any = Connection::connect(&cluster.config("postgres"))
        .await
        .unwrap();
    rw.query_sql("INSERT INTO t VALUES (1)", &[]).await.unwrap();

    set_read_only(&admin, true).await;
    // Wait until this connection's backend has applied it.
    let mut refused = None;
    for _ in 0..200 {
        match rw.query_sql("INSERT INTO t VALUES (2)", &[]).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the server never turned read-only");
    assert_eq!(e.code(), Some("25006"), "{e}");
    assert!(e.is_connection(), "a read-only refusal is an outage: {e}");
    // The read-write connection closes; one that accepts any server stays.
    tokio::time::timeout(Duration::from_secs(5), rw.closed())
        .await
        .unwrap();
    let e = any
        .query_sql("INSERT INTO t VALUES (3)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("25006"));
    assert!(!any.is_closed());
    assert!(matches!(
        Connection::connect(&read_write(cluster.config("postgres"))).await,
        Err(Error::ReadOnly)
    ));

    set_read_only(&admin, false).await;
    let mut back = false;
    for _ in 0..200 {
        if let Ok(c) = Connection::connect(&read_write(cluster.config("postgres"))).await {
            c.query_sql("INSERT INTO t VALUES (4)", &[]).await.unwrap();
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(back, "the server never took writes again");
}
