//! The `shoal` binary as users run it: flags, messages, exit codes, signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn shoal() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.env_remove("SHOAL_DATA_DIR")
        .env_remove("SHOAL_ETCD_ENDPOINTS");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn help_lists_every_component() {
    let out = shoal().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "up",
        "server",
        "node",
        "apiserver",
        "scheduler",
        "controller-manager",
        "kubelet",
        "cri",
        "proxy",
        "push",
        "image",
    ] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "--help lists {cmd}:\n{help}"
        );
    }
}

#[test]
fn components_not_built_yet_say_so_and_fail() {
    for args in [
        vec!["node"],
        vec!["scheduler"],
        vec!["cri"],
        vec!["push", "a.wasm", "r/x:1"],
    ] {
        let out = shoal().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} fails");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("not available in this build yet"),
            "{args:?}: {err}"
        );
    }
}

/// Starts `shoal server` and returns once it says it is up.
fn start_server(dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = shoal()
        .args([
            "server",
            "--https-port",
            &free_port().to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = reader.next() else { break };
        let up = line.contains("shoal server is up");
        lines.push(line);
        if up {
            std::thread::spawn(move || reader.for_each(drop));
            return (child, lines);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("shoal server did not come up:\n{}", lines.join("\n"));
}

fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn server_runs_the_embedded_store_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_server(dir.path(), &["--log-format", "json"]);
    assert!(dir.path().join("store/state.redb").exists());
    assert!(dir.path().join("admin.kubeconfig").exists());
    let ready = lines
        .iter()
        .find(|l| l.contains("store ready"))
        .expect("a store-ready log line");
    assert!(
        ready.starts_with('{') && ready.contains("\"level\":\"INFO\""),
        "JSON logs: {ready}"
    );
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean stop exits 0, got {status}");
    // It reopens: the store was closed properly.
    let (mut again, _) = start_server(dir.path(), &[]);
    sigterm(&again);
    assert!(again.wait().unwrap().success());
}

#[test]
fn a_foreign_data_directory_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    std::fs::write(
        dir.path().join("store/state.redb"),
        b"not a database at all",
    )
    .unwrap();
    let out = shoal()
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("not a Shoal store") && err.contains("--data-dir"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("store/state.redb")).unwrap(),
        b"not a database at all"
    );
}

#[test]
fn an_unreachable_etcd_is_named_and_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = shoal()
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args(["--etcd-endpoints", &endpoint])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&endpoint) && err.contains("cannot use etcd"),
        "{err}"
    );
}

#[test]
fn a_bad_log_filter_is_a_usage_error() {
    let out = shoal()
        .args(["--log", "store=[", "server"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("invalid --log filter")
    );
}
