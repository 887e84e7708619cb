//! Container logs under a flood: rotation keeps them bounded and the runtime
//! keeps answering; ReopenContainerLog follows the kubelet's renames.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Cri, DEADLINE, container, log_records};
use k8s_cri::v1 as api;
use tonic::Code;

fn rotated(path: &str, i: usize) -> String {
    format!("{path}.{i}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_rotates_and_stays_bounded() -> Result<()> {
    const MAX: u64 = 64 * 1024;
    let dir = tempfile::tempdir()?;
    let mut cri = Cri::start_with(dir, |c| {
        c.log_max_bytes = MAX;
        c.log_max_files = 3;
    })
    .await?;
    let image = cri.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let (pod, pod_config) = cri.pod("flood").await?;
    let id = cri
        .run(&pod, &pod_config, container("flood", &image, &[]))
        .await?;
    let path = cri.status(&id).await?.log_path;

    // Let it rotate many times over.
    let mut rotations_seen = 0;
    let mut last_inode = 0;
    testbed::wait_until("the log rotates repeatedly", DEADLINE, || {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(rotated(&path, 2))
            && m.ino() != last_inode
        {
            last_inode = m.ino();
            rotations_seen += 1;
        }
        let enough = rotations_seen >= 5;
        async move { enough }
    })
    .await?;

    // The runtime answers promptly during the flood.
    let started = Instant::now();
    cri.rt.version(api::VersionRequest::default()).await?;
    let stats = cri
        .rt
        .container_stats(api::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await?
        .into_inner()
        .stats
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answers took {:?} during the flood",
        started.elapsed()
    );
    let layer = stats.writable_layer.unwrap().used_bytes.unwrap().value;
    assert!(layer > 0 && layer <= 3 * (MAX + 200), "{layer}");

    cri.stop_container(&id, 0).await?;
    // At most log_max_files files, each within the limit (plus one record).
    assert!(!Path::new(&rotated(&path, 3)).exists(), "a fourth file");
    for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
        let len = std::fs::metadata(&p)?.len();
        assert!(len <= MAX + 200, "{p} is {len} bytes");
    }
    // Each file holds whole, well-formed records, in order.
    let records = log_records(&rotated(&path, 1));
    assert!(!records.is_empty());
    let numbers: Vec<u64> = records
        .iter()
        .filter(|r| r.1 == "F")
        .filter_map(|r| r.2.split(' ').nth(2)?.parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines in order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_container_log_follows_a_rename() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cri = Cri::start_with(dir, |c| {
        c.log_max_bytes = 1 << 30;
        c.log_max_files = 2;
    })
    .await?;
    let image = cri.import(artifacts::LOG_FLOOD, "flood:v1")?;
    let (pod, pod_config) = cri.pod("reopen").await?;
    let id = cri
        .run(
            &pod,
            &pod_config,
            common::limits(container("flood", &image, &[]), 0.05, 0),
        )
        .await?;
    let path = cri.status(&id).await?.log_path;
    testbed::wait_until("the flood starts", DEADLINE, || async {
        !log_records(&path).is_empty()
    })
    .await?;

    // The kubelet's rotation: rename, then ReopenContainerLog.
    let moved = format!("{path}.20260101-000000");
    std::fs::rename(&path, &moved)?;
    cri.rt
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await?;
    testbed::wait_until(
        "new records go to a new file at the log path",
        DEADLINE,
        || async { !log_records(&path).is_empty() },
    )
    .await?;
    assert!(!log_records(&moved).is_empty());

    cri.stop_container(&id, 0).await?;
    let e = cri
        .rt
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    Ok(())
}
