//! Queen's published Python client (`pip install queen-mq`), unchanged, against the real binary:
//! create a queue, push, pop with ack, consume, consumer groups, a transaction
//! (`tests/compat/python_client.py`). Runs when Python and the package can be had; otherwise it
//! says why and skips.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::Server;

/// A virtualenv with `queen-mq`, created once under the target directory.
fn python_with_client() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("queen-mq-venv");
    let python = venv.join("bin/python");
    let has_client = |py: &Path| {
        Command::new(py)
            .args(["-c", "import queen"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.exists() && has_client(&python) {
        return Ok(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3 not available: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "cannot create a virtualenv: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "queen-mq==2.6.0"])
        .output()
        .map_err(|e| format!("pip failed to start: {e}"))?;
    if !pip.status.success() || !has_client(&python) {
        return Err(format!(
            "cannot install queen-mq: {}",
            String::from_utf8_lossy(&pip.stderr)
        ));
    }
    Ok(python)
}

#[tokio::test]
async fn queens_python_client_works_unchanged() {
    let python = match tokio::task::spawn_blocking(python_with_client)
        .await
        .unwrap()
    {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIP queens_python_client_works_unchanged: {why}");
            return;
        }
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
