//! TLS against a real server: a private cluster listening on TCP, first with TLS on (a
//! certificate for `localhost` signed by a CA made here) and `pg_hba.conf` refusing plaintext
//! TCP, then with TLS off. Every `sslmode` is tried where it must connect and where it must
//! refuse, and whatever connects is checked to be encrypted (or not) by the server's own
//! `pg_stat_ssl`. Skips (saying so) when no PostgreSQL binaries are installed.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::PathBuf;

use queen_wire::{
    Client, Config, Connection, Error, Event, Listener, Pipeline, Pool, PoolConfig, SslMode,
};

mod servers;

use servers::{ca, pki, refuse_plaintext, tcp_cluster, tcp_cluster_with};

fn tcp(port: u16, host: &str, mode: SslMode, root: Option<&PathBuf>) -> Config {
    Config {
        host: queen_wire::Host::Tcp(host.into()),
        port,
        ssl_mode: mode,
        ssl_root_cert: root.cloned(),
        ..Config::default()
    }
}

/// The error a connection with these settings must fail with.
async fn refused(cfg: &Config) -> Error {
    Connection::connect(cfg)
        .await
        .err()
        .unwrap_or_else(|| panic!("{:?} sslmode={} connected", cfg.host, cfg.ssl_mode))
}

/// Whether the server sees this session encrypted.
async fn encrypted(c: &Connection) -> bool {
    let rows = c
        .query_sql(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    rows[0].get::<bool>(0).unwrap()
}

#[tokio::test]
async fn every_mode_against_a_server_that_demands_tls() {
    let pki = pki();
    let Some((mut cluster, port)) = tcp_cluster("tls-on", Some(pki.server())) else {
        return;
    };
    let root = std::env::temp_dir().join(format!("queen-tls-root-{}.pem", std::process::id()));
    std::fs::write(&root, &pki.ca).unwrap();
    let stranger = std::env::temp_dir().join(format!("queen-tls-other-{}.pem", std::process::id()));
    std::fs::write(&stranger, ca("someone else").pem()).unwrap();
    let admin = Connection::connect(&cluster.config("postgres"))
        .await
        .unwrap();
    admin
        .batch_execute(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE u_scram LOGIN PASSWORD 'over tls';",
        )
        .await
        .unwrap();
    drop(admin);
    // Plaintext TCP refused; SCRAM for one role (whose exchange then runs inside TLS).
    refuse_plaintext(
        &mut cluster,
        "hostssl all u_scram 127.0.0.1/32 scram-sha-256\n",
    );
    let admin = Connection::connect(&cluster.config("postgres"))
        .await
        .unwrap();

    // Modes that connect, and are encrypted.
    for (host, mode, root) in [
        ("127.0.0.1", SslMode::Prefer, None),
        ("127.0.0.1", SslMode::Allow, None),
        ("127.0.0.1", SslMode::Require, None),
        ("localhost", SslMode::Require, Some(&root)),
        // verify-ca checks the chain only: the certificate names localhost, not 127.0.0.1.
        ("127.0.0.1", SslMode::VerifyCa, Some(&root)),
        ("localhost", SslMode::VerifyCa, Some(&root)),
        ("localhost", SslMode::VerifyFull, Some(&root)),
    ] {
        let c = Connection::connect(&tcp(port, host, mode, root))
            .await
            .unwrap_or_else(|e| panic!("{host} sslmode={mode}: {e}"));
        assert!(encrypted(&c).await, "{host} sslmode={mode}");
    }

    // Modes that must refuse, and why.
    // The certificate is for localhost, not 127.0.0.1.
    let e = refused(&tcp(port, "127.0.0.1", SslMode::VerifyFull, Some(&root))).await;
    assert!(
        matches!(&e, Error::Tls(m) if m.contains("certificate")),
        "{e}"
    );
    // Signed by a CA we were not told to trust: by the file named, or by the system's store.
    for (mode, r) in [
        (SslMode::VerifyFull, Some(&stranger)),
        (SslMode::VerifyCa, Some(&stranger)),
        (SslMode::Require, Some(&stranger)),
        (SslMode::VerifyFull, None),
    ] {
        let e = refused(&tcp(port, "localhost", mode, r)).await;
        let untrusted = matches!(&e, Error::Tls(m) if m.contains("certificate"));
        // A machine whose system store is empty refuses before connecting, as plainly.
        let no_roots =
            r.is_none() && matches!(&e, Error::Config(m) if m.contains("no usable root"));
        assert!(untrusted || no_roots, "{mode}: {e}");
    }
    // Plaintext, refused by pg_hba.conf: the server's own error.
    let e = refused(&tcp(port, "127.0.0.1", SslMode::Disable, None)).await;
    assert_eq!(e.code(), Some("28000"), "{e}");

    // SCRAM inside TLS (the server offers SCRAM-SHA-256-PLUS too; we take the plain one).
    let mut scram = tcp(port, "localhost", SslMode::VerifyFull, Some(&root));
    scram.user = "u_scram".into();
    scram.dbname = "postgres".into();
    scram.password = Some("over tls".into());
    let c = Connection::connect(&scram).await.unwrap();
    assert!(encrypted(&c).await);
    scram.password = Some("wrong".into());
    let e = refused(&scram).await;
    assert_eq!(e.code(), Some("28P01"), "{e}");

    // The pipelined client over TLS: many statements per pipeline from several tasks at once,
    // values far larger than a TLS record (16 KiB) both ways, on a pool.
    let pool = Pool::connect(
        tcp(port, "localhost", SslMode::VerifyFull, Some(&root)),
        PoolConfig {
            size: 3,
            ..PoolConfig::default()
        },
    )
    .await
    .unwrap();
    let big = "x".repeat(300_000);
    let mut tasks = Vec::new();
    for t in 0..6i32 {
        let (pool, big) = (pool.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..5i32 {
                let mut p = Pipeline::new();
                for i in 0..20i32 {
                    let n = 1_000 * (t + round + i);
                    p.query_sql(
                        "SELECT length($1::text), repeat('y', $2::int)",
                        &[&big.as_str(), &n],
                    )
                    .unwrap();
                }
                p.sync();
                let results = pool.send(p).await.unwrap();
                let statements = results.into_iter().next().unwrap().unwrap();
                assert_eq!(statements.len(), 20);
                for (i, r) in statements.into_iter().enumerate() {
                    let row = &r.rows[0];
                    assert_eq!(row.get::<i32>(0).unwrap(), 300_000);
                    let n = 1_000 * (t + round + i as i32);
                    assert_eq!(row.get::<String>(1).unwrap().len(), n as usize);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // A cancel request (over plaintext, as libpq's) stops a statement on a TLS connection,
    // though pg_hba.conf refuses plaintext sessions.
    let c = Connection::connect(&tcp(port, "localhost", SslMode::VerifyFull, Some(&root)))
        .await
        .unwrap();
    let token = c.cancel_token();
    let sleeping = tokio::spawn({
        let c = c.clone();
        async move { c.query_sql("SELECT pg_sleep(30)", &[]).await }
    });
    let mut running = false;
    for _ in 0..500 {
        let rows = admin
            .query_sql(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
                &[],
            )
            .await
            .unwrap();
        running = rows[0].get::<i64>(0).unwrap() > 0;
        if running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(running, "the statement never started");
    token.cancel().await.unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), sleeping)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some("57014"), "{e}");

    // LISTEN/NOTIFY over TLS.
    let mut listener = Listener::connect(&tcp(port, "localhost", SslMode::VerifyFull, Some(&root)))
        .await
        .unwrap();
    listener.listen("queen_tls_test").await.unwrap();
    admin
        .batch_execute("NOTIFY queen_tls_test, 'hello'")
        .await
        .unwrap();
    match tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .unwrap()
    {
        Event::Notification(n) => assert_eq!(n.payload, "hello"),
        Event::Reconnected => panic!("the LISTEN connection was lost"),
    }

    let _ = std::fs::remove_file(&root);
    let _ = std::fs::remove_file(&stranger);
}

#[tokio::test]
async fn a_server_without_tls() {
    let Some((_cluster, port)) = tcp_cluster("tls-off", None) else {
        return;
    };
    for mode in [SslMode::Disable, SslMode::Allow, SslMode::Prefer] {
        let c = Connection::connect(&tcp(port, "127.0.0.1", mode, None))
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert!(!encrypted(&c).await, "sslmode={mode}");
    }
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let e = refused(&tcp(port, "127.0.0.1", mode, None)).await;
        assert!(
            matches!(&e, Error::Tls(m) if m.contains("does not accept TLS")),
            "sslmode={mode}: {e}"
        );
    }
}

#[tokio::test]
async fn prefer_falls_back_to_plaintext_when_the_handshake_fails() {
    // TLS offered with only a cipher rustls does not implement (RSA key exchange, TLS 1.2 at
    // most): the handshake can only fail.
    let Some((_cluster, port)) = tcp_cluster_with(
        "tls-no-common-cipher",
        Some(pki().server()),
        &[
            ("ssl_ciphers", "AES128-SHA"),
            ("ssl_max_protocol_version", "TLSv1.2"),
        ],
    ) else {
        return;
    };
    for mode in [SslMode::Allow, SslMode::Prefer] {
        let c = Connection::connect(&tcp(port, "127.0.0.1", mode, None))
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert!(!encrypted(&c).await, "sslmode={mode}");
    }
    let e = refused(&tcp(port, "127.0.0.1", SslMode::Require, None)).await;
    assert!(
        matches!(&e, Error::Tls(m) if m.contains("handshake")),
        "{e}"
    );
}
