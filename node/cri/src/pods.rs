//! Pod sandboxes: RunPodSandbox (a record, a pod IP and the host ports of
//! its port mappings, see `ports`; there is no pause process),
//! StopPodSandbox, RemovePodSandbox, PodSandboxStatus and ListPodSandbox. RunPodSandbox is idempotent as containerd's: the same
//! metadata (name, namespace, uid, attempt) again is `AlreadyExists`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;

use crate::error::CriError;
use crate::ports;
use crate::records::PodRecord;
use crate::runtime::{Runtime, find, new_id, now_ns, selects};

impl Runtime {
    pub fn run_pod_sandbox(&self, req: cri::RunPodSandboxRequest) -> Result<String, CriError> {
        let config = req
            .config
            .ok_or_else(|| CriError::InvalidArgument("RunPodSandbox needs a config".into()))?;
        let meta = config.metadata.as_ref().ok_or_else(|| {
            CriError::InvalidArgument(
                "RunPodSandbox needs config.metadata (name, namespace, uid)".into(),
            )
        })?;
        if meta.name.is_empty() {
            return Err(CriError::InvalidArgument(
                "RunPodSandbox: config.metadata.name is empty".into(),
            ));
        }
        let key = PodRecord::name_key(&config);
        let mut t = self.tables();
        if let Some(existing) = t.pod_named(&key) {
            return Err(CriError::AlreadyExists(format!(
                "pod sandbox {key} already exists as {existing}: remove it first, or bump the attempt"
            )));
        }
        let host_network = PodRecord::host_network(&config);
        let ip = if host_network {
            None
        } else {
            Some(t.ipam.allocate()?)
        };
        // Every host port or none: a failure leaves nothing bound.
        let bound = match ports::forwards(&config, ip).and_then(|f| ports::bind(&f)) {
            Ok(bound) => bound,
            Err(e) => {
                if let Some(ip) = ip {
                    t.ipam.release(ip);
                }
                return Err(e);
            }
        };
        let pod = PodRecord {
            id: new_id(),
            config,
            runtime_handler: req.runtime_handler,
            created_at: now_ns(),
            ready: true,
            ip,
        };
        if let Err(e) = self
            .records
            .save_pod(&pod)
            .and_then(|()| self.ports.serve(&pod.id, bound))
        {
            if let Some(ip) = ip {
                t.ipam.release(ip);
            }
            self.records.remove_pod(&pod.id);
            return Err(e);
        }
        tracing::info!(pod = %pod.id, name = %key, ip = ?pod.ip, "pod sandbox ready");
        let id = pod.id.clone();
        t.insert_pod(pod);
        let pod = &t.pods()[&id];
        self.emit(&t, pod, &id, cri::ContainerEventType::ContainerCreatedEvent);
        self.emit(&t, pod, &id, cri::ContainerEventType::ContainerStartedEvent);
        Ok(id)
    }

    /// Kills the pod's running containers, closes its host ports and marks
    /// it NOTREADY. Unknown ids succeed (the call is idempotent).
    pub async fn stop_pod_sandbox(self: &Arc<Self>, id: &str) -> Result<(), CriError> {
        let (pod_id, containers) = {
            let t = self.tables();
            let Some(pod_id) = find(t.pods(), id, "pod sandbox")? else {
                return Ok(());
            };
            let containers: Vec<String> = t
                .pod_containers(&pod_id)
                .filter(|c| c.live.is_some())
                .map(|c| c.rec.id.clone())
                .collect();
            (pod_id, containers)
        };
        for c in containers {
            match self.stop_container(&c, Duration::ZERO).await {
                Err(CriError::NotFound { .. }) | Ok(()) => {}
                Err(e) => return Err(e),
            }
        }
        self.ports.close(&pod_id).await;
        let mut t = self.tables();
        if let Some(pod) = t.pod_mut(&pod_id)
            && pod.ready
        {
            pod.ready = false;
            self.records.save_pod(pod)?;
            tracing::info!(pod = %pod_id, "pod sandbox stopped");
            self.emit_in(
                &t,
                &pod_id,
                &pod_id,
                cri::ContainerEventType::ContainerStoppedEvent,
            );
        }
        Ok(())
    }

    /// Removes the pod and its containers (killing those still running) and
    /// frees its IP and host ports. Unknown ids succeed.
    pub async fn remove_pod_sandbox(self: &Arc<Self>, id: &str) -> Result<(), CriError> {
        let (pod_id, containers) = {
            let t = self.tables();
            let Some(pod_id) = find(t.pods(), id, "pod sandbox")? else {
                return Ok(());
            };
            let containers: Vec<String> = t
                .pod_containers(&pod_id)
                .map(|c| c.rec.id.clone())
                .collect();
            (pod_id, containers)
        };
        for c in containers {
            self.remove_container(&c).await?;
        }
        self.ports.close(&pod_id).await;
        let mut t = self.tables();
        if let Some(pod) = t.remove_pod(&pod_id) {
            if let Some(ip) = pod.ip {
                t.ipam.release(ip);
            }
            self.records.remove_pod(&pod_id);
            tracing::info!(pod = %pod_id, "pod sandbox removed");
            self.emit(
                &t,
                &pod,
                &pod_id,
                cri::ContainerEventType::ContainerDeletedEvent,
            );
        }
        Ok(())
    }

    pub fn pod_sandbox_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> Result<cri::PodSandboxStatusResponse, CriError> {
        let t = self.tables();
        let id = find(t.pods(), &req.pod_sandbox_id, "pod sandbox")?
            .ok_or_else(|| CriError::not_found("pod sandbox", &req.pod_sandbox_id))?;
        let pod = &t.pods()[&id];
        let containers_statuses = t
            .pod_containers(&id)
            .map(|c| self.container_status_of(c))
            .collect();
        let mut info = HashMap::new();
        if req.verbose {
            info.insert(
                "info".into(),
                serde_json::to_string(pod).unwrap_or_default(),
            );
        }
        Ok(cri::PodSandboxStatusResponse {
            status: Some(pod_status(pod)),
            info,
            containers_statuses,
            timestamp: now_ns(),
        })
    }

    pub fn list_pod_sandbox(&self, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let t = self.tables();
        let filter = filter.unwrap_or_default();
        t.pod_candidates(&filter.id, &filter.label_selector)
            .into_iter()
            .filter(|p| filter.id.is_empty() || p.id.starts_with(&filter.id))
            .filter(|p| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|s| s.state == state(p) as i32)
            })
            .filter(|p| selects(&filter.label_selector, &p.config.labels))
            .map(|p| cri::PodSandbox {
                id: p.id.clone(),
                metadata: p.config.metadata.clone(),
                state: state(p) as i32,
                created_at: p.created_at,
                labels: p.config.labels.clone(),
                annotations: p.config.annotations.clone(),
                runtime_handler: p.runtime_handler.clone(),
            })
            .collect()
    }
}

fn state(p: &PodRecord) -> cri::PodSandboxState {
    if p.ready {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

/// The status of a pod: the kubelet compares the namespace options with the
/// pod's spec (a mismatch makes it recreate the sandbox), so they are echoed.
pub(crate) fn pod_status(p: &PodRecord) -> cri::PodSandboxStatus {
    let options = p
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    cri::PodSandboxStatus {
        id: p.id.clone(),
        metadata: p.config.metadata.clone(),
        state: state(p) as i32,
        created_at: p.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: p
                .ip
                .map(|ip| IpAddr::V4(ip).to_string())
                .unwrap_or_default(),
            additional_ips: Vec::new(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options }),
        }),
        labels: p.config.labels.clone(),
        annotations: p.config.annotations.clone(),
        runtime_handler: p.runtime_handler.clone(),
    }
}
