//! `shoal kubelet` (the kubelet alone, against `shoal cri`'s socket) and
//! `shoal node` (the CRI runtime in-process, then the kubelet over its
//! socket). `shoal node --server URL --token TOKEN` joins first ([`join`]):
//! the node then talks to the apiserver as `system:node:NAME`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{KubeletArgs, NodeArgs, NodeFlags};
use crate::{error_chain, join, shutdown_signal};

/// The kubelet's configuration from the flags (checked before anything
/// starts); its API's certificate comes from the join ([`serve_with`]).
fn config(flags: &NodeFlags, data_dir: &Path, socket: PathBuf) -> anyhow::Result<kubelet::Config> {
    let name = node_name(flags);
    let mut config = kubelet::Config::new(name, data_dir, socket);
    config.node_ip = flags.node_ip;
    config.max_pods = flags.max_pods;
    config.kubelet_port = flags.kubelet_port;
    let secs = |v: f64, flag: &str| {
        Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--{flag} {v}: give a positive number of seconds"))
    };
    config.backoff.base = secs(flags.backoff_base, "backoff-base")?;
    config.backoff.max = secs(flags.backoff_max, "backoff-max")?;
    if config.backoff.max < config.backoff.base {
        anyhow::bail!("--backoff-max must not be below --backoff-base");
    }
    config.backoff.reset_after = (config.backoff.max * 2).max(Duration::from_secs(1));
    Ok(config)
}

/// Serves the kubelet API with the serving certificate the join gave.
fn serve_with(config: &mut kubelet::Config, joined: &join::Joined) {
    config.serving = Some(kubelet::ServingTls {
        cert_pem: joined.answer.serving_cert_pem.clone(),
        key_pem: joined.answer.serving_key_pem.clone(),
        client_ca_pem: joined.answer.ca_pem.clone(),
    });
}

/// `--name`, else the host name.
fn node_name(flags: &NodeFlags) -> String {
    flags.name.clone().unwrap_or_else(kubelet::hostname)
}

/// The kubeconfig to use: `--kubeconfig`, else `$KUBECONFIG`, else
/// `DATA_DIR/admin.kubeconfig`.
async fn client(flags: &NodeFlags, data_dir: &Path) -> anyhow::Result<kube::Client> {
    let path = match (&flags.kubeconfig, std::env::var_os("KUBECONFIG")) {
        (Some(p), _) => p.clone(),
        (None, Some(env)) if !env.is_empty() => PathBuf::from(env),
        _ => data_dir.join("admin.kubeconfig"),
    };
    if !path.exists() {
        anyhow::bail!(
            "no kubeconfig at {}: give --kubeconfig FILE (for example the server's DATA_DIR/admin.kubeconfig)",
            path.display()
        );
    }
    kubeconfig_client(&path).await
}

async fn kubeconfig_client(path: &Path) -> anyhow::Result<kube::Client> {
    kubelet::client_from_kubeconfig(path)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
}

/// The kubelet API's serving certificate, asked for with the client's own
/// certificate (an admin kubeconfig, or the node's).
async fn serving(
    client: &kube::Client,
    flags: &NodeFlags,
    data_dir: &Path,
) -> anyhow::Result<join::Joined> {
    join::with_client(client, &node_name(flags), &[flags.node_ip], data_dir).await
}

fn data_dir(flags: &NodeFlags) -> anyhow::Result<PathBuf> {
    let dir = flags.data_dir.resolve();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    std::path::absolute(&dir)
        .with_context(|| format!("cannot resolve the data directory {}", dir.display()))
}

/// `shoal kubelet`: the kubelet alone. Stopping it stops no pod.
pub async fn kubelet(args: KubeletArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args.node)?;
    let socket = args
        .cri_socket
        .clone()
        .unwrap_or_else(|| dir.join("cri.sock"));
    let mut config = config(&args.node, &dir, socket.clone())?;
    let client = client(&args.node, &dir).await?;
    let joined = serving(&client, &args.node, &dir).await?;
    serve_with(&mut config, &joined);
    let shutdown = shutdown_signal()?;
    let name = config.node_name.clone();
    let kubelet = kubelet::Kubelet::build(config, client)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
    eprintln!(
        "shoal kubelet is up: node {name}, runtime unix://{}, pods under {}",
        socket.display(),
        dir.display()
    );
    kubelet
        .run(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
}

/// `shoal node`: the CRI runtime in this process and the kubelet over its
/// socket. Stopping it stops the runtime, and so every container.
pub async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let dir = data_dir(&args.node)?;
    // The flags are checked before joining; the socket is the runtime's default.
    config(&args.node, &dir, dir.join("cri.sock"))?;
    let (client, joined) = match (&args.server, &args.token) {
        (Some(server), Some(token)) => {
            if args.node.kubeconfig.is_some() {
                anyhow::bail!("give either --server and --token, or --kubeconfig, not both");
            }
            let name = node_name(&args.node);
            let joined = join::with_token(server, token, &name, &[args.node.node_ip], &dir).await?;
            let kubeconfig = joined
                .kubeconfig
                .clone()
                .context("a join with a token writes a kubeconfig")?;
            eprintln!(
                "joined {server} as system:node:{name}; credentials in {}",
                kubeconfig.display()
            );
            (kubeconfig_client(&kubeconfig).await?, joined)
        }
        (Some(_), None) => anyhow::bail!(
            "--server needs --token: give the token from the server's DATA_DIR/node-token"
        ),
        (None, Some(_)) => anyhow::bail!(
            "--token needs --server: give the server's URL, like https://10.0.0.1:6443"
        ),
        (None, None) => {
            let client = client(&args.node, &dir).await?;
            let joined = serving(&client, &args.node, &dir).await?;
            (client, joined)
        }
    };
    let server = cri::CriServer::build(cri::Config::new(&dir))
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
    let socket = server.socket().to_owned();
    let mut config = config(&args.node, &dir, socket.clone())?;
    // The kubelet calls its runtime in process; the socket serves the rest.
    config.cri_in_process = Some(server.in_process());
    serve_with(&mut config, &joined);
    let name = config.node_name.clone();
    let shutdown = shutdown_signal()?;
    let (stop_cri, cri_stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::spawn(server.serve(async move {
        let _ = cri_stopped.await;
    }));
    let kubelet = kubelet::Kubelet::build(config, client)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
    eprintln!(
        "shoal node is up: node {name}, runtime unix://{}, pods under {}",
        socket.display(),
        dir.display()
    );
    let result = kubelet.run(shutdown).await;
    tracing::info!("stopping the runtime and its containers");
    let _ = stop_cri.send(());
    match runtime.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %error_chain(&e), "the runtime stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the runtime task failed"),
    }
    result.map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
}
