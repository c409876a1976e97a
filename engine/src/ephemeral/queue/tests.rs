use super::*;

fn opts() -> Options {
    Options {
        max_bytes: 1 << 20,
        max_length: 100,
        policy: Policy::Reject,
        ttl_ms: 0,
        lease_ms: 1_000,
        retry_limit: 2,
        window: Window::default(),
    }
}

/// A queue and its sequence counter.
struct Q {
    q: Queue,
    seq: u64,
}

impl Q {
    fn new(o: Options) -> Q {
        Q {
            q: Queue::new(o, false, 0),
            seq: 0,
        }
    }

    fn push(&mut self, p: &str, items: &[&str], now: u64) -> Result<(), Full> {
        let seq = &mut self.seq;
        self.q.push(
            p,
            items.iter().map(|s| Arc::from(*s)).collect(),
            || {
                *seq += 1;
                *seq
            },
            now,
        )
    }

    fn pop(&mut self, p: Option<&str>, g: &str, max: usize, now: u64) -> Vec<(String, u32)> {
        self.q
            .pop(p, g, max, false, now)
            .unwrap()
            .into_iter()
            .map(|d| (d.payload.to_string(), d.attempts))
            .collect()
    }

    fn pop_raw(&mut self, g: &str, max: usize, now: u64) -> Vec<Delivered> {
        self.q.pop(None, g, max, false, now).unwrap()
    }
}

fn texts(v: &[(String, u32)]) -> Vec<&str> {
    v.iter().map(|(s, _)| s.as_str()).collect()
}

#[test]
fn a_partition_is_fifo_and_a_group_competes() {
    let mut q = Q::new(opts());
    q.push("p", &["1", "2", "3"], 0).unwrap();
    assert_eq!(texts(&q.pop(Some("p"), "", 2, 0)), ["1", "2"]);
    assert_eq!(texts(&q.pop(Some("p"), "", 2, 0)), ["3"]);
    assert!(q.pop(Some("p"), "", 2, 0).is_empty());
}

#[test]
fn every_group_gets_everything_and_the_ring_keeps_what_one_still_needs() {
    let mut q = Q::new(opts());
    q.pop(None, "a", 1, 0);
    q.pop(None, "b", 1, 0);
    q.push("p", &["1", "2"], 0).unwrap();
    let a = q.pop_raw("a", 10, 0);
    assert_eq!(a.len(), 2);
    for d in &a {
        assert_eq!(
            q.q.ack("a", ("p", d.seq, d.attempts), AckStatus::Completed, 0),
            Outcome::Acked
        );
    }
    // b has not had them: they stay.
    assert_eq!(q.q.length(), 2);
    let b = q.pop_raw("b", 10, 0);
    assert_eq!(b.len(), 2);
    for d in &b {
        q.q.ack("b", ("p", d.seq, d.attempts), AckStatus::Completed, 0);
    }
    assert_eq!((q.q.length(), q.q.bytes()), (0, 0));
    assert!(q.q.idle());
}

#[test]
fn a_new_group_starts_at_the_head_of_what_is_held() {
    let mut q = Q::new(opts());
    q.push("p", &["1", "2"], 0).unwrap();
    assert_eq!(texts(&q.pop(None, "late", 10, 0)), ["1", "2"]);
}

#[test]
fn a_nack_redelivers_until_the_retries_are_spent() {
    let mut q = Q::new(opts()); // retry_limit 2: three deliveries
    q.push("p", &["x"], 0).unwrap();
    for attempt in 1..=3 {
        let d = q.pop_raw("", 1, 0);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].attempts, attempt);
        let want = if attempt < 3 {
            Outcome::Redelivered
        } else {
            Outcome::Acked
        };
        assert_eq!(
            q.q.ack("", ("p", d[0].seq, d[0].attempts), AckStatus::Failed, 0),
            want
        );
    }
    assert!(q.pop_raw("", 1, 0).is_empty());
    assert_eq!(q.q.drops().retry, 1);
    assert_eq!(q.q.length(), 0);
}

#[test]
fn retry_limit_zero_drops_on_the_first_nack() {
    let mut q = Q::new(Options {
        retry_limit: 0,
        ..opts()
    });
    q.push("p", &["x"], 0).unwrap();
    let d = q.pop_raw("", 1, 0);
    assert_eq!(
        q.q.ack("", ("p", d[0].seq, d[0].attempts), AckStatus::Failed, 0),
        Outcome::Acked
    );
    assert_eq!(q.q.drops().retry, 1);
}

#[test]
fn a_lease_that_runs_out_redelivers_before_newer_messages() {
    let mut q = Q::new(opts());
    q.push("p", &["1", "2"], 0).unwrap();
    let first = q.pop_raw("", 1, 0);
    assert_eq!(&*first[0].payload, "1");
    // Not yet: the second message comes.
    assert_eq!(texts(&q.pop(None, "", 1, 999)), ["2"]);
    // Past the lease: "1" again, second attempt; its old delivery can no longer be acked.
    assert!(q.q.expire(1_000));
    let again = q.pop_raw("", 5, 1_000);
    assert_eq!((&*again[0].payload, again[0].attempts), ("1", 2));
    assert_eq!(
        q.q.ack(
            "",
            ("p", first[0].seq, first[0].attempts),
            AckStatus::Completed,
            1_000
        ),
        Outcome::Unknown,
        "the first delivery's lease ran out: it cannot settle the redelivery"
    );
    assert_eq!(
        q.q.ack(
            "",
            ("p", again[0].seq, again[0].attempts),
            AckStatus::Completed,
            1_000
        ),
        Outcome::Acked
    );
}

#[test]
fn auto_ack_leases_nothing() {
    let mut q = Q::new(opts());
    q.push("p", &["1"], 0).unwrap();
    let d = q.q.pop(None, "", 1, true, 0).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        q.q.ack("", ("p", d[0].seq, d[0].attempts), AckStatus::Completed, 0),
        Outcome::Unknown
    );
    assert_eq!(q.q.length(), 0, "delivered to the only group: trimmed");
    assert!(!q.q.expire(10_000));
}

#[test]
fn reject_refuses_the_whole_push_and_drop_oldest_makes_room() {
    let o = Options {
        max_length: 3,
        ..opts()
    };
    let mut q = Q::new(o);
    q.push("p", &["1", "2"], 0).unwrap();
    assert_eq!(q.push("p", &["3", "4"], 0), Err(Full));
    assert_eq!(q.q.length(), 2, "all or nothing");

    let mut q = Q::new(Options {
        policy: Policy::DropOldest,
        ..o
    });
    q.pop(None, "g", 1, 0); // a group that has seen nothing yet
    q.push("a", &["1", "2"], 0).unwrap();
    q.push("b", &["3"], 1).unwrap();
    q.push("b", &["4", "5"], 2).unwrap();
    assert_eq!(q.q.length(), 3);
    assert_eq!(q.q.drops().bounds, 2);
    assert_eq!(texts(&q.pop(None, "g", 10, 3)).len(), 3);
    let d = q.q.depth(None);
    assert_eq!(d.groups[0].3, 2, "the group skipped the two dropped");
    // A push larger than the queue can ever hold is refused either way.
    assert_eq!(q.push("a", &["1", "2", "3", "4"], 4), Err(Full));
}

#[test]
fn max_bytes_counts_payload_bytes() {
    let mut q = Q::new(Options {
        max_bytes: 10,
        ..opts()
    });
    q.push("p", &["12345", "12345"], 0).unwrap();
    assert_eq!(q.push("p", &["1"], 0), Err(Full));
    assert_eq!(q.q.bytes(), 10);
}

#[test]
fn ttl_drops_old_messages_and_counts_them() {
    let mut q = Q::new(Options {
        ttl_ms: 100,
        ..opts()
    });
    q.push("p", &["old"], 0).unwrap();
    q.push("p", &["new"], 150).unwrap();
    assert_eq!(texts(&q.pop(None, "", 10, 150)), ["new"]);
    assert_eq!(q.q.drops().ttl, 1);
}

#[test]
fn any_partition_pops_take_turns() {
    let mut q = Q::new(opts());
    for p in ["a", "b", "c"] {
        q.push(p, &[p, p], 0).unwrap();
    }
    let firsts: Vec<String> = (0..3)
        .map(|_| q.pop_raw("", 1, 0)[0].partition.to_string())
        .collect();
    let mut sorted = firsts.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "b", "c"], "{firsts:?}");
}

#[test]
fn acks_of_other_groups_or_partitions_are_unknown() {
    let mut q = Q::new(opts());
    q.push("p", &["1"], 0).unwrap();
    let d = q.pop_raw("g", 1, 0);
    assert_eq!(
        q.q.ack("h", ("p", d[0].seq, d[0].attempts), AckStatus::Completed, 0),
        Outcome::Unknown
    );
    assert_eq!(
        q.q.ack("g", ("q", d[0].seq, d[0].attempts), AckStatus::Completed, 0),
        Outcome::Unknown
    );
    assert_eq!(
        q.q.ack(
            "g",
            ("p", d[0].seq + 1, d[0].attempts),
            AckStatus::Completed,
            0
        ),
        Outcome::Unknown
    );
    assert_eq!(
        q.q.ack("g", ("p", d[0].seq, d[0].attempts), AckStatus::Completed, 0),
        Outcome::Acked
    );
}

#[test]
fn reset_drops_everything_but_the_options() {
    let mut q = Q::new(Options {
        max_length: 7,
        ..opts()
    });
    q.push("p", &["1", "2"], 0).unwrap();
    q.pop(None, "g", 1, 0);
    assert_eq!(q.q.reset(), 2);
    assert_eq!((q.q.length(), q.q.bytes(), q.q.counts()), (0, 0, (0, 0)));
    assert_eq!(q.q.options.max_length, 7);
}

#[test]
fn a_group_gone_quiet_is_forgotten_and_no_longer_holds_messages() {
    let mut q = Q::new(opts());
    q.pop(None, "live", 1, 0);
    q.pop(None, "gone", 1, 0);
    q.push("p", &["1", "2"], 0).unwrap();
    for d in q.pop_raw("live", 10, 100) {
        q.q.ack("live", ("p", d.seq, d.attempts), AckStatus::Completed, 100);
    }
    assert_eq!(q.q.length(), 2, "held for the quiet group");
    assert_eq!(
        q.q.forget_groups(150, 100),
        1,
        "quiet since 0; live popped at 100"
    );
    assert_eq!(q.q.length(), 0);
    assert_eq!(q.q.counts().1, 1);
    // Back again, it starts over at the head of what is held.
    q.push("p", &["3"], 200).unwrap();
    assert_eq!(texts(&q.pop(None, "gone", 10, 200)), ["3"]);
}

#[test]
fn a_queue_refuses_groups_past_its_limit() {
    let mut q = Q::new(opts());
    for g in 0..GROUPS_MAX {
        q.q.pop(None, &g.to_string(), 1, false, 0).unwrap();
    }
    assert_eq!(q.q.pop(None, "one more", 1, false, 0), Err(TooManyGroups));
    assert!(
        q.q.pop(None, "0", 1, false, 0).is_ok(),
        "a known group still pops"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize, usize),
        Pop(usize, Option<usize>, usize, bool),
        AckLast(usize, bool),
        Wait(u64),
        Forget,
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 1..4usize).prop_map(|(p, n)| Op::Push(p, n)),
            4 => (0..2usize, prop::option::of(0..3usize), 1..4usize, any::<bool>())
                .prop_map(|(g, p, n, auto)| Op::Pop(g, p, n, auto)),
            3 => (0..2usize, any::<bool>()).prop_map(|(g, ok)| Op::AckLast(g, ok)),
            2 => (0..1500u64).prop_map(Op::Wait),
            1 => Just(Op::Forget),
            1 => Just(Op::Reset),
        ]
    }

    const GROUPS: [&str; 2] = ["a", ""];

    /// The bookkeeping agrees with the rings: counts, and every partition holding something
    /// for a group is in the group's ready set (else pops of any partition would never reach
    /// it).
    fn consistent(q: &Queue) -> Result<(), TestCaseError> {
        let length: u64 = q.rings.values().map(|r| r.msgs.len() as u64).sum();
        let bytes: u64 = q
            .rings
            .values()
            .flat_map(|r| r.msgs.iter().map(|m| m.payload.len() as u64))
            .sum();
        prop_assert_eq!(q.length, length);
        prop_assert_eq!(q.bytes, bytes);
        for (name, ring) in &q.rings {
            prop_assert_eq!(
                ring.bytes,
                ring.msgs
                    .iter()
                    .map(|m| m.payload.len() as u64)
                    .sum::<u64>()
            );
            for (g, c) in &ring.cursors {
                if c.has_more(&ring.msgs) {
                    prop_assert!(
                        q.groups.get(g).is_some_and(|x| x.ready.contains(name)),
                        "partition {name} has something for group {g:?} but is not ready"
                    );
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn bookkeeping_stays_consistent_and_pops_of_any_partition_drain_everything(
            ops in prop::collection::vec(op(), 1..80),
            policy in prop_oneof![Just(Policy::Reject), Just(Policy::DropOldest)],
            ttl in prop_oneof![Just(0u64), Just(2_000u64)],
        ) {
            let mut q = Q::new(Options { max_length: 8, policy, ttl_ms: ttl, ..opts() });
            let mut now = 0u64;
            let mut last: [Vec<Delivered>; 2] = [Vec::new(), Vec::new()];
            for op in ops {
                match op {
                    Op::Push(p, n) => {
                        let items: Vec<String> = (0..n).map(|i| format!("{i}")).collect();
                        let items: Vec<&str> = items.iter().map(String::as_str).collect();
                        let _ = q.push(&format!("p{p}"), &items, now);
                    }
                    Op::Pop(g, p, n, auto) => {
                        let p = p.map(|p| format!("p{p}"));
                        last[g] = q.q.pop(p.as_deref(), GROUPS[g], n, auto, now).unwrap();
                    }
                    Op::AckLast(g, ok) => {
                        let status = if ok { AckStatus::Completed } else { AckStatus::Failed };
                        for d in std::mem::take(&mut last[g]) {
                            q.q.ack(GROUPS[g], (&d.partition, d.seq, d.attempts), status, now);
                        }
                    }
                    Op::Wait(ms) => {
                        now += ms;
                        q.q.expire(now);
                    }
                    Op::Forget => {
                        q.q.forget_groups(now, 1_000);
                    }
                    Op::Reset => {
                        q.q.reset();
                        last = [Vec::new(), Vec::new()];
                    }
                }
                consistent(&q.q)?;
            }
            // Liveness: each group drains by popping any partition and acking, time moving past
            // every lease; then nothing is pending for it.
            for g in GROUPS {
                if !q.q.groups.contains_key(g) {
                    continue;
                }
                for _ in 0..200 {
                    now += 31_000;
                    let got = q.q.pop(None, g, 4, false, now).unwrap();
                    if got.is_empty() {
                        break;
                    }
                    for d in got {
                        q.q.ack(g, (&d.partition, d.seq, d.attempts), AckStatus::Completed, now);
                    }
                    consistent(&q.q)?;
                }
                let d = q.q.depth(Some(g));
                let pending: u64 = d.partitions.iter().map(|p| p.3).sum();
                prop_assert_eq!(pending, 0, "group {:?} left with pending messages", g);
            }
        }
    }
}
