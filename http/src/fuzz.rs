//! Property tests of every parser of request input — query strings, path segments, JSON bodies,
//! push items, acknowledgements, transactions (with their key/value and timer riders), configure
//! options, reads by offset and partition discovery, key/value, lock and timer batches,
//! ephemeral pushes, pops, acks and declarations, stream registrations, state reads and cycles:
//! arbitrary input never panics, and every refusal is a 4xx. `PROPTEST_CASES` sets the number of cases (256 by default).

use proptest::prelude::*;
use serde_json::value::RawValue;

use crate::body;
use crate::query::{Query, percent_decode};
use crate::routes::ephemeral as eph;
use crate::routes::kv::{parse, parse_locks, parse_timers};
use crate::routes::messages::{
    parse_ack, parse_items, parse_items_each, parse_transaction, push_body_items,
};
use crate::routes::queues::parse_configure;
use crate::routes::reads::{parse_changed, parse_fetch};
use crate::routes::streams::{parse_cycle, parse_register, parse_state_get};

/// JSON-looking text: fragments of the API's shapes, mixed with anything.
fn jsonish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\"[a-z\\\\u0-9 ]{0,12}\"",
        Just("1e400".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        // A UUID, so bodies naming a query, partition or lease get past that check.
        Just("\"6d1bfcac-64fd-4d59-901a-e2b3d9d1e0fd\"".to_owned()),
        // Operation names of the key/value, lock and timer batches.
        prop::sample::select(vec![
            "get",
            "getMany",
            "getPrefix",
            "put",
            "putIfAbsent",
            "delete",
            "check",
            "incr",
            "acquire",
            "renew",
            "release",
            "schedule",
            "reschedule",
            "cancel",
            "upsert",
            "completed"
        ])
        .prop_map(|op| format!("\"{op}\"")),
    ];
    let keys = prop::sample::select(vec![
        "items",
        "queue",
        "partition",
        "payload",
        "transactionId",
        "traceId",
        "acknowledgments",
        "partitionId",
        "status",
        "consumerGroup",
        "error",
        "leaseId",
        "operations",
        "type",
        "requiredLeases",
        "options",
        "leaseTime",
        "maxSize",
        "namespace",
        "entries",
        "offset",
        "maxBytes",
        "since",
        "after",
        "limit",
        "op",
        "ns",
        "key",
        "keys",
        "value",
        "ttlSeconds",
        "forever",
        "expect",
        "required",
        "delta",
        "name",
        "token",
        "owner",
        "timerKey",
        "delayMs",
        "txn",
        "kv",
        "timers",
        "messages",
        "acks",
        "id",
        "group",
        "maxLength",
        "policy",
        "leaseSeconds",
        "retryLimit",
        "windowBuffer",
        "ms",
        "count",
        "query_id",
        "partition_id",
        "consumer_group",
        "state_ops",
        "push_items",
        "ack",
        "source_queue",
        "sink_queue",
        "config_hash",
        "reset",
        "key_prefix",
        "ripe_at_or_before",
    ]);
    atom.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                let fields: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

fn client_error(e: &crate::error::ApiError) -> bool {
    e.status.is_client_error()
}

proptest! {
    #[test]
    fn query_and_path_decoders(raw in ".{0,64}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = percent_decode(&raw, true);
        let _ = percent_decode(&String::from_utf8_lossy(&bytes), false);
        match Query::parse(Some(&raw)) {
            Ok(q) => {
                for key in ["batch", "timeout", "limit"] {
                    if let Err(e) = q.int(key, Some(1), 1, 100) {
                        prop_assert!(client_error(&e));
                    }
                }
                if let Err(e) = q.timestamp("from") {
                    prop_assert!(client_error(&e));
                }
                match eph::parse_pop(&q, std::time::Duration::from_secs(60)) {
                    Ok(p) => {
                        prop_assert!((1..=queen_engine::ephemeral::BATCH_MAX).contains(&p.batch));
                        prop_assert!(p.timeout <= std::time::Duration::from_secs(60));
                        prop_assert!(queen_engine::check_name("q", &p.queue).is_ok());
                    }
                    Err(e) => prop_assert!(client_error(&e)),
                }
            }
            Err(e) => prop_assert!(client_error(&e)),
        }
    }

    #[test]
    fn bodies_parse_or_are_refused_with_a_4xx(text in jsonish(), raw in prop::collection::vec(any::<u8>(), 0..128)) {
        for input in [text.as_bytes(), &raw[..]] {
            if let Err(e) = body::json::<serde_json::Value>(input) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse_ack(input) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse_transaction(input, None) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse_configure(input) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse(input) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse_locks(input) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse_timers(input) {
                prop_assert!(client_error(&e));
            }
            match eph::parse_push(input) {
                Ok((q, p, payloads)) => {
                    prop_assert!(queen_engine::check_name("q", &q).is_ok());
                    prop_assert!(queen_engine::check_name("p", &p).is_ok());
                    for text in &payloads {
                        prop_assert!(serde_json::from_str::<&RawValue>(text).is_ok());
                    }
                }
                Err(e) => prop_assert!(client_error(&e)),
            }
            if let Err(e) = eph::parse_ack(input) {
                prop_assert!(client_error(&e));
            }
            let limits = queen_engine::ephemeral::Limits::default();
            if let Err(e) = eph::parse_configure(input, &limits) {
                prop_assert!(client_error(&e));
            }
            match parse_fetch(input) {
                Ok((entries, max_bytes)) => {
                    prop_assert!(max_bytes >= 1);
                    for e in &entries {
                        prop_assert!(e.offset >= 0 && e.max_bytes >= 1);
                        prop_assert!(queen_engine::check_name("q", &e.queue).is_ok());
                        prop_assert!(queen_engine::check_name("p", &e.partition).is_ok());
                    }
                }
                Err(e) => prop_assert!(client_error(&e)),
            }
            if let Err(e) = parse_register(input) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse_state_get(input) {
                prop_assert!(client_error(&e));
            }
            if let Err(e) = parse_cycle(input, None) {
                prop_assert!(client_error(&e));
            }
            match parse_changed(input) {
                Ok(queries) => {
                    for q in &queries {
                        prop_assert!((1..=1000).contains(&q.limit));
                        prop_assert!(q.after.is_none_or(|a| a >= 0));
                    }
                }
                Err(e) => prop_assert!(client_error(&e)),
            }
        }
        if let Ok(items) = serde_json::from_str::<&RawValue>(&text) {
            let read = parse_items(Some(items), Some("sub"));
            if let Err(e) = &read {
                prop_assert!(client_error(e));
            }
            // The one-pass read and the item-by-item walk agree, refusals included.
            prop_assert_eq!(read, parse_items_each(Some(items), Some("sub")));
        }
    }
}

/// Push item lists: mostly objects with the item's fields, valid or not, now and then
/// something else.
pub(crate) fn item_lists() -> impl Strategy<Value = String> {
    let value = prop::sample::select(vec![
        "\"q.a\"",
        "\"p\\u0031\"",
        "\"\"",
        "\"\\u0000\"",
        "\"6d1bfcac-64fd-4d59-901a-e2b3d9d1e0fd\"",
        "null",
        "7",
        "{\"a\":[1,\"\\\"\"]}",
        "[]",
    ]);
    let key = prop::sample::select(vec![
        "queue",
        "partition",
        "payload",
        "transactionId",
        "traceId",
        "other",
        "qu\\u0065ue",
    ]);
    let object = prop::collection::vec((key, value.clone()), 0..6).prop_map(|kv| {
        let fields: Vec<String> = kv
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", fields.join(","))
    });
    let element = prop_oneof![8 => object, 1 => value.prop_map(str::to_owned)];
    prop::collection::vec(element, 0..5).prop_map(|v| format!("[{}]", v.join(",")))
}

proptest! {
    #[test]
    fn push_items_read_in_one_pass_as_item_by_item(text in item_lists()) {
        let raw: &RawValue = serde_json::from_str(&text).expect("the strategy writes JSON");
        let read = parse_items(Some(raw), None);
        if let Err(e) = &read {
            prop_assert!(client_error(e));
        }
        prop_assert_eq!(&read, &parse_items_each(Some(raw), None));
        // The push route reads the whole body in one pass: the same items, the same refusals.
        let body = format!("{{\"other\":[{text}],\"items\":{text}}}");
        prop_assert_eq!(read, push_body_items(body.as_bytes(), None));
    }
}
