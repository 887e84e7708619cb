//! `shoal up`: a whole cluster in one process. The control plane as `shoal
//! server` runs it (embedded store, apiserver on 127.0.0.1, scheduler) and
//! one node as `shoal node` runs it (CRI runtime and kubelet, which gets
//! its serving certificate with the admin kubeconfig), named for the host,
//! at 127.0.0.1, keeping its data (image store, compile cache, pods)
//! in the same data directory, so `shoal image import FILE NAME:TAG
//! --data-dir DIR` feeds it, while it runs too. SIGINT or SIGTERM stops
//! the node (and its pods), then the control plane.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use k8s_openapi::api::core::v1::Node;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::cli::{Cli, Command, NodeArgs, UpArgs};
use crate::server::{ControlPlane, Settings};
use crate::{error_chain, shutdown_signal};

/// How long the node may take to register and turn Ready before `shoal up`
/// says it is ready anyway (with a warning).
const NODE_READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the node may take to stop once signalled.
const NODE_STOP_DEADLINE: Duration = Duration::from_secs(30);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = args.data_dir.resolve();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let dir = std::path::absolute(&dir)
        .with_context(|| format!("cannot resolve the data directory {}", dir.display()))?;
    // Installed first: a signal from now on stops the cluster cleanly.
    let mut signal = Box::pin(shutdown_signal()?);
    let plane = ControlPlane::start(Settings {
        data_dir: &dir,
        etcd_endpoints: &[],
        etcd_prefix: "/registry/",
        bind_address: [127, 0, 0, 1].into(),
        https_port: args.https_port,
        with_scheduler: true,
    })
    .await?;
    let addr = plane.addr();
    let kubeconfig = plane.kubeconfig();
    let (stop_plane, plane_stopped) = oneshot::channel::<()>();
    let control = tokio::spawn(
        plane
            .serve(async move {
                let _ = plane_stopped.await;
            })
            .instrument(tracing::info_span!("control_plane")),
    );
    let name = kubelet::hostname();
    let mut node: JoinHandle<anyhow::Result<()>> = tokio::spawn(
        crate::node::node(node_args(&dir, &kubeconfig, &name, args.kubelet_port)?)
            .instrument(tracing::info_span!("node", node = %name)),
    );

    let mut ended = None;
    let mut signalled = false;
    tokio::select! {
        r = &mut node => ended = Some(r),
        () = node_ready(&kubeconfig, &name) => eprintln!(
            "shoal up is ready: https://{addr}, node {name}, data in {dir}.\n\
             Use it with:  export KUBECONFIG={kubeconfig}; kubectl get nodes\n\
             Add modules:  shoal image import FILE.wasm NAME:TAG --data-dir {dir}\n\
             Stop it with Ctrl-C.",
            dir = dir.display(),
            kubeconfig = kubeconfig.display(),
        ),
        () = &mut signal => signalled = true,
    }
    if ended.is_none() && !signalled {
        tokio::select! {
            r = &mut node => ended = Some(r),
            () = &mut signal => {}
        }
    }
    let node_result = match ended {
        Some(r) => r,
        // The node got the same signal: wait for it to stop.
        None => match tokio::time::timeout(NODE_STOP_DEADLINE, &mut node).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(deadline = ?NODE_STOP_DEADLINE, "the node did not stop in time: abandoning it");
                node.abort();
                Ok(Ok(()))
            }
        },
    };
    tracing::info!("the node stopped; stopping the control plane");
    let _ = stop_plane.send(());
    let plane_result = control.await.context("the control plane task failed")?;
    node_result.context("the node task failed")??;
    plane_result
}

/// The node's arguments, parsed as `shoal node` would parse them, so that
/// every flag keeps its default.
fn node_args(
    dir: &Path,
    kubeconfig: &Path,
    name: &str,
    kubelet_port: u16,
) -> anyhow::Result<NodeArgs> {
    let kubelet_port = kubelet_port.to_string();
    let argv: [&std::ffi::OsStr; 12] = [
        "shoal".as_ref(),
        "node".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        "--name".as_ref(),
        name.as_ref(),
        "--node-ip".as_ref(),
        "127.0.0.1".as_ref(),
        "--kubelet-port".as_ref(),
        kubelet_port.as_ref(),
    ];
    match Cli::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("the node's arguments: {e}"))?
        .command
    {
        Command::Node(mut args) => {
            // Not from $SHOAL_SERVER or $SHOAL_TOKEN: this node is the local server's.
            args.server = None;
            args.token = None;
            Ok(args)
        }
        _ => unreachable!("`shoal node` parses as Command::Node"),
    }
}

/// Resolves once the node is registered and Ready (or after
/// [`NODE_READY_DEADLINE`], with a warning).
async fn node_ready(kubeconfig: &Path, name: &str) {
    let deadline = tokio::time::Instant::now() + NODE_READY_DEADLINE;
    let client = loop {
        match kubelet::client_from_kubeconfig(kubeconfig).await {
            Ok(c) => break Some(c),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(error = %error_chain(&e), "cannot reach the apiserver");
                break None;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let Some(client) = client else { return };
    let nodes: kube::Api<Node> = kube::Api::all(client);
    while tokio::time::Instant::now() < deadline {
        let ready = nodes.get_opt(name).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!(node = %name, deadline = ?NODE_READY_DEADLINE, "the node is not Ready yet");
}
