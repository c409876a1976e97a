//! `target_session_attrs` against real servers: a hot standby streaming from a private primary
//! (made with `pg_basebackup`), the primary made read-only under an open connection, and the
//! standby promoted. Skips (saying so) when no PostgreSQL binaries are installed.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Command;
use std::time::Duration;

use queen_wire::embedded::{Cluster, Options, find_binaries, private_test_cluster};
mod servers;

use queen_wire::{Client, Config, Connection, Error, Host, Pool, PoolConfig, TargetSessionAttrs};
use servers::set_read_only;

fn read_write(mut c: Config) -> Config {
    c.target_session_attrs = TargetSessionAttrs::ReadWrite;
    c
}

/// A hot standby of `primary`, streaming from it, in a directory of its own.
fn standby_of(primary: &Cluster, name: &str) -> Cluster {
    // pg_basebackup sits beside the real `postgres` (the one found may be a link to it).
    let postgres = std::fs::canonicalize(find_binaries().unwrap().join("postgres")).unwrap();
    let basebackup = postgres.with_file_name("pg_basebackup");
    let cfg = primary.config("postgres");
    let Host::Unix(socket_dir) = &cfg.host else {
        panic!("the private cluster listens on a Unix socket");
    };
    let dir = std::env::temp_dir().join(format!("queen-{name}-{}", std::process::id()));
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

/// Waits (bounded) until the standby has replayed table `t`.
async fn replayed(standby: &Connection) {
    for _ in 0..400 {
        let rows = standby
            .query_sql("SELECT to_regclass('t') IS NOT NULL", &[])
            .await
            .unwrap();
        if rows[0].get::<bool>(0).unwrap() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the standby never replayed the primary's table");
}

async fn data_directory(c: &impl Client) -> String {
    let rows = c.query_sql("SHOW data_directory", &[]).await.unwrap();
    rows[0].get::<String>(0).unwrap()
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
    let standby = standby_of(&primary, "standby");
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
    replayed(&c).await;
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

#[tokio::test]
async fn a_pool_over_primary_and_standby_follows_a_failover() {
    let Some(primary) = private_test_cluster("failover-primary").unwrap() else {
        return;
    };
    let standby = standby_of(&primary, "failover-standby");
    let Host::Unix(standby_dir) = standby.config("postgres").host else {
        panic!("the standby listens on a Unix socket");
    };
    // Both servers, primary first, as a client lists a cluster's nodes without a proxy.
    let both = Config {
        more_hosts: vec![(Host::Unix(standby_dir), standby.config("postgres").port)],
        ..read_write(primary.config("postgres"))
    };
    assert_eq!(
        Config::parse(&both.to_key_values()).unwrap(),
        both,
        "a host list survives its key=value form"
    );
    let pool = Pool::connect(
        both,
        PoolConfig {
            size: 2,
            max_backoff: Duration::from_millis(200),
            ..PoolConfig::default()
        },
    )
    .await
    .unwrap();
    pool.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    let primary_dir = primary.data_dir().to_string_lossy().into_owned();
    assert_eq!(data_directory(&pool).await, primary_dir);
    let on_standby = Connection::connect(&standby.config("postgres"))
        .await
        .unwrap();
    replayed(&on_standby).await;

    // The failover: the primary fenced (read-only), the standby promoted.
    let admin = Connection::connect(&primary.config("postgres"))
        .await
        .unwrap();
    set_read_only(&admin, true).await;
    let rows = on_standby
        .query_sql("SELECT pg_promote()", &[])
        .await
        .unwrap();
    assert!(rows[0].get::<bool>(0).unwrap());

    // Writes fail as outages (never as data errors) until the pool is on the new primary.
    let mut failures = 0;
    loop {
        match pool.query_sql("INSERT INTO t VALUES (1)", &[]).await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_connection(), "{e}");
                failures += 1;
                assert!(
                    failures < 400,
                    "the pool never reached the new primary: {e}"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
    // Only the new primary takes writes: that insert went there. A new connection over the
    // list lands there too.
    let rows = on_standby
        .query_sql("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<i64>(0).unwrap(), 1);
    let fresh = Connection::connect(pool.config()).await.unwrap();
    assert_eq!(
        data_directory(&fresh).await,
        standby.data_dir().to_string_lossy()
    );
}
