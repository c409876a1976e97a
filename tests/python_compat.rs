//! Queen's published Python client (`queen-mq` from PyPI, pinned), unchanged, against the real
//! binary:
//!
//! * the client's **own test files**, every one it ships — push, pop, consume, queue,
//!   transaction, subscription, dlq, complete, auth, reads by offset, its documentation
//!   examples, its ack-window, ack-commit and lease-fencing contracts, the key-value store,
//!   locks, timers and their transaction riders — taken from the package's source
//!   distribution, with our
//!   `tests/compat/conftest.py` (the `client` fixture) beside them; `test_auth.py` runs a second
//!   time against a server with JWT on, as its docstring says;
//! * our `tests/compat/test_ephemeral.py` and `tests/compat/test_streams.py`: the client's
//!   ephemeral queues and its stream processing (`Stream` pipelines run by its own runner),
//!   for which its distribution ships no test files;
//! * our walk-through script `tests/compat/python_client.py`.
//!
//! Python, the client and pytest are installed into a virtualenv under the target directory
//! on first use. Where Python or PyPI cannot be had, each test says why and skips.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::Server;

/// The client version the suite is pinned to, and the test tools.
const CLIENT: &str = "queen-mq==2.6.0";
const SDIST_DIR: &str = "queen_mq-2.6.0";
const TOOLS: [&str; 2] = ["pytest==9.2.0", "pytest-asyncio==1.5.0"];

/// The client's test files: every one its source distribution ships.
const SUITE: [&str; 18] = [
    "test_push.py",
    "test_pop.py",
    "test_consume.py",
    "test_queue.py",
    "test_transaction.py",
    "test_subscription.py",
    "test_dlq.py",
    "test_complete.py",
    "test_auth.py",
    "test_ack_window.py",
    "test_ack_commit.py",
    "test_transaction_lease_fencing.py",
    "test_reads.py",
    "test_docs.py",
    "test_kv.py",
    "test_locks.py",
    "test_timers.py",
    "test_transaction_kv_timers.py",
];

/// Our test files for the client's surfaces its distribution has none for (its ephemeral
/// queues and streams), run with the client's own, with the same fixture.
const OURS: [&str; 2] = ["test_ephemeral.py", "test_streams.py"];

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what} failed to start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// A virtualenv with the client and pytest, created once under the target directory.
fn python_with_client() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("queen-mq-venv");
    let python = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", "import queen, pytest, pytest_asyncio"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.exists() && ready(&python) {
        return Ok(python);
    }
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", CLIENT])
            .args(TOOLS),
        "pip install",
    )?;
    if !ready(&python) {
        return Err("the client or pytest does not import after installing".into());
    }
    Ok(python)
}

/// The client's test files, from its source distribution, with our fixtures beside them.
fn client_tests(python: &Path) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("queen-mq-tests");
    let dir = root.join(SDIST_DIR).join("tests");
    if !SUITE.iter().all(|f| dir.join(f).exists()) {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        run(
            Command::new(python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                ])
                .arg(CLIENT)
                .arg("-d")
                .arg(&root),
            "pip download (source distribution)",
        )?;
        let script = format!(
            "import glob, tarfile\n\
             with tarfile.open(glob.glob('{root}/*.tar.gz')[0]) as t:\n    \
                 t.extractall('{root}', members=[m for m in t.getmembers() \
                 if m.name.startswith('{SDIST_DIR}/tests/')])",
            root = root.display()
        );
        run(
            Command::new(python).args(["-c", &script]),
            "extracting the tests",
        )?;
    }
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    for f in ["conftest.py", "pytest.ini"].iter().chain(&OURS) {
        std::fs::copy(ours.join(f), dir.join(f)).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

async fn setup() -> Option<(PathBuf, PathBuf)> {
    // The tests of this file set up the same virtualenv: one at a time.
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let found = tokio::task::spawn_blocking(|| {
        let _one = SETUP
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let python = python_with_client()?;
        let tests = client_tests(&python)?;
        Ok::<_, String>((python, tests))
    })
    .await
    .unwrap();
    match found {
        Ok(x) => Some(x),
        Err(why) => {
            eprintln!("SKIP: Queen's Python client cannot be had here: {why}");
            None
        }
    }
}

/// Runs pytest on `files` against the server at `port`; panics with its report on failure.
async fn pytest(python: &Path, dir: &Path, port: u16, files: &[&str], env: &[(&str, &str)]) {
    let mut cmd = tokio::process::Command::new(python);
    cmd.args(["-m", "pytest"])
        .args(files)
        .current_dir(dir)
        .env("QUEEN_URL", format!("http://127.0.0.1:{port}"))
        .env("QUEEN_SERVER_URL", format!("http://127.0.0.1:{port}"))
        .env_remove("JWT_SECRET")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(900), cmd.output())
        .await
        .expect("the client's test suite finished in time")
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Queen's Python client tests failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", report.lines().last().unwrap_or_default());
}

#[tokio::test]
async fn queens_python_client_test_suite_passes() {
    let Some((python, dir)) = setup().await else {
        return;
    };
    // The suite pushes to a queue with encryptionEnabled: a key, as a deployment on an external
    // database configures one.
    let key = "5e".repeat(32);
    let s = Server::start("python_suite", &[("QUEEN_ENCRYPTION_KEY", key.as_str())]).await;
    let files: Vec<&str> = SUITE.iter().chain(&OURS).copied().collect();
    pytest(&python, &dir, s.port, &files, &[]).await;
}

#[tokio::test]
async fn queens_python_client_auth_tests_pass_with_jwt_on() {
    const SECRET: &str = "python-suite-secret";
    let Some((python, dir)) = setup().await else {
        return;
    };
    let s = Server::start(
        "python_suite_jwt",
        &[("JWT_ENABLED", "true"), ("JWT_SECRET", SECRET)],
    )
    .await;
    pytest(
        &python,
        &dir,
        s.port,
        &["test_auth.py"],
        &[("JWT_SECRET", SECRET)],
    )
    .await;
}

#[tokio::test]
async fn queens_python_client_works_unchanged() {
    let Some((python, _)) = setup().await else {
        return;
    };
    let s = Server::start("python_compat", &[]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/python_client.py");
    let url = format!("http://127.0.0.1:{}", s.port);
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&url)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the Python client finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("python client compatibility: ok"),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
