//! Finding a pod's container in the runtime by the names a request gives
//! (`NAMESPACE/POD/CONTAINER`): the CRI containers labelled with them, of
//! the pod's newest UID, ordered by restart count. The current instance is
//! the newest; the previous one is the instance before it (the kubelet
//! keeps the last exited one when it restarts a container).

use k8s_cri::v1 as cri_api;

use super::error::Reply;
use crate::cri::{Cri, labels};

/// A container instance the runtime holds.
#[derive(Clone, Debug)]
pub struct Instance {
    pub id: String,
    pub restart_count: u32,
    pub created_at: i64,
    pub state: i32,
}

impl Instance {
    pub fn running(&self) -> bool {
        self.state == cri_api::ContainerState::ContainerRunning as i32
    }

    pub fn exited(&self) -> bool {
        self.state == cri_api::ContainerState::ContainerExited as i32
    }
}

/// The instances of one container, newest first.
#[derive(Debug)]
pub struct Instances {
    pub pod: String,
    pub container: String,
    pub list: Vec<Instance>,
}

impl Instances {
    /// Looks the container up; 404 when the runtime has no sandbox of the
    /// pod, or the pod has no container of that name.
    pub async fn find(
        cri: &Cri,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<Instances, Reply> {
        let pod_labels = std::collections::HashMap::from([
            (labels::POD_NAMESPACE.to_owned(), namespace.to_owned()),
            (labels::POD_NAME.to_owned(), pod.to_owned()),
        ]);
        let sandboxes = cri
            .list_pod_sandboxes(pod_labels.clone())
            .await
            .map_err(Reply::runtime)?;
        let Some(newest) = sandboxes.iter().max_by_key(|s| s.created_at) else {
            return Err(Reply::not_found(format!(
                "pod \"{namespace}/{pod}\" does not exist on this node"
            )));
        };
        let uid = newest
            .labels
            .get(labels::POD_UID)
            .cloned()
            .unwrap_or_default();
        let mut selector = pod_labels;
        selector.insert(labels::CONTAINER_NAME.to_owned(), container.to_owned());
        if !uid.is_empty() {
            selector.insert(labels::POD_UID.to_owned(), uid);
        }
        let mut list: Vec<Instance> = cri
            .list_containers(selector)
            .await
            .map_err(Reply::runtime)?
            .into_iter()
            .map(|c| Instance {
                restart_count: c
                    .annotations
                    .get(labels::RESTART_COUNT)
                    .and_then(|n| n.parse().ok())
                    .or_else(|| c.metadata.as_ref().map(|m| m.attempt))
                    .unwrap_or(0),
                id: c.id,
                created_at: c.created_at,
                state: c.state,
            })
            .collect();
        if list.is_empty() {
            return Err(Reply::not_found(format!(
                "container \"{container}\" not found in pod \"{namespace}/{pod}\""
            )));
        }
        list.sort_by_key(|i| std::cmp::Reverse((i.restart_count, i.created_at)));
        Ok(Instances {
            pod: pod.to_owned(),
            container: container.to_owned(),
            list,
        })
    }

    /// The current instance.
    pub fn current(&self) -> &Instance {
        &self.list[0]
    }

    /// The previous, exited instance; 400 as the kubelet answers when there
    /// is none.
    pub fn previous(&self) -> Result<&Instance, Reply> {
        self.list.get(1).filter(|i| i.exited()).ok_or_else(|| {
            Reply::bad_request(format!(
                "previous terminated container \"{}\" in pod \"{}\" not found",
                self.container, self.pod
            ))
        })
    }
}
