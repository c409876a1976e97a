//! The web console in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against a real server and PostgreSQL. The page must load, show the queues the test pushed,
//! retry a dead letter through its button (and the message must leave the DLQ), hide actions a
//! read-only token may not take, and log no console errors. Screenshots go to
//! `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`; CI installs
//! them). Without them the test says so and passes locally, but fails when `CI` is set.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Server, request};

const SECRET: &str = "console-test-secret-of-some-length";

/// A chromedriver process and one browser session on it.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver request. chromedriver keeps the connection open after its answer even when
/// asked to close it, so the answer is read by its `Content-Length`.
async fn webdriver(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                let v = serde_json::from_slice(&raw[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                return Ok((status, v));
            }
        }
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or None when they are not installed.
    async fn start() -> Option<Browser> {
        let (Some(driver), Some(chrome)) = (
            find(&["chromedriver"]),
            find(&["chromium", "chromium-browser", "google-chrome"]),
        ) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "the console test needs chromium and chromedriver in CI"
            );
            eprintln!("skipping the browser test: chromium/chromedriver not installed");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut b = Browser {
            driver: child,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while webdriver(port, "GET", "/status", "").await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = b.call("POST", "/session", Some(caps)).await;
        b.session = v["sessionId"].as_str().unwrap().to_owned();
        Some(b)
    }

    /// One WebDriver command; panics on a WebDriver error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = if path.starts_with("/session") && !self.session.is_empty() {
            format!("/session/{}{}", self.session, &path["/session".len()..])
        } else {
            path.to_owned()
        };
        let body = body.map_or_else(|| "{}".to_owned(), |b| b.to_string());
        let body = if method == "GET" { String::new() } else { body };
        let (status, v) = webdriver(self.port, method, &path, &body).await.unwrap();
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call("POST", "/session/url", Some(json!({ "url": url })))
            .await;
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/session/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Waits (up to 15 s) until the script returns a truthy value, and returns it.
    async fn wait_for(&self, what: &str, js: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.script(js).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call("GET", "/session/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The browser console's errors so far (chromedriver's `browser` log).
    async fn console_errors(&self) -> Vec<String> {
        let v = self
            .call("POST", "/session/se/log", Some(json!({"type": "browser"})))
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// One API request with the token `auth` (if any); the answer must be a success.
async fn api(
    s: &Server,
    auth: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let r = s.call_as(method, path, body.as_ref(), auth).await;
    assert!(
        r.status < 300,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// A queue with three messages, one of them dead-lettered with an error.
async fn seed(s: &Server, auth: Option<&str>) -> (String, String) {
    let call = |method: &'static str, path: &'static str, body: Value| {
        api(s, auth, method, path, (!body.is_null()).then_some(body))
    };
    call(
        "POST",
        "/api/v1/configure",
        json!({"queue": "ui-orders", "options": {"retryLimit": 0}}),
    )
    .await;
    call(
        "POST",
        "/api/v1/push",
        json!({"items": [
            {"queue": "ui-orders", "partition": "eu", "transactionId": "bad-1",
             "payload": {"order": 1, "note": "<img src=x onerror=alert(1)>"}},
            {"queue": "ui-orders", "partition": "eu", "payload": {"order": 2}},
            {"queue": "ui-orders", "partition": "us", "payload": {"order": 3}},
        ]}),
    )
    .await;
    let popped = call(
        "GET",
        "/api/v1/pop/queue/ui-orders/partition/eu?batch=1",
        Value::Null,
    )
    .await;
    let m = &popped["messages"][0];
    assert_eq!(m["transactionId"], "bad-1");
    call(
        "POST",
        "/api/v1/ack",
        json!({"transactionId": "bad-1", "partitionId": m["partitionId"],
               "leaseId": m["leaseId"], "status": "dlq", "error": "card declined"}),
    )
    .await;
    call(
        "POST",
        "/api/v1/traces",
        json!({"transactionId": "bad-1", "partitionId": m["partitionId"],
               "eventType": "charge", "data": {"card": "declined"}, "traceNames": ["order-1"]}),
    )
    .await;
    (
        m["partitionId"].as_str().unwrap().to_owned(),
        "bad-1".to_owned(),
    )
}

async fn dlq_total(s: &Server, auth: Option<&str>) -> i64 {
    api(s, auth, "GET", "/api/v1/dlq?queue=ui-orders", None).await["total"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn the_console_shows_live_data_and_retries_a_dead_letter() {
    let s = Server::start("console_ui", &[]).await;
    seed(&s, None).await;
    assert_eq!(dlq_total(&s, None).await, 1);
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = format!("http://127.0.0.1:{}", s.port);

    // Overview: the pushed queue with its figures, and the rate chart drawn by uPlot.
    b.go(&format!("{base}/")).await;
    b.wait_for(
        "the queue in the overview",
        "return [...document.querySelectorAll('#view td')].some(td => td.textContent === 'ui-orders')",
    )
    .await;
    b.wait_for(
        "the rate chart",
        "return document.querySelector('#view .uplot canvas') !== null",
    )
    .await;
    let dead = b
        .script("return document.querySelector('[data-card=dead-letters] .value').textContent")
        .await;
    assert_eq!(dead, "1");
    b.screenshot("overview").await;

    // A push made now shows up without reloading the page (live refresh).
    request(
        s.port,
        "POST",
        "/api/v1/push",
        Some(br#"{"items":[{"queue":"ui-live","payload":1}]}"#),
    )
    .await
    .unwrap();
    b.wait_for(
        "a queue pushed after the page loaded",
        "return [...document.querySelectorAll('#view td')].some(td => td.textContent === 'ui-live')",
    )
    .await;

    // The queue page: partitions and options.
    b.go(&format!("{base}/#/queue/ui-orders")).await;
    b.wait_for(
        "the queue's partitions",
        "return [...document.querySelectorAll('#view td')].some(td => td.textContent === 'us')",
    )
    .await;
    b.screenshot("queue").await;

    // The message browser shows the hostile payload as text, never as markup.
    b.go(&format!("{base}/#/messages?queue=ui-orders&partition=eu"))
        .await;
    b.wait_for(
        "the message list",
        "return [...document.querySelectorAll('#view td')].some(td => td.textContent === 'bad-1')",
    )
    .await;
    b.script("[...document.querySelectorAll('#view tr.clickable')].find(tr => tr.textContent.includes('bad-1')).click(); return true")
        .await;
    let payload = b
        .wait_for(
            "the payload view",
            "const p = document.querySelector('#view #payload'); return p && p.textContent",
        )
        .await;
    assert!(
        payload.as_str().unwrap().contains("onerror=alert(1)"),
        "{payload}"
    );
    b.wait_for(
        "the trace timeline",
        "return [...document.querySelectorAll('#view .timeline li')].some(li => li.textContent.includes('charge') && li.textContent.includes('order-1'))",
    )
    .await;
    assert_eq!(
        b.script("return document.querySelectorAll('#view img').length")
            .await,
        0
    );
    b.screenshot("message").await;

    // The DLQ: retry through the button; the message leaves the DLQ (asked of the API too).
    b.go(&format!("{base}/#/dlq?queue=ui-orders")).await;
    b.wait_for(
        "the dead letter's retry button",
        "return document.querySelector('#view button[data-action=retry]') !== null",
    )
    .await;
    b.screenshot("dlq").await;
    b.script("document.querySelector('#view button[data-action=retry]').click(); return true")
        .await;
    b.wait_for(
        "the DLQ to empty in the page",
        "return document.querySelector('#view button[data-action=retry]') === null \
         && [...document.querySelectorAll('#view td')].some(td => td.textContent === 'Nothing here yet.')",
    )
    .await;
    assert_eq!(dlq_total(&s, None).await, 0);

    // The server page with its maintenance toggles (auth off: everyone is admin).
    b.go(&format!("{base}/#/server")).await;
    b.wait_for(
        "the maintenance toggles",
        "return document.querySelectorAll('#view input[type=checkbox]:not([disabled])').length === 2",
    )
    .await;
    b.screenshot("server").await;

    // The ephemeral queues: a queue with its figures, its depth page, then reset from the page
    // (the confirmation answered yes) and emptied in the page and in the API.
    request(
        s.port,
        "POST",
        "/api/v1/ephemeral/push",
        Some(br#"{"queue":"ui-inbox","partition":"room-7","messages":[{"payload":1},{"payload":"<b>x</b>"}]}"#),
    )
    .await
    .unwrap();
    b.go(&format!("{base}/#/ephemeral")).await;
    b.wait_for(
        "the ephemeral queue",
        "return [...document.querySelectorAll('#view td')].some(td => td.textContent === 'ui-inbox')",
    )
    .await;
    assert_eq!(
        b.script(
            "return document.querySelector('[data-card=ephemeral-queues] .value').textContent"
        )
        .await,
        "1"
    );
    b.screenshot("ephemeral").await;
    b.script("[...document.querySelectorAll('#view tr.clickable')].find(tr => tr.textContent.includes('ui-inbox')).click(); return true")
        .await;
    b.wait_for(
        "the ephemeral queue's partitions",
        "return [...document.querySelectorAll('#view td')].some(td => td.textContent === 'room-7') \
         && document.querySelector('[data-card=ephemeral-depth] .value').textContent === '2'",
    )
    .await;
    b.go(&format!("{base}/#/ephemeral")).await;
    b.wait_for(
        "the reset button",
        "return document.querySelector('#view button[data-action=reset]') !== null",
    )
    .await;
    b.script("window.confirm = () => true; document.querySelector('#view button[data-action=reset]').click(); return true")
        .await;
    b.wait_for(
        "the queue emptied in the page",
        "return document.querySelector('[data-card=ephemeral-bytes] .value').textContent === '0 B'",
    )
    .await;
    let depth = request(
        s.port,
        "GET",
        "/api/v1/ephemeral/queues/ui-inbox/depth",
        None,
    )
    .await
    .unwrap();
    assert_eq!(depth.json()["depth"], 0);

    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[tokio::test]
async fn with_jwt_the_console_takes_a_token_and_hides_what_it_may_not_do() {
    let s = Server::start(
        "console_jwt",
        &[("JWT_ENABLED", "true"), ("JWT_SECRET", SECRET)],
    )
    .await;
    let sign = |role: &str| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "viewer", "role": role}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let (rw, ro) = (sign("read-write"), sign("read-only"));
    seed(&s, Some(&rw)).await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let base = format!("http://127.0.0.1:{}", s.port);

    // Without a token the page loads and says what is missing.
    b.go(&format!("{base}/")).await;
    b.wait_for(
        "the missing-token banner",
        "const e = document.getElementById('banner'); return !e.hidden && e.textContent.includes('token')",
    )
    .await;

    // A read-only token, entered as a user would: the DLQ shows, without its actions.
    b.script("document.getElementById('token-button').click(); return true")
        .await;
    b.script(&format!(
        "document.getElementById('token-input').value = {}; \
         document.querySelector('#token-dialog button[value=save]').click(); return true",
        json!(ro)
    ))
    .await;
    b.go(&format!("{base}/#/dlq?queue=ui-orders")).await;
    b.wait_for(
        "the dead letter listed for a read-only token",
        "return [...document.querySelectorAll('#view td')].some(td => td.textContent === 'bad-1')",
    )
    .await;
    assert_eq!(
        b.script("return document.querySelectorAll('#view button[data-action=retry]').length")
            .await,
        0
    );
    assert_eq!(
        b.script("return document.getElementById('who').textContent")
            .await,
        "viewer · read-only"
    );
    // The token lives in this tab's session storage only.
    assert_eq!(
        b.script("return sessionStorage.getItem('queen.token')")
            .await,
        json!(ro)
    );
    assert_eq!(b.script("return localStorage.length").await, 0);
    b.screenshot("dlq-read-only").await;
    assert_eq!(dlq_total(&s, Some(&rw)).await, 1);

    // The page asked who it was before it had a token (one 401); nothing else failed.
    let errors = b.console_errors().await;
    assert!(
        errors.len() == 1 && errors[0].contains("/api/v1/whoami") && errors[0].contains("401"),
        "console errors: {errors:?}"
    );
}
