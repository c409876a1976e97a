//! JWT auth end to end: the role every route class needs, tokens outside their validity
//! window in every JSON form of `exp` / `nbf`, and RS256 / EdDSA tokens verified with a PEM
//! public key or with a JWKS served by the test (`docs/auth.md`). Keys are generated per test
//! run with the `openssl` command-line tool.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Server, request_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "test-secret-with-some-length";

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn hs(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Signs with a private key in PEM (RSA for RS*, Ed25519 for EdDSA), naming `kid`.
fn signed(alg: Algorithm, pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the `openssl` tool generates the test keys");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Key pairs made for this run, with their JWK forms.
struct Keys {
    rsa_private: String,
    rsa_public: String,
    rsa_jwk: Value,
    ed_private: String,
    ed_public: String,
    ed_jwk: Value,
}

fn keys(dir: &Path) -> Keys {
    std::fs::create_dir_all(dir).unwrap();
    let (rsa, ed) = (dir.join("rsa.pem"), dir.join("ed.pem"));
    let (rsa, ed) = (rsa.to_str().unwrap(), ed.to_str().unwrap());
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        rsa,
    ]);
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", ed]);
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let modulus = text(openssl(&["rsa", "-in", rsa, "-noout", "-modulus"]));
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    // An Ed25519 SubjectPublicKeyInfo ends with the 32 bytes of the key.
    let spki = openssl(&["pkey", "-in", ed, "-pubout", "-outform", "DER"]);
    let x = &spki[spki.len() - 32..];
    Keys {
        rsa_private: std::fs::read_to_string(rsa).unwrap(),
        rsa_public: text(openssl(&["pkey", "-in", rsa, "-pubout"])),
        rsa_jwk: json!({"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                        "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"}),
        ed_private: std::fs::read_to_string(ed).unwrap(),
        ed_public: text(openssl(&["pkey", "-in", ed, "-pubout"])),
        ed_jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": "k2", "use": "sig",
                       "x": URL_SAFE_NO_PAD.encode(x)}),
    }
}

/// A request with an optional bearer token.
async fn call(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> u16 {
    s.call_as(method, path, body, token).await.status
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Public,
    ReadOnly,
    ReadWrite,
    Admin,
}

#[tokio::test]
async fn every_route_class_needs_queens_role() {
    let s = Server::start(
        "auth_routes",
        &[("JWT_ENABLED", "true"), ("JWT_SECRET", SECRET)],
    )
    .await;
    let ro = hs(&json!({"sub": "viewer", "role": "read-only"}));
    let rw = hs(&json!({"sub": "svc-orders", "role": "read-write"}));
    let admin = hs(&json!({"sub": "ops", "roles": ["read-only", "admin"]}));

    // A message to aim the message routes at, pushed by a read-write token.
    let r = request_with(
        s.port,
        "POST",
        "/api/v1/push",
        Some(
            json!({"items": [{"queue": "sec", "payload": {"a": 1}}]})
                .to_string()
                .as_bytes(),
        ),
        &[("Authorization", &format!("Bearer {rw}"))],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201);
    let out = r.json();
    let (pid, tx) = (
        out[0]["partition_id"].as_str().unwrap().to_owned(),
        out[0]["transaction_id"].as_str().unwrap().to_owned(),
    );
    let msg = format!("{pid}/{tx}");
    // The server stamps the token's `sub` on what it pushed.
    let detail = request_with(
        s.port,
        "GET",
        &format!("/api/v1/messages/{msg}"),
        None,
        &[("Authorization", &format!("Bearer {ro}"))],
    )
    .await
    .unwrap()
    .json();
    assert_eq!(detail["producerSub"], "svc-orders");
    let ack = json!({"transactionId": tx, "partitionId": pid});
    let routes: Vec<(&str, String, Option<Value>, Need)> = vec![
        ("GET", "/health".into(), None, Need::Public),
        ("GET", "/ready".into(), None, Need::Public),
        ("GET", "/metrics".into(), None, Need::Public),
        ("GET", "/metrics/prometheus".into(), None, Need::Public),
        (
            "GET",
            "/api/v1/resources/queues".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/resources/queues/sec".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/resources/namespaces".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/resources/tasks".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/resources/overview".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/messages?queue=sec".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            format!("/api/v1/messages/{msg}"),
            None,
            Need::ReadOnly,
        ),
        ("GET", "/api/v1/dlq".into(), None, Need::ReadOnly),
        ("GET", format!("/api/v1/traces/{msg}"), None, Need::ReadOnly),
        ("GET", "/api/v1/traces/names".into(), None, Need::ReadOnly),
        (
            "GET",
            "/api/v1/traces/by-name/n".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/consumer-groups".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/consumer-groups/lagging".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/consumer-groups/g".into(),
            None,
            Need::ReadOnly,
        ),
        ("GET", "/api/v1/status".into(), None, Need::ReadOnly),
        ("GET", "/api/v1/status/queues".into(), None, Need::ReadOnly),
        (
            "GET",
            "/api/v1/status/queues/sec".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/status/queues/sec/messages".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/status/analytics".into(),
            None,
            Need::ReadOnly,
        ),
        ("GET", "/api/v1/status/buffers".into(), None, Need::ReadOnly),
        (
            "POST",
            "/api/v1/fetch".into(),
            Some(json!({"entries": [{"queue": "sec", "partition": "Default"}]})),
            Need::ReadOnly,
        ),
        (
            "POST",
            "/api/v1/partitions/changed".into(),
            Some(json!({"entries": [{"queue": "sec"}]})),
            Need::ReadOnly,
        ),
        (
            "POST",
            "/api/v1/push".into(),
            Some(json!({"items": []})),
            Need::ReadWrite,
        ),
        (
            "GET",
            "/api/v1/pop/queue/none".into(),
            None,
            Need::ReadWrite,
        ),
        (
            "GET",
            "/api/v1/pop/queue/none/partition/p".into(),
            None,
            Need::ReadWrite,
        ),
        (
            "GET",
            "/api/v1/pop?namespace=none".into(),
            None,
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/ack".into(),
            Some(ack.clone()),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/ack/batch".into(),
            Some(json!({"acknowledgments": [ack]})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/transaction".into(),
            Some(json!({"operations": []})),
            Need::ReadWrite,
        ),
        (
            "POST",
            format!("/api/v1/lease/{}/extend", uuid::Uuid::nil()),
            Some(json!({})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/configure".into(),
            Some(json!({"queue": "sec"})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/traces".into(),
            Some(json!({"transactionId": tx, "partitionId": pid, "data": {}})),
            Need::ReadWrite,
        ),
        (
            "POST",
            format!("/api/v1/messages/{msg}/retry"),
            None,
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/consumer-groups/g/subscription".into(),
            Some(json!({"subscriptionTimestamp": "2030-01-01T00:00:00Z"})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/consumer-groups/g/queues/sec/seek".into(),
            Some(json!({"toEnd": true})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/consumer-groups/g/queues/sec/partitions/Default/seek".into(),
            Some(json!({"toEnd": true})),
            Need::ReadWrite,
        ),
        (
            "DELETE",
            format!("/api/v1/messages/{msg}"),
            None,
            Need::ReadWrite,
        ),
        // The key/value store, locks and timers: every call reads and writes.
        (
            "POST",
            "/api/v1/kv".into(),
            Some(json!({"operations": []})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/locks".into(),
            Some(json!({"operations": []})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/timers".into(),
            Some(json!({"operations": []})),
            Need::ReadWrite,
        ),
        ("GET", "/api/v1/timers/sec".into(), None, Need::ReadOnly),
        // Ephemeral queues: the two status reads are read-only, everything else (the pop
        // included: it leases) read-write.
        (
            "POST",
            "/api/v1/ephemeral/push".into(),
            Some(json!({"queue": "sec", "messages": []})),
            Need::ReadWrite,
        ),
        (
            "GET",
            "/api/v1/ephemeral/pop?queue=sec".into(),
            None,
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/ephemeral/ack".into(),
            Some(json!({"queue": "sec", "acks": []})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/ephemeral/configure".into(),
            Some(json!({"queue": "sec-declared", "options": {}})),
            Need::ReadWrite,
        ),
        (
            "POST",
            "/api/v1/ephemeral/reset".into(),
            Some(json!({"queue": "sec"})),
            Need::ReadWrite,
        ),
        (
            "DELETE",
            "/api/v1/ephemeral/queue/sec-declared".into(),
            None,
            Need::ReadWrite,
        ),
        (
            "GET",
            "/api/v1/ephemeral/queues".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/ephemeral/queues/sec/depth".into(),
            None,
            Need::ReadOnly,
        ),
        (
            "GET",
            "/api/v1/system/maintenance".into(),
            None,
            Need::Admin,
        ),
        (
            "POST",
            "/api/v1/system/maintenance".into(),
            Some(json!({"enabled": false})),
            Need::Admin,
        ),
        (
            "GET",
            "/api/v1/system/maintenance/pop".into(),
            None,
            Need::Admin,
        ),
        (
            "POST",
            "/api/v1/system/maintenance/pop".into(),
            Some(json!({"enabled": false})),
            Need::Admin,
        ),
        (
            "DELETE",
            "/api/v1/consumer-groups/g/queues/sec".into(),
            None,
            Need::Admin,
        ),
        (
            "DELETE",
            "/api/v1/consumer-groups/g".into(),
            None,
            Need::Admin,
        ),
        (
            "DELETE",
            "/api/v1/resources/queues/sec".into(),
            None,
            Need::Admin,
        ),
    ];
    let tokens = [
        (Need::ReadOnly, ro.as_str()),
        (Need::ReadWrite, rw.as_str()),
        (Need::Admin, admin.as_str()),
    ];
    for (method, path, body, need) in &routes {
        let anonymous = call(&s, method, path, body.as_ref(), None).await;
        if *need == Need::Public {
            assert!(anonymous < 400, "{method} {path} is public: {anonymous}");
            continue;
        }
        assert_eq!(anonymous, 401, "{method} {path} without a token");
        for (role, token) in tokens {
            let status = call(&s, method, path, body.as_ref(), Some(token)).await;
            if role < *need {
                assert_eq!(status, 403, "{method} {path} with {role:?}");
            } else {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} with {role:?}: {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn tokens_outside_their_validity_window_are_refused_in_every_form() {
    let s = Server::start(
        "auth_times",
        &[("JWT_ENABLED", "true"), ("JWT_SECRET", SECRET)],
    )
    .await;
    let t = now();
    let past = t - 3600.0;
    let future = t + 3600.0;
    let refused = [
        ("exp", json!(past.floor() + 0.5)),
        ("exp", json!(past as i64)),
        ("exp", json!(format!("{}", past as i64))),
        ("exp", json!("never")),
        ("exp", json!(null)),
        ("exp", json!({"at": future})),
        ("nbf", json!(future + 0.5)),
        ("nbf", json!(future as i64)),
        ("nbf", json!(format!("{}", future as i64))),
        ("nbf", json!(true)),
    ];
    let routes: [(&str, &str, Option<Value>); 3] = [
        ("GET", "/api/v1/resources/queues", None),
        ("POST", "/api/v1/push", Some(json!({"items": []}))),
        ("GET", "/api/v1/system/maintenance", None),
    ];
    for (claim, value) in &refused {
        let token = hs(&json!({"sub": "x", "role": "admin", *claim: value}));
        for (method, path, body) in &routes {
            let status = call(&s, method, path, body.as_ref(), Some(&token)).await;
            assert_eq!(status, 401, "{claim} = {value} on {method} {path}");
        }
    }
    // Inside the window, whatever the number's form.
    for (exp, nbf) in [
        (json!(future + 0.5), json!(past + 0.5)),
        (json!(future as i64), json!(past as i64)),
        (json!(t + 5.0), json!(t + 5.0)),
    ] {
        let token = hs(&json!({"role": "admin", "exp": exp, "nbf": nbf}));
        for (method, path, body) in &routes {
            let status = call(&s, method, path, body.as_ref(), Some(&token)).await;
            assert!(
                status < 400,
                "exp {exp} nbf {nbf} on {method} {path}: {status}"
            );
        }
    }
}

#[tokio::test]
async fn rs256_and_eddsa_tokens_verify_with_a_pem_public_key() {
    let dir = support::buffer_dir("auth_pem_keys");
    let k = keys(&dir);
    let claims = json!({"sub": "svc", "role": "read-only", "exp": now() + 600.0});
    let path = "/api/v1/resources/queues";

    let s = Server::start(
        "auth_rs256",
        &[
            ("JWT_ENABLED", "true"),
            ("JWT_ALGORITHM", "RS256"),
            ("JWT_PUBLIC_KEY", k.rsa_public.as_str()),
        ],
    )
    .await;
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let token = signed(alg, &k.rsa_private, None, &claims);
        assert_eq!(
            call(&s, "GET", path, None, Some(&token)).await,
            200,
            "{alg:?}"
        );
    }
    // Another family, another key, or a token re-signed as HS256 with the public key as the
    // secret (the classic algorithm confusion): refused.
    let ed = signed(Algorithm::EdDSA, &k.ed_private, None, &claims);
    assert_eq!(call(&s, "GET", path, None, Some(&ed)).await, 401);
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(k.rsa_public.as_bytes()),
    )
    .unwrap();
    assert_eq!(call(&s, "GET", path, None, Some(&confused)).await, 401);
    // One character of the signature changed (in the middle: the last one may carry unused
    // bits).
    let token = signed(Algorithm::RS256, &k.rsa_private, None, &claims);
    let at = token.rfind('.').unwrap() + 20;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    assert_eq!(call(&s, "GET", path, None, Some(&tampered)).await, 401);
    drop(s);

    let s = Server::start(
        "auth_eddsa",
        &[
            ("JWT_ENABLED", "true"),
            ("JWT_ALGORITHM", "EdDSA"),
            ("JWT_PUBLIC_KEY", k.ed_public.as_str()),
        ],
    )
    .await;
    assert_eq!(call(&s, "GET", path, None, Some(&ed)).await, 200);
    let rs = signed(Algorithm::RS256, &k.rsa_private, None, &claims);
    assert_eq!(call(&s, "GET", path, None, Some(&rs)).await, 401);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A JWKS endpoint: serves the current document and counts the fetches.
struct JwksServer {
    port: u16,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(doc: Value) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let doc = Arc::new(Mutex::new(doc));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (d, f) = (doc.clone(), fetches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = d.lock().unwrap().to_string();
            f.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    JwksServer { port, doc, fetches }
}

#[tokio::test]
async fn jwks_keys_issuer_audience_and_auto_algorithm() {
    let dir = support::buffer_dir("auth_jwks_keys");
    let k = keys(&dir);
    let jwks = jwks_server(json!({"keys": [k.rsa_jwk]})).await;
    let url = format!("http://127.0.0.1:{}/.well-known/jwks.json", jwks.port);
    let s = Server::start(
        "auth_jwks",
        &[
            ("JWT_ENABLED", "true"),
            ("JWT_ALGORITHM", "auto"),
            ("JWT_SECRET", SECRET),
            ("JWT_JWKS_URL", url.as_str()),
            ("JWT_ISSUER", "https://idp.test"),
            ("JWT_AUDIENCE", "queen"),
        ],
    )
    .await;
    let path = "/api/v1/resources/queues";
    let claims = |iss: &str, aud: Value| json!({"sub": "svc", "role": "read-only", "iss": iss, "aud": aud, "exp": now() + 600.0});
    let good = claims("https://idp.test", json!("queen"));
    let rs = |c: &Value, kid: &str| signed(Algorithm::RS256, &k.rsa_private, Some(kid), c);

    assert_eq!(
        call(&s, "GET", path, None, Some(&rs(&good, "k1"))).await,
        200
    );
    let several = claims("https://idp.test", json!(["other", "queen"]));
    assert_eq!(
        call(&s, "GET", path, None, Some(&rs(&several, "k1"))).await,
        200
    );
    for bad in [
        claims("https://evil.test", json!("queen")),
        claims("https://idp.test", json!("other")),
        json!({"role": "read-only", "exp": now() + 600.0}),
    ] {
        assert_eq!(
            call(&s, "GET", path, None, Some(&rs(&bad, "k1"))).await,
            401,
            "{bad}"
        );
    }
    // auto: an HS256 token with the shared secret is accepted too (with iss and aud).
    assert_eq!(call(&s, "GET", path, None, Some(&hs(&good))).await, 200);

    // The provider adds a key: the first token naming its kid fetches the JWKS again.
    let before = jwks.fetches.load(Ordering::SeqCst);
    *jwks.doc.lock().unwrap() = json!({"keys": [k.rsa_jwk, k.ed_jwk]});
    let ed = signed(Algorithm::EdDSA, &k.ed_private, Some("k2"), &good);
    assert_eq!(call(&s, "GET", path, None, Some(&ed)).await, 200);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
    assert_eq!(call(&s, "GET", path, None, Some(&ed)).await, 200);
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        before + 1,
        "cached now"
    );

    // Made-up key ids are refused and cannot make the server fetch again and again.
    let before = jwks.fetches.load(Ordering::SeqCst);
    for i in 0..5 {
        let token = rs(&good, &format!("made-up-{i}"));
        assert_eq!(call(&s, "GET", path, None, Some(&token)).await, 401);
    }
    assert!(jwks.fetches.load(Ordering::SeqCst) <= before + 1);
    let _ = std::fs::remove_dir_all(&dir);
}
