//! Wire-client strategies for the same work: N single-row INSERTs of a 200-byte payload.
//!
//! * `a_sequential`: our client, one round trip (and one commit) per statement;
//! * `b_one_pipeline`: our client, all N in one pipeline with one Sync (one commit);
//! * `c_pipelines_in_flight`: our client, N one-statement pipelines in flight at once (N commits);
//! * `d_tokio_postgres_joined`: tokio-postgres, N `execute` futures joined (N commits);
//! * `latency/*`: one `SELECT $1` round trip, ours vs tokio-postgres.
//!
//! Run: `cargo bench --bench wire` (durable embedded PostgreSQL, or `DATABASE_URL`).

#[path = "support.rs"]
mod support;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use queen_wire::{Client, Connection, Host, Pipeline};

const PAYLOAD_LEN: usize = 200;

fn tokio_pg_config(c: &queen_wire::Config) -> tokio_postgres::Config {
    let mut t = tokio_postgres::Config::new();
    match &c.host {
        Host::Tcp(h) => t.host(h),
        Host::Unix(d) => t.host_path(d),
    };
    t.port(c.port).user(&c.user).dbname(&c.dbname);
    if let Some(p) = &c.password {
        t.password(p);
    }
    t
}

fn bench(c: &mut Criterion) {
    let (config, _cluster) = support::bench_server();
    eprintln!("machine: {}", support::describe_machine());
    let rt = support::runtime();
    let payload = "x".repeat(PAYLOAD_LEN);
    let (ours, stmt, theirs, their_stmt, ping, their_ping) = rt.block_on(async {
        let ours = Connection::connect(&config).await.expect("connect");
        ours.batch_execute(
            "DROP TABLE IF EXISTS wire_bench; \
             CREATE TABLE wire_bench (id bigserial PRIMARY KEY, payload text NOT NULL)",
        )
        .await
        .expect("create table");
        let stmt = ours
            .prepare("INSERT INTO wire_bench (payload) VALUES ($1)")
            .await
            .expect("prepare");
        let ping = ours.prepare("SELECT $1::int4 AS v").await.expect("prepare");
        let (theirs, conn) = tokio_pg_config(&config)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("tokio-postgres connect");
        tokio::spawn(conn);
        let their_stmt = theirs
            .prepare("INSERT INTO wire_bench (payload) VALUES ($1)")
            .await
            .expect("prepare");
        let their_ping = theirs
            .prepare("SELECT $1::int4 AS v")
            .await
            .expect("prepare");
        (ours, stmt, theirs, their_stmt, ping, their_ping)
    });

    let mut g = c.benchmark_group("insert");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1));
    for n in [10usize, 100] {
        g.bench_with_input(BenchmarkId::new("a_sequential", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| async {
                for _ in 0..n {
                    ours.execute(&stmt, &[&payload.as_str()])
                        .await
                        .expect("insert");
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("b_one_pipeline", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| async {
                let mut p = Pipeline::new();
                for _ in 0..n {
                    p.query(&stmt, &[&payload.as_str()]).expect("encode");
                }
                let segs = ours.send(p).await.expect("send");
                assert_eq!(segs[0].as_ref().expect("insert").len(), n);
            })
        });
        g.bench_with_input(BenchmarkId::new("c_pipelines_in_flight", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| async {
                let futs = (0..n).map(|_| {
                    let mut p = Pipeline::new();
                    p.query(&stmt, &[&payload.as_str()]).expect("encode");
                    ours.send(p)
                });
                for r in join_all(futs).await {
                    r.expect("send")[0].as_ref().expect("insert");
                }
            })
        });
        g.bench_with_input(
            BenchmarkId::new("d_tokio_postgres_joined", n),
            &n,
            |b, &n| {
                b.to_async(&rt).iter(|| async {
                    let futs =
                        (0..n).map(|_| async { theirs.execute(&their_stmt, &[&payload]).await });
                    for r in join_all(futs).await {
                        r.expect("insert");
                    }
                })
            },
        );
    }
    g.finish();

    // The same in-flight comparison without commits: N SELECTs, so the figure is the clients'
    // own overhead rather than the server's WAL flushes.
    let mut g = c.benchmark_group("select_in_flight");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let n = 100usize;
    g.bench_function("c_ours_pipelines", |b| {
        b.to_async(&rt).iter(|| async {
            let futs = (0..n as i32).map(|i| {
                let mut p = Pipeline::new();
                p.query(&ping, &[&i]).expect("encode");
                ours.send(p)
            });
            for r in join_all(futs).await {
                r.expect("send")[0].as_ref().expect("select");
            }
        })
    });
    g.bench_function("d_tokio_postgres_joined", |b| {
        b.to_async(&rt).iter(|| async {
            let (theirs, their_ping) = (&theirs, &their_ping);
            let futs = (0..n as i32).map(|i| async move { theirs.query(their_ping, &[&i]).await });
            for r in join_all(futs).await {
                r.expect("select");
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("latency");
    g.sample_size(50).measurement_time(Duration::from_secs(5));
    g.bench_function("ours_select", |b| {
        b.to_async(&rt).iter(|| async {
            let rows = ours.query(&ping, &[&7i32]).await.expect("select");
            assert_eq!(rows[0].single::<i32>().expect("int"), 7);
        })
    });
    g.bench_function("tokio_postgres_select", |b| {
        b.to_async(&rt).iter(|| async {
            let rows = theirs.query(&their_ping, &[&7i32]).await.expect("select");
            assert_eq!(rows[0].get::<_, i32>("v"), 7);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
