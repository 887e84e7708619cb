//! The `shoal` binary as users run it: flags, messages, exit codes, signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed::{free_port, shoal};

/// The binary under test.
const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

#[test]
fn help_lists_every_component() {
    let out = shoal(SHOAL).arg("--help").output().unwrap();
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
    for args in [vec!["proxy"], vec!["controller-manager"]] {
        let out = shoal(SHOAL).args(&args).output().unwrap();
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
    let mut child = shoal(SHOAL)
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
    let out = shoal(SHOAL)
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
    let out = shoal(SHOAL)
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
    let out = shoal(SHOAL)
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

/// `shoal` for the registry commands, with no registry credentials from
/// the environment unless a test sets them.
fn shoal_registry() -> Command {
    let mut cmd = shoal(SHOAL);
    cmd.env_remove("SHOAL_REGISTRY_USERNAME")
        .env_remove("SHOAL_REGISTRY_PASSWORD");
    cmd
}

/// Runs `cmd` with `stdin` on its standard input; (success, stderr).
fn run_with_stdin(cmd: &mut Command, stdin: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test]
async fn push_sends_a_module_that_pulls_back_whole() -> anyhow::Result<()> {
    let registry = testbed::Registry::start().await?;
    let reference = format!("{}/shoal/hello:v1", registry.addr());
    let (ok, err) = run(shoal_registry().args(["push", artifacts::HELLO, &reference]));
    assert!(ok, "{err}");
    let repo = format!("{}/shoal/hello", registry.addr());
    assert!(
        err.contains("pushing") && err.contains(&format!("pushed {repo}@sha256:")),
        "{err}"
    );

    let dir = tempfile::tempdir()?;
    let store = images::ImageStore::open(dir.path())?;
    let image = store.pull(&reference, &images::Auth::Anonymous).await?;
    assert_eq!(
        std::fs::read(&image.path)?,
        std::fs::read(artifacts::HELLO)?
    );
    assert!(err.contains(&image.repo_digests[0]), "{err}");
    Ok(())
}

#[tokio::test]
async fn push_takes_credentials_from_stdin_or_the_environment() -> anyhow::Result<()> {
    let registry = testbed::Registry::start_with_htpasswd("alice", "s3cret").await?;
    let reference = format!("{}/private/hello:v1", registry.addr());
    let push = || {
        let mut cmd = shoal_registry();
        cmd.args(["push", artifacts::HELLO, &reference]);
        cmd
    };

    let (ok, err) = run(&mut push());
    assert!(!ok && err.contains("requires credentials"), "{err}");
    let (ok, err) = run_with_stdin(
        push().args(["--username", "alice", "--password-stdin"]),
        "guess\n",
    );
    assert!(!ok && err.contains("refused the credentials"), "{err}");
    let (ok, err) = run(push().args(["--username", "alice"]));
    assert!(!ok && err.contains("--password-stdin"), "{err}");

    let (ok, err) = run_with_stdin(push().args(["-u", "alice", "--password-stdin"]), "s3cret\n");
    assert!(ok && err.contains("pushed "), "{err}");
    let (ok, err) = run(push()
        .env("SHOAL_REGISTRY_USERNAME", "alice")
        .env("SHOAL_REGISTRY_PASSWORD", "s3cret"));
    assert!(ok && err.contains("as alice"), "{err}");

    let dir = tempfile::tempdir()?;
    let store = images::ImageStore::open(dir.path())?;
    let alice = images::Auth::Basic {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    assert!(store.pull(&reference, &alice).await.is_ok());
    Ok(())
}

#[test]
fn push_refuses_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just text").unwrap();
    let text = text.to_str().unwrap();
    let nobody = format!("127.0.0.1:{}/x/y:v1", free_port());
    let missing = dir.path().join("absent.wasm");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["push", text, &nobody], "is not a Wasm module"),
        (&["push", missing, &nobody], "cannot read"),
        (
            &["push", artifacts::HELLO, "Bad/Ref:v1"],
            "invalid image reference",
        ),
        (
            &["push", artifacts::HELLO, &nobody],
            "cannot reach the registry",
        ),
    ];
    for (args, want) in cases {
        let started = Instant::now();
        let (ok, err) = run(shoal_registry().args(args));
        assert!(!ok, "{args:?} fails");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn image_import_loads_a_module_into_the_node_store() {
    let dir = tempfile::tempdir().unwrap();
    // A store already open, as `shoal cri` holds it, sees the import at once.
    let running = images::ImageStore::open(dir.path().join("images")).unwrap();
    let (ok, err) = run(shoal_registry()
        .args([
            "image",
            "import",
            artifacts::HELLO,
            "hello:v1",
            "--data-dir",
        ])
        .arg(dir.path()));
    assert!(ok, "{err}");
    let image = running.status("hello:v1").unwrap().expect("imported");
    assert_eq!(image.repo_tags, ["docker.io/library/hello:v1"]);
    assert_eq!(
        std::fs::read(&image.path).unwrap(),
        std::fs::read(artifacts::HELLO).unwrap()
    );
    assert!(err.contains(&image.id), "{err}");

    // SHOAL_DATA_DIR works as --data-dir does.
    let (ok, err) = run(shoal_registry()
        .args([
            "image",
            "import",
            artifacts::BATCH_PI,
            "localhost:5000/pi:v2",
        ])
        .env("SHOAL_DATA_DIR", dir.path()));
    assert!(ok, "{err}");
    assert!(running.status("localhost:5000/pi:v2").unwrap().is_some());

    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just text").unwrap();
    let text = text.to_str().unwrap();
    let missing = dir.path().join("absent.wasm");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["image", "import", text, "x:v1"], "is not a Wasm module"),
        (&["image", "import", missing, "x:v1"], "cannot read"),
        (
            &["image", "import", artifacts::HELLO, "Bad Name"],
            "invalid image reference",
        ),
    ];
    for (args, want) in cases {
        let (ok, err) = run(shoal_registry()
            .args(args)
            .arg("--data-dir")
            .arg(dir.path()));
        assert!(!ok, "{args:?} fails");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(
        running.list().unwrap().len(),
        2,
        "bad imports store nothing"
    );
}
