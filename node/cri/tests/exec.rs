//! ExecSync (the toolbox and the container's own module, inside the
//! container's sandbox) and ContainerStats, while running and after exit.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Cri, DEADLINE, container, limits};
use k8s_cri::v1 as api;
use tonic::Code;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A pod running a slow log flood (a guest that stays up) with a mount and
/// an environment variable, and an exited `hello` beside it.
async fn setup() -> Result<(Cri, String, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut cri = Cri::start_with(dir, |c| c.log_max_bytes = 256 * 1024).await?;
    let flood = cri.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let hello = cri.import(artifacts::HELLO, "hello:v1")?;
    let data = tempfile::tempdir()?;
    std::fs::write(data.path().join("a.txt"), "alpha\n")?;
    std::fs::create_dir(data.path().join("sub"))?;
    let (pod, pod_config) = cri.pod("tools").await?;
    let done = cri
        .run(&pod, &pod_config, container("done", &hello, &[]))
        .await?;
    cri.wait_exited(&done).await?;
    let mut c = limits(container("app", &flood, &[]), 0.05, 64 << 20);
    c.envs = vec![api::KeyValue {
        key: "FOO".into(),
        value: "bar".into(),
    }];
    c.mounts = vec![api::Mount {
        host_path: data.path().display().to_string(),
        container_path: "/data".into(),
        readonly: true,
        ..Default::default()
    }];
    let app = cri.run(&pod, &pod_config, c).await?;
    Ok((cri, app, done, data))
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_runs_the_toolbox_in_the_container_sandbox() -> Result<()> {
    let (mut cri, app, _done, _data) = setup().await?;

    let r = cri.exec(&app, &["ls", "/data"], 10).await?;
    assert_eq!(
        (r.exit_code, text(&r.stdout)),
        (0, "a.txt\nsub\n".into()),
        "{}",
        text(&r.stderr)
    );
    let r = cri.exec(&app, &["ls", "-l", "/data"], 10).await?;
    assert_eq!(r.exit_code, 0);
    let out = text(&r.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with('-') && l.contains(" 6 ") && l.ends_with("a.txt")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with('d') && l.ends_with("sub")),
        "{out}"
    );
    // `/` lists the mounts.
    let r = cri.exec(&app, &["ls", "/"], 10).await?;
    assert_eq!(text(&r.stdout), "data\n", "{}", text(&r.stderr));

    let r = cri.exec(&app, &["cat", "/data/a.txt"], 10).await?;
    assert_eq!((r.exit_code, text(&r.stdout)), (0, "alpha\n".into()));
    let r = cri.exec(&app, &["/bin/cat", "/data/nope"], 10).await?;
    assert_eq!(r.exit_code, 1);
    assert_eq!(
        text(&r.stderr),
        "cat: can't open '/data/nope': No such file or directory\n"
    );
    let r = cri.exec(&app, &["ls", "/etc"], 10).await?;
    assert_eq!(r.exit_code, 1, "nothing of the host is visible");

    let r = cri.exec(&app, &["env"], 10).await?;
    assert_eq!(text(&r.stdout), "FOO=bar\n");

    let r = cri.exec(&app, &["ps"], 10).await?;
    let out = text(&r.stdout);
    assert_eq!(r.exit_code, 0, "{}", text(&r.stderr));
    assert!(out.starts_with("CONTAINER"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("app") && l.contains("RUNNING")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("done") && l.contains("EXITED") && l.contains("hello:v1")),
        "{out}"
    );

    let r = cri.exec(&app, &["help"], 10).await?;
    for c in cri::TOOLBOX_COMMANDS {
        assert!(text(&r.stdout).contains(c), "{}", text(&r.stdout));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_runs_the_container_module_with_a_timeout() -> Result<()> {
    let (mut cri, app, done, _data) = setup().await?;

    // Any other command: the container's own module, cmd as argv.
    let r = cri.exec(&app, &["log-flood", "3"], 10).await?;
    assert_eq!(r.exit_code, 0);
    let out = text(&r.stdout);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.starts_with("log-flood line 0 "), "{out}");
    let r = cri.exec(&app, &["log-flood", "x"], 10).await?;
    assert_eq!(r.exit_code, 2);
    assert!(
        text(&r.stderr).contains("whole number"),
        "{}",
        text(&r.stderr)
    );

    // The timeout is enforced (a flood without N never ends).
    let started = Instant::now();
    let e = cri.exec(&app, &["log-flood"], 1).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // Bad input.
    let e = cri.exec(&done, &["ls"], 10).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = cri.exec("nope", &["ls"], 10).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = cri.exec(&app, &[], 10).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // The container runs on, untouched.
    assert_eq!(
        cri.status(&app).await?.state,
        api::ContainerState::ContainerRunning as i32
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_while_running_and_after_exit() -> Result<()> {
    let (mut cri, app, done, _data) = setup().await?;
    let stats = |id: String| {
        let mut rt = cri.rt.clone();
        async move {
            rt.container_stats(api::ContainerStatsRequest { container_id: id })
                .await
                .unwrap()
                .into_inner()
                .stats
                .unwrap()
        }
    };
    let cpu = |s: &api::ContainerStats| {
        s.cpu
            .as_ref()
            .unwrap()
            .usage_core_nano_seconds
            .as_ref()
            .unwrap()
            .value
    };
    let mem = |s: &api::ContainerStats| {
        s.memory
            .as_ref()
            .unwrap()
            .working_set_bytes
            .as_ref()
            .unwrap()
            .value
    };
    let layer = |s: &api::ContainerStats| {
        s.writable_layer
            .as_ref()
            .unwrap()
            .used_bytes
            .as_ref()
            .unwrap()
            .value
    };

    // Running: CPU grows, memory and log bytes are there.
    let first = stats(app.clone()).await;
    assert_eq!(first.attributes.as_ref().unwrap().id, app);
    let base = cpu(&first);
    testbed::wait_until("the running guest holds memory", DEADLINE, || {
        let s = stats(app.clone());
        async move { mem(&s.await) > 0 }
    })
    .await?;
    testbed::wait_until("the running guest's CPU time grows", DEADLINE, || {
        let s = stats(app.clone());
        async move { cpu(&s.await) > base }
    })
    .await?;
    testbed::wait_until("its log has bytes", DEADLINE, || {
        let s = stats(app.clone());
        async move { layer(&s.await) > 0 }
    })
    .await?;

    // Exited: the figures at its end.
    let ended = stats(done.clone()).await;
    assert!(mem(&ended) > 0, "an exited guest's memory at its end");
    assert!(layer(&ended) > 0, "hello's log");
    let again = stats(done.clone()).await;
    assert_eq!(
        cpu(&again),
        cpu(&ended),
        "an exited guest's CPU time is final"
    );

    let all = cri
        .rt
        .list_container_stats(api::ListContainerStatsRequest::default())
        .await?
        .into_inner()
        .stats;
    assert_eq!(all.len(), 2);
    let only = cri
        .rt
        .list_container_stats(api::ListContainerStatsRequest {
            filter: Some(api::ContainerStatsFilter {
                label_selector: [("container".to_owned(), "app".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .stats;
    assert_eq!(only.len(), 1);
    let pod = cri
        .rt
        .list_pod_sandbox_stats(api::ListPodSandboxStatsRequest::default())
        .await?
        .into_inner()
        .stats;
    assert_eq!(pod.len(), 1);
    assert_eq!(pod[0].linux.as_ref().unwrap().containers.len(), 2);
    let e = cri
        .rt
        .container_stats(api::ContainerStatsRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    Ok(())
}
