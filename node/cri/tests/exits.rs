//! How containers end, as the kubelet sees it: exit codes, reasons and
//! messages for a bad argument, a trap, a memory limit, and StopContainer
//! against a guest that never yields.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Cri, container, limits, log_records};
use k8s_cri::v1 as api;

#[tokio::test(flavor = "multi_thread")]
async fn batch_pi_prints_digits_and_a_bad_argument_exits_2() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::BATCH_PI, "batch-pi:v1")?;
    let (pod, pod_config) = cri.pod("pi").await?;

    let ok = cri
        .run(&pod, &pod_config, container("ok", &image, &["5"]))
        .await?;
    let st = cri.wait_exited(&ok).await?;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let out: Vec<String> = log_records(&st.log_path).into_iter().map(|r| r.2).collect();
    assert_eq!(out, ["3.1415"]);

    let bad = cri
        .run(&pod, &pod_config, container("bad", &image, &["zero"]))
        .await?;
    let st = cri.wait_exited(&bad).await?;
    assert_eq!((st.exit_code, st.reason.as_str()), (2, "Error"));
    let records = log_records(&st.log_path);
    assert!(
        records
            .iter()
            .any(|r| r.0 == "stderr" && r.2.contains("batch-pi")),
        "the error is on stderr: {records:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_shows_its_reason_and_wasm_backtrace() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::DEEP_RECURSION, "deep:v1")?;
    let (pod, pod_config) = cri.pod("trap").await?;
    let id = cri
        .run(&pod, &pod_config, container("deep", &image, &[]))
        .await?;
    let st = cri.wait_exited(&id).await?;
    assert_eq!(st.exit_code, wasi_shim::TRAP_EXIT_CODE);
    assert_eq!(st.reason, "Trapped");
    assert!(st.message.contains("stack overflow"), "{}", st.message);
    assert!(
        st.message.contains("wasm backtrace") && st.message.contains("deep_recursion"),
        "the message holds the backtrace with function names:\n{}",
        st.message
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_is_oom_killed_at_its_limit() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::MEMORY_BOMB, "bomb:v1")?;
    let (pod, pod_config) = cri.pod("oom").await?;
    let id = cri
        .run(
            &pod,
            &pod_config,
            limits(container("bomb", &image, &[]), 0.0, 32 << 20),
        )
        .await?;
    let st = cri.wait_exited(&id).await?;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{}",
        st.message
    );
    assert!(st.message.contains("memory limit"), "{}", st.message);
    assert_eq!(
        st.resources.unwrap().linux.unwrap().memory_limit_in_bytes,
        32 << 20
    );
    // Its memory at the end is within the limit.
    let stats = cri
        .rt
        .container_stats(api::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await?
        .into_inner()
        .stats
        .unwrap();
    let mem = stats.memory.unwrap().usage_bytes.unwrap().value;
    assert!(mem > 0 && mem <= 32 << 20, "{mem}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_container_ends_a_spinning_guest_within_its_timeout() -> Result<()> {
    let mut cri = Cri::start().await?;
    let image = cri.import(artifacts::INFINITE_LOOP, "spin:v1")?;
    let (pod, pod_config) = cri.pod("spin").await?;

    // With a grace period: terminated (a command cannot catch it; it ends
    // as a process with the default SIGTERM action would).
    let a = cri
        .run(&pod, &pod_config, container("a", &image, &[]))
        .await?;
    wait_running_line(&mut cri, &a).await?;
    let started = Instant::now();
    cri.stop_container(&a, 1).await?;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "StopContainer(1) took {took:?}"
    );
    let st = cri.status(&a).await?;
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (143, "Error"),
        "{}",
        st.message
    );

    // Without one: killed at once, 137.
    let b = cri
        .run(&pod, &pod_config, container("b", &image, &[]))
        .await?;
    wait_running_line(&mut cri, &b).await?;
    let started = Instant::now();
    cri.stop_container(&b, 0).await?;
    assert!(started.elapsed() < Duration::from_secs(2));
    let st = cri.status(&b).await?;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "Error"),
        "{}",
        st.message
    );

    // Stopping an exited container again is fine.
    cri.stop_container(&b, 5).await?;
    Ok(())
}

/// Waits until the spinning guest has printed its line (it is running).
async fn wait_running_line(cri: &mut Cri, id: &str) -> Result<()> {
    let st = cri.status(id).await?;
    assert_eq!(st.state, api::ContainerState::ContainerRunning as i32);
    let path = st.log_path.clone();
    testbed::wait_until("the guest prints its line", common::DEADLINE, || async {
        !log_records(&path).is_empty()
    })
    .await
}
