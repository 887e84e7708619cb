//! The kubelet's PLEG against a real CRI runtime on a unix socket: a
//! container's exit reaches its pod's waker on the runtime's event stream,
//! with the relist period set to an hour so that no relist can be what saw
//! it; when the runtime goes away the PLEG falls back to relisting, and
//! when it is back it subscribes again, catches up with a relist (the
//! container stopped by the runtime's shutdown) and is on events again.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use common::{DEADLINE, Runtime, cri_config, sandbox_config};
use k8s_cri::v1 as api;
use kubelet::cri::labels;
use kubelet::pleg::{Listed, Mode, Pleg, Registry, Waker};
use tokio::sync::watch;

/// Long enough that a change seen within [`DEADLINE`] came on events.
const NEVER: Duration = Duration::from_secs(3600);

const EXITED: i32 = 10 + api::ContainerState::ContainerExited as i32;
const RUNNING: i32 = 10 + api::ContainerState::ContainerRunning as i32;

impl Runtime {
    /// Runs a kubelet-labelled pod `name` with one container, `main`, of
    /// `image` (with a CPU limit of `cpu` cores): its UID and container id.
    async fn pod(
        &mut self,
        dir: &Path,
        name: &str,
        image: &str,
        cpu: Option<f64>,
    ) -> Result<(String, String)> {
        let uid = format!("uid-{name}");
        let config = sandbox_config(name, &dir.join(format!("logs/{uid}")), &[]);
        let pod_labels = config.labels.clone();
        let sandbox = self
            .rt
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        let mut container_labels = pod_labels;
        container_labels.insert(labels::CONTAINER_NAME.to_owned(), "main".to_owned());
        let id = self
            .rt
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox,
                config: Some(api::ContainerConfig {
                    metadata: Some(api::ContainerMetadata {
                        name: "main".into(),
                        attempt: 0,
                    }),
                    image: Some(api::ImageSpec {
                        image: image.into(),
                        ..Default::default()
                    }),
                    log_path: "main/0.log".into(),
                    labels: container_labels,
                    linux: cpu.map(|cores| api::LinuxContainerConfig {
                        resources: Some(api::LinuxContainerResources {
                            cpu_period: 100_000,
                            cpu_quota: (cores * 100_000.0) as i64,
                            ..Default::default()
                        }),
                        security_context: None,
                    }),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await?
            .into_inner()
            .container_id;
        self.rt
            .start_container(api::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok((uid, id))
    }
}

/// A registered waker for `uid`, as the kubelet registers a pod worker's.
fn register(registry: &Registry, uid: &str) -> Arc<Waker> {
    let waker = Arc::new(Waker::default());
    registry
        .lock()
        .unwrap()
        .insert(uid.to_owned(), waker.clone());
    waker
}

/// Waits until the runtime's latest report for a waker shows container
/// `id` in `state`.
async fn reported(waker: &Waker, id: &str, state: i32) -> Result<()> {
    testbed::wait_until(
        &format!("container {id} reported in state {state}"),
        DEADLINE,
        || async {
            waker
                .latest()
                .is_some_and(|fp| fp.iter().any(|(i, s)| i == id && *s == state))
        },
    )
    .await
}

async fn mode_is(mode: &mut watch::Receiver<Mode>, want: Mode) -> Result<()> {
    tokio::time::timeout(DEADLINE, mode.wait_for(|m| *m == want))
        .await
        .with_context(|| format!("the PLEG did not reach {want:?}"))??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_come_on_events_and_a_lost_stream_falls_back_to_relisting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = cri_config(dir.path());
    let store = images::ImageStore::open(dir.path().join("images"))?;
    let hello = store.import(Path::new(artifacts::HELLO), "hello:v1")?.id;
    let flood = store
        .import(Path::new(artifacts::LOG_FLOOD), "flood:v1")?
        .id;
    drop(store);

    let mut runtime = Runtime::start(&config).await?;
    let registry = Registry::default();
    let relists = Arc::new(AtomicUsize::new(0));
    let pleg = Pleg::new(
        kubelet::cri::Cri::connect_lazy(&config.socket),
        registry.clone(),
    )
    .with_periods(Duration::from_millis(200), NEVER);
    let mut mode = pleg.mode();
    // Relists made while on events (the catch-up after subscribing).
    let running = tokio::spawn({
        let relists = relists.clone();
        let mode = pleg.mode();
        pleg.run(async move |_: Listed| {
            if *mode.borrow() == Mode::Evented {
                relists.fetch_add(1, Ordering::SeqCst);
            }
        })
    });
    mode_is(&mut mode, Mode::Evented).await?;
    testbed::wait_until("the first relist", DEADLINE, || async {
        relists.load(Ordering::SeqCst) >= 1
    })
    .await?;
    let after_first = relists.load(Ordering::SeqCst);

    // An exit, on events alone.
    let one = register(&registry, "uid-one");
    let (_, first) = runtime.pod(dir.path(), "one", &hello, None).await?;
    reported(&one, &first, EXITED).await?;
    assert!(one.stale(), "a worker that saw nothing is woken");
    assert_eq!(
        relists.load(Ordering::SeqCst),
        after_first,
        "no relist ran: the exit came on the event stream"
    );

    // A container that runs until the runtime stops it.
    let two = register(&registry, "uid-two");
    let (_, long) = runtime.pod(dir.path(), "two", &flood, Some(0.02)).await?;
    reported(&two, &long, RUNNING).await?;
    two.saw(two.latest().context("a report")?);
    assert!(!two.stale());

    // The runtime goes away: its stream ends, the PLEG relists.
    runtime.stop().await?;
    mode_is(&mut mode, Mode::Relisting).await?;

    // Back: subscribed again, caught up by a relist (the shutdown stopped
    // the flood), and on events again.
    let before = relists.load(Ordering::SeqCst);
    let mut runtime = Runtime::start(&config).await?;
    mode_is(&mut mode, Mode::Evented).await?;
    reported(&two, &long, EXITED).await?;
    assert!(two.stale(), "woken for the exit it did not see");
    testbed::wait_until("the catch-up relist", DEADLINE, || async {
        relists.load(Ordering::SeqCst) > before
    })
    .await?;
    let caught_up = relists.load(Ordering::SeqCst);
    let three = register(&registry, "uid-three");
    let (_, third) = runtime.pod(dir.path(), "three", &hello, None).await?;
    reported(&three, &third, EXITED).await?;
    assert_eq!(
        relists.load(Ordering::SeqCst),
        caught_up,
        "no relist ran after the catch-up: back on events"
    );

    running.abort();
    runtime.stop().await?;
    Ok(())
}
