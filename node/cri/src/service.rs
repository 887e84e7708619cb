//! The two gRPC services, `runtime.v1.RuntimeService` and
//! `runtime.v1.ImageService`, over [`Runtime`]: each RPC runs in a span
//! naming it and its pod or container, and its [`CriError`] becomes a status
//! in one place (`error.rs`). Exec answers a URL of the streaming server
//! (`streaming`). The RPCs not served answer `UNIMPLEMENTED` saying what is
//! missing and why.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::{CriError, chain};
use crate::events::EventStream;
use crate::runtime::Runtime;
use crate::streaming::Streams;

/// The RuntimeService, and the streaming server's registry for Exec.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeApi(pub Arc<Runtime>, pub Arc<Streams>);

/// The ImageService.
#[derive(Debug, Clone)]
pub(crate) struct ImageApi(pub Arc<Runtime>);

/// Runs one RPC in its span, logging how it ended.
async fn rpc<T>(
    span: tracing::Span,
    f: impl Future<Output = Result<T, CriError>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = f.instrument(span.clone()).await;
    let _enter = span.enter();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(v) => {
            tracing::debug!(ms, "ok");
            Ok(Response::new(v))
        }
        Err(e) => {
            tracing::info!(ms, code = ?e.code(), error = %chain(&e), "failed");
            Err(e.into())
        }
    }
}

macro_rules! span {
    ($rpc:literal) => {
        tracing::info_span!("cri", rpc = $rpc)
    };
    ($rpc:literal, pod = $pod:expr) => {
        tracing::info_span!("cri", rpc = $rpc, pod = %$pod)
    };
    ($rpc:literal, container = $c:expr) => {
        tracing::info_span!("cri", rpc = $rpc, container = %$c)
    };
}

fn unimplemented<T>(what: &str, why: &str) -> Result<Response<T>, Status> {
    Err(CriError::Unimplemented(format!("{what} is not served by shoal cri: {why}")).into())
}

const ATTACH: &str = "a Wasm container's stdin is not kept open and its output goes to its log \
     files: read them with ContainerStatus's log path (kubectl logs -f), or run a command in it \
     with Exec";
const PORT_FORWARD: &str = "a pod's ports are served on its pod IP on the node: connect to \
     POD_IP:PORT from the node, or expose the pod with a Service";

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(
        &self,
        _: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        rpc(span!("Version"), async { Ok(self.0.version()) }).await
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = req.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        rpc(span!("RunPodSandbox", pod = name), async {
            let id = self.0.run_pod_sandbox(req)?;
            Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        rpc(span!("StopPodSandbox", pod = id), async {
            self.0.stop_pod_sandbox(&id).await?;
            Ok(cri::StopPodSandboxResponse {})
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        rpc(span!("RemovePodSandbox", pod = id), async {
            self.0.remove_pod_sandbox(&id).await?;
            Ok(cri::RemovePodSandboxResponse {})
        })
        .await
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        rpc(span!("PodSandboxStatus", pod = req.pod_sandbox_id), async {
            self.0.pod_sandbox_status(req)
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        rpc(span!("ListPodSandbox"), async {
            Ok(cri::ListPodSandboxResponse {
                items: self.0.list_pod_sandbox(req.into_inner().filter),
            })
        })
        .await
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = req.into_inner();
        rpc(span!("CreateContainer", pod = req.pod_sandbox_id), async {
            let id = self.0.create_container(req).await?;
            Ok(cri::CreateContainerResponse { container_id: id })
        })
        .await
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        rpc(span!("StartContainer", container = id), async {
            self.0.start_container(&id).await?;
            Ok(cri::StartContainerResponse {})
        })
        .await
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = req.into_inner();
        let grace = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
        rpc(
            span!("StopContainer", container = req.container_id),
            async {
                self.0.stop_container(&req.container_id, grace).await?;
                Ok(cri::StopContainerResponse {})
            },
        )
        .await
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        rpc(span!("RemoveContainer", container = id), async {
            self.0.remove_container(&id).await?;
            Ok(cri::RemoveContainerResponse {})
        })
        .await
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        rpc(span!("ListContainers"), async {
            Ok(cri::ListContainersResponse {
                containers: self.0.list_containers(req.into_inner().filter),
            })
        })
        .await
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        rpc(
            span!("ContainerStatus", container = req.container_id),
            async { self.0.container_status(req) },
        )
        .await
    }

    async fn update_container_resources(
        &self,
        _: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        unimplemented(
            "UpdateContainerResources",
            "a guest's memory and CPU limits are fixed when it starts; recreate the container \
             with the new limits",
        )
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = req.into_inner().container_id;
        rpc(span!("ReopenContainerLog", container = id), async {
            self.0.reopen_container_log(&id)?;
            Ok(cri::ReopenContainerLogResponse {})
        })
        .await
    }

    async fn exec_sync(
        &self,
        req: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = req.into_inner();
        rpc(span!("ExecSync", container = req.container_id), async {
            self.0.exec_sync(req).await
        })
        .await
    }

    async fn exec(
        &self,
        req: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let req = req.into_inner();
        rpc(span!("Exec", container = req.container_id), async {
            self.1.exec(&self.0, req)
        })
        .await
    }

    async fn attach(
        &self,
        _: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        unimplemented("Attach", ATTACH)
    }

    async fn port_forward(
        &self,
        _: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        unimplemented("PortForward", PORT_FORWARD)
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let id = req.into_inner().container_id;
        rpc(span!("ContainerStats", container = id), async {
            Ok(cri::ContainerStatsResponse {
                stats: Some(self.0.container_stats(&id)?),
            })
        })
        .await
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        rpc(span!("ListContainerStats"), async {
            Ok(cri::ListContainerStatsResponse {
                stats: self.0.list_container_stats(req.into_inner().filter),
            })
        })
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        rpc(span!("PodSandboxStats", pod = id), async {
            Ok(cri::PodSandboxStatsResponse {
                stats: Some(self.0.pod_sandbox_stats(&id)?),
            })
        })
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        rpc(span!("ListPodSandboxStats"), async {
            Ok(cri::ListPodSandboxStatsResponse {
                stats: self.0.list_pod_sandbox_stats(req.into_inner().filter),
            })
        })
        .await
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        rpc(span!("UpdateRuntimeConfig"), async {
            self.0.update_runtime_config(req.into_inner())?;
            Ok(cri::UpdateRuntimeConfigResponse {})
        })
        .await
    }

    async fn status(
        &self,
        req: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        rpc(span!("Status"), async {
            Ok(self.0.status(req.into_inner().verbose))
        })
        .await
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        unimplemented(
            "CheckpointContainer",
            "checkpointing a running Wasm guest is not supported",
        )
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        rpc(span!("GetContainerEvents"), async {
            Ok(self.0.events.stream())
        })
        .await
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        unimplemented(
            "ListMetricDescriptors",
            "there are no cAdvisor-style metrics; use ListContainerStats and ListPodSandboxStats",
        )
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        unimplemented(
            "ListPodSandboxMetrics",
            "there are no cAdvisor-style metrics; use ListContainerStats and ListPodSandboxStats",
        )
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        unimplemented(
            "RuntimeConfig",
            "guests are limited by the Wasm engine, not by cgroups, so there is no cgroup \
             driver to report; the kubelet keeps its own setting",
        )
    }
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        rpc(span!("ListImages"), async {
            Ok(cri::ListImagesResponse {
                images: self.0.list_images(req.into_inner().filter)?,
            })
        })
        .await
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = req
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        rpc(
            tracing::info_span!("cri", rpc = "ImageStatus", image = %name),
            async {
                Ok(cri::ImageStatusResponse {
                    image: self.0.image_status(req)?,
                    info: Default::default(),
                })
            },
        )
        .await
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = req
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        rpc(
            tracing::info_span!("cri", rpc = "PullImage", image = %name),
            async {
                Ok(cri::PullImageResponse {
                    image_ref: self.0.pull_image(req).await?,
                })
            },
        )
        .await
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        let name = req
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        rpc(
            tracing::info_span!("cri", rpc = "RemoveImage", image = %name),
            async {
                self.0.remove_image(req)?;
                Ok(cri::RemoveImageResponse {})
            },
        )
        .await
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        rpc(span!("ImageFsInfo"), async { self.0.image_fs_info() }).await
    }
}
