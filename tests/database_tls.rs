//! `queen serve` on a PostgreSQL that accepts TLS connections only, as managed databases do:
//! the server's every session is encrypted and the queue works through it; a certificate it
//! was not told to trust, or Queen's `PG_USE_SSL` beside a connection string that does not ask
//! for TLS, stops it at start with a message saying so.

#![allow(clippy::unwrap_used)]

#[path = "../wire/tests/servers/mod.rs"]
mod servers;
mod support;

use queen_wire::{Client, Config, Connection, Host, SslMode};
use serde_json::json;
use servers::{pki, refuse_plaintext, tcp_cluster};
use support::{Server, buffer_dir};

#[tokio::test]
async fn the_server_runs_on_a_database_that_demands_tls() {
    let pki = pki();
    let Some((mut cluster, port)) = tcp_cluster("server-tls", Some(pki.server())) else {
        return;
    };
    refuse_plaintext(&mut cluster, "");
    let root = std::env::temp_dir().join(format!("queen-server-tls-{}.pem", std::process::id()));
    std::fs::write(&root, &pki.ca).unwrap();
    let db = Config {
        host: Host::Tcp("localhost".into()),
        port,
        ssl_mode: SslMode::VerifyFull,
        ssl_root_cert: Some(root.clone()),
        ..Config::default()
    };

    let s = Server::start_on(&db, buffer_dir("server_tls"), false, &[]).await;
    let payloads: Vec<_> = (0..50).map(|i| json!({ "n": i })).collect();
    assert_eq!(s.push("tls", "p", &payloads).await.len(), 50);
    let got = s
        .pop("/api/v1/pop/queue/tls/partition/p?batch=50&autoAck=true")
        .await;
    assert_eq!(
        got.iter().map(|m| m["data"].clone()).collect::<Vec<_>>(),
        payloads
    );
    // Every session of the server is encrypted (the plaintext ones were refused anyway).
    let admin = Connection::connect(&cluster.config("postgres"))
        .await
        .unwrap();
    let rows = admin
        .query_sql(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a
               JOIN pg_stat_ssl s USING (pid)
              WHERE a.client_addr IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    let (sessions, encrypted) = (
        rows[0].get::<i64>(0).unwrap(),
        rows[0].get::<i64>(1).unwrap(),
    );
    assert!(sessions > 0);
    assert_eq!(encrypted, sessions);
    drop(s);

    // A CA the server was not told of (the system's roots do not include ours): refused at
    // start, saying why.
    let untrusted = Config {
        ssl_root_cert: None,
        ..db.clone()
    };
    let (status, stderr) = Server::refused_start(&untrusted, &buffer_dir("server_tls"), &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("certificate") || stderr.contains("no usable root"),
        "{stderr}"
    );

    // Queen's PG_USE_SSL beside a connection string that would settle for plaintext.
    let lax = Config {
        ssl_mode: SslMode::Prefer,
        ..db.clone()
    };
    let (status, stderr) =
        Server::refused_start(&lax, &buffer_dir("server_tls"), &[("PG_USE_SSL", "true")]);
    assert!(!status.success());
    assert!(stderr.contains("PG_USE_SSL=true"), "{stderr}");
    let _ = std::fs::remove_file(&root);
}
