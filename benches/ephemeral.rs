//! Ephemeral queues in-process (no HTTP, no database), by how many partitions the queue has
//! (every partition holds a message a second group has not taken, so every ring stays).
//! Bookkeeping that walked every partition on every call would grow with them.
//!
//! * `ephemeral_push_pop_ack`: one message pushed to partition `p0`, then popped (naming
//!   `p0`) and acked by each of two groups;
//! * `ephemeral_any_partition`: one message pushed to the next partition in turn, popped by a
//!   worker naming no partition (one partition has something for it), and taken from that
//!   partition by the second group.
//!
//! Run: `cargo bench --bench ephemeral`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use queen_engine::ephemeral::{AckStatus, Ephemeral, Limits, PopRequest};
use tokio::runtime::Runtime;

const SIZES: [usize; 3] = [1, 100, 10_000];

/// A registry with queue `q` declared roomy enough for every partition's message.
fn registry() -> Ephemeral {
    let e = Ephemeral::new(Limits {
        max_bytes: 1 << 30,
        ..Limits::default()
    });
    let mut options = Limits::default().defaults;
    options.max_length = 10_000_000;
    e.declare("q", options).expect("declared");
    e
}

/// A pop of one message of `q` for `group`, of `partition` or of any.
fn pop(group: &str, partition: Option<String>) -> PopRequest {
    PopRequest {
        queue: "q".into(),
        partition,
        group: Some(group.into()),
        batch: 1,
        wait: false,
        timeout: Duration::ZERO,
        auto_ack: false,
    }
}

/// Pops with `req` and acks what came: answers how many.
fn take(rt: &Runtime, e: &Ephemeral, group: &str, req: &PopRequest) -> usize {
    let got = rt.block_on(e.pop(req)).expect("a pop");
    let ids: Vec<(String, AckStatus)> = got
        .iter()
        .map(|d| (e.id(d), AckStatus::Completed))
        .collect();
    e.ack("q", Some(group), &ids);
    got.len()
}

/// `partitions` partitions each holding one message: the second group ("behind") exists
/// first, so it keeps them.
fn fill(rt: &Runtime, e: &Ephemeral, partitions: usize) {
    rt.block_on(e.pop(&pop("behind", Some("p0".into()))))
        .expect("a pop");
    for p in 0..partitions {
        e.push("q", &format!("p{p}"), vec![Arc::from("{\"n\":0}")])
            .expect("a push");
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let one = || vec![Arc::<str>::from("{\"n\":1}")];

    let mut g = c.benchmark_group("ephemeral_push_pop_ack");
    for partitions in SIZES {
        let e = registry();
        fill(&rt, &e, partitions);
        let groups = [
            ("worker", pop("worker", Some("p0".into()))),
            ("behind", pop("behind", Some("p0".into()))),
        ];
        // Both groups take what `p0` holds first, so each measured pop gets the measured push.
        for (group, req) in &groups {
            take(&rt, &e, group, req);
        }
        g.bench_with_input(
            BenchmarkId::from_parameter(partitions),
            &partitions,
            |b, _| {
                b.iter(|| {
                    e.push("q", "p0", one()).expect("a push");
                    for (group, req) in &groups {
                        assert_eq!(take(&rt, &e, group, req), 1);
                    }
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("ephemeral_any_partition");
    for partitions in SIZES {
        let e = registry();
        let worker = pop("worker", None);
        take(&rt, &e, "worker", &worker);
        fill(&rt, &e, partitions);
        while take(&rt, &e, "worker", &worker) > 0 {}
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
                    e.push("q", &format!("p{i}"), one()).expect("a push");
                    assert_eq!(take(&rt, &e, "worker", &worker), 1);
                    // The second group takes the oldest message of that partition: one stays.
                    assert_eq!(take(&rt, &e, "behind", &behind[i]), 1);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
