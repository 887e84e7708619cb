//! End to end: `shoal server` driven by the official Python Kubernetes client
//! (the pinned `kubernetes` wheel `tests/scripts/setup.sh` installs in the
//! repository's `.venv`), running `tests/python/client_test.py`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testbed::ShoalServer;

/// The whole script's bound; each of its requests is bounded (30 s) too.
const DEADLINE: Duration = Duration::from_secs(180);

/// `$SHOAL_PYTHON`, else the repository venv's python (where setup.sh puts
/// the client), else `python3` from `PATH`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[test]
fn the_python_client_works_against_shoal() {
    let s = ShoalServer::start(Path::new(env!("CARGO_BIN_EXE_shoal")), &[]).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_test.py");
    let mut child = Command::new(python())
        .arg(&script)
        .arg(s.kubeconfig())
        .env_remove("KUBECONFIG")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs (is the venv there? run tests/scripts/setup.sh)");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) if status.success() => {
            assert!(stdout.contains("all checks passed"), "{stdout}");
        }
        Some(status) => panic!(
            "{} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
            script.display(),
            s.log_text()
        ),
        None => panic!(
            "{} took over {DEADLINE:?}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            script.display()
        ),
    }
}
