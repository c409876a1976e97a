use super::*;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits {
        max_bytes: 100,
        max_queues: 3,
        ..Limits::default()
    }
}

fn payloads(v: &[&str]) -> Vec<Arc<str>> {
    v.iter().map(|s| Arc::from(*s)).collect()
}

fn pop(q: &str) -> PopRequest {
    PopRequest {
        queue: q.into(),
        partition: None,
        group: None,
        batch: 10,
        wait: false,
        timeout: Duration::ZERO,
        auto_ack: false,
    }
}

#[tokio::test]
async fn ids_fence_other_runs_and_settle_this_one() {
    let e = Ephemeral::new(limits());
    e.push("q", "p:with:colons", payloads(&["1"])).unwrap();
    let d = e.pop(&pop("q")).await.unwrap();
    let id = e.id(&d[0]);
    let other = Ephemeral::new(limits());
    assert_eq!(
        other.ack("q", None, &[(id.clone(), AckStatus::Completed)]),
        [Outcome::Stale]
    );
    assert_eq!(
        e.ack(
            "q",
            None,
            &[
                (id.clone(), AckStatus::Completed),
                (id, AckStatus::Completed),
                ("garbage".into(), AckStatus::Completed),
            ]
        ),
        [Outcome::Acked, Outcome::Unknown, Outcome::Unknown]
    );
}

/// The budget counts payloads and a fixed overhead per message.
#[tokio::test]
async fn the_server_bounds_bytes_and_queues() {
    let o = queue::MESSAGE_OVERHEAD;
    let e = Ephemeral::new(Limits {
        max_bytes: 2 * o + 100,
        ..limits()
    });
    e.push("a", "p", payloads(&[&"x".repeat(60)])).unwrap();
    assert_eq!(
        e.push("b", "p", payloads(&[&"x".repeat(41)])),
        Err(EphemeralRefusal::NoRoom)
    );
    e.push("b", "p", payloads(&[&"x".repeat(40)])).unwrap();
    assert_eq!(e.bytes(), 2 * o + 100);
    e.push("c", "p", payloads(&[""])).unwrap_err();
    e.reset("a");
    assert_eq!(e.bytes(), o + 40);
    e.push("c", "p", payloads(&["1"])).unwrap();
    assert_eq!(
        e.pop(&pop("d")).await,
        Err(EphemeralRefusal::NoRoom),
        "a fourth queue"
    );
    assert!(e.remove("c"));
    assert_eq!(e.bytes(), o + 40);
}

/// A pop of up to 10 messages of `q` that waits up to `timeout`, running in a task of its own.
fn waiting(
    e: &Arc<Ephemeral>,
    timeout: Duration,
) -> tokio::task::JoinHandle<Result<Vec<Delivered>, EphemeralRefusal>> {
    let e = e.clone();
    tokio::spawn(async move {
        e.pop(&PopRequest {
            wait: true,
            timeout,
            ..pop("q")
        })
        .await
    })
}

#[tokio::test(start_paused = true)]
async fn a_waiting_pop_is_woken_by_a_push() {
    let e = Arc::new(Ephemeral::new(Limits::default()));
    let waiter = waiting(&e, Duration::from_secs(30));
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "the pop waits for a message");
    e.push("q", "p", payloads(&["1"])).unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_window_waits_for_its_count_within_the_timeout() {
    let e = Arc::new(Ephemeral::new(Limits::default()));
    e.declare(
        "q",
        Options {
            window: Window { ms: 0, count: 3 },
            ..Limits::default().defaults
        },
    )
    .unwrap();
    let waiter = waiting(&e, Duration::from_secs(5));
    for i in 0..3 {
        tokio::task::yield_now().await;
        e.push("q", "p", payloads(&[&i.to_string()])).unwrap();
    }
    assert_eq!(waiter.await.unwrap().unwrap().len(), 3);
}

#[test]
fn idle_implicit_queues_are_collected_and_declared_ones_stay() {
    let e = Ephemeral::new(Limits {
        idle: Duration::ZERO,
        ..Limits::default()
    });
    e.push("implicit", "p", payloads(&["1"])).unwrap();
    e.declare("declared", Limits::default().defaults).unwrap();
    e.sweep();
    assert_eq!(e.list().len(), 2, "it still holds a message");
    e.reset("implicit");
    e.sweep();
    let names: Vec<String> = e.list().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["declared"]);
}

#[test]
fn options_are_checked_and_unknown_ones_refused() {
    let l = Limits::default();
    let d = l.defaults;
    let o = parse_options(
        &json!({"maxLength": 5, "policy": "dropOldest", "ttlSeconds": 2,
                "windowBuffer": {"ms": 25, "count": 50}, "retryLimit": null}),
        &d,
        &l,
        false,
    )
    .unwrap();
    assert_eq!(o.max_length, 5);
    assert_eq!(o.policy, Policy::DropOldest);
    assert_eq!(o.ttl_ms, 2_000);
    assert_eq!(o.window, Window { ms: 25, count: 50 });
    assert_eq!(o.retry_limit, d.retry_limit);
    for bad in [
        json!({"ttlSecond": 1}),
        json!({"maxLength": 0}),
        json!({"maxLength": -1}),
        json!({"maxLength": 1.5}),
        json!({"maxBytes": l.max_bytes + 1}),
        json!({"policy": "drop"}),
        json!({"windowBuffer": {"ms": "1"}}),
        json!({"windowBuffer": {"size": 1}}),
        json!([1]),
    ] {
        assert!(parse_options(&bad, &d, &l, false).is_err(), "{bad}");
        assert!(
            parse_options(&bad, &d, &l, true).is_ok() || !bad.is_object(),
            "{bad}"
        );
    }
    let back = parse_options(&options_json(&o), &d, &l, false).unwrap();
    assert_eq!(back, o, "what a listing shows configures the same queue");
}

#[test]
fn ack_statuses_follow_the_clients_table() {
    for s in [
        None,
        Some("completed"),
        Some("success"),
        Some("acked"),
        Some("ok"),
    ] {
        assert_eq!(ack_status(s), AckStatus::Completed, "{s:?}");
    }
    for s in ["failed", "retry", "COMPLETED", "nope"] {
        assert_eq!(ack_status(Some(s)), AckStatus::Failed, "{s}");
    }
}

proptest! {
    #[test]
    fn ids_round_trip(
        run in any::<u64>(),
        partition in "\\PC{1,40}",
        seq in any::<u64>(),
        attempt in any::<u32>(),
    ) {
        let id = format!("e:{run:x}:{partition}:{seq}.{attempt}");
        prop_assert_eq!(parse_id(&id), Some((run, partition.as_str(), seq, attempt)));
    }

    #[test]
    fn any_text_parses_or_is_refused(id in "\\PC{0,60}") {
        let _ = parse_id(&id);
    }
}

/// Pushes racing with deletes, resets and the collection of idle queues: no push lands in a
/// queue the registry dropped (its bytes would stay counted with no queue holding them).
#[test]
fn the_byte_count_matches_the_queues_through_racing_removals() {
    let e = Arc::new(Ephemeral::new(Limits {
        idle: Duration::ZERO,
        max_bytes: 1 << 30,
        ..Limits::default()
    }));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..3000 {
                    let q = format!("q{}", i % 5);
                    e.push(&q, "p", payloads(&["12345"])).unwrap();
                    if i % 7 == t {
                        e.remove(&q);
                    }
                    if i % 11 == 0 {
                        e.reset(&q);
                    }
                    if i % 13 == 0 {
                        e.sweep();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let held: u64 = e
        .list()
        .iter()
        .map(|s| s.bytes + s.length * queue::MESSAGE_OVERHEAD)
        .sum();
    assert_eq!(e.bytes(), held);
}
