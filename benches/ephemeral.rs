//! Ephemeral queues in-process (no HTTP, no database): one message pushed to partition `p0`,
//! then popped and acked by each of two groups, on a queue whose other partitions each hold a
//! message neither group has taken (both pop `p0` only) — by how many partitions the queue has.
//! Bookkeeping that walked every partition on every call would grow with them. A second
//! group does the same with the worker popping any partition, one of them holding something
//! for it.
//!
//! Run: `cargo bench --bench ephemeral`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use queen_engine::ephemeral::{AckStatus, Ephemeral, Limits, PopRequest};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("ephemeral_push_pop_ack");
    for partitions in [1usize, 100, 10_000] {
        let e = Ephemeral::new(Limits {
            max_bytes: 1 << 30,
            ..Limits::default()
        });
        let mut options = Limits::default().defaults;
        options.max_length = 10_000_000;
        e.declare("q", options).expect("declared");
        let pop = |group: &str| PopRequest {
            queue: "q".into(),
            partition: Some("p0".into()),
            group: Some(group.into()),
            batch: 1,
            wait: false,
            timeout: Duration::ZERO,
            auto_ack: false,
        };
        rt.block_on(e.pop(&pop("behind"))).expect("a pop");
        for p in 0..partitions {
            e.push("q", &format!("p{p}"), vec![Arc::from("{\"n\":0}")])
                .expect("a push");
        }
        let groups = [("worker", pop("worker")), ("behind", pop("behind"))];
        let take = |group: &str, req: &PopRequest| {
            let got = rt.block_on(e.pop(req)).expect("a pop");
            let ids: Vec<(String, AckStatus)> = got
                .iter()
                .map(|d| (e.id(d), AckStatus::Completed))
                .collect();
            e.ack("q", Some(group), &ids);
            got.len()
        };
        // Both groups take what `p0` holds first, so each measured pop gets the measured push.
        for (group, req) in &groups {
            take(group, req);
        }
        g.bench_with_input(
            BenchmarkId::from_parameter(partitions),
            &partitions,
            |b, _| {
                b.iter(|| {
                    e.push("q", "p0", vec![Arc::from("{\"n\":1}")])
                        .expect("a push");
                    for (group, req) in &groups {
                        assert_eq!(take(group, req), 1);
                    }
                })
            },
        );
    }
    g.finish();

    // The same with the worker popping any partition: every partition exists (the second
    // group holds its first message), one has something for the worker.
    let mut g = c.benchmark_group("ephemeral_any_partition");
    for partitions in [1usize, 100, 10_000] {
        let e = Ephemeral::new(Limits {
            max_bytes: 1 << 30,
            ..Limits::default()
        });
        let pop = |group: &str, partition: Option<String>| PopRequest {
            queue: "q".into(),
            partition,
            group: Some(group.into()),
            batch: 1,
            wait: false,
            timeout: Duration::ZERO,
            auto_ack: false,
        };
        let take = |group: &str, req: &PopRequest| {
            let got = rt.block_on(e.pop(req)).expect("a pop");
            let ids: Vec<(String, AckStatus)> = got
                .iter()
                .map(|d| (e.id(d), AckStatus::Completed))
                .collect();
            e.ack("q", Some(group), &ids);
            got.len()
        };
        let mut options = Limits::default().defaults;
        options.max_length = 10_000_000;
        e.declare("q", options).expect("declared");
        let worker = pop("worker", None);
        take("worker", &worker);
        rt.block_on(e.pop(&pop("behind", Some("p0".into()))))
            .expect("a pop");
        for p in 0..partitions {
            e.push("q", &format!("p{p}"), vec![Arc::from("{\"n\":0}")])
                .expect("a push");
        }
        while take("worker", &worker) > 0 {}
        let behind: Vec<PopRequest> = (0..partitions)
            .map(|p| pop("behind", Some(format!("p{p}"))))
            .collect();
        let mut i = 0usize;
        g.bench_with_input(
            BenchmarkId::from_parameter(partitions),
            &partitions,
            |b, _| {
                b.iter(|| {
                    i = (i + 1) % partitions;
                    e.push("q", &format!("p{i}"), vec![Arc::from("{\"n\":1}")])
                        .expect("a push");
                    assert_eq!(take("worker", &worker), 1);
                    // The second group takes the oldest message of that partition: one stays.
                    assert_eq!(take("behind", &behind[i]), 1);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
