//! What Queen's published clients rely on, item by item, through HTTP against a real
//! PostgreSQL: every subscription mode the clients send, error texts they match on, and
//! encryption working on the default set-up (embedded PostgreSQL, no key configured).

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::Server;

/// The payloads an autoAck pop of `group` gets (204: none).
async fn pop_group(s: &Server, queue: &str, group: &str, mode: Option<&str>) -> Vec<Value> {
    let mut path = format!("/api/v1/pop/queue/{queue}?consumerGroup={group}&autoAck=true&batch=10");
    if let Some(m) = mode {
        path.push_str(&format!("&subscriptionMode={m}"));
    }
    s.pop(&path)
        .await
        .iter()
        .map(|m| m["data"].clone())
        .collect()
}

#[tokio::test]
async fn every_subscription_mode_the_clients_send_is_accepted() {
    let s = Server::start("compat_submodes", &[]).await;
    s.push("modes", "p", &[json!(1), json!(2)]).await;
    // From the first message: every mode but new / new-only (and no mode at all).
    for (group, mode) in [
        ("g-all", Some("all")),
        ("g-fb", Some("from_beginning")),
        ("g-ts", Some("timestamp")),
        ("g-empty", Some("")),
        ("g-none", None),
    ] {
        assert_eq!(
            pop_group(&s, "modes", group, mode).await,
            vec![json!(1), json!(2)],
            "{mode:?}"
        );
    }
    // From the end: only what is pushed after the group's first pop.
    for mode in ["new", "new-only"] {
        let group = format!("g-{mode}");
        assert!(pop_group(&s, "modes", &group, Some(mode)).await.is_empty());
    }
    s.push("modes", "p", &[json!(3)]).await;
    for mode in ["new", "new-only"] {
        let group = format!("g-{mode}");
        assert_eq!(pop_group(&s, "modes", &group, None).await, vec![json!(3)]);
    }
    // What none of Queen's clients sends is refused, with the accepted list.
    let r = s
        .get("/api/v1/pop/queue/modes?consumerGroup=x&subscriptionMode=latest")
        .await
        .unwrap();
    r.assert_error(400, "invalid_parameter");
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    for accepted in ["all", "from_beginning", "new", "new-only"] {
        assert!(msg.contains(accepted), "{msg}");
    }
}

#[tokio::test]
async fn the_server_wide_default_subscription_mode_applies_to_pops_without_one() {
    let s = Server::start(
        "compat_submode_default",
        &[("DEFAULT_SUBSCRIPTION_MODE", "new")],
    )
    .await;
    s.push("dflt", "p", &[json!("old")]).await;
    assert!(pop_group(&s, "dflt", "late", None).await.is_empty());
    // A mode given by the pop wins over the default.
    assert_eq!(
        pop_group(&s, "dflt", "early", Some("from_beginning")).await,
        vec![json!("old")]
    );
    s.push("dflt", "p", &[json!("new")]).await;
    assert_eq!(
        pop_group(&s, "dflt", "late", None).await,
        vec![json!("new")]
    );
    drop(s);

    // A value no client uses stops the server at start with the accepted list.
    let db = queen_wire::embedded::test_config("compat_submode_bad")
        .await
        .unwrap();
    let dir = support::buffer_dir("compat_submode_bad");
    let (status, stderr) =
        Server::refused_start(&db, &dir, &[("DEFAULT_SUBSCRIPTION_MODE", "latest")]);
    assert!(!status.success());
    assert!(stderr.contains("from_beginning"), "{stderr}");
}

#[tokio::test]
async fn error_texts_clients_match_on() {
    let s = Server::start("compat_texts", &[]).await;
    let pushed = s.push("texts", "p", &[json!("a")]).await;
    let pid = pushed[0]["partition_id"].as_str().unwrap();

    // An ack of a transactionId the partition does not hold: `unresolvable`, beside Queen's
    // `Message not found`, for every status.
    for status in ["completed", "failed", "retry", "dlq"] {
        let r = s
            .post(
                "/api/v1/ack",
                &json!({"transactionId": "never-pushed", "partitionId": pid, "status": status}),
            )
            .await;
        assert_eq!(r.status, 200);
        let out = &r.json()[0];
        assert_eq!(out["success"], false, "{out}");
        let e = out["error"].as_str().unwrap();
        assert!(
            e.contains("unresolvable") && e.contains("Message not found"),
            "{e}"
        );
    }

    // A transaction whose required lease is not live: rolled back, and it says so.
    let popped = s.get("/api/v1/pop/queue/texts").await.unwrap().json();
    let lease = popped["leaseId"].as_str().unwrap().to_owned();
    let tx = popped["messages"][0]["transactionId"].clone();
    let ack = json!({"transactionId": tx, "partitionId": pid, "leaseId": lease});
    assert_eq!(s.post("/api/v1/ack", &ack).await.json()[0]["success"], true);
    let r = s
        .post(
            "/api/v1/transaction",
            &json!({
                "operations": [{"type": "push", "items": [{"queue": "texts-out", "payload": 1}]}],
                "requiredLeases": [lease],
            }),
        )
        .await;
    assert_eq!(r.status, 200);
    let t = r.json();
    assert_eq!(t["success"], false, "{t}");
    let e = t["error"].as_str().unwrap();
    assert!(
        e.starts_with("transaction rolled back: lease") && e.ends_with("is not live"),
        "{e}"
    );
    assert!(e.contains(&lease), "{e}");
    // Nothing of it was applied.
    assert_eq!(
        s.get("/api/v1/pop/queue/texts-out").await.unwrap().status,
        204
    );
}

/// A fresh data directory the embedded PostgreSQL (run as `postgres` when we are root) can use.
fn data_dir(name: &str) -> std::path::PathBuf {
    let d = support::buffer_dir(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn encryption_works_out_of_the_box_on_the_embedded_database() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = data_dir("compat_embedded_key");
    let key_file = dir.join("encryption.key");

    let s = Server::start_embedded(&dir, &[]).await;
    let r = s
        .post(
            "/api/v1/configure",
            &json!({"queue": "secret", "options": {"encryptionEnabled": true}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .post(
            "/api/v1/push",
            &json!({"items": [
                {"queue": "secret", "payload": {"card": "4111"}},
                {"queue": "secret", "payload": {"card": "5500"}},
            ]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let log = s.stop_and_log();

    let key = std::fs::read_to_string(&key_file).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 64, "a 64-hex-character key");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    assert_eq!(
        log.matches("generated the encryption key").count(),
        1,
        "said once: {log}"
    );
    assert!(!log.contains(key), "the key is never logged");

    // The next start uses the same key: the message pops back decrypted, and nothing new is
    // generated or said.
    let s = Server::start_embedded(&dir, &[]).await;
    let popped = s
        .get("/api/v1/pop/queue/secret?autoAck=true")
        .await
        .unwrap()
        .json();
    assert_eq!(popped["messages"][0]["data"], json!({"card": "4111"}));
    let log = s.stop_and_log();
    assert!(!log.contains("generated the encryption key"), "{log}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);

    // QUEEN_ENCRYPTION_KEY wins; the generated key still opens what it sealed.
    let other = "ab".repeat(32);
    let s = Server::start_embedded(&dir, &[("QUEEN_ENCRYPTION_KEY", other.as_str())]).await;
    s.post(
        "/api/v1/push",
        &json!({"items": [{"queue": "secret", "payload": "new"}]}),
    )
    .await;
    let popped = s
        .get("/api/v1/pop/queue/secret?batch=10&autoAck=true")
        .await
        .unwrap()
        .json();
    let data: Vec<&Value> = popped["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["data"])
        .collect();
    assert_eq!(data, [&json!({"card": "5500"}), &json!("new")], "{popped}");
    drop(s.stop_and_log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_external_database_without_a_key_refuses_and_says_how_to_configure_one() {
    let s = Server::start("compat_no_key", &[]).await;
    s.post(
        "/api/v1/configure",
        &json!({"queue": "enc", "options": {"encryptionEnabled": true}}),
    )
    .await;
    let r = s
        .post(
            "/api/v1/push",
            &json!({"items": [{"queue": "enc", "payload": 1}]}),
        )
        .await;
    r.assert_error(409, "encryption_key_missing");
    let e = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        e.contains("QUEEN_ENCRYPTION_KEY") && e.contains("every server"),
        "{e}"
    );
}

/// JSON values as text, each to pop back exactly as pushed.
fn fidelity_table() -> Vec<String> {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let big = "9".repeat(400);
    [
        "null",
        "false",
        "true",
        "0",
        "-0",
        "1.0",
        "1.50",
        "1e400",
        "-1E-400",
        "12345678901234567890123456789",
        big.as_str(),
        "0.1",
        r#""""#,
        r#""\u0000""#,
        r#""\ud800""#,
        r#""é😀 \u00e9\n""#,
        "[]",
        "{}",
        "[1,[2,[3]]]",
        r#"{"b":1,"a":2}"#,
        r#"{"a":1,"a":2}"#,
        r#"{ "sp" : [ 1 , 2 ] }"#,
        deep.as_str(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The raw text of every `"data"` value of a pop response, in order.
fn raw_data(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(r#""data":"#) {
        let v = &rest[at + 7..];
        let (mut depth, mut in_str, mut esc) = (0i32, false, false);
        let mut end = v.len();
        for (i, c) in v.char_indices() {
            if in_str {
                match (esc, c) {
                    (true, _) => esc = false,
                    (false, '\\') => esc = true,
                    (false, '"') => in_str = false,
                    _ => {}
                }
                if !in_str && depth == 0 {
                    end = i + 1;
                    break;
                }
                continue;
            }
            match c {
                '"' => in_str = true,
                '[' | '{' => depth += 1,
                ']' | '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ',' if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push(v[..end].to_owned());
        rest = &v[end..];
    }
    out
}

/// Pushes every value of the table to `queue` (one request, in order), then pops them all.
async fn push_table_and_pop(s: &Server, queue: &str) -> Vec<String> {
    let table = fidelity_table();
    let items: Vec<String> = table
        .iter()
        .map(|v| format!(r#"{{"queue":"{queue}","partition":"p","payload":{v}}}"#))
        .collect();
    let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
    let r = s.post_raw("/api/v1/push", body.as_bytes()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got.len() < table.len() {
        assert!(std::time::Instant::now() < deadline, "popped {got:?}");
        let r = s
            .get(&format!("/api/v1/pop/queue/{queue}?batch=100&autoAck=true"))
            .await
            .unwrap();
        match r.status {
            200 => got.extend(raw_data(&r.body)),
            204 => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            other => panic!("pop answered {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    got
}

#[tokio::test]
async fn every_json_value_pops_back_exactly_as_pushed() {
    let key = "3c".repeat(32);
    let s = Server::start("compat_fidelity", &[("QUEEN_ENCRYPTION_KEY", key.as_str())]).await;
    let table = fidelity_table();

    // Plain.
    assert_eq!(push_table_and_pop(&s, "plain").await, table);

    // Encrypted.
    s.post(
        "/api/v1/configure",
        &json!({"queue": "sealed", "options": {"encryptionEnabled": true}}),
    )
    .await;
    assert_eq!(push_table_and_pop(&s, "sealed").await, table);

    // Through the disk buffer: pushes go to it while push maintenance is on, and are
    // replayed when it is turned off.
    s.post("/api/v1/system/maintenance", &json!({"enabled": true}))
        .await;
    let items: Vec<String> = table
        .iter()
        .map(|v| format!(r#"{{"queue":"buffered","partition":"p","payload":{v}}}"#))
        .collect();
    let r = s
        .post_raw(
            "/api/v1/push",
            format!(r#"{{"items":[{}]}}"#, items.join(",")).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "buffered")
    );
    s.post("/api/v1/system/maintenance", &json!({"enabled": false}))
        .await;
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got.len() < table.len() {
        assert!(std::time::Instant::now() < deadline, "popped {got:?}");
        let r = s
            .get("/api/v1/pop/queue/buffered?batch=100&autoAck=true")
            .await
            .unwrap();
        if r.status == 200 {
            got.extend(raw_data(&r.body));
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(got, table);

    // An absent payload is {}.
    s.post("/api/v1/push", &json!({"items": [{"queue": "absent"}]}))
        .await;
    let r = s.get("/api/v1/pop/queue/absent").await.unwrap();
    assert_eq!(raw_data(&r.body), ["{}"]);
}
