//! [`Cri`]: the CRI v1 runtime and image service clients, with one method
//! per call the kubelet makes. Every call has a deadline; errors become
//! [`KubeletError::Cri`] naming the call.
//!
//! The clients are `cri::client`'s: over the unix socket (`shoal kubelet`),
//! where the channel connects lazily and reconnects by itself, so a runtime
//! that starts after the kubelet, or restarts, is picked up on the next
//! call; or in process (`shoal node`, [`Config::cri_in_process`]), the same
//! calls made in the caller's task.
//!
//! [`Config::cri_in_process`]: crate::Config::cri_in_process

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::cri::client::{ImageClient, RuntimeClient};
use k8s_cri::v1 as api;

use crate::error::KubeletError;

/// The deadline of a CRI call (the kubelet's `runtimeRequestTimeout`).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Pod sandbox and container labels the kubelet sets and finds its
/// objects by.
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// Container annotation: how many times the container had restarted
    /// when this instance was created.
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    /// Container annotation: a hash of the container's spec; a change
    /// restarts the container.
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    /// Container annotation: the grace period the pod had.
    pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// Container annotation: where the termination message file is on the
    /// host.
    pub const TERMINATION_LOG: &str = "shoal.dev/termination-log";
    /// Container annotation: the container's `terminationMessagePolicy`.
    pub const TERMINATION_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
}

/// The runtime and image services on one channel.
#[derive(Clone, Debug)]
pub struct Cri {
    rt: RuntimeClient,
    img: ImageClient,
    socket: PathBuf,
}

fn failed(call: &'static str) -> impl FnOnce(tonic::Status) -> KubeletError {
    move |s| KubeletError::Cri {
        call,
        code: s.code(),
        message: s.message().to_owned(),
    }
}

impl Cri {
    /// A client for the runtime at `socket`; nothing is dialled until the
    /// first call.
    pub fn connect_lazy(socket: &Path) -> Self {
        let (rt, img) = ::cri::client::connect_lazy(socket);
        Cri {
            rt,
            img,
            socket: socket.to_owned(),
        }
    }

    /// A client over `clients`, the runtime's own in-process clients
    /// (`CriServer::in_process`); `socket` is where the same runtime serves
    /// other clients.
    pub fn in_process(clients: (RuntimeClient, ImageClient), socket: &Path) -> Self {
        let (rt, img) = clients;
        Cri {
            rt,
            img,
            socket: socket.to_owned(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn version(&self) -> Result<api::VersionResponse, KubeletError> {
        let mut rt = self.rt.clone();
        rt.version(req(api::VersionRequest {
            version: "v1".into(),
        }))
        .await
        .map(tonic::Response::into_inner)
        .map_err(failed("Version"))
    }

    /// Whether RuntimeReady and NetworkReady are both true; `Err` with the
    /// conditions that are not.
    pub async fn status(&self) -> Result<Result<(), String>, KubeletError> {
        let mut rt = self.rt.clone();
        let status = rt
            .status(req(api::StatusRequest { verbose: false }))
            .await
            .map_err(failed("Status"))?
            .into_inner();
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        let mut missing = Vec::new();
        for kind in ["RuntimeReady", "NetworkReady"] {
            match conditions.iter().find(|c| c.r#type == kind) {
                Some(c) if c.status => {}
                Some(c) => missing.push(format!(
                    "{kind}=false reason:{} message:{}",
                    c.reason, c.message
                )),
                None => missing.push(format!("{kind} is not reported")),
            }
        }
        Ok(if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join(", "))
        })
    }

    pub async fn update_pod_cidr(&self, cidr: &str) -> Result<(), KubeletError> {
        let mut rt = self.rt.clone();
        rt.update_runtime_config(req(api::UpdateRuntimeConfigRequest {
            runtime_config: Some(api::RuntimeConfig {
                network_config: Some(api::NetworkConfig {
                    pod_cidr: cidr.to_owned(),
                }),
            }),
        }))
        .await
        .map_err(failed("UpdateRuntimeConfig"))?;
        Ok(())
    }

    pub async fn list_images(&self) -> Result<Vec<api::Image>, KubeletError> {
        let mut img = self.img.clone();
        Ok(img
            .list_images(req(api::ListImagesRequest { filter: None }))
            .await
            .map_err(failed("ListImages"))?
            .into_inner()
            .images)
    }

    /// The image `reference` names, if the runtime has it.
    pub async fn image_status(&self, reference: &str) -> Result<Option<api::Image>, KubeletError> {
        let mut img = self.img.clone();
        Ok(img
            .image_status(req(api::ImageStatusRequest {
                image: Some(api::ImageSpec {
                    image: reference.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            }))
            .await
            .map_err(failed("ImageStatus"))?
            .into_inner()
            .image)
    }

    /// Pulls an image; returns its image ref (id).
    pub async fn pull_image(
        &self,
        reference: &str,
        auth: Option<api::AuthConfig>,
        sandbox: Option<api::PodSandboxConfig>,
    ) -> Result<String, KubeletError> {
        let mut img = self.img.clone();
        Ok(img
            .pull_image(req(api::PullImageRequest {
                image: Some(api::ImageSpec {
                    image: reference.to_owned(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: sandbox,
            }))
            .await
            .map_err(failed("PullImage"))?
            .into_inner()
            .image_ref)
    }

    pub async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
    ) -> Result<String, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .run_pod_sandbox(req(api::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            }))
            .await
            .map_err(failed("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), KubeletError> {
        let mut rt = self.rt.clone();
        rt.stop_pod_sandbox(req(api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }))
        .await
        .map_err(failed("StopPodSandbox"))?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), KubeletError> {
        let mut rt = self.rt.clone();
        rt.remove_pod_sandbox(req(api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }))
        .await
        .map_err(failed("RemovePodSandbox"))?;
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &self,
        id: &str,
    ) -> Result<Option<api::PodSandboxStatus>, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .pod_sandbox_status(req(api::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: false,
            }))
            .await
            .map_err(failed("PodSandboxStatus"))?
            .into_inner()
            .status)
    }

    /// Pod sandboxes, all or those with `labels`.
    pub async fn list_pod_sandboxes(
        &self,
        labels: HashMap<String, String>,
    ) -> Result<Vec<api::PodSandbox>, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .list_pod_sandbox(req(api::ListPodSandboxRequest {
                filter: Some(api::PodSandboxFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            }))
            .await
            .map_err(failed("ListPodSandbox"))?
            .into_inner()
            .items)
    }

    /// Containers, all or those with `labels`.
    pub async fn list_containers(
        &self,
        labels: HashMap<String, String>,
    ) -> Result<Vec<api::Container>, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .list_containers(req(api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            }))
            .await
            .map_err(failed("ListContainers"))?
            .into_inner()
            .containers)
    }

    pub async fn container_status(
        &self,
        id: &str,
    ) -> Result<Option<api::ContainerStatus>, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .container_status(req(api::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            }))
            .await
            .map_err(failed("ContainerStatus"))?
            .into_inner()
            .status)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox: api::PodSandboxConfig,
    ) -> Result<String, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .create_container(req(api::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
                config: Some(config),
                sandbox_config: Some(sandbox),
            }))
            .await
            .map_err(failed("CreateContainer"))?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), KubeletError> {
        let mut rt = self.rt.clone();
        rt.start_container(req(api::StartContainerRequest {
            container_id: id.to_owned(),
        }))
        .await
        .map_err(failed("StartContainer"))?;
        Ok(())
    }

    /// Stops a container: terminate, and kill after `grace`.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), KubeletError> {
        let mut rt = self.rt.clone();
        let mut req = tonic::Request::new(api::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        });
        req.set_timeout(grace + CALL_TIMEOUT);
        rt.stop_container(req)
            .await
            .map_err(failed("StopContainer"))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), KubeletError> {
        let mut rt = self.rt.clone();
        rt.remove_container(req(api::RemoveContainerRequest {
            container_id: id.to_owned(),
        }))
        .await
        .map_err(failed("RemoveContainer"))?;
        Ok(())
    }

    /// Runs a command in a container to its end (or `timeout`).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse, KubeletError> {
        let mut rt = self.rt.clone();
        let secs = timeout.as_secs().max(1);
        let mut req = tonic::Request::new(api::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd,
            timeout: i64::try_from(secs).unwrap_or(i64::MAX),
        });
        req.set_timeout(timeout + Duration::from_secs(5));
        Ok(rt
            .exec_sync(req)
            .await
            .map_err(failed("ExecSync"))?
            .into_inner())
    }
}

impl Cri {
    /// Opens the runtime's container event stream (GetContainerEvents):
    /// every container and sandbox change from now on. No deadline: the
    /// stream lasts until the runtime ends it.
    pub async fn container_events(
        &self,
    ) -> Result<tonic::Streaming<api::ContainerEventResponse>, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .get_container_events(tonic::Request::new(api::GetEventsRequest {}))
            .await
            .map_err(failed("GetContainerEvents"))?
            .into_inner())
    }
}

impl Cri {
    /// Asks the runtime to prepare a streaming exec; returns the URL its
    /// streaming server serves it at.
    pub async fn exec(&self, request: api::ExecRequest) -> Result<String, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .exec(req(request))
            .await
            .map_err(failed("Exec"))?
            .into_inner()
            .url)
    }

    /// Every pod sandbox's stats, with its containers'.
    pub async fn list_pod_sandbox_stats(&self) -> Result<Vec<api::PodSandboxStats>, KubeletError> {
        let mut rt = self.rt.clone();
        Ok(rt
            .list_pod_sandbox_stats(req(api::ListPodSandboxStatsRequest { filter: None }))
            .await
            .map_err(failed("ListPodSandboxStats"))?
            .into_inner()
            .stats)
    }
}

/// A request with the default deadline.
fn req<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(CALL_TIMEOUT);
    r
}

/// `{key: value}` for a label selector.
pub fn selector(key: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(key.to_owned(), value.to_owned())])
}
