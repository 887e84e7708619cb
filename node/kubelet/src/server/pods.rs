//! `GET /pods`: a v1 `PodList` of the pods this node runs, as the runtime
//! holds them: the newest sandbox of each pod UID gives its name,
//! namespace, labels, annotations and IP; its containers (the newest
//! instance of each) give the container names, images and states.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State as Shared;
use k8s_cri::v1 as cri_api;
use k8s_openapi::List;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};

use super::State;
use super::error::Reply;
use crate::runtime::{self, State as Run};
use crate::status::time_from_ns;

pub(super) async fn list(Shared(state): Shared<Arc<State>>) -> Result<Json<List<Pod>>, Reply> {
    let by_pod = runtime::by_pod(&state.cri).await.map_err(Reply::runtime)?;
    let mut items = Vec::new();
    for (uid, (sandboxes, _)) in by_pod {
        let Some(sandbox) = sandboxes.into_iter().max_by_key(|s| s.created_at) else {
            continue;
        };
        let observed = match runtime::observe(&state.cri, &uid).await {
            Ok(o) => o,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(Reply::runtime(e)),
        };
        items.push(pod(&state.node_name, &uid, &sandbox, &observed));
    }
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Ok(Json(List {
        items,
        metadata: ListMeta::default(),
    }))
}

/// A pod as the runtime knows it.
fn pod(node: &str, uid: &str, sandbox: &cri_api::PodSandbox, observed: &runtime::Observed) -> Pod {
    let meta = sandbox.metadata.clone().unwrap_or_default();
    let user_labels: BTreeMap<String, String> = sandbox
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("io.kubernetes."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut names: Vec<&str> = observed
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let latest: Vec<&runtime::Container> =
        names.iter().filter_map(|n| observed.latest(n)).collect();
    let ip = observed
        .current_sandbox()
        .map(|s| s.ip.clone())
        .filter(|ip| !ip.is_empty());
    let running = latest.iter().any(|c| c.state == Run::Running);
    let phase = match observed.current_sandbox() {
        Some(s) if s.ready && running => "Running",
        Some(s) if s.ready => "Pending",
        _ if !latest.is_empty()
            && latest
                .iter()
                .all(|c| c.state == Run::Exited && c.exit_code == 0) =>
        {
            "Succeeded"
        }
        _ if !latest.is_empty() && latest.iter().all(|c| c.state == Run::Exited) => "Failed",
        _ => "Unknown",
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(meta.name),
            namespace: Some(meta.namespace),
            uid: Some(uid.to_owned()),
            labels: (!user_labels.is_empty()).then_some(user_labels),
            annotations: (!sandbox.annotations.is_empty())
                .then(|| sandbox.annotations.clone().into_iter().collect()),
            creation_timestamp: time_from_ns(sandbox.created_at),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            containers: latest
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    image: Some(c.image_ref.clone()),
                    ..Container::default()
                })
                .collect(),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.to_owned()),
            pod_ip: ip.clone(),
            pod_ips: ip.map(|ip| vec![PodIP { ip }]),
            container_statuses: Some(latest.iter().map(|c| container_status(c)).collect()),
            ..PodStatus::default()
        }),
    }
}

fn container_status(c: &runtime::Container) -> ContainerStatus {
    let state = match c.state {
        Run::Running => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time_from_ns(c.started_at),
            }),
            ..ContainerState::default()
        },
        Run::Exited => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.exit_code,
                reason: (!c.reason.is_empty()).then(|| c.reason.clone()),
                message: (!c.message.is_empty()).then(|| c.message.clone()),
                started_at: time_from_ns(c.started_at),
                finished_at: time_from_ns(c.finished_at),
                container_id: Some(format!("shoal://{}", c.id)),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        },
        Run::Created | Run::Unknown => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..ContainerState::default()
        },
    };
    ContainerStatus {
        name: c.name.clone(),
        container_id: Some(format!("shoal://{}", c.id)),
        image: c.image_ref.clone(),
        image_id: c.image_ref.clone(),
        ready: c.state == Run::Running,
        restart_count: c.restart_count,
        started: Some(c.state == Run::Running),
        state: Some(state),
        ..ContainerStatus::default()
    }
}
