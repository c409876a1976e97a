#![allow(clippy::unwrap_used)]
mod common;
use common::*;

#[tokio::test]
async fn push_pop_ack_roundtrip() {
    let e = engine("smoke").await;
    push(&e, "q", "p", &["1", "2", "3"]).await;
    let r = pop(&e, &pop_req("q", Some("p"), "__QUEUE_MODE__", 10)).await;
    assert_eq!(payloads(&r), vec!["1", "2", "3"]);
    let r = r.unwrap();
    let out = e
        .ack(vec![ack_of(&r, 2, queen_engine::AckStatus::Completed)])
        .await
        .unwrap();
    assert!(out[0].success, "{out:?}");
    assert!(out[0].lease_released);
    assert!(
        pop(&e, &pop_req("q", None, "__QUEUE_MODE__", 10))
            .await
            .is_none()
    );
}
