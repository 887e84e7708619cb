//! The kubelet tests' harness: a real `CriServer` on a unix socket in a
//! temporary directory (a small engine, a pod CIDR of the test process's
//! own), and pod sandbox configs labelled as the kubelet labels its pods.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_cri::v1 as api;
use kubelet::cri::labels;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any one wait may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A runtime configuration for `dir`: a small engine, and a pod CIDR no
/// other test process uses.
pub fn cri_config(dir: &Path) -> cri::Config {
    let mut config = cri::Config::new(dir);
    config.engine.total_instances = 64;
    config.engine.total_component_instances = 32;
    config.engine.total_memories = 32;
    config.engine.total_tables = 64;
    config.engine.total_stacks = 32;
    config.pod_cidr = testbed::pod_cidr(0);
    config
}

/// A runtime serving on its socket, with a client over it.
pub struct Runtime {
    pub rt: cri::client::RuntimeClient,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<()>>,
}

impl Runtime {
    pub async fn start(config: &cri::Config) -> Result<Runtime> {
        let server = cri::CriServer::build(config.clone())
            .await
            .context("building the CRI server")?;
        let socket = server.socket().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            if let Err(e) = server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
            {
                eprintln!("CRI server: {e}");
            }
        });
        let (rt, _) = cri::client::connect(&socket).await?;
        Ok(Runtime {
            rt,
            stop: Some(stop),
            served: Some(served),
        })
    }

    /// Shuts the runtime down (its containers stopped) and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.served.take() {
            tokio::time::timeout(DEADLINE, h)
                .await
                .context("the CRI server does not stop")??;
        }
        Ok(())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The sandbox config of pod `name` (namespace `default`, UID `uid-NAME`)
/// with the kubelet's labels and `extra` ones, logging under `log_dir`.
pub fn sandbox_config(name: &str, log_dir: &Path, extra: &[(&str, &str)]) -> api::PodSandboxConfig {
    let uid = format!("uid-{name}");
    let mut labels = HashMap::from([
        (labels::POD_NAME.to_owned(), name.to_owned()),
        (labels::POD_NAMESPACE.to_owned(), "default".to_owned()),
        (labels::POD_UID.to_owned(), uid.clone()),
    ]);
    labels.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        labels,
        ..Default::default()
    }
}
