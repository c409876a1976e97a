//! End-to-end support: the real `queen` binary on a free port against a fresh database, and a
//! minimal HTTP/1.1 client (one connection per request, `Connection: close`).

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    /// Its disk buffer directory (removed on drop unless kept).
    pub buffer_dir: PathBuf,
    keep_buffer: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_buffer {
            let _ = std::fs::remove_dir_all(&self.buffer_dir);
        }
    }
}

/// A fresh buffer directory for one test.
pub fn buffer_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "queen-buffer-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// A client handle for a server started elsewhere (it does not own the process).
    pub fn client(port: u16) -> Client {
        Client { port }
    }

    /// Starts `queen serve` on a fresh database with extra environment settings.
    pub async fn start(name: &str, env: &[(&str, &str)]) -> Server {
        Server::start_with_db(name, env).await.1
    }

    /// As [`Server::start`], with the database's address for the test's own connections.
    pub async fn start_with_db(name: &str, env: &[(&str, &str)]) -> (queen_wire::Config, Server) {
        let db = queen_wire::embedded::test_config(name).await.unwrap();
        let s = Server::start_on(&db, buffer_dir(name), false, env).await;
        (db, s)
    }

    /// Starts `queen serve` on a given database and buffer directory; returns once `/ready`.
    pub async fn start_on(
        db: &queen_wire::Config,
        buffer_dir: PathBuf,
        keep_buffer: bool,
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn(db, buffer_dir, keep_buffer, env, true).await
    }

    /// Starts `queen serve`; returns once it answers HTTP (`/ready` may still say 503).
    pub async fn start_unready(
        db: &queen_wire::Config,
        buffer_dir: PathBuf,
        env: &[(&str, &str)],
    ) -> Server {
        Server::spawn(db, buffer_dir, false, env, false).await
    }

    async fn spawn(
        db: &queen_wire::Config,
        buffer_dir: PathBuf,
        keep_buffer: bool,
        env: &[(&str, &str)],
        wait_ready: bool,
    ) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queen"));
        cmd.arg("serve")
            .env("DATABASE_URL", db.to_key_values())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("FILE_BUFFER_DIR", &buffer_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let server = Server {
            child: cmd.spawn().unwrap(),
            port,
            buffer_dir,
            keep_buffer,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server.get("/ready").await {
                if r.status == 200 || !wait_ready {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `queen serve` on its own embedded PostgreSQL in `data_dir` (no database
    /// settings, as a user's first `queen serve`); returns once `/ready`.
    pub async fn start_embedded(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queen"));
        cmd.arg("serve")
            .env("QUEEN_DATA_DIR", data_dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "info")
            .env("LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for k in [
            "DATABASE_URL",
            "PG_HOST",
            "PG_PORT",
            "PG_USER",
            "PG_PASSWORD",
            "PG_DB",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let server = Server {
            child: cmd.spawn().unwrap(),
            port,
            buffer_dir: data_dir.join("buffer"),
            keep_buffer: true,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = server.get("/ready").await {
                if r.status == 200 {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "embedded server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (SIGTERM) and returns what it logged on stderr (servers started with
    /// [`Server::start_embedded`]; others log to the test's stderr).
    pub fn stop_and_log(mut self) -> String {
        use std::io::Read as _;
        self.terminate();
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut log);
        }
        log
    }

    /// Runs `queen serve` expecting it to refuse to start (within 30 s); returns its exit status
    /// and what it printed on stderr.
    pub fn refused_start(
        db: &queen_wire::Config,
        buffer_dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> (std::process::ExitStatus, String) {
        use std::io::Read as _;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queen"));
        cmd.arg("serve")
            .env("DATABASE_URL", db.to_key_values())
            .env("HOST", "127.0.0.1")
            .env("PORT", free_port().to_string())
            .env("LOG_LEVEL", "warn")
            .env("FILE_BUFFER_DIR", buffer_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server started (or hung) instead of refusing to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> std::io::Result<Resp> {
        self.request("GET", path, None).await
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.keep_buffer = true;
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(body.to_string().as_bytes()))
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None).await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Resp {
        self.request("POST", path, Some(body)).await.unwrap()
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<Resp> {
        request(self.port, method, path, body).await
    }
}

/// A client for a server owned by someone else.
pub struct Client {
    port: u16,
}

impl Client {
    pub async fn get(&self, path: &str) -> std::io::Result<Resp> {
        request(self.port, "GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> std::io::Result<Resp> {
        request(self.port, "POST", path, Some(body.to_string().as_bytes())).await
    }
}

/// One request on a fresh connection.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    request_with(port, method, path, body, &[]).await
}

/// One request with extra headers, on a fresh connection.
pub async fn request_with(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let body = body.unwrap_or(b"");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    Ok(Resp::parse(&raw))
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head");
        let head = std::str::from_utf8(&raw[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Resp {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error answer: status and stable code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        assert_eq!(j["code"], code, "{j}");
        assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{j}");
    }
}

// The API calls the tests make again and again, written once. Each helper asserts the answer a
// well-formed call gets; tests of refusals use `post`/`get` and `Resp::assert_error`.

/// A push body: one item per payload, all to `queue`/`partition`.
pub fn push_body(queue: &str, partition: &str, payloads: &[Value]) -> Value {
    let items: Vec<Value> = payloads
        .iter()
        .map(|p| serde_json::json!({"queue": queue, "partition": partition, "payload": p}))
        .collect();
    serde_json::json!({ "items": items })
}

/// An ack body settling popped message `m` with `status`.
pub fn ack_body(m: &Value, status: &str) -> Value {
    serde_json::json!({"transactionId": m["transactionId"], "partitionId": m["partitionId"],
                       "leaseId": m["leaseId"], "status": status})
}

impl Resp {
    /// Asserts `status` and returns the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }
}

impl Server {
    /// Pushes `payloads` to `queue`/`partition`, whatever the answer.
    pub async fn try_push(&self, queue: &str, partition: &str, payloads: &[Value]) -> Resp {
        self.post("/api/v1/push", &push_body(queue, partition, payloads))
            .await
    }

    /// Pushes `payloads` to `queue`/`partition`; asserts 201 and returns the per-item answers.
    pub async fn push(&self, queue: &str, partition: &str, payloads: &[Value]) -> Vec<Value> {
        let answer = self.try_push(queue, partition, payloads).await.expect(201);
        answer.as_array().cloned().unwrap_or_default()
    }

    /// Pushes whole items; asserts 201 and returns the per-item answers.
    pub async fn push_items(&self, items: &[Value]) -> Vec<Value> {
        let answer = self
            .post("/api/v1/push", &serde_json::json!({ "items": items }))
            .await
            .expect(201);
        answer.as_array().cloned().unwrap_or_default()
    }

    /// GETs `path`; asserts 200 and returns the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await.unwrap();
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Pops with the full `path` (query included): the messages, none on 204.
    pub async fn pop(&self, path: &str) -> Vec<Value> {
        let r = self.get(path).await.unwrap();
        match r.status {
            204 => Vec::new(),
            200 => r.json()["messages"].as_array().cloned().unwrap_or_default(),
            other => panic!("pop answered {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }

    /// Pops until something comes, for at most `limit`.
    pub async fn pop_within(&self, limit: Duration, path: &str) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.pop(path).await;
            if !got.is_empty() {
                return got;
            }
            assert!(Instant::now() < deadline, "nothing came from {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Settles popped message `m` with `status` (and an error text); asserts 200.
    pub async fn ack(&self, m: &Value, status: &str) -> Value {
        let mut body = ack_body(m, status);
        body["error"] = Value::from("boom");
        self.post("/api/v1/ack", &body).await.expect(200)
    }

    /// A request with a JSON body (if any) and a bearer token (if any), whatever the answer.
    pub async fn call_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let body = body.map(Value::to_string);
        request_with(
            self.port,
            method,
            path,
            body.as_deref().map(str::as_bytes),
            &headers,
        )
        .await
        .unwrap()
    }

    /// Configures `queue` with `options`; asserts 200.
    pub async fn configure(&self, queue: &str, options: Value) -> Value {
        self.post(
            "/api/v1/configure",
            &serde_json::json!({"queue": queue, "options": options}),
        )
        .await
        .expect(200)
    }
}

/// Waits until `f` holds (checked every 50 ms), failing after `limit`: for effects of
/// background work (sweeps, retention, replays) that have no event to wait on.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
