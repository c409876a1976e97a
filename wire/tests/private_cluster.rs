//! Tests that need a server of their own: authentication methods (they rewrite `pg_hba.conf`)
//! and a pool surviving a database restart. They run on a private embedded cluster whatever
//! `DATABASE_URL` says, and skip (saying so) when no PostgreSQL binaries are installed.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::time::{Duration, Instant};

use queen_wire::embedded::Cluster;
use queen_wire::{Client, Config, Connection, Error, Pool, PoolConfig};

fn private_cluster(name: &str) -> Option<Cluster> {
    queen_wire::embedded::private_test_cluster(name).expect("start a private cluster")
}

#[tokio::test]
async fn trust_cleartext_md5_and_scram_authentication() {
    let Some(cluster) = private_cluster("auth") else {
        return;
    };
    let admin = Connection::connect(&cluster.config("postgres"))
        .await
        .expect("trust login");
    admin
        .batch_execute(
            "SET password_encryption = 'md5';
             CREATE ROLE u_md5 LOGIN PASSWORD 'md5 secret';
             CREATE ROLE u_clear LOGIN PASSWORD 'clear secret';
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE u_scram LOGIN PASSWORD 'scram secret';",
        )
        .await
        .unwrap();
    // Rules are matched top-down: put the password methods before the trust line.
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "local all u_md5 md5\nlocal all u_clear password\nlocal all u_scram scram-sha-256\n{old}"
        ),
    )
    .unwrap();
    admin
        .query_sql("SELECT pg_reload_conf()", &[])
        .await
        .unwrap();

    for (user, password, method) in [
        ("u_md5", "md5 secret", "md5"),
        ("u_clear", "clear secret", "password"),
        ("u_scram", "scram secret", "scram-sha-256"),
    ] {
        let mut cfg: Config = cluster.config("postgres");
        cfg.user = user.into();
        cfg.password = Some(password.into());
        let c = Connection::connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{method} login failed: {e}"));
        let rows = c.query_sql("SELECT current_user::text", &[]).await.unwrap();
        assert_eq!(rows[0].get::<&str>(0).unwrap(), user);
        let auth = admin
            .query_sql(
                "SELECT auth_method FROM pg_hba_file_rules WHERE $1 = ANY(user_name)",
                &[&user],
            )
            .await
            .unwrap();
        assert_eq!(
            auth[0].get::<&str>(0).unwrap(),
            method,
            "the role really uses {method}"
        );

        cfg.password = Some("wrong".into());
        let err = Connection::connect(&cfg).await.unwrap_err();
        assert_eq!(err.code(), Some("28P01"), "{method}: {err}");
        cfg.password = None;
        assert!(
            matches!(Connection::connect(&cfg).await, Err(Error::Auth(_))),
            "{method}"
        );
    }
}

#[tokio::test]
async fn pool_reconnects_after_the_database_restarts() {
    let Some(mut cluster) = private_cluster("restart") else {
        return;
    };
    let pool = Pool::connect(
        cluster.config("postgres"),
        PoolConfig {
            size: 4,
            acquire_timeout: Duration::from_millis(500),
            ..PoolConfig::default()
        },
    )
    .await
    .unwrap();
    let st = pool.prepare("SELECT $1::int8 + 1").await.unwrap();
    assert_eq!(
        pool.query(&st, &[&1i64]).await.unwrap()[0]
            .get::<i64>(0)
            .unwrap(),
        2
    );

    // Keep work running across the restart.
    let worker = tokio::spawn({
        let (pool, st) = (pool.clone(), st.clone());
        async move {
            let (mut ok, mut conn_err) = (0u32, 0u32);
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                match pool.query(&st, &[&41i64]).await {
                    Ok(rows) => {
                        assert_eq!(rows[0].get::<i64>(0).unwrap(), 42);
                        ok += 1;
                        if conn_err > 0 && ok > 200 {
                            break;
                        }
                    }
                    Err(e) => {
                        assert!(e.is_connection(), "only connection errors while down: {e}");
                        conn_err += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (ok, conn_err)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Keep the cluster alive (dropping it stops the server) until the end of the test.
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_mode(true).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        cluster.restart().unwrap();
        cluster
    })
    .await
    .unwrap();
    let (ok, conn_err) = worker.await.unwrap();
    assert!(conn_err > 0, "the outage was observed");
    assert!(ok > 200, "work resumed after the restart");
    // Every slot came back, and statements are re-parsed on the new connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.status().connected < 4 {
        assert!(Instant::now() < deadline, "slots reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        pool.query(&st, &[&9i64]).await.unwrap()[0]
            .get::<i64>(0)
            .unwrap(),
        10
    );
}
