//! `shoal cri` as its own process: a container driven through its socket,
//! a crash (SIGKILL) and restart that lists the lost container as EXITED,
//! and a SIGTERM that drains and removes the socket.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1 as api;
use testbed::shoal;

const DEADLINE: Duration = Duration::from_secs(60);

/// The binary under test.
const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// Starts `shoal cri` and returns once it says where it serves.
fn start_cri(dir: &Path) -> (Child, PathBuf) {
    let mut child = shoal(SHOAL)
        .args(["cri", "--data-dir"])
        .arg(dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        let Some(Ok(line)) = reader.next() else { break };
        if let Some(socket) = line
            .split("shoal cri is serving on unix://")
            .nth(1)
            .map(PathBuf::from)
        {
            std::thread::spawn(move || reader.for_each(drop));
            return (child, socket);
        }
        lines.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("shoal cri did not come up:\n{}", lines.join("\n"));
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn container(name: &str, image: &str) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        log_path: format!("{name}.log"),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(api::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 10_000,
                ..Default::default()
            }),
            security_context: None,
        }),
        ..Default::default()
    }
}

async fn status(rt: &mut cri::client::RuntimeClient, id: &str) -> api::ContainerStatus {
    rt.container_status(api::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn shoal_cri_serves_survives_a_crash_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, socket) = start_cri(dir.path());
    assert_eq!(socket, dir.path().join("cri.sock"));

    // A second one on the same data directory is refused, and says why.
    let out = shoal(SHOAL)
        .args(["cri", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another"), "{err}");

    // `shoal image import` and `shoal cri` share the store on disk.
    let store = images::ImageStore::open(dir.path().join("images")).unwrap();
    let spin = store
        .import(Path::new(artifacts::INFINITE_LOOP), "spin:v1")
        .unwrap()
        .id;
    let hello = store
        .import(Path::new(artifacts::HELLO), "hello:v1")
        .unwrap()
        .id;

    let (mut rt, _img) = cri::client::connect(&socket).await.unwrap();
    let logs = dir.path().join("logs");
    let pod_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "p".into(),
            uid: "u".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut ids = Vec::new();
    for (name, image) in [("hello", &hello), ("spin", &spin)] {
        let id = rt
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container(name, image)),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        rt.start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        ids.push(id);
    }
    let (hello_id, spin_id) = (ids[0].clone(), ids[1].clone());
    testbed::wait_until("hello exits", DEADLINE, || {
        let mut rt = rt.clone();
        let id = hello_id.clone();
        async move { status(&mut rt, &id).await.state == api::ContainerState::ContainerExited as i32 }
    })
    .await
    .unwrap();
    let st = status(&mut rt, &hello_id).await;
    assert_eq!(st.exit_code, 0);
    let log = std::fs::read_to_string(logs.join("hello.log")).unwrap();
    assert!(log.contains(" stdout F arg: hello"), "{log}");
    assert_eq!(
        status(&mut rt, &spin_id).await.state,
        api::ContainerState::ContainerRunning as i32
    );

    // A crash: the running container is lost, and listed as such after a restart.
    signal(&child, "-KILL");
    child.wait().unwrap();
    drop(rt);
    let (mut child, socket) = start_cri(dir.path());
    let (mut rt, _img) = cri::client::connect(&socket).await.unwrap();
    let st = status(&mut rt, &spin_id).await;
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (cri::UNKNOWN_EXIT_CODE, cri::RUNTIME_RESTARTED)
    );
    let st = status(&mut rt, &hello_id).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));

    // SIGTERM: a clean exit, and the socket is gone.
    signal(&child, "-TERM");
    let code = child.wait().unwrap();
    assert!(code.success(), "a clean stop exits 0, got {code}");
    assert!(!socket.exists(), "the socket is removed");
}
